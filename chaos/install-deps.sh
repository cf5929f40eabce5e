#!/usr/bin/env bash
# Install what the chaos filesystems need: libfuse3 and fusermount3 from Debian, and the
# mfusepy bindings into the Python that runs the chaos suite ($PYTHON, default python3).
# Idempotent and quiet; runs as root (CI does).
set -euo pipefail

python=${PYTHON:-python3}

missing=()
for package in fuse3 libfuse3-3; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$package")
    fi
done
if ((${#missing[@]})); then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! "$python" -c "import mfusepy" >/dev/null 2>&1; then
    "$python" -m pip install -q "mfusepy==3.1.1"
fi

if [[ ! -e /dev/fuse ]]; then
    echo "chaos/install-deps.sh: /dev/fuse is missing; the power-loss scenario cannot mount" >&2
    exit 1
fi
