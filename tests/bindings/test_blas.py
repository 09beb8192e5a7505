"""BLAS/LAPACK bindings: every routine callable from nopython code, against NumPy."""

import subprocess
import sys
import textwrap

import numpy as np
from numba import njit

from gmrf_core.bindings import blas


@njit
def _call_all(a, b, c, spd, out_gemm, out_syrk, out_symm, out_trsm, ints, dbls, chars):
    # ints: n; dbls: 1, 0; chars: 'L', 'N', 'T', 'R'
    n = ints[0:]
    one = dbls[0:]
    zero = dbls[1:]
    lo, no, tr = chars[0:], chars[1:], chars[2:]
    blas.dgemm(
        no.ctypes,
        tr.ctypes,
        n.ctypes,
        n.ctypes,
        n.ctypes,
        one.ctypes,
        a.ctypes,
        n.ctypes,
        b.ctypes,
        n.ctypes,
        zero.ctypes,
        out_gemm.ctypes,
        n.ctypes,
    )
    blas.dsyrk(
        lo.ctypes,
        no.ctypes,
        n.ctypes,
        n.ctypes,
        one.ctypes,
        a.ctypes,
        n.ctypes,
        zero.ctypes,
        out_syrk.ctypes,
        n.ctypes,
    )
    blas.dsymm(
        lo.ctypes,
        lo.ctypes,
        n.ctypes,
        n.ctypes,
        one.ctypes,
        c.ctypes,
        n.ctypes,
        b.ctypes,
        n.ctypes,
        zero.ctypes,
        out_symm.ctypes,
        n.ctypes,
    )
    info = np.zeros(1, dtype=np.int32)
    blas.dpotrf(lo.ctypes, n.ctypes, spd.ctypes, n.ctypes, info.ctypes)
    blas.dtrsm(
        chars[3:].ctypes,
        lo.ctypes,
        tr.ctypes,
        no.ctypes,
        n.ctypes,
        n.ctypes,
        one.ctypes,
        spd.ctypes,
        n.ctypes,
        out_trsm.ctypes,
        n.ctypes,
    )
    status = info[0]
    blas.dpotri(lo.ctypes, n.ctypes, spd.ctypes, n.ctypes, info.ctypes)
    return status, info[0]


def test_routines_match_numpy():
    rng = np.random.default_rng(0)
    n = 7
    a, b = (np.asfortranarray(rng.standard_normal((n, n))) for _ in range(2))
    c = np.asfortranarray(a + a.T)
    spd = np.asfortranarray(a @ a.T + n * np.eye(n))
    ref_spd = spd.copy()
    outs = [np.zeros((n, n), order="F") for _ in range(3)]
    rhs = np.asfortranarray(rng.standard_normal((n, n)))
    ref_rhs = rhs.copy()
    status, status_inv = _call_all(
        a,
        b,
        c,
        spd,
        *outs,
        rhs,
        np.array([n], np.int32),
        np.array([1.0, 0.0]),
        np.array([76, 78, 84, 82], np.int8),
    )
    assert status == 0 and status_inv == 0
    np.testing.assert_allclose(outs[0], a @ b.T, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np.tril(outs[1]), np.tril(a @ a.T), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(outs[2], c @ b, rtol=1e-12, atol=1e-12)
    L = np.linalg.cholesky(ref_spd)
    np.testing.assert_allclose(rhs, ref_rhs @ np.linalg.inv(L).T, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(
        np.tril(spd), np.tril(np.linalg.inv(ref_spd)), rtol=1e-10, atol=1e-13
    )


def test_lp64_check_passes_and_blas_threads_context():
    blas._check_lp64()
    with blas.blas_threads(1):
        pass


def test_kernels_are_cached_across_processes(tmp_path):
    """A kernel calling BLAS is loaded from Numba's on-disk cache in a second process."""
    script = tmp_path / "cached_kernel.py"
    script.write_text(
        textwrap.dedent(
            """
            import numpy as np
            import gmrf_core as gm
            from gmrf_core.kernels import cholesky as k
            Q = gm.datasets.laplacian_2d(6)
            gm.cholesky(Q, ordering="natural")
            stats = k._factorize.stats
            print(sum(stats.cache_hits.values()), sum(stats.cache_misses.values()))
            """
        )
    )
    runs = [
        subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=True)
        for _ in range(2)
    ]
    hits, misses = map(int, runs[1].stdout.split())
    assert hits >= 1 and misses == 0, runs[1].stdout + runs[1].stderr
