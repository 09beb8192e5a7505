"""Sparse derivative rules (gmrf_core.rules.sparse) via gm.testing on matrices with fill-in."""

import numpy as np
import pytest
import scipy.sparse as sp

import gmrf_core as gm
from gmrf_core.rules import sparse as rules
from gmrf_core.testing import check_grad, check_jvp, check_vjp
from tests.test_linalg import grid_laplacian, spde_like


def _dense_logpdf(x, mean, Q):
    d = x - mean
    return (
        -0.5 * len(x) * np.log(2 * np.pi)
        + 0.5 * np.linalg.slogdet(Q.toarray())[1]
        - 0.5 * d @ (Q @ d)
    )


MATRICES = {
    "grid9x7": grid_laplacian(9, 7, shift=0.5),  # 2-D grid: L has fill-in
    "spde8": spde_like(8, kappa=0.7),
    "tiny": sp.csc_matrix([[2.0, -0.5], [-0.5, 1.0]]),
}


def _logdet(Q):
    return np.linalg.slogdet(Q.toarray())[1]


@pytest.mark.parametrize("name", sorted(MATRICES))
def test_logdet_rules(name):
    Q = MATRICES[name]
    check_jvp(_logdet, rules.logdet_jvp, Q, rng=0, symmetric=True)
    check_vjp(_logdet, rules.logdet_vjp, Q, rng=1, symmetric=True)
    check_vjp(
        _logdet, rules.logdet_vjp, Q, rng=2, symmetric=True, f_jvp=rules.logdet_jvp, rtol=1e-10
    )


def test_logdet_cotangent_is_not_doubled():
    """Q_bar_ij = (Q⁻¹)_ij on both stored triangles: the classic factor-2 mistake fails here."""
    Q = MATRICES["grid9x7"]
    _y, pullback = rules.logdet_vjp(Q)
    (Q_bar,) = pullback(1.0)
    inverse = np.linalg.inv(Q.toarray())
    coo = Q_bar.tocoo()
    np.testing.assert_allclose(coo.data, inverse[coo.row, coo.col], rtol=1e-10)
    # a hyperparameter that moves one off-diagonal pair (i, j) and (j, i) together
    i, j = 0, 1
    E = sp.csc_matrix(([1.0, 1.0], ([i, j], [j, i])), shape=Q.shape)

    def f(t):
        return _logdet(Q + t * E)

    h = 1e-6
    fd = (f(h) - f(-h)) / (2 * h)
    chain = Q_bar.multiply(E).sum()  # Σ_p Q_bar.data[p] E.data[p]
    assert chain == pytest.approx(fd, rel=1e-7)
    assert chain == pytest.approx(2 * inverse[i, j], rel=1e-10)


def test_logdet_zero_cotangent_short_circuits(monkeypatch):
    Q = MATRICES["spde8"]
    factor = gm.cholesky(Q)
    _y, pullback = rules.logdet_vjp(Q, factor=factor)

    def forbidden(self):
        raise AssertionError("selected inversion must not run for a zero cotangent")

    monkeypatch.setattr(gm.Factor, "selected_inverse", forbidden)
    (Q_bar,) = pullback(0.0)
    assert Q_bar.nnz == Q.nnz and not np.any(Q_bar.data)
    _y, y_dot = rules.logdet_jvp(Q, None, factor=factor)
    assert y_dot == 0.0
    _y, pullback = rules.gmrf_logpdf_vjp(np.zeros(64), np.zeros(64), Q, factor=factor)
    assert not np.any(pullback(0.0)[2].data)


@pytest.mark.parametrize("name", sorted(MATRICES))
def test_solve_rules(name):
    Q = MATRICES[name]
    b = np.random.default_rng(3).standard_normal(Q.shape[0])

    def f(Q, b):
        return np.linalg.solve(Q.toarray(), b)

    check_jvp(f, rules.solve_jvp, (Q, b), rng=4, symmetric=True)
    check_vjp(f, rules.solve_vjp, (Q, b), rng=5, symmetric=True, f_jvp=rules.solve_jvp, rtol=1e-9)
    check_vjp(f, rules.solve_vjp, (Q, b), rng=6, symmetric=True)


@pytest.mark.parametrize("name", sorted(MATRICES))
def test_quad_rules(name):
    Q = MATRICES[name]
    x = np.random.default_rng(7).standard_normal(Q.shape[0])

    def f(Q, x):
        return float(x @ (Q @ x))

    check_jvp(f, rules.quad_jvp, (Q, x), rng=8, symmetric=True)
    check_vjp(f, rules.quad_vjp, (Q, x), rng=9, symmetric=True, f_jvp=rules.quad_jvp, rtol=1e-9)


@pytest.mark.parametrize("name", sorted(MATRICES))
def test_gmrf_logpdf_rules(name):
    Q = MATRICES[name]
    rng = np.random.default_rng(10)
    x, mean = rng.standard_normal((2, Q.shape[0]))
    check_jvp(_dense_logpdf, rules.gmrf_logpdf_jvp, (x, mean, Q), rng=11, symmetric=True)
    check_vjp(_dense_logpdf, rules.gmrf_logpdf_vjp, (x, mean, Q), rng=12, symmetric=True)
    check_vjp(
        _dense_logpdf,
        rules.gmrf_logpdf_vjp,
        (x, mean, Q),
        rng=13,
        symmetric=True,
        f_jvp=rules.gmrf_logpdf_jvp,
        rtol=1e-9,
    )


