"""Supernodal triangular solves (kernels/cholesky.py) against dense and independent references.

Every path of the kernels is covered: one right-hand side (plain loops with every column
length class of the backward loop; dgemv on panels for wide supernodes), several
right-hand sides on supernodes below and above the BLAS threshold, the rows below a
supernode consecutive (read and written in place) or not (gathered and scattered), and the
threads=2 schedule (independent subtrees solved concurrently, their common ancestors
afterwards).
"""

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla

import gmrf_core as gm
from gmrf_core import linalg
from gmrf_core.datasets import laplacian_2d, spde_precision_2d
from gmrf_core.kernels import cholesky as kchol


def _grid(m, shift=0.1):
    return sp.csc_matrix(laplacian_2d(m) + shift * sp.eye(m * m))


def _disconnected(rng):
    blocks = [_grid(6), sp.csc_matrix([[2.0]]), spde_precision_2d(5, kappa=0.5)]
    dense = rng.standard_normal((12, 12))
    blocks.append(sp.csc_matrix(dense @ dense.T + 12 * np.eye(12)))
    return sp.csc_matrix(sp.block_diag(blocks))


def _wide(rng, coupled, width=150, path=40):
    """A dense block of ``width`` columns (one supernode wider than the one-right-hand-side
    loops take, in the natural ordering) coupled to the nodes ``coupled`` of a path after it:
    the rows below that supernode."""
    n = width + path
    dense = rng.standard_normal((width, width))
    Q = np.zeros((n, n))
    Q[:width, :width] = dense @ dense.T / width + 2.0 * np.eye(width)
    Q[width:, width:] = 4.0 * np.eye(path) - np.eye(path, k=1) - np.eye(path, k=-1)
    for node in coupled:
        Q[:width, width + node] = Q[width + node, :width] = 0.05
    return sp.csc_matrix(Q)


def _cases():
    rng = np.random.default_rng(3)
    dense = rng.standard_normal((40, 40))
    return {
        "1x1": sp.csc_matrix([[2.5]]),
        "diagonal": sp.csc_matrix(sp.diags_array(rng.uniform(1.0, 3.0, 11))),
        "grid12": _grid(12),
        "spde15": sp.csc_matrix(spde_precision_2d(15, kappa=0.3)),
        "dense40": sp.csc_matrix(dense @ dense.T + 40 * np.eye(40)),
        "disconnected": _disconnected(rng),
        # rows below the wide supernode apart (gathered) and consecutive (in place)
        "wide": sp.csc_matrix(sp.block_diag([_wide(rng, (0, 20)), _wide(rng, (0, 1))])),
    }


CASES = _cases()


