#!/usr/bin/env bash
# Installs everything gmrf_core needs on a fresh Debian machine: system packages for the
# CHOLMOD reference (SuiteSparse, OpenBLAS), then the package itself with its test extras.
set -euo pipefail
cd "$(dirname "$0")"
need_apt=0
for pkg in libsuitesparse-dev libopenblas0-pthread; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need_apt=1
done
if [ "$need_apt" = 1 ] && command -v apt-get >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q libsuitesparse-dev libopenblas0-pthread
fi
python3 -m pip install -q --disable-pip-version-check -e ".[test]" 2>&1 | grep -v -E "^WARNING: (Running pip as|Location)" || true
python3 -c "import gmrf_core, sksparse.cholmod" || { echo "install.sh: gmrf_core or scikit-sparse failed to import" >&2; exit 1; }