def test_gmrf_logpdf_gradient_in_hyperparameters_with_fill():
    """Chain rule θ -> Q(θ) through the VJP on a 2-D SPDE-like precision (fill-in)."""
    m = 7
    G = grid_laplacian(m, shift=0.0)
    eye = sp.eye_array(m * m, format="csc")
    x = np.random.default_rng(14).standard_normal(m * m)

    def precision(theta):
        kappa2, tau = np.exp(theta)
        K = kappa2 * eye + G
        return sp.csc_matrix(tau * (K @ K))

    def f(theta):
        return _dense_logpdf(x, np.zeros(m * m), precision(theta))

    def grad(theta):
        kappa2, tau = np.exp(theta)
        K = kappa2 * eye + G
        dQ = [sp.csc_matrix(tau * kappa2 * (K + K)), precision(theta)]
        _y, pullback = rules.gmrf_logpdf_vjp(x, np.zeros(m * m), precision(theta))
        Q_bar = pullback(1.0)[2]
        return np.array([Q_bar.multiply(d).sum() for d in dQ])

    check_grad(f, grad, np.array([-0.5, 0.3]), rng=15)


def test_bad_input():
    Q = MATRICES["grid9x7"]
    n = Q.shape[0]
    with pytest.raises(gm.InputError, match="shape"):
        rules.logdet_jvp(Q, sp.eye(3, format="csc"))
    with pytest.raises(gm.InputError, match="shape"):
        rules.solve_vjp(Q, np.ones(n + 1))
    with pytest.raises(gm.InputError, match="NaN"):
        rules.quad_jvp(Q, np.full(n, np.nan), None, None)
    with pytest.raises(gm.InputError, match="order"):
        rules.logdet_vjp(Q, factor=gm.cholesky(grid_laplacian(3)))
    _y, pullback = rules.logdet_vjp(Q)
    with pytest.raises(gm.InputError, match="finite"):
        pullback(np.inf)


def test_by_position_fast_path_against_dense():
    """inverse_at_positions and outer_on_pattern (the values the Laplace and ELBO gradients
    are built from) on a pattern inside the factor's: dense references."""
    Q = MATRICES["grid9x7"]
    factor = gm.cholesky(Q)
    inverse = np.linalg.inv(Q.toarray())
    # a sub-pattern of Q's (its lower band only, both triangles), looked up once
    B = sp.csc_matrix(sp.triu(sp.tril(Q, 1), -1))
    B.sort_indices()
    cols = np.repeat(np.arange(B.shape[1]), np.diff(B.indptr))
    positions = factor.symbolic.positions(B.indices, cols)
    values = rules.inverse_at_positions(factor.selected_inverse(), positions, 0.5)
    np.testing.assert_allclose(values, 0.5 * inverse[B.indices, cols], rtol=1e-10)
    rng = np.random.default_rng(4)
    u, v = rng.standard_normal((2, Q.shape[0]))
    outer = rules.outer_on_pattern(B.indptr, B.indices, u, v, 2.0)
    dense = np.outer(u, v) + np.outer(v, u)
    np.testing.assert_allclose(outer, dense[B.indices, cols], rtol=1e-12)
    # the dot-product convention: <outer, Q̇> = ȳ ½ (uᵀQ̇v + vᵀQ̇u) for a symmetric Q̇
    Q_dot = sp.csc_matrix((rng.standard_normal(B.nnz), B.indices, B.indptr), shape=B.shape)
    Q_dot = sp.csc_matrix(Q_dot + Q_dot.T)
    Q_dot.sort_indices()
    assert np.array_equal(Q_dot.indices, B.indices)
    assert outer @ Q_dot.data == pytest.approx(u @ Q_dot @ v + v @ Q_dot @ u, rel=1e-12)


def test_a_factor_of_another_pattern_is_refused():
    Q = MATRICES["grid9x7"]
    other = gm.cholesky(sp.csc_matrix(sp.diags_array(np.arange(1.0, Q.shape[0] + 1))))
    for rule in (rules.logdet_vjp, rules.logdet_jvp):
        with pytest.raises(gm.InputError, match="pattern"):
            rule(Q, *([Q] if rule is rules.logdet_jvp else []), factor=other)


def test_tangents_off_the_pattern_or_not_symmetric_are_refused():
    Q = sp.csc_matrix(gm.datasets.laplacian_2d(3) + sp.eye(9))
    off = Q.tolil()
    off[0, 8] = off[8, 0] = 1.0  # (0, 8) is not on a 3 x 3 lattice's pattern
    with pytest.raises(gm.PatternError, match=r"\(0, 8\)"):
        rules.logdet_jvp(Q, sp.csc_matrix(off))
    skew = Q.tolil()
    skew[0, 1] = 5.0
    with pytest.raises(gm.NotSymmetricError, match="symmetric"):
        rules.logdet_jvp(Q, sp.csc_matrix(skew))
    with pytest.raises(gm.PatternError):
        rules.quad_jvp(Q, np.ones(9), sp.csc_matrix(off), None)
    # a tangent on a sub-pattern (the diagonal) is still accepted and exact
    y, y_dot = rules.logdet_jvp(Q, sp.eye(9, format="csc"))
    assert np.isclose(y_dot, np.trace(np.linalg.inv(Q.toarray())), rtol=1e-12)
