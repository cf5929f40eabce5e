#!/usr/bin/env bash
# build-image.sh: build the Kaflow image on a machine with no container registry.
#
# Steps:
#   1. Docker engine and docker-compose, installed and started by start-dockerd.sh
#      when missing
#   2. base image local/python-base:bookworm (Debian 12, Python 3.11), made by
#      build-base-image.sh with debootstrap from the apt mirror unless it exists
#   3. wheelhouse cluster/docker/wheelhouse: wheels of Kaflow and its dependencies,
#      built on the host (same Python minor version and CPU architecture as the base
#      image, checked below)
#   4. `docker build --network none` of cluster/Dockerfile, installing only from the
#      wheelhouse
# The image carries a label with a hash of its inputs (sources, Dockerfile, these
# scripts, base image id). A run whose inputs match the existing image stops after
# step 2.
#
# start-dockerd.sh and build-base-image.sh are not part of this repository. CI puts
# them in shared/docker beside the clone, the default KAFLOW_SHARED_DOCKER.
#
# Settings (environment variables, all optional):
#   KAFLOW_IMAGE          tag to build                      (default kaflow:latest)
#   KAFLOW_BASE_IMAGE     base image; only the default is built here, any other
#                         must exist locally                (default local/python-base:bookworm)
#   KAFLOW_SHARED_DOCKER  folder with start-dockerd.sh and build-base-image.sh
#                                                           (default <repo>/../shared/docker)
#   PYTHON                host interpreter that builds the wheels (default python3.11, else python3)
#   FORCE=1               rebuild the wheelhouse and the image even if the inputs match
#
# Steps 1 and 2 need root because they run apt-get, dockerd and debootstrap. Once the
# engine and the base image exist, a user in the docker group can run the script.
set -euo pipefail

DEFAULT_BASE_IMAGE=local/python-base:bookworm
INPUTS_LABEL=org.kaflow.build-inputs
# 1980-01-01, the earliest time a zip file can store: Kaflow's wheel then has the
# same bytes for the same sources, so Docker's layer cache still applies.
WHEEL_SOURCE_DATE_EPOCH=315532800

repo=$(cd "$(dirname "$0")/../.." && pwd)
image=${KAFLOW_IMAGE:-kaflow:latest}
base_image=${KAFLOW_BASE_IMAGE:-$DEFAULT_BASE_IMAGE}
shared_docker=${KAFLOW_SHARED_DOCKER:-$repo/../shared/docker}
python=${PYTHON:-$(command -v python3.11 || command -v python3 || true)}
force=${FORCE:-0}
wheelhouse=$repo/cluster/docker/wheelhouse
# Files the image is built from, relative to the repository root. Keep in step
# with the COPY lines of cluster/Dockerfile.
context_paths=(pyproject.toml README.md kaflow cluster/Dockerfile cluster/docker)

