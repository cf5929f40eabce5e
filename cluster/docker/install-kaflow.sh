#!/bin/sh
# Install Kaflow into a new virtual environment; cluster/Dockerfile runs this at build time.
#
#   install-kaflow.sh VENV SOURCE_DIR
#
# When SOURCE_DIR/cluster/docker/wheelhouse contains a Kaflow wheel, everything is
# installed from that directory with no network access (build-image.sh fills it).
# Otherwise Kaflow is built from the source tree in SOURCE_DIR and its dependencies
# come from the package index that pip is configured for (PyPI by default).
#
# It also installs healthcheck.py as VENV/bin/kaflow-healthcheck.
set -eu

die() { printf 'install-kaflow: error: %s\n' "$*" >&2; exit 1; }

[ $# -eq 2 ] || die "usage: install-kaflow.sh VENV SOURCE_DIR"
venv=$1
source_dir=$2
wheelhouse=$source_dir/cluster/docker/wheelhouse

export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_PROGRESS_BAR=off
python3 -m venv "$venv"

set -- "$wheelhouse"/kaflow-*.whl
if [ -e "$1" ]; then
  [ $# -eq 1 ] || die "found $# Kaflow wheels in $wheelhouse: delete all but one, or run cluster/docker/build-image.sh to refill it"
  echo "install-kaflow: installing $(basename "$1") offline from $wheelhouse"
  "$venv/bin/pip" install --no-index --find-links "$wheelhouse" "$1"
elif ls "$wheelhouse"/*.whl >/dev/null 2>&1; then
  die "$wheelhouse has wheels but no kaflow-*.whl: run cluster/docker/build-image.sh to refill it, or delete the directory to install from the package index"
else
  echo "install-kaflow: no wheelhouse; building Kaflow from $source_dir with dependencies from the package index"
  "$venv/bin/pip" install "$source_dir"
fi

install -m 755 "$source_dir/cluster/docker/healthcheck.py" "$venv/bin/kaflow-healthcheck"
# A cluster member needs cryptography: PySyncObj encrypts Raft traffic with it.
"$venv/bin/python" -c 'import cryptography, kaflow.cli.main, pysyncobj'
"$venv/bin/pip" check
