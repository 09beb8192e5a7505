"""Shared checks of the latent-model protocol (dense NumPy references), as fixtures."""

from types import SimpleNamespace

import numpy as np
import pytest
import scipy.linalg as sla
import scipy.sparse as sp

FD_STEP = 1e-5


def _assert_same_pattern(a, b):
    assert sp.issparse(a) and sp.issparse(b) and a.format == "csc" and b.format == "csc"
    assert a.shape == b.shape
    np.testing.assert_array_equal(a.indptr, b.indptr)
    np.testing.assert_array_equal(a.indices, b.indices)
    assert a.has_sorted_indices and b.has_sorted_indices


def _assert_precision_grad(model, theta, rtol=1e-7):
    """precision_grad against central differences of precision, entry by entry on the pattern."""
    theta = np.asarray(theta, dtype=float)
    q = model.precision(theta)
    grads = model.precision_grad(theta)
    assert len(grads) == theta.size
    for k, grad in enumerate(grads):
        _assert_same_pattern(q, grad)
        step = np.zeros_like(theta)
        step[k] = FD_STEP
        plus, minus = model.precision(theta + step), model.precision(theta - step)
        _assert_same_pattern(q, plus)
        _assert_same_pattern(q, minus)
        fd = (plus.data - minus.data) / (2 * FD_STEP)
        scale = max(np.max(np.abs(fd)), np.max(np.abs(q.data)), 1e-300)
        np.testing.assert_allclose(grad.data, fd, rtol=0, atol=rtol * scale, err_msg=f"θ_{k}")


def _assert_fixed_pattern(model, rng, count=5, spread=1.5):
    """Pattern identical (indptr/indices) at theta0 and at random θ; symmetric values."""
    reference = model.precision(model.theta0)
    for _ in range(count):
        theta = model.theta0 + spread * rng.standard_normal(len(model.theta0))
        q = model.precision(theta)
        _assert_same_pattern(reference, q)
        np.testing.assert_allclose(q.toarray(), q.toarray().T, rtol=0, atol=0)
        for grad in model.precision_grad(theta):
            _assert_same_pattern(reference, grad)


def _assert_scalar_grad(function, gradient, theta, rtol=1e-6, atol=1e-8):
    """Gradient of a scalar function of θ against central differences."""
    theta = np.asarray(theta, dtype=float)
    grad = np.asarray(gradient(theta), dtype=float)
    assert grad.shape == theta.shape
    fd = np.zeros_like(theta)
    for k in range(theta.size):
        step = np.zeros_like(theta)
        step[k] = FD_STEP
        fd[k] = (function(theta + step) - function(theta - step)) / (2 * FD_STEP)
    np.testing.assert_allclose(grad, fd, rtol=rtol, atol=atol)


def _pdet(matrix, rank_deficiency):
    """Dense generalised log-determinant: sum of logs of all but the k smallest eigenvalues."""
    values = np.sort(sla.eigvalsh(np.asarray(matrix)))
    k = rank_deficiency
    if k:
        assert np.all(np.abs(values[:k]) < 1e-8 * values[-1]), values[: k + 1]
    assert np.all(values[k:] > 1e-8 * values[-1]), values[: k + 1]
    return float(np.sum(np.log(values[k:])))


def _constraint_basis(model):
    """Orthonormal basis B of {x : A x = 0} (identity without constraints)."""
    if model.constraints is None:
        return np.eye(model.n)
    return sla.null_space(np.asarray(model.constraints[0]))


def _constrained_covariance(model, theta):
    """Covariance of x | A x = 0: B (BᵀQB)⁻¹ Bᵀ."""
    basis = _constraint_basis(model)
    q = model.precision(theta).toarray()
    return basis @ np.linalg.solve(basis.T @ q @ basis, basis.T)


def _assert_null_space(model, theta):
    """Q has exactly rank n - k, and the constraint rows span its null space."""
    q = model.precision(theta).toarray()
    k = model.rank_deficiency
    values = np.sort(sla.eigvalsh(q))
    assert np.all(values[k:] > 1e-9 * values[-1])
    if k == 0:
        return
    assert np.all(np.abs(values[:k]) < 1e-9 * values[-1])
    null = sla.null_space(q, rcond=1e-9)
    assert null.shape[1] == k
    a = np.asarray(model.constraints[0])
    np.testing.assert_allclose(q @ null, 0.0, atol=1e-9 * values[-1])
    # row space of A equals the null space of Q
    assert np.linalg.matrix_rank(a) == a.shape[0]
    assert np.linalg.matrix_rank(np.vstack([a, null.T]), tol=1e-8) == a.shape[0] == k


@pytest.fixture
def check():
    """Namespace of protocol checks shared by the model tests."""
    return SimpleNamespace(
        precision_grad=_assert_precision_grad,
        fixed_pattern=_assert_fixed_pattern,
        scalar_grad=_assert_scalar_grad,
        pdet=_pdet,
        constraint_basis=_constraint_basis,
        constrained_covariance=_constrained_covariance,
        null_space=_assert_null_space,
        same_pattern=_assert_same_pattern,
    )


@pytest.fixture
def rng():
    return np.random.default_rng(20240611)


def grid_adjacency(rows, cols):
    """Rook adjacency of a rows × cols lattice, node (i, j) -> i * cols + j."""
    n = rows * cols
    index = np.arange(n).reshape(rows, cols)
    edges = [(index[:, :-1].ravel(), index[:, 1:].ravel()), (index[:-1].ravel(), index[1:].ravel())]
    r = np.concatenate([a for a, _ in edges] + [b for _, b in edges])
    c = np.concatenate([b for _, b in edges] + [a for a, _ in edges])
    return sp.csr_matrix((np.ones(r.size), (r, c)), shape=(n, n))


@pytest.fixture
def grid():
    """Factory of lattice adjacency matrices."""
    return grid_adjacency