started=$(date +%s)
log() { printf '[build-image %3ss] %s\n' "$(($(date +%s) - started))" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Write a tar stream of the given paths without Python caches, with fixed owners and
# times so the same files give the same bytes. --exclude options must come before
# the paths they apply to.
context_tar() {
  tar -C "$repo" --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner \
    --exclude=__pycache__ --exclude='*.egg-info' --exclude='*.pyc' "$@"
}

# --- 1. engine --------------------------------------------------------------------
if ! docker info >/dev/null 2>&1 || ! command -v docker-compose >/dev/null; then
  [ -x "$shared_docker/start-dockerd.sh" ] \
    || die "no Docker engine or docker-compose, and $shared_docker/start-dockerd.sh is missing; set KAFLOW_SHARED_DOCKER or start Docker yourself"
  log "starting the Docker engine with $shared_docker/start-dockerd.sh"
  "$shared_docker/start-dockerd.sh"
fi
# The classic builder ships with every engine and honours --network none for RUN.
export DOCKER_BUILDKIT=${DOCKER_BUILDKIT:-0}

# --- 2. base image ------------------------------------------------------------------
if [ "$base_image" = "$DEFAULT_BASE_IMAGE" ]; then
  if [ "$(id -u)" -eq 0 ]; then
    [ -x "$shared_docker/build-base-image.sh" ] \
      || die "$shared_docker/build-base-image.sh is missing; set KAFLOW_SHARED_DOCKER"
    IMAGE=$base_image "$shared_docker/build-base-image.sh"
  elif ! docker image inspect "$base_image" >/dev/null 2>&1; then
    die "base image $base_image is missing and building it needs root; run this script as root once"
  else
    log "not root: using the existing base image $base_image as it is"
  fi
fi
base_id=$(docker image inspect -f '{{.Id}}' "$base_image" 2>/dev/null) \
  || die "base image $base_image not found; build or pull it first, or unset KAFLOW_BASE_IMAGE"

# --- skip when nothing changed ------------------------------------------------------
inputs_id=$( { context_tar --exclude=cluster/docker/wheelhouse -c "${context_paths[@]}"; echo "$base_id"; } \
  | sha256sum | cut -c1-16)
if [ "$force" != 1 ]; then
  have=$(docker image inspect -f "{{index .Config.Labels \"$INPUTS_LABEL\"}}" "$image" 2>/dev/null || true)
  if [ "$have" = "$inputs_id" ]; then
    log "image $image is up to date (inputs $inputs_id): nothing to do"
    exit 0
  fi
  log "image $image has inputs '${have:-<none>}', sources give $inputs_id: building"
else
  log "FORCE=1: building $image (inputs $inputs_id)"
fi

# --- 3. wheelhouse ------------------------------------------------------------------
[ -n "$python" ] || die "no python3.11 or python3 on PATH; set PYTHON to a Python 3.11 interpreter with pip"
host_python=$("$python" -c 'import platform, sys; print(f"{sys.version_info[0]}.{sys.version_info[1]} {platform.machine()}")') \
  || die "cannot run $python; set PYTHON to a Python 3.11 interpreter with pip"
image_python=$(docker run --rm --network none --entrypoint python3 "$base_image" \
  -c 'import platform, sys; print(f"{sys.version_info[0]}.{sys.version_info[1]} {platform.machine()}")') \
  || die "cannot run python3 in $base_image"
[ "$host_python" = "$image_python" ] \
  || die "host $python is Python $host_python but $base_image has Python $image_python; wheels with compiled code would not install there. Set PYTHON to a matching interpreter"
log "host and base image both run Python $host_python"
# NOTE: glibc versions are not compared. A dependency wheel built for a newer glibc
# than the base image's makes the offline install in step 4 fail, naming the package.

mkdir -p "$wheelhouse"
rm -f "$wheelhouse"/kaflow-*.whl
source_copy=$(mktemp -d)
trap 'rm -rf "$source_copy"' EXIT
# Building from a copy keeps build/ and *.egg-info out of the working tree.
context_tar -c pyproject.toml README.md kaflow | tar -C "$source_copy" -x
log "+ pip wheel --no-deps $repo (Kaflow itself)"
SOURCE_DATE_EPOCH=$WHEEL_SOURCE_DATE_EPOCH "$python" -m pip wheel --quiet --no-deps \
  --disable-pip-version-check --wheel-dir "$wheelhouse" "$source_copy"
kaflow_wheel=$(find "$wheelhouse" -maxdepth 1 -name 'kaflow-*.whl' | head -n 1)
[ -n "$kaflow_wheel" ] || die "pip wheel produced no kaflow-*.whl in $wheelhouse"

# Dependencies: offline from the wheelhouse when it already has them all, else
# from the package index (added to the wheels already there).
if "$python" -m pip wheel --quiet --disable-pip-version-check --no-index \
     --find-links "$wheelhouse" --wheel-dir "$wheelhouse" "$kaflow_wheel" >/dev/null 2>&1; then
  log "wheelhouse already has every dependency"
else
  log "+ pip wheel: downloading or building missing dependencies"
  "$python" -m pip wheel --quiet --disable-pip-version-check --progress-bar off \
    --find-links "$wheelhouse" --wheel-dir "$wheelhouse" "$kaflow_wheel"
fi
log "wheelhouse: $(find "$wheelhouse" -maxdepth 1 -name '*.whl' | wc -l) wheels, $(du -sh "$wheelhouse" | cut -f1)"

# --- 4. image -----------------------------------------------------------------------
log "+ docker build --network none -f cluster/Dockerfile -t $image (base $base_image)"
context_tar -c "${context_paths[@]}" \
  | docker build --force-rm --network none --build-arg BASE_IMAGE="$base_image" \
      --label "$INPUTS_LABEL=$inputs_id" -f cluster/Dockerfile -t "$image" - >&2

docker run --rm --network none "$image" serve --help >/dev/null \
  || die "the new image $image cannot run 'kaflow serve --help'"

# Earlier builds of this Dockerfile left untagged images behind: the previous
# final image (with the inputs label) and the install stage. Only those go.
for label in "$INPUTS_LABEL" org.kaflow.stage=install; do
  docker image prune --force --filter "label=$label" >/dev/null
done
log "built $image ($(docker image inspect -f '{{.Size}}' "$image" | awk '{printf "%.0f MB", $1 / 1e6}'), inputs $inputs_id)"
