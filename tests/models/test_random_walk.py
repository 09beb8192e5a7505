"""Tests of the intrinsic random walks RW1 and RW2."""

from fractions import Fraction

import numpy as np
import pytest
import scipy.linalg as sla

from gmrf_core.errors import InputError
from gmrf_core.models import RW1, RW2, PCPrecision
from gmrf_core.models._structure import intrinsic_structure
from gmrf_core.models.random_walk import (
    difference_matrix,
    rw1_constrained_variances,
    rw2_constrained_variances,
)


def difference(n, order):
    """Dense (n - order) × n difference matrix, built from np.diff of the identity."""
    return np.diff(np.eye(n), n=order, axis=0)


def geometric_mean_constrained_variance(model):
    """Geometric mean of diag of the constrained covariance at τ = 1 (dense generalised inverse)."""
    q = model.precision([0.0]).toarray()
    return np.exp(np.mean(np.log(np.diag(sla.pinvh(q)))))


@pytest.mark.parametrize("cls, order", [(RW1, 1), (RW2, 2)])
def test_textbook_definition(cls, order):
    n, tau = 9, 2.7
    d = difference(n, order)
    model = cls(n, scale=False)
    np.testing.assert_allclose(model.precision([np.log(tau)]).toarray(), tau * d.T @ d, atol=1e-12)
    scaled = cls(n)
    np.testing.assert_allclose(
        scaled.precision([np.log(tau)]).toarray(),
        tau * scaled.scale_factor * d.T @ d,
        rtol=1e-12,
    )


@pytest.mark.parametrize(
    "cls, order, n",
    [(RW1, 1, 2), (RW1, 1, 12), (RW1, 1, 45), (RW2, 2, 3), (RW2, 2, 12), (RW2, 2, 45)],
)
def test_protocol(cls, order, n, check, rng):
    model = cls(n)
    assert model.rank_deficiency == order
    a, e = model.constraints
    assert a.shape == (order, n) and np.all(e == 0)
    theta = [0.4]
    check.precision_grad(model, theta)
    check.fixed_pattern(model, rng)
    check.null_space(model, theta)
    q = model.precision(theta).toarray()
    assert model.logdet(theta) == pytest.approx(check.pdet(q, order), rel=1e-9, abs=1e-9)
    check.scalar_grad(model.logdet, model.logdet_grad, theta)
    basis = check.constraint_basis(model)
    assert model.constrained_logdet(theta) == pytest.approx(
        np.linalg.slogdet(basis.T @ q @ basis)[1], rel=1e-9, abs=1e-9
    )
    # null vectors: constant (and linear) trends
    positions = np.arange(n, dtype=float)
    for power in range(order):
        np.testing.assert_allclose(q @ positions**power, 0.0, atol=1e-9 * np.abs(q).max())


def exact_constrained_variances(n, order):
    """diag(R⁺) in exact rational arithmetic, by generic Gauss–Jordan elimination.

    R = DᵀD grounded at the first ``order`` nodes gives G (positive definite); Σ_g = G⁻¹
    padded with zeros, and diag(P Σ_g P) with P = I - V(VᵀV)⁻¹Vᵀ, V the polynomial basis.
    """
    d = np.diff(np.eye(n, dtype=int), n=order, axis=0)
    r = d.T @ d
    m = n - order
    g = [
        [Fraction(int(r[order + i, order + j])) for j in range(m)]
        + [Fraction(int(i == j)) for j in range(m)]
        for i in range(m)
    ]
    for col in range(m):
        pivot = g[col][col]
        g[col] = [x / pivot for x in g[col]]
        for row in range(m):
            if row != col and g[row][col] != 0:
                factor = g[row][col]
                g[row] = [x - factor * y for x, y in zip(g[row], g[col])]
    sigma = [[Fraction(0)] * n for _ in range(n)]
    for i in range(m):
        for j in range(m):
            sigma[order + i][order + j] = g[i][m + j]
    v = [[Fraction(i**p) for p in range(order)] for i in range(n)]
    gram = [[sum(v[k][a] * v[k][b] for k in range(n)) for b in range(order)] for a in range(order)]
    if order == 1:
        gram_inv = [[1 / gram[0][0]]]
    else:
        det = gram[0][0] * gram[1][1] - gram[0][1] * gram[1][0]
        gram_inv = [[gram[1][1] / det, -gram[0][1] / det], [-gram[1][0] / det, gram[0][0] / det]]
    proj = [
        [
            Fraction(int(i == j))
            - sum(v[i][a] * gram_inv[a][b] * v[j][b] for a in range(order) for b in range(order))
            for j in range(n)
        ]
        for i in range(n)
    ]
    sigma_proj = [
        [sum(sigma[i][k] * proj[k][j] for k in range(n)) for j in range(n)] for i in range(n)
    ]
    return np.array([float(sum(proj[i][k] * sigma_proj[k][i] for k in range(n))) for i in range(n)])


