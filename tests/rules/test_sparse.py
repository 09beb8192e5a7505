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


# -- the Laplace-type Hessian H = Q + Aᵀ diag(w) A, and solves on a constraint surface -----------


def _projection(m, n, rng, per_row=3):
    """A sparse (m, n) projection with a few nonzeros per row (their pairs cause fill-in)."""
    rows = np.repeat(np.arange(m), per_row)
    cols = rng.integers(0, n, rows.size)
    return sp.csr_matrix((rng.uniform(0.2, 1.0, rows.size), (rows, cols)), shape=(m, n))


def _null_basis(A_c):
    from scipy.linalg import null_space

    return null_space(A_c)


def _dense_weighted_logdet(Q, w, A, constraints):
    H = Q.toarray() + A.toarray().T @ np.diag(w) @ A.toarray()
    if constraints is not None:
        B = _null_basis(constraints[0])
        H = B.T @ H @ B
    return np.linalg.slogdet(H)[1]


def _sum_to_zero(n, k=1):
    A_c = np.zeros((k, n))
    for j in range(k):
        A_c[j, j::k] = 1.0
    return A_c, np.zeros(k)


WEIGHTED = {
    "grid9x7": (MATRICES["grid9x7"], None),
    "spde8, one constraint": (MATRICES["spde8"], 1),
    "grid9x7, two constraints": (MATRICES["grid9x7"], 2),
}


@pytest.mark.parametrize("name", sorted(WEIGHTED))
def test_weighted_logdet_rules(name):
    """log det(Bᵀ(Q + Aᵀ diag(w) A)B) in (Q, w): FD and the JVP-VJP dot-product test."""
    from functools import partial

    Q, k = WEIGHTED[name]
    n = Q.shape[0]
    rng = np.random.default_rng(20)
    A = _projection(40, n, rng)
    w = rng.uniform(0.5, 2.0, 40)
    constraints = None if k is None else _sum_to_zero(n, k)

    def f(Q, w):
        return _dense_weighted_logdet(Q, w, A, constraints)

    jvp = partial(rules.weighted_logdet_jvp, A=A, constraints=constraints)
    vjp = partial(rules.weighted_logdet_vjp, A=A, constraints=constraints)
    check_jvp(f, jvp, (Q, w), rng=21, symmetric=True)
    check_vjp(f, vjp, (Q, w), rng=22, symmetric=True)
    check_vjp(f, vjp, (Q, w), rng=23, symmetric=True, f_jvp=jvp, rtol=1e-10)


def test_weighted_logdet_cotangents_against_dense():
    """Q̄ = ȳ Σ_c on Q's pattern and w̄ = ȳ diag(A Σ_c Aᵀ), Σ_c = B(BᵀHB)⁻¹Bᵀ."""
    Q = MATRICES["spde8"]
    n = Q.shape[0]
    rng = np.random.default_rng(24)
    A = _projection(30, n, rng)
    w = rng.uniform(0.5, 2.0, 30)
    constraints = _sum_to_zero(n, 2)
    H = Q.toarray() + A.toarray().T @ np.diag(w) @ A.toarray()
    B = _null_basis(constraints[0])
    sigma = B @ np.linalg.inv(B.T @ H @ B) @ B.T
    y, pullback = rules.weighted_logdet_vjp(Q, w, A=A, constraints=constraints)
    assert y == pytest.approx(_dense_weighted_logdet(Q, w, A, constraints), rel=1e-12)
    Q_bar, w_bar = pullback(0.5)
    coo = Q_bar.tocoo()
    np.testing.assert_allclose(coo.data, 0.5 * sigma[coo.row, coo.col], rtol=1e-9, atol=1e-14)
    np.testing.assert_allclose(w_bar, 0.5 * np.diag(A @ sigma @ A.T), rtol=1e-10)
    Q_bar, w_bar = pullback(0.0)
    assert not np.any(Q_bar.data) and not np.any(w_bar)


def test_quadratic_diag_at_positions_against_dense():
    """The by-stored-position gather of diag(A Q⁻¹ Aᵀ) (the Laplace gradient's fast path)."""
    Q = MATRICES["grid9x7"]
    rng = np.random.default_rng(25)
    A = _projection(25, Q.shape[0], rng, per_row=4)
    H = sp.csc_matrix(Q + A.T @ A)
    factor = gm.cholesky(H)
    rows, cols, obs, values = rules.row_pairs(A)
    dense = A.toarray()
    assert rows.size == sum(np.diff(A.indptr) ** 2)
    np.testing.assert_allclose(
        np.bincount(obs, values * (rows == cols), minlength=25), (dense**2).sum(axis=1)
    )
    positions = factor.symbolic.positions(rows, cols)
    out = rules.quadratic_diag_at_positions(factor.selected_inverse(), positions, obs, values, 25)
    np.testing.assert_allclose(
        out, np.diag(dense @ np.linalg.inv(H.toarray()) @ dense.T), rtol=1e-10
    )
    half = rules.quadratic_diag_at_positions(
        factor.selected_inverse(), positions, obs, values, 25, 0.5
    )
    np.testing.assert_allclose(half, 0.5 * out, rtol=1e-15)


def test_weighted_logdet_bad_input():
    Q = MATRICES["grid9x7"]
    n = Q.shape[0]
    A = _projection(10, n, np.random.default_rng(26))
    with pytest.raises(gm.InputError, match="columns"):
        rules.weighted_logdet_vjp(Q, np.ones(10), A=A[:, :-1])
    with pytest.raises(gm.InputError, match="shape"):
        rules.weighted_logdet_jvp(Q, np.ones(9), None, None, A=A)
    with pytest.raises(gm.InputError, match="pattern"):
        rules.weighted_logdet_vjp(Q, np.ones(10), A=A, factor=gm.cholesky(Q))


@pytest.mark.parametrize("k", [1, 2])
def test_constrained_solve_rules(k):
    """x = argmin ½xᵀQx − bᵀx on A_c x = e: ẋ = Σ_c(ḃ − Q̇x), b̄ = Σ_c x̄ (dense KKT reference)."""
    from functools import partial

    Q = MATRICES["spde8"]
    n = Q.shape[0]
    rng = np.random.default_rng(27)
    A_c = rng.standard_normal((k, n))
    e = rng.standard_normal(k)
    b = rng.standard_normal(n)

    def f(Q, b):
        kkt = np.block([[Q.toarray(), A_c.T], [A_c, np.zeros((k, k))]])
        return np.linalg.solve(kkt, np.concatenate([b, e]))[:n]

    jvp = partial(rules.solve_jvp, constraints=(A_c, e))
    vjp = partial(rules.solve_vjp, constraints=(A_c, e))
    check_jvp(f, jvp, (Q, b), rng=28, symmetric=True)
    check_vjp(f, vjp, (Q, b), rng=29, symmetric=True)
    check_vjp(f, vjp, (Q, b), rng=30, symmetric=True, f_jvp=jvp, rtol=1e-9)
