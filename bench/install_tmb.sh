#!/usr/bin/env bash
# Installs TMB (R package, Debian build) for bench/compare_tmb.py: an optional benchmark
# peer, not a dependency of gmrf_core (install.sh does not run this).
set -euo pipefail
need_apt=0
for pkg in r-base-core r-cran-tmb r-cran-rcppeigen; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need_apt=1
done
if [ "$need_apt" = 1 ]; then
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends \
        r-base-core r-cran-tmb r-cran-rcppeigen r-cran-matrix build-essential
fi
Rscript -e 'library(TMB); cat("TMB", as.character(packageVersion("TMB")), "\n")'