def _rhs(n, k, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(n) if k == 1 else rng.standard_normal((n, k))


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("ordering", ["natural", "nd"])
@pytest.mark.parametrize("k", [1, 2, 8])
def test_solves_match_dense(name, ordering, k):
    Q = CASES[name]
    n = Q.shape[0]
    dense = Q.toarray()
    factor = gm.cholesky(Q, ordering=ordering)
    perm = factor.perm
    L = np.linalg.cholesky(dense[np.ix_(perm, perm)])
    b = _rhs(n, k)
    x = factor.solve(b)
    assert x.shape == b.shape
    np.testing.assert_allclose(x, np.linalg.solve(dense, b), rtol=1e-9, atol=1e-12)
    y = factor.solve_L(b)
    np.testing.assert_allclose(y, np.linalg.solve(L, b[perm]), rtol=1e-9, atol=1e-12)
    z = factor.solve_Lt(b)
    reference = np.empty_like(b)
    reference[perm] = np.linalg.solve(L.T, b)
    np.testing.assert_allclose(z, reference, rtol=1e-9, atol=1e-12)


def _supernodes():
    """(rows, psi, nscol, nsrow) of every supernode of every case in both orderings."""
    for Q in CASES.values():
        for ordering in ("natural", "nd"):
            symbolic = gm.analyze(Q, ordering=ordering)
            for s in range(symbolic.nsuper):
                nscol = int(symbolic.super_ptr[s + 1] - symbolic.super_ptr[s])
                psi = int(symbolic.rows_ptr[s])
                yield symbolic.rows, psi, nscol, int(symbolic.rows_ptr[s + 1]) - psi


def test_cases_cover_every_kernel_path():
    """Several right-hand sides: (BLAS, rows below consecutive) of the supernodes with rows
    below."""
    kinds = {
        (nsrow * nscol >= kchol._SOLVE_BLAS, bool(kchol._contiguous_below(rows, psi, nscol, nsrow)))
        for rows, psi, nscol, nsrow in _supernodes()
        if nsrow > nscol
    }
    assert kinds == {(False, False), (False, True), (True, False), (True, True)}


def test_cases_cover_both_one_right_hand_side_paths():
    """One right-hand side: plain loops up to _LOOPS_FORWARD / _LOOPS_BACKWARD columns,
    dgemv on panels of _PANEL columns beyond, with rows below consecutive or not."""
    widest = max(kchol._LOOPS_FORWARD, kchol._LOOPS_BACKWARD)
    wide = {
        bool(kchol._contiguous_below(rows, psi, nscol, nsrow))
        for rows, psi, nscol, nsrow in _supernodes()
        if nscol > widest and nsrow > nscol
    }
    assert wide == {False, True}
    assert widest > kchol._PANEL


def test_cases_cover_every_column_length_of_the_vector_solves():
    """One right-hand side: each column j of a supernode is one loop over its nsrow - j - 1
    entries below the diagonal (the backward one in steps of four, then a tail of 0-3)."""
    lengths = set()
    for _rows, _psi, nscol, nsrow in _supernodes():
        for j in range(nscol):
            below = nsrow - j - 1
            lengths.add(below if below < 4 else 4 + below % 4)
    assert lengths == set(range(8))


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("ordering", ["natural", "nd"])
def test_one_and_several_right_hand_sides_agree(name, ordering):
    """The one-right-hand-side loops against the BLAS path of several (different codes)."""
    factor = gm.cholesky(CASES[name], ordering=ordering)
    b = _rhs(factor.n, 1, seed=7)
    both = np.column_stack([b, -2.0 * b])
    for solve in (factor.solve, factor.solve_L, factor.solve_Lt):
        one = solve(b)
        np.testing.assert_allclose(one, solve(both)[:, 0], rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(-2.0 * one, solve(both)[:, 1], rtol=1e-12, atol=1e-13)


@pytest.fixture
def concurrent(monkeypatch):
    """Solve on the subtree schedule at any size (by default only above 2e6 entries of L)."""
    monkeypatch.setattr(linalg, "_PARALLEL_SOLVE_MIN_NNZ", 0)


@pytest.fixture(scope="module")
def scheduled():
    Q = sp.csc_matrix(spde_precision_2d(80, kappa=0.5))
    one = gm.cholesky(Q)
    two = gm.cholesky(Q, ordering=one.perm, threads=2)
    assert one._schedule is None
    assert two._schedule is not None  # the concurrent path runs
    return Q, one, two


@pytest.mark.parametrize("k", [1, 8])
def test_threads2_solves_match_references(scheduled, concurrent, k):
    Q, one, two = scheduled
    assert two._solve_schedule() is not None
    n = Q.shape[0]
    b = _rhs(n, k, seed=k)
    x = two.solve(b)
    reference = spla.spsolve(Q, b)
    np.testing.assert_allclose(x, reference.reshape(b.shape), rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(x, one.solve(b), rtol=1e-9, atol=1e-11)
    L = two.L()
    y = two.solve_L(b)
    np.testing.assert_allclose(L @ y, b[two.perm], rtol=1e-10, atol=1e-11)
    z = two.solve_Lt(b)
    np.testing.assert_allclose(L.T @ z[two.perm], b, rtol=1e-10, atol=1e-11)


def test_threads2_concurrent_solves_agree(scheduled, concurrent):
    from concurrent.futures import ThreadPoolExecutor

    Q, _one, two = scheduled
    rhs = [_rhs(Q.shape[0], 1, seed=s) for s in range(4)]
    expected = [two.solve(b) for b in rhs]
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(two.solve, rhs))
    for got, want in zip(results, expected):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("threads", [1, 2])
def test_many_right_hand_sides_span_several_blocks(scheduled, concurrent, threads):
    Q, one, two = scheduled
    factor = one if threads == 1 else two
    k = factor._RHS_BLOCK + 7  # two blocks of columns, the second partial
    B = np.asfortranarray(_rhs(Q.shape[0], k, seed=5))  # non-contiguous columns
    X = factor.solve(B)
    np.testing.assert_allclose(Q @ X, B, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(X[:, -3:], factor.solve(np.ascontiguousarray(B[:, -3:])))
    Z = factor.solve_Lt(B)
    np.testing.assert_allclose(factor.L().T @ Z[factor.perm], B, rtol=1e-10, atol=1e-10)
    before = B.copy()
    factor.solve_Lt(B[:, 0])
    np.testing.assert_array_equal(B, before)  # the input is never written


def test_small_factors_solve_on_one_thread(scheduled):
    _Q, _one, two = scheduled
    assert two.nnz < linalg._PARALLEL_SOLVE_MIN_NNZ
    assert two._solve_schedule() is None