@pytest.mark.parametrize("n", [3, 4, 9, 24])
def test_constrained_variances_exact(n):
    np.testing.assert_allclose(
        rw1_constrained_variances(n), exact_constrained_variances(n, 1), rtol=1e-14
    )
    np.testing.assert_allclose(
        rw2_constrained_variances(n), exact_constrained_variances(n, 2), rtol=1e-14
    )


@pytest.mark.parametrize("cls", [RW1, RW2])
@pytest.mark.parametrize("n", [5, 30])
def test_scaling_unit_generalised_variance(cls, n):
    assert geometric_mean_constrained_variance(cls(n)) == pytest.approx(1.0, rel=1e-9)
    unscaled = cls(n, scale=False)
    assert geometric_mean_constrained_variance(unscaled) == pytest.approx(
        cls(n).scale_factor, rel=1e-9
    )


def test_unscaled_generalised_determinants():
    """|D₁ᵀD₁|* = n and |D₂ᵀD₂|* = n²(n²-1)/12, against dense eigenvalues."""
    for n in (2, 3, 10, 120):
        d = difference(n, 1)
        values = np.sort(sla.eigvalsh(d.T @ d))[1:]
        assert RW1(n, scale=False).logdet([0.0]) == pytest.approx(np.sum(np.log(values)), rel=1e-10)
    for n in (3, 4, 10, 120):
        d = difference(n, 2)
        values = np.sort(sla.eigvalsh(d.T @ d))[2:]
        assert RW2(n, scale=False).logdet([0.0]) == pytest.approx(np.sum(np.log(values)), rel=1e-8)


@pytest.mark.parametrize("cls, n", [(RW1, 20000), (RW2, 3000)])
def test_scaling_large_n_against_grounded_factorization(cls, n):
    """Closed-form/exact scaling against the generic grounded factorization."""
    order = 1 if cls is RW1 else 2
    d = difference_matrix(n, order)
    null = np.column_stack([np.arange(n, dtype=float) ** p for p in range(order)])
    grounded = np.arange(n - order, n)  # exact integer factor, see intrinsic_structure
    variances, log_pdet = intrinsic_structure(d.T @ d, null, "t", grounded=grounded)
    model = cls(n)
    assert model.scale_factor == pytest.approx(np.exp(np.mean(np.log(variances))), rel=1e-9)
    assert model.structure_log_pdet == pytest.approx(
        log_pdet + (n - order) * np.log(model.scale_factor), rel=1e-12
    )


def test_prior(check):
    model = RW2(10, prior=PCPrecision(0.5, 0.01))
    assert model.log_prior([1.2]) == pytest.approx(PCPrecision(0.5, 0.01).log_density(1.2))
    check.scalar_grad(model.log_prior, model.log_prior_grad, [1.2])
    assert model.to_natural([np.log(3.0)]) == pytest.approx({"tau": 3.0})


@pytest.mark.parametrize("cls, n", [(RW1, 1), (RW1, 0), (RW1, -4), (RW2, 2), (RW2, -1), (RW1, 3.5)])
def test_bad_n(cls, n):
    with pytest.raises(InputError):
        cls(n)


def test_bad_theta():
    with pytest.raises(InputError, match="expects 1"):
        RW1(5).precision([0.0, 0.0])
    with pytest.raises(InputError):
        RW1(5).logdet([np.inf])
