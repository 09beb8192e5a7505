"""Selected inversion vs factorization, and vs the PyPI ``selinv`` package (Lin Lin's SelInv).

For the 2-D SPDE α=2 precision at 250², 500², 1000²: our numeric factorization
time, our selected-inversion time and their ratio, and the time the ``selinv``
package takes for the diagonal of Q⁻¹ on the same matrix given the same
fill-reducing permutation (its ``P=`` argument; its default MMD ordering is much
slower, so comparing against it would flatter us). Also checks the diagonal
against ``selinv``'s and, on a small lattice, against a dense inverse.

Usage: python bench/compare_selinv.py [--sizes 250 500 1000] [--repeat 5]
(``pip install selinv`` needs gfortran; install.sh installs both.)
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from _env import ensure_cholmod_env, interleaved_medians  # noqa: E402

ensure_cholmod_env()

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402

import gmrf_core as gm  # noqa: E402
from gmrf_core.datasets import spde_precision_2d  # noqa: E402


def dense_check(m=50):
    Q = spde_precision_2d(m, kappa=0.1)
    diag = gm.cholesky(Q).selected_inverse().diag()
    ref = np.diag(np.linalg.inv(Q.toarray()))
    return np.abs(diag - ref).max() / np.abs(ref).max()


def selinv_package(Q, perm):
    """A call of the ``selinv`` package's diagonal of Q⁻¹ (None when it is not installed)."""
    try:
        import selinv
    except ImportError:
        return None
    lower = sp.csc_matrix(sp.tril(Q))
    return lambda: selinv.selinv(lower, P=perm)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[250, 500, 1000])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(f"diagonal vs dense inverse (50² SPDE): max relative error {dense_check():.1e}")
    print(
        "medians of runs taken in turns; ours on 1 thread (the default) and, in the 2-thread "
        "columns, with threads=2; the SelInv package (single-threaded) given our permutation"
    )
    print(
        f"{'lattice':>8}{'n':>10}{'nnz(L)':>12}{'factor s':>10}{'selinv s':>10}{'ratio':>7}"
        f"{'f+s s':>8}{'SelInv pkg s':>14}{'pkg/ours':>9}{'2-thr f+s':>10}{'pkg/2-thr':>10}"
        f"{'diag rel.diff':>15}"
    )
    for m in args.sizes:
        Q = spde_precision_2d(m, kappa=0.05)
        symbolic = gm.analyze(Q)
        factor = symbolic.factorize(Q)
        factor2 = gm.analyze(Q, ordering=symbolic.perm, threads=2).factorize(Q)
        package = selinv_package(Q, symbolic.perm)
        candidates = {
            "factor": lambda f=factor, Q=Q: f.refactorize(Q),
            "selinv": lambda f=factor: f.selected_inverse(),
            "both2": lambda f=factor2, Q=Q: f.refactorize(Q).selected_inverse(),
        }
        if package is not None:
            candidates["package"] = package
        times = interleaved_medians(candidates, repeat=args.repeat)
        t_factor, t_selinv, both2 = times["factor"], times["selinv"], times["both2"]
        t_pkg = times.get("package", np.nan)
        diag = factor.selected_inverse().diag()
        diag_pkg = None if package is None else package()
        diff = np.nan if diag_pkg is None else np.abs(diag - diag_pkg).max() / np.abs(diag).max()
        both = t_factor + t_selinv
        print(
            f"{m:>7}²{Q.shape[0]:>10}{symbolic.nnz:>12}{t_factor:>10.3f}{t_selinv:>10.3f}"
            f"{t_selinv / t_factor:>7.2f}{both:>8.2f}{t_pkg:>14.2f}{t_pkg / both:>9.2f}"
            f"{both2:>10.2f}{t_pkg / both2:>10.2f}{diff:>15.1e}",
            flush=True,
        )


if __name__ == "__main__":
    main()
