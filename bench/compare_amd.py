"""Compare gmrf_core's AMD ordering with SuiteSparse AMD (speed and fill).

For the 2-D 5-point Laplacian and the 2-D SPDE alpha = 2 precision pattern
(pattern of K @ K, K the 5-point operator: a 13-point stencil) on m-by-m
grids, time

- ``amd_order`` (gmrf_core, Numba; includes input validation and the copy of
  the pattern into the workspace),
- ``amd_l_order`` from SuiteSparse's libamd called through ctypes, when the
  shared library can be found (pure ordering: validation, A + A' and AMD),
- ``sksparse.cholmod.analyze(A, ordering_method="amd", mode="simplicial")``:
  CHOLMOD's AMD *plus* its symbolic analysis (etree, postorder, column counts)
  and the Python wrapper's conversions, so an upper bound on CHOLMOD's AMD
  time,

and report nnz(L) (with diagonal) under our ordering and CHOLMOD's, counted
symbolically with the elimination tree (no numeric factorization).

Usage::

    python bench/compare_amd.py [--sizes 250 500 1000] [--repeat 3]
"""

import argparse
import ctypes
import ctypes.util
import statistics
import time

import numpy as np
import scipy.sparse as sp
from numba import njit

from gmrf_core.ordering import amd_order


def laplacian_5pt(m):
    """Full pattern (with diagonal) of the 5-point Laplacian on an m-by-m grid."""
    t = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(m, m), format="csc")
    eye = sp.identity(m, format="csc")
    return sp.csc_matrix(sp.kron(t, eye) + sp.kron(eye, t))


def spde_alpha2(m):
    """Pattern of K @ K for K = kappa^2 I + 5-point Laplacian (13-point stencil)."""
    k = laplacian_5pt(m) + sp.identity(m * m, format="csc")
    return sp.csc_matrix(k @ k)


@njit(cache=True)
def _factor_nnz(n, indptr, indices, perm, pinv, parent, mark):
    """nnz(L), diagonal included, of the Cholesky factor of A[perm][:, perm].

    Row k of L is the union of the elimination-tree paths from each i < k with
    A'[k, i] != 0 up to k (Liu 1990); the tree is built along the way. O(nnz(L)).
    """
    for k in range(n):
        pinv[perm[k]] = k
        parent[k] = -1
        mark[k] = -1
    count = n
    for k in range(n):
        mark[k] = k
        col = perm[k]
        for p in range(indptr[col], indptr[col + 1]):
            i = pinv[indices[p]]
            while i < k and mark[i] != k:
                mark[i] = k
                count += 1
                if parent[i] == -1:
                    parent[i] = k
                i = parent[i]
    return count


def factor_nnz(a, perm):
    """nnz(L) with diagonal for the symmetric pattern ``a`` ordered by ``perm``."""
    n = a.shape[0]
    work = [np.empty(n, dtype=np.int64) for _ in range(3)]
    return _factor_nnz(
        n, a.indptr.astype(np.int64), a.indices.astype(np.int64), perm.astype(np.int64), *work
    )


def _load_libamd():
    for name in ("amd", "libamd.so.3", "libamd.so.2"):
        path = ctypes.util.find_library(name) if name == "amd" else name
        if path is None:
            continue
        try:
            return ctypes.CDLL(path)
        except OSError:
            continue
    return None


def libamd_order(lib, a):
    """SuiteSparse ``amd_l_order`` with default controls; returns perm."""
    n = a.shape[0]
    ap = a.indptr.astype(np.int64)
    ai = a.indices.astype(np.int64)
    perm = np.empty(n, dtype=np.int64)
    i64p = ctypes.POINTER(ctypes.c_int64)
    status = lib.amd_l_order(
        ctypes.c_int64(n),
        ap.ctypes.data_as(i64p),
        ai.ctypes.data_as(i64p),
        perm.ctypes.data_as(i64p),
        None,
        None,
    )
    if status < 0:
        raise RuntimeError(f"amd_l_order failed with status {status}")
    return perm


def timed(contenders, repeat, stat):
    """Time several callables, interleaved so that load from other processes
    hits them alike; return {name: (median or min seconds, last result)}."""
    times = {name: [] for name in contenders}
    results = {}
    for _ in range(repeat):
        for name, fn in contenders.items():
            t0 = time.perf_counter()
            results[name] = fn()
            times[name].append(time.perf_counter() - t0)
    reduce = min if stat == "min" else statistics.median
    return {name: (reduce(times[name]), results[name]) for name in contenders}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[250, 500, 1000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--stat",
        choices=["median", "min"],
        default="median",
        help="statistic over the repeats (min is steadier on a busy machine)",
    )
    args = parser.parse_args()

    try:
        from sksparse.cholmod import analyze
    except ImportError:  # pragma: no cover - optional comparison
        analyze = None
    lib = _load_libamd()

    # warm-up: compile (or load cached) kernels
    small = laplacian_5pt(8)
    amd_order(small.indptr, small.indices, small.shape[0])
    factor_nnz(small, np.arange(small.shape[0]))

    header = (
        f"{'pattern':<10}{'n':>9}{'nnz(A)':>10} | {'ours s':>8}{'libamd s':>9}{'cholmod s':>10}"
        f"{'ours/lib':>9}{'ours/chm':>9} | {'nnzL ours':>11}{'nnzL chm':>11}{'ratio':>7}"
    )
    print(header)
    print("-" * len(header))
    for kind, build in (("5-point", laplacian_5pt), ("SPDE a=2", spde_alpha2)):
        for m in args.sizes:
            a = build(m)
            a.sort_indices()
            n = a.shape[0]
            contenders = {"ours": lambda a=a, n=n: amd_order(a.indptr, a.indices, n)}
            if lib is not None:
                contenders["libamd"] = lambda a=a: libamd_order(lib, a)
            if analyze is not None:
                contenders["cholmod"] = lambda a=a: analyze(
                    a, ordering_method="amd", mode="simplicial"
                )
            res = timed(contenders, args.repeat, args.stat)
            t_ours, perm = res["ours"]
            nnz_ours = factor_nnz(a, perm)
            t_lib = res["libamd"][0] if "libamd" in res else float("nan")
            t_chm = float("nan")
            nnz_chm = -1
            if "cholmod" in res:
                t_chm, factor = res["cholmod"]
                nnz_chm = factor_nnz(a, factor.P())
            print(
                f"{kind:<10}{n:>9}{a.nnz:>10} | {t_ours:>8.3f}{t_lib:>9.3f}{t_chm:>10.3f}"
                f"{t_ours / t_lib:>9.2f}{t_ours / t_chm:>9.2f} | "
                f"{nnz_ours:>11}{nnz_chm:>11}{nnz_ours / nnz_chm:>7.3f}",
                flush=True,
            )
    print(
        "\nours: gmrf_core amd_order (validation + AMD + postorder); libamd: SuiteSparse "
        "amd_l_order via ctypes;\ncholmod: sksparse analyze(amd, simplicial) = AMD + CHOLMOD "
        "symbolic analysis (upper bound on its AMD time).\nnnzL: nonzeros of L incl. diagonal "
        f"(symbolic count). Times: {args.stat} of {args.repeat} interleaved runs after a warm-up."
    )


if __name__ == "__main__":
    main()
