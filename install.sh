#!/usr/bin/env bash
# Installs everything gmrf_core needs on a fresh Debian machine: system packages for the
# CHOLMOD reference (SuiteSparse, OpenBLAS), then the package itself with its test extras.
set -euo pipefail
cd "$(dirname "$0")"
need_apt=0
for pkg in libsuitesparse-dev libopenblas0-pthread gfortran; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need_apt=1
done
if [ "$need_apt" = 1 ] && command -v apt-get >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q libsuitesparse-dev libopenblas0-pthread \
        gfortran
fi
# pip's own status decides (pipefail); grep only hides root-user notices
pip_install() {
    python3 -m pip install -q --disable-pip-version-check "$@" 2>&1 \
        | { grep -v -E "^WARNING: (Running pip as|Location)" || true; }
}
pip_install -e ".[test]"
# formula interface, areal graphs and ArviZ export: tested in CI
pip_install -e ".[frame]"
# the PyPI "selinv" package (Lin Lin's SelInv, Fortran) is only a benchmark peer: optional
python3 -c "import selinv" 2>/dev/null || pip_install -e ".[bench]" \
    || echo "install.sh: optional benchmark peer 'selinv' did not install" >&2
python3 -c "import gmrf_core, sksparse.cholmod" || { echo "install.sh: gmrf_core or scikit-sparse failed to import" >&2; exit 1; }
