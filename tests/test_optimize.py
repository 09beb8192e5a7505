"""gm.fit: the tutorial's Poisson experiment, standard errors, progress and result object."""

import io

import numpy as np
import pytest

import gmrf_core as gm
from gmrf_core import likelihoods, models


def tutorial_model(seed=4):
    """Poisson counts on an IID prior with unknown mean and precision (n=50, τ=4, μ=5), as in
    the GaussianMarkovRandomFields.jl tutorial (../shared/seeds/000)."""
    rng = np.random.default_rng(seed)
    x = 5.0 + rng.standard_normal(50) / 2.0
    y = rng.poisson(np.exp(x))
    return gm.LatentGaussianModel(models.IID(50, mean_param=True), likelihoods.Poisson(y))


def test_tutorial_recovers_parameters():
    stream = io.StringIO()
    result = gm.fit(tutorial_model(), stream=stream)
    assert result.success
    tau, mu = result.theta_natural["tau"], result.theta_natural["mu"]
    # the tutorial found τ ≈ 3.98, μ ≈ 4.96 on its draw of the same experiment
    assert tau == pytest.approx(4.0, rel=0.15)
    assert mu == pytest.approx(5.0, abs=0.1)
    assert abs(result.theta[0] - np.log(4.0)) < 2 * result.std_err[0]
    assert abs(result.theta[1] - 5.0) < 2 * result.std_err[1]
    text = stream.getvalue()
    assert "iter" in text and "objective" in text and "std.err" in text
    assert result.mode.shape == (50,) and result.marginal_sd.shape == (50,)
    assert np.all(result.marginal_sd > 0)


def test_standard_errors_from_exact_hessian():
    model = tutorial_model(seed=1)
    result = gm.fit(model, progress=False)
    # the Hessian is symmetric positive definite and matches finite differences of f
    theta, h = result.theta, 1e-3
    hess_fd = np.empty((2, 2))
    for i in range(2):
        for j in range(2):
            ei, ej = np.eye(2)[i] * h, np.eye(2)[j] * h
            hess_fd[i, j] = (
                model.objective(theta + ei + ej)
                - model.objective(theta + ei - ej)
                - model.objective(theta - ei + ej)
                + model.objective(theta - ei - ej)
            ) / (4 * h * h)
    np.testing.assert_allclose(result.hessian, hess_fd, rtol=1e-4)
    np.testing.assert_allclose(result.std_err, np.sqrt(np.diag(np.linalg.inv(hess_fd))), rtol=1e-4)
    assert "log_tau" in result.summary()


def test_bounds_and_quiet(capsys):
    model = tutorial_model()
    result = gm.fit(model, bounds=[(0.0, 1.0), (None, None)], progress=False, std_err=False)
    assert 0.0 <= result.theta[0] <= 1.0
    assert capsys.readouterr().out == ""
    assert np.all(np.isnan(result.std_err))


def test_bad_theta0():
    with pytest.raises(gm.InputError, match="theta0"):
        gm.fit(tutorial_model(), theta0=np.zeros(3))
