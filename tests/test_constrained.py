"""ConstrainedFactor / Constraints: the Gaussian conditioned on A_c x = e against dense references
(2-D grid precision with fill-in, 1×1, several constraints, intrinsic precision + constraint)."""

import numpy as np
import pytest
import scipy.sparse as sp
from scipy import stats

import gmrf_core as gm
from gmrf_core.constrained import ConstrainedFactor, Constraints, as_constraints


def grid_precision(side, shift=0.3):
    path = sp.diags_array(
        [-np.ones(side - 1), 2 * np.ones(side), -np.ones(side - 1)], offsets=[-1, 0, 1]
    )
    lap = sp.kron(path, sp.eye_array(side)) + sp.kron(sp.eye_array(side), path)
    return sp.csc_matrix(lap + shift * sp.eye_array(side * side))


def dense_reference(M, A, e):
    """Conditional covariance, kriging matrix and log det(BᵀMB) computed densely."""
    cov = np.linalg.inv(M)
    V = cov @ A.T
    S = A @ V
    U = V @ np.linalg.inv(S)
    cov_c = cov - U @ V.T
    basis = np.linalg.svd(A)[2][A.shape[0] :].T  # orthonormal basis of ker(A)
    logdet_surface = np.linalg.slogdet(basis.T @ M @ basis)[1]
    return cov, cov_c, U, logdet_surface


@pytest.fixture
def grid_case():
    M = grid_precision(6)  # 36 unknowns, fill-in in L
    n = M.shape[0]
    rng = np.random.default_rng(0)
    A = np.vstack([np.ones(n), np.arange(n, dtype=float), rng.standard_normal(n)])
    e = np.array([1.0, -2.0, 0.5])
    return M, A, e


