"""Tests of the intrinsic random walks RW1 and RW2."""

import numpy as np
import pytest
import scipy.linalg as sla

from gmrf_core.errors import InputError
from gmrf_core.models import RW1, RW2, PCPrecision
from gmrf_core.models._structure import intrinsic_structure


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


@pytest.mark.parametrize("cls", [RW1, RW2])
@pytest.mark.parametrize("n", [5, 40, 150])
def test_scaling_unit_generalised_variance(cls, n):
    assert geometric_mean_constrained_variance(cls(n)) == pytest.approx(1.0, rel=1e-8)
    unscaled = cls(n, scale=False)
    assert geometric_mean_constrained_variance(unscaled) == pytest.approx(
        cls(n).scale_factor, rel=1e-8
    )


def test_unscaled_generalised_determinants():
    """|D₁ᵀD₁|* = n and |D₂ᵀD₂|* = n²(n²-1)/12 for the path structures."""
    for n in (2, 3, 10, 1000, 20000):
        assert RW1(n, scale=False).logdet([0.0]) == pytest.approx(np.log(n), rel=1e-12)
    for n in (3, 4, 10, 1000, 20000):
        expected = np.log(n**2 * (n**2 - 1) / 12)
        assert RW2(n, scale=False).logdet([0.0]) == pytest.approx(expected, rel=1e-11)


def test_rw1_scaling_large_n_closed_form():
    """Banded (scalable) scaling against the closed form of the constrained RW1 variances.

    With W_i = Σ_{j<i} e_j (grounded at W_0 = 0, Cov = min(i, j)), the sum-to-zero model
    is W - mean(W): Var_i = i - 2 c_i + v̄, c_i = (1/n) Σ_j min(i, j), v̄ = mean of c.
    """
    n = 20000
    i = np.arange(n, dtype=float)
    row_sums = i * (i - 1) / 2 + i * (n - i)
    c = row_sums / n
    variances = i - 2 * c + c.mean()
    expected = np.exp(np.mean(np.log(variances)))
    assert RW1(n).scale_factor == pytest.approx(expected, rel=1e-10)


def test_rw2_scaling_banded_matches_dense():
    n = 900
    model = RW2(n)  # banded path
    d = difference(n, 2)
    structure = d.T @ d
    null = np.column_stack([np.ones(n), np.arange(n)])
    variances, log_pdet = intrinsic_structure(structure, null, "RW2", method="dense")
    assert model.scale_factor == pytest.approx(np.exp(np.mean(np.log(variances))), rel=1e-7)
    expected = np.log(n**2 * (n**2 - 1) / 12)
    assert log_pdet == pytest.approx(expected, rel=1e-8)


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
