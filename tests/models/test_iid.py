"""Tests of the IID model."""

import numpy as np
import pytest

from gmrf_core.errors import InputError
from gmrf_core.models import IID, NormalPrior, PCPrecision


def test_precision_is_tau_identity():
    model = IID(5)
    q = model.precision([np.log(4.0)])
    np.testing.assert_allclose(q.toarray(), 4.0 * np.eye(5))
    assert model.theta_names == ("log_tau",)
    assert model.constraints is None and model.rank_deficiency == 0
    assert model.to_natural([np.log(4.0)]) == pytest.approx({"tau": 4.0})


def test_gradients_pattern_logdet(check, rng):
    for model in (IID(6), IID(50, mean_param=True)):
        theta = model.theta0 + rng.standard_normal(len(model.theta0))
        check.precision_grad(model, theta)
        check.fixed_pattern(model, rng)
        q = model.precision(theta).toarray()
        assert model.logdet(theta) == pytest.approx(np.linalg.slogdet(q)[1], rel=1e-12)
        check.scalar_grad(model.logdet, model.logdet_grad, theta)
        assert model.constrained_logdet(theta) == model.logdet(theta)


def test_mean_hyperparameter():
    """The Poisson example of GaussianMarkovRandomFields.jl: n = 50, τ = 4, μ = 5."""
    model = IID(50, mean_param=True)
    theta = np.array([np.log(4.0), 5.0])
    assert model.has_mean
    assert model.theta_names == ("log_tau", "mu")
    np.testing.assert_allclose(model.mean(theta), np.full(50, 5.0))
    grad = model.mean_grad(theta)
    assert grad.shape == (2, 50)
    step = 1e-6
    fd = (model.mean(theta + [0, step]) - model.mean(theta - [0, step])) / (2 * step)
    np.testing.assert_allclose(grad[1], fd)
    np.testing.assert_allclose(grad[0], 0.0)
    np.testing.assert_allclose(model.precision_grad(theta)[1].data, 0.0)
    assert model.to_natural(theta) == pytest.approx({"tau": 4.0, "mu": 5.0})
    assert not IID(3).has_mean
    np.testing.assert_allclose(IID(3).mean([0.0]), 0.0)


def test_priors(check):
    model = IID(
        4, mean_param=True, prior={"log_tau": PCPrecision(1.0, 0.01), "mu": NormalPrior(0, 10)}
    )
    theta = np.array([0.3, 2.0])
    expected = PCPrecision(1.0, 0.01).log_density(0.3) + NormalPrior(0, 10).log_density(2.0)
    assert model.log_prior(theta) == pytest.approx(expected)
    check.scalar_grad(model.log_prior, model.log_prior_grad, theta)
    single = IID(4, prior=PCPrecision(1.0, 0.01))
    assert single.log_prior([0.3]) == pytest.approx(PCPrecision(1.0, 0.01).log_density(0.3))
    assert IID(4).log_prior([0.3]) == 0.0


@pytest.mark.parametrize("n", [0, -3, 2.5, "5", None, True])
def test_bad_n(n):
    with pytest.raises(InputError):
        IID(n)


def test_bad_theta():
    model = IID(3)
    with pytest.raises(InputError, match="expects 1"):
        model.precision([0.0, 1.0])
    with pytest.raises(InputError, match="finite"):
        model.precision([np.nan])
    with pytest.raises(InputError, match="too large"):
        model.precision([800.0])
    with pytest.raises(InputError, match="expects 2"):
        IID(3, mean_param=True).mean([0.0])