def test_grid_against_dense(grid_case):
    M, A, e = grid_case
    factor = gm.cholesky(M)
    assert factor.nnz > (M.nnz + M.shape[0]) // 2  # the factor has fill-in
    cf = ConstrainedFactor(factor, (A, e))
    cov, cov_c, U, logdet_surface = dense_reference(M.toarray(), A, e)
    rng = np.random.default_rng(1)
    b = rng.standard_normal(M.shape[0])
    B = rng.standard_normal((M.shape[0], 3))
    np.testing.assert_allclose(cf.solve(b), cov_c @ b, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(cf.solve(B), cov_c @ B, rtol=1e-9, atol=1e-12)
    x = rng.standard_normal(M.shape[0])
    projected = cf.project(x)
    np.testing.assert_allclose(projected, x - U @ (A @ x - e), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(A @ projected, e, atol=1e-9)
    np.testing.assert_allclose(cf.project(B), B - U @ (A @ B - e[:, None]), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(cf.marginal_variance(), np.diag(cov_c), rtol=1e-9, atol=1e-13)
    # rows combining neighbours on the grid (pairs within the pattern of L)
    P = sp.csr_matrix(
        ([0.5, 0.5, 1.0, -1.0, 2.0], ([0, 0, 1, 1, 2], [0, 1, 7, 13, 20])), shape=(3, M.shape[0])
    )
    np.testing.assert_allclose(
        cf.marginal_variance(P), np.diag(P @ cov_c @ P.T), rtol=1e-9, atol=1e-13
    )
    assert cf.logdet() == pytest.approx(logdet_surface, rel=1e-11)
    assert cf.constraints[0] is not None and cf.has_constraints
    # low-rank traces: tr(V S⁻¹ Vᵀ D) for symmetric D on M's pattern
    D1 = M.copy()
    D2 = sp.csc_matrix(M.multiply(M.T) * 0 + M)
    D2.data = rng.standard_normal(D2.nnz)
    D2 = sp.csc_matrix(D2 + D2.T)
    D2 = sp.csc_matrix((D2.toarray()[M.nonzero()], M.nonzero()), shape=M.shape)
    D2.sort_indices()
    D1.sort_indices()
    assert np.array_equal(D1.indices, D2.indices)
    traces = cf.lowrank_traces(D1.indptr, D1.indices, [D1.data, D2.data])
    lowrank = cov - cov_c
    np.testing.assert_allclose(
        traces,
        [np.trace(lowrank @ D1.toarray()), np.trace(lowrank @ D2.toarray())],
        rtol=1e-9,
    )
    # log N(e; A μ, S) of the constraint's value
    mean = rng.standard_normal(M.shape[0])
    ref = stats.multivariate_normal(A @ mean, A @ cov @ A.T).logpdf(e)
    assert cf.constraint_logpdf(mean) == pytest.approx(ref, rel=1e-10)


def test_sampling_honours_constraints_and_covariance(grid_case):
    M, A, e = grid_case
    cf = ConstrainedFactor(gm.cholesky(M), (A, e))
    _cov, cov_c, U, _ = dense_reference(M.toarray(), A, e)
    mean = cf.project(np.zeros(M.shape[0]))  # a feasible mean
    draws = cf.sample(size=20000, rng=2, mean=mean)
    assert draws.shape == (20000, M.shape[0])
    np.testing.assert_allclose(draws @ A.T, np.tile(e, (20000, 1)), atol=1e-8)
    sd = np.sqrt(np.diag(cov_c).max() / 20000)
    assert np.abs(draws.mean(axis=0) - mean).max() < 5 * sd
    assert np.abs(np.cov(draws, rowvar=False) - cov_c).max() < 0.06 * np.abs(cov_c).max()
    single = cf.sample(rng=3, mean=mean)
    assert single.shape == (M.shape[0],)
    np.testing.assert_allclose(A @ single, e, atol=1e-9)


def test_without_constraints_is_the_plain_factor(grid_case):
    M, _A, _e = grid_case
    factor = gm.cholesky(M)
    cf = ConstrainedFactor(factor)
    b = np.arange(M.shape[0], dtype=float)
    np.testing.assert_allclose(cf.solve(b), factor.solve(b))
    np.testing.assert_array_equal(cf.project(b), b)
    assert cf.logdet() == factor.logdet()
    assert cf.constraints is None and not cf.has_constraints
    np.testing.assert_allclose(cf.marginal_variance(), np.diag(np.linalg.inv(M.toarray())))
    assert cf.lowrank_traces(M.indptr, M.indices, [M.data]).tolist() == [0.0]
    assert cf.constraint_logpdf(b) == 0.0


def test_one_by_one():
    """n = 1 with one constraint: the surface is a point, Σ_c = 0 and log det(BᵀMB) = 0."""
    M = sp.csc_matrix(np.array([[2.0]]))
    cf = ConstrainedFactor(gm.cholesky(M), (np.array([[3.0]]), 6.0))
    np.testing.assert_allclose(cf.project(np.array([5.0])), [2.0])
    np.testing.assert_allclose(cf.solve(np.array([1.0])), [0.0], atol=1e-15)
    np.testing.assert_allclose(cf.marginal_variance(), [0.0], atol=1e-15)
    assert cf.logdet() == pytest.approx(0.0, abs=1e-14)
    np.testing.assert_allclose(cf.sample(size=3, rng=0, mean=np.array([2.0])), [[2.0]] * 3)


def test_intrinsic_precision_plus_constraint_direction():
    """An intrinsic (singular) precision R with null space span(1): conditioning the proper
    R + a aᵀ (a = constraint row) on a x = 0 gives the density of the intrinsic model on the
    constraint surface; its log-det is the generalised log-determinant of R."""
    side = 5
    path = sp.diags_array(
        [-np.ones(side - 1), 2 * np.ones(side), -np.ones(side - 1)], offsets=[-1, 0, 1]
    ).tolil()
    path[0, 0] = path[-1, -1] = 1.0
    R = sp.csc_matrix(sp.kron(path, sp.eye_array(side)) + sp.kron(sp.eye_array(side), path))
    n = R.shape[0]
    a = np.ones((1, n))
    M = sp.csc_matrix(R + sp.csc_matrix(a.T @ a))
    cf = ConstrainedFactor(gm.cholesky(M), (a, 0.0))
    eig = np.linalg.eigvalsh(R.toarray())
    assert abs(eig[0]) < 1e-10  # intrinsic
    assert cf.logdet() == pytest.approx(np.sum(np.log(eig[1:])), rel=1e-11)
    # Σ_c is the pseudo-inverse of R (the constraint removes the null direction)
    np.testing.assert_allclose(
        cf.marginal_variance(), np.diag(np.linalg.pinv(R.toarray())), rtol=1e-9
    )


def test_validation_in_one_place():
    n = 4
    with pytest.raises(gm.InputError, match="columns"):
        Constraints(np.ones((1, 3)), 0.0, n)
    with pytest.raises(gm.InputError, match="NaN"):
        Constraints(np.array([[1.0, np.nan, 0, 0]]), 0.0, n)
    with pytest.raises(gm.InputError, match="NaN"):
        Constraints(np.ones((1, n)), np.inf, n)
    with pytest.raises(gm.InputError, match="full row rank"):
        Constraints(np.ones((2, n)), [0.0, 0.0], n)
    with pytest.raises(gm.InputError, match="shape"):
        Constraints(np.ones((2, n)) + np.eye(2, n), [0.0, 0.0, 1.0], n)
    with pytest.raises(gm.InputError, match="no rows"):
        Constraints(np.zeros((0, n)), [], n)
    with pytest.raises(gm.InputError, match="pair"):
        as_constraints(np.ones(n), n)
    c = as_constraints((sp.csr_matrix(np.ones((1, n))), 2.0), n)
    assert isinstance(c, Constraints) and c.k == 1
    assert as_constraints(c, n) is c
    with pytest.raises(gm.InputError, match="act on"):
        as_constraints(c, n + 1)
    padded = c.padded(n + 2)
    assert padded.A.shape == (1, n + 2) and padded.logdet_AAt == pytest.approx(np.log(n))
    x = np.arange(n, dtype=float)
    np.testing.assert_allclose(c.A @ c.feasible(x), [2.0])
    # the feasible point is the orthogonal projection: x − feasible(x) ∝ the constraint row
    diff = x - c.feasible(x)
    np.testing.assert_allclose(diff, diff[0] * np.ones(n))
