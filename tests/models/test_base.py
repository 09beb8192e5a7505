"""Tests of the LatentModel protocol defaults and helpers."""

import numpy as np
import pytest
import scipy.sparse as sp

from gmrf_core.errors import InputError
from gmrf_core.models import AR1, IID, LatentModel, NormalPrior, PCBYM2Phi, PCPrecision


class Diagonal(LatentModel):
    """Minimal subclass: Q = diag(exp(θ₀), exp(θ₁)), no analytic log-determinant."""

    n = 2
    theta_names = ("a", "b")
    theta0 = np.zeros(2)

    def precision(self, theta):
        theta = self.check_theta(theta)
        return sp.csc_matrix(np.diag(np.exp(theta)))

    def precision_grad(self, theta):
        theta = self.check_theta(theta)
        return [
            sp.csc_matrix(np.diag([np.exp(theta[0]), 0.0])),
            sp.csc_matrix(np.diag([0.0, np.exp(theta[1])])),
        ]


def test_defaults():
    model = Diagonal()
    theta = np.array([0.5, -1.0])
    np.testing.assert_allclose(model.mean(theta), 0.0)
    assert model.mean_grad(theta).shape == (2, 2) and not model.mean_grad(theta).any()
    assert model.log_prior(theta) == 0.0
    np.testing.assert_allclose(model.log_prior_grad(theta), 0.0)
    assert model.logdet(theta) is None and model.logdet_grad(theta) is None
    assert model.constrained_logdet(theta) is None and model.constrained_logdet_grad(theta) is None
    assert model.to_natural(theta) == {"a": 0.5, "b": -1.0}
    assert "Diagonal" in repr(model)


def test_check_theta():
    model = IID(3)
    np.testing.assert_allclose(model.check_theta(0.5), [0.5])
    np.testing.assert_allclose(model.check_theta(np.array([[0.5]])), [0.5])
    with pytest.raises(InputError, match="expects 1"):
        model.check_theta([])
    with pytest.raises(InputError, match="finite"):
        model.check_theta([np.inf])
    with pytest.raises(InputError, match="real numbers"):
        model.check_theta(["abc"])


def test_on_pattern():
    pattern = sp.csc_matrix(np.array([[1.0, 1.0], [1.0, 1.0]]))
    matrix = sp.csc_matrix(np.array([[2.0, 0.0], [0.0, 3.0]]))
    placed = LatentModel.on_pattern(pattern, matrix)
    assert placed.nnz == 4
    np.testing.assert_allclose(placed.toarray(), matrix.toarray())
    with pytest.raises(InputError, match="outside"):
        LatentModel.on_pattern(sp.csc_matrix(np.eye(2)), pattern)


def test_prior_specification_errors():
    with pytest.raises(InputError, match="unknown"):
        AR1(3, prior={"log_sigma": PCPrecision(1, 0.01)})
    with pytest.raises(InputError, match="must be a gmrf_core Prior"):
        AR1(3, prior={"log_tau": 1.0})
    with pytest.raises(InputError, match="must be None, a Prior, or a dict"):
        IID(3, prior=[PCPrecision(1, 0.01)])
    with pytest.raises(InputError, match="BYM2 mixing"):
        AR1(3, prior={"atanh_rho": PCBYM2Phi()})
    model = AR1(3, prior={"atanh_rho": NormalPrior(0.0, 2.0), "log_tau": None})
    assert model.priors[0] is None and isinstance(model.priors[1], NormalPrior)


def test_start_values_on_the_natural_scale(grid):
    """Every model takes <natural name>0 start values; theta0 holds them on the internal scale."""
    from gmrf_core.models import BYM2, RW1, RW2, Besag

    cases = [
        (IID(3, tau0=2.5), {"tau": 2.5}),
        (IID(3, mean_param=True, tau0=0.5, mu0=-1.5), {"tau": 0.5, "mu": -1.5}),
        (AR1(4, tau0=3.0, rho0=-0.25), {"tau": 3.0, "rho": -0.25}),
        (RW1(5, tau0=7.0), {"tau": 7.0}),
        (RW2(5, tau0=0.1), {"tau": 0.1}),
        (Besag(grid(2, 3), tau0=4.0), {"tau": 4.0}),
        (BYM2(grid(2, 3), tau0=2.0, phi0=0.8), {"tau": 2.0, "phi": 0.8}),
    ]
    for model, natural in cases:
        assert model.to_natural(model.theta0) == pytest.approx(natural, rel=1e-14), model
    defaults = [IID(3), AR1(4), RW1(5), RW2(5), Besag(grid(2, 3)), BYM2(grid(2, 3))]
    for model in defaults:
        assert model.to_natural(model.theta0)["tau"] == 1.0
    for bad in (0.0, -1.0, np.nan, np.inf, "1"):
        for make in (lambda t: IID(3, tau0=t), lambda t: RW1(5, tau0=t)):
            with pytest.raises(InputError, match="tau0"):
                make(bad)
    with pytest.raises(InputError, match="mean_param"):
        IID(3, mu0=1.0)
    with pytest.raises(InputError, match="mu0"):
        IID(3, mean_param=True, mu0=np.nan)
    with pytest.raises(InputError, match="phi0"):
        BYM2(grid(2, 2), phi0=0.0)
