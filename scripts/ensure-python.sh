#!/usr/bin/env bash
# Check that the given interpreter is Python >= 3.11 with a working venv module.
# On Debian and Ubuntu the venv module ships separately (python3.X-venv); when
# it is missing and we run as root, install it with apt-get.
set -euo pipefail

python=${1:-python3}
if ! command -v "$python" >/dev/null 2>&1; then
    echo "error: $python not found; install Python 3.11 or newer (Debian/Ubuntu: apt-get install python3)" >&2
    exit 1
fi

if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "error: $("$python" --version 2>&1) is too old; Kaflow needs Python 3.11 or newer (set PYTHON=/path/to/python3.11)" >&2
    exit 1
fi

if "$python" -c 'import ensurepip, venv' >/dev/null 2>&1; then
    exit 0
fi

package="python$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')-venv"
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing $package (the venv module is missing)" >&2
    apt-get update -qq && apt-get install -y -qq "$package"
else
    echo "error: the venv module is missing; install it with: sudo apt-get install $package" >&2
    exit 1
fi
