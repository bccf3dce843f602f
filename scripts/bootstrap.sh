#!/bin/sh
# Install everything `make test` and `make demo` need on a fresh Debian-like machine:
# a Python >= 3.11 with venv, then the project and its test tools into $VENV, and the native
# qscan-queue compiled with the system compiler (gcc, libc6-dev: scripts/debian-packages.txt).
set -eu
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else "$@"; fi; }

apt_install() {
    if command -v apt-get >/dev/null 2>&1; then
        echo "bootstrap: installing Debian packages: $*"
        as_root apt-get update -qq
        DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
    else
        echo "bootstrap: please install: $*" >&2
        exit 1
    fi
}

if ! command -v "$PYTHON" >/dev/null 2>&1; then
    apt_install python3 python3-venv
fi
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "bootstrap: qscan needs Python >= 3.11 ($PYTHON is $("$PYTHON" -V 2>&1))" >&2
    exit 1
fi
# Debian packages the project needs (real servers for the tests, libraries): only the missing ones.
if command -v dpkg-query >/dev/null 2>&1; then
    missing=""
    for pkg in $(sed -e 's/#.*//' "$(dirname "$0")/debian-packages.txt"); do
        if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
            missing="$missing $pkg"
        fi
    done
    if [ -n "$missing" ]; then
        # shellcheck disable=SC2086
        apt_install $missing
    fi
elif ! "$PYTHON" -c 'import venv, ensurepip' >/dev/null 2>&1; then
    echo "bootstrap: Python's venv module is missing; install it (Debian: python3-venv)" >&2
    exit 1
fi

if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
# compat mode: a plain path entry, no import hook - qscan-queue starts once per message
"$VENV/bin/python" -m pip install -q -e '.[test]' --config-settings editable_mode=compat
# the installed qscan-queue is the native client (the Python one is qscan-queue-py)
sh "$(dirname "$0")/../ingest/native/build.sh" "$VENV/bin/qscan-queue"
echo "bootstrap: ready ($VENV)"
