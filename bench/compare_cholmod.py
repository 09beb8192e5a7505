"""Side-by-side: gmrf_core's supernodal Cholesky vs CHOLMOD (scikit-sparse), same run.

For the 2-D 5-point Laplacian and the 2-D SPDE alpha=2 precision at 250², 500² and
1000²: nnz(L), flops, analyze time with the *same* ordering (ours, handed to both
libraries as a pre-permuted matrix with the natural ordering), numeric
refactorization time (median), GFLOP/s and the ratios ours / CHOLMOD; then the
solve Q x = b with the factor (``Factor.solve`` vs CHOLMOD's ``factor(b)``) for k = 1
and k = 8 right-hand sides, ours with threads=1 and threads=2 against CHOLMOD on 1
BLAS thread. CHOLMOD runs
at its best: Debian's OpenBLAS, OMP_THREAD_LIMIT=1, OPENBLAS_CORETYPE set, best of
1 and 2 BLAS threads. Also checks log-determinants and solve residuals.

Usage: python bench/compare_cholmod.py [--sizes 250 500 1000] [--repeat 5]
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from _env import cholmod_blas_threads, ensure_cholmod_env, interleaved_medians  # noqa: E402

ensure_cholmod_env()

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402
from sksparse.cholmod import analyze as cholmod_analyze  # noqa: E402

import gmrf_core as gm  # noqa: E402
from gmrf_core.datasets import laplacian_2d, spde_precision_2d  # noqa: E402


def compare(name, Q, repeat, ordering):
    symbolic = gm.analyze(Q, ordering=ordering)
    perm = symbolic.perm
    # both libraries get the same ordering in the same form: the pre-permuted matrix with
    # the natural ordering (scikit-sparse takes no user permutation)
    Qp = sp.csc_matrix(Q[perm][:, perm])
    Qp.sort_indices()
    analyze = interleaved_medians(
        {
            "ours": lambda: gm.analyze(Qp, ordering="natural"),
            "cholmod": lambda: cholmod_analyze(Qp, mode="supernodal", ordering_method="natural"),
        },
        repeat=7,
    )
    factor = symbolic.factorize(Q)
    factor2 = gm.analyze(Q, ordering=perm, threads=2).factorize(Q)
    cm = cholmod_analyze(Qp, mode="supernodal", ordering_method="natural")
    numeric = interleaved_medians(
        {
            "ours1": lambda: factor.refactorize(Q),
            "ours2": lambda: factor2.refactorize(Q),
            "cm1": (lambda: cm.cholesky_inplace(Qp), lambda: cholmod_blas_threads(1)),
            "cm2": (lambda: cm.cholesky_inplace(Qp), lambda: cholmod_blas_threads(2)),
        },
        repeat=repeat,
    )

    rng = np.random.default_rng(1)
    solves = {}
    for k in (1, 8):
        B = rng.standard_normal((Q.shape[0], k)) if k > 1 else rng.standard_normal(Q.shape[0])
        Bp = B[perm]
        timed = interleaved_medians(
            {
                "ours1": lambda B=B: factor.solve(B),
                "ours2": lambda B=B: factor2.solve(B),
                "cm1": (lambda Bp=Bp: cm(Bp), lambda: cholmod_blas_threads(1)),
            },
            repeat=max(repeat, 7),
        )
        solves[k] = timed
    logdet_ours, logdet_cm = factor.logdet(), cm.logdet()
    b = np.random.default_rng(0).standard_normal(Q.shape[0])
    residual = np.linalg.norm(Q @ factor.solve(b) - b) / np.linalg.norm(b)
    return dict(
        name=name,
        n=Q.shape[0],
        nnz_L=factor.nnz,
        nnz_L_cholmod=cm.L().nnz if Q.shape[0] <= 300_000 else -1,
        gflop=symbolic.flops / 1e9,
        analyze=analyze["ours"],
        analyze_cm=analyze["cholmod"],
        factor=numeric["ours1"],
        factor_best=min(numeric["ours1"], numeric["ours2"]),
        factor_cm1=numeric["cm1"],
        factor_cm=min(numeric["cm1"], numeric["cm2"]),
        logdet_rel=abs(logdet_ours - logdet_cm) / abs(logdet_cm),
        residual=residual,
        ordering=symbolic.ordering,
        solves=solves,
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[250, 500, 1000])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--ordering", default="auto")
    args = parser.parse_args()
    print(
        f"OMP_THREAD_LIMIT={os.environ.get('OMP_THREAD_LIMIT')} "
        f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE')}; 'factor' is ours with 1 "
        "thread (the default) vs CHOLMOD on 1 BLAS thread; 'best' ours with the better of "
        "threads=1 and threads=2 (independent subtrees on two threads, separators on 2 BLAS "
        "threads) vs CHOLMOD's better of 1 and 2 BLAS threads; medians of runs taken in turns; "
        "the same ordering (ours) for both"
    )
    header = (
        f"{'matrix':<14}{'n':>9}{'nnz(L)':>12}{'GFLOP':>7}{'analyze':>9}{'CHOLMOD':>9}{'ratio':>7}"
        f"{'factor':>9}{'CM 1thr':>9}{'ratio':>7}{'best':>9}{'CM best':>9}{'ratio':>7}"
        f"{'GFLOP/s':>9}"
        f"{'logdet rel':>12}{'resid':>9}"
    )
    print(header)
    rows = []
    for m in args.sizes:
        for name, build in (
            ("laplace5", lambda m=m: laplacian_2d(m)),
            ("spde_a2", lambda m=m: spde_precision_2d(m, kappa=0.05)),
        ):
            r = compare(f"{name} {m}²", build(), args.repeat, args.ordering)
            rows.append(r)
            print(
                f"{r['name']:<14}{r['n']:>9}{r['nnz_L']:>12}{r['gflop']:>7.1f}"
                f"{r['analyze']:>9.3f}{r['analyze_cm']:>9.3f}{r['analyze'] / r['analyze_cm']:>7.2f}"
                f"{r['factor']:>9.3f}{r['factor_cm1']:>9.3f}{r['factor'] / r['factor_cm1']:>7.2f}"
                f"{r['factor_best']:>9.3f}{r['factor_cm']:>9.3f}"
                f"{r['factor_best'] / r['factor_cm']:>7.2f}"
                f"{r['gflop'] / r['factor']:>9.1f}{r['logdet_rel']:>12.1e}{r['residual']:>9.1e}",
                flush=True,
            )
    print(
        "\nsolve Q x = b, n x k right-hand sides: ours threads=1 and threads=2 vs CHOLMOD "
        "(1 BLAS thread), seconds, medians of runs taken in turns"
    )
    print(
        f"{'matrix':<14}{'k':>3}{'ours 1thr':>11}{'ours 2thr':>11}{'CHOLMOD':>9}"
        f"{'ratio 1thr':>12}{'ratio 2thr':>12}"
    )
    for r in rows:
        for k, t in r["solves"].items():
            print(
                f"{r['name']:<14}{k:>3}{t['ours1']:>11.4f}{t['ours2']:>11.4f}{t['cm1']:>9.4f}"
                f"{t['ours1'] / t['cm1']:>12.2f}{t['ours2'] / t['cm1']:>12.2f}"
            )
    return rows


if __name__ == "__main__":
    main()
