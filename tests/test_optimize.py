"""gm.fit: the tutorial's Poisson experiment, standard errors, progress and result object."""

import io

import numpy as np
import pytest

import gmrf_core as gm
from gmrf_core import likelihoods, models
from tests._references import second_difference_hessian


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
    hess_fd = second_difference_hessian(model.objective, theta, h)
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


def matern_poisson_model():
    rng = np.random.default_rng(0)
    prior = models.Matern2D((8, 8))
    x = gm.cholesky(prior.precision(prior.theta0)).sample(rng=rng)
    y = rng.poisson(np.exp(0.5 + x))
    return gm.LatentGaussianModel(prior, likelihoods.Poisson(y), X=np.ones((prior.n, 1)))


def test_a_fit_that_does_not_move_is_not_a_success():
    """From θ0 = (−5, −5) (range and σ tiny) the objective is flat to ~1e-6: L-BFGS-B stops
    at once; that is reported, not called a success."""
    model = matern_poisson_model()
    result = gm.fit(model, theta0=[-5.0, -5.0], progress=False, std_err=False)
    assert not result.success
    assert "did not move" in result.message
    assert "NOT CONVERGED" in result.summary()
    good = gm.fit(model, progress=False, std_err=False)
    assert good.success and good.fun < result.fun - 10.0


def test_failed_evaluations_are_backtracked_from():
    """With max_newton = 6 (steps, Newton and chord) the inner problem fails far from the
    optimum: the line search's failed trial points are backed off from (trust region), and
    the fit reaches the same optimum as with the default Newton, reporting the failures; with
    max_newton = 3 it cannot and says so (success False)."""
    reference = gm.fit(tutorial_model(), progress=False, std_err=False)
    model = tutorial_model()
    model.max_newton = 6
    with pytest.raises(gm.ConvergenceError):
        model.objective(np.array([-5.0, -5.0]))  # the region where evaluations fail
    result = gm.fit(model, theta0=[6.0, 2.0], progress=False, std_err=False)
    assert "failed evaluations" in result.message
    assert result.success
    np.testing.assert_allclose(result.theta, reference.theta, atol=1e-3)
    assert result.fun == pytest.approx(reference.fun, rel=1e-9)
    hopeless = tutorial_model()
    hopeless.max_newton = 3
    result = gm.fit(hopeless, theta0=[6.0, 2.0], progress=False, std_err=False)
    assert not result.success
    assert result.fun > reference.fun + 1.0


def test_the_approximation_at_the_optimum_is_reused(monkeypatch):
    model = tutorial_model()

    def no_extra_newton(theta):
        raise AssertionError("fit recomputed the Laplace approximation at the optimum")

    monkeypatch.setattr(model, "laplace", no_extra_newton)
    result = gm.fit(model, progress=False)
    approx = result.approximation
    np.testing.assert_array_equal(approx.theta, result.theta)
    np.testing.assert_array_equal(approx.mode, result.mode)
    assert approx.objective == result.fun
    np.testing.assert_allclose(result.marginal_sd, approx.marginal_sd())
    monkeypatch.undo()
    fresh = model.laplace(result.theta)
    np.testing.assert_allclose(fresh.mode, result.mode, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(fresh.marginal_sd(), result.marginal_sd, rtol=1e-9)


def test_a_fit_holds_one_factor_of_h_and_its_approximation_refactorizes_the_same(monkeypatch):
    """With standard errors the approximation at θ̂ hands its factor back for the Hessian's
    evaluations (one factor of H is created in the whole fit); used again, it refactorizes H
    at its mode: the same factor bit for bit, the same variances and draws."""
    from gmrf_core.linalg import Factor

    model = matern_poisson_model()
    created = []
    original = Factor.__init__

    def counting(self, symbolic):
        if symbolic is model.symbolic:
            created.append(self)
        original(self, symbolic)

    monkeypatch.setattr(Factor, "__init__", counting)
    result = gm.fit(model, progress=False)
    assert len(created) == 1
    monkeypatch.undo()
    assert result.success
    approx = result.approximation
    np.testing.assert_array_equal(result.marginal_sd, approx.marginal_sd())
    # the same fit on a fresh copy of the model, without standard errors: it keeps its factor
    reference = gm.fit(matern_poisson_model(), progress=False, std_err=False).approximation
    np.testing.assert_array_equal(reference.theta, approx.theta)
    np.testing.assert_array_equal(reference.mode, approx.mode)
    logdet = reference.factor.logdet()
    values = reference.factor.L().data.copy()
    variance = reference.linear_predictor_variance()
    draws = reference.sample(size=3, rng=7)
    reference._release()
    assert reference.factor.logdet() == logdet
    np.testing.assert_array_equal(reference.factor.L().data, values)
    np.testing.assert_array_equal(reference.linear_predictor_variance(), variance)
    np.testing.assert_array_equal(reference.sample(size=3, rng=7), draws)
    np.testing.assert_array_equal(approx.linear_predictor_variance(), variance)


def test_bad_bounds_and_models():
    model = tutorial_model()
    with pytest.raises(gm.InputError, match="not an interval"):
        gm.fit(model, bounds=[(1.0, 0.0), (None, None)], progress=False)
    with pytest.raises(gm.InputError, match="one"):
        gm.fit(model, bounds=[(0.0, 1.0)], progress=False)
    with pytest.raises(gm.InputError, match="outside the bounds"):
        gm.fit(model, theta0=[2.0, 5.0], bounds=[(0.0, 1.0), (None, None)], progress=False)
    with pytest.raises(gm.InputError, match="LatentGaussianModel"):
        gm.fit(object())
    with pytest.raises(gm.InputError, match="theta0"):
        gm.fit(model, theta0=["a", "b"])


def _matern_counts(size=40, seed=8):
    prior = models.Matern2D((size, size))
    rng = np.random.default_rng(seed)
    x = gm.cholesky(prior.precision(prior.theta_from(6.0, 0.8))).sample(rng=rng)
    return prior, rng.poisson(np.exp(1.0 + x))


def test_fit_starts_from_the_data_and_reaches_the_same_optimum():
    """Without θ0, fit starts from model.start_from_data() (the moment start of the
    Matérn range and σ, near the truth rather than the default fifth of the diagonal)
    and converges to the optimum reached from the default start."""
    prior, y = _matern_counts()
    model = gm.LatentGaussianModel(prior, likelihoods.Poisson(y), X=np.ones((prior.n, 1)))
    start = model.start_from_data()
    assert not np.allclose(start, model.theta0)
    rho, sigma = prior.range_sigma(start)
    assert 3.0 < rho < 12.0 and 0.4 < sigma < 1.6
    seen = _record_evaluations(model)
    from_data = gm.fit(model, progress=False, std_err=False)
    np.testing.assert_array_equal(seen[0], start)
    from_default = gm.fit(model, model.theta0, progress=False, std_err=False)
    assert from_data.success and from_default.success
    np.testing.assert_allclose(from_data.theta, from_default.theta, rtol=1e-4)


def _record_evaluations(model):
    seen = []
    inner = model._value_grad_approximation

    def recording(theta):
        seen.append(np.array(theta, dtype=float))
        return inner(theta)

    model._value_grad_approximation = recording
    return seen


def test_start_from_data_falls_back_to_theta0():
    """No hook (IID), a projection A, or data without spatial signal: θ0 unchanged."""
    iid = tutorial_model()
    np.testing.assert_array_equal(iid.start_from_data(), iid.theta0)
    prior, y = _matern_counts(size=20)
    projected = gm.LatentGaussianModel(
        prior, likelihoods.Poisson(y[::2]), A=np.eye(prior.n)[::2], X=np.ones((y[::2].size, 1))
    )
    np.testing.assert_array_equal(projected.start_from_data(), projected.theta0)
    flat = gm.LatentGaussianModel(
        prior, likelihoods.Poisson(np.full(prior.n, 3.0)), X=np.ones((prior.n, 1))
    )
    np.testing.assert_array_equal(flat.start_from_data(), flat.theta0)
    # the data's start outside the bounds: fit starts from θ0 instead
    model = gm.LatentGaussianModel(prior, likelihoods.Poisson(y), X=np.ones((prior.n, 1)))
    assert model.start_from_data()[0] < model.theta0[0]
    seen = _record_evaluations(model)
    low = model.theta0[0] - 1e-9
    gm.fit(model, bounds=[(low, None), (None, None)], progress=False, std_err=False, maxiter=1)
    np.testing.assert_array_equal(seen[0], model.theta0)


def test_large_objectives_are_not_stopped_by_the_relative_reduction_test():
    """|f| ≈ 1e11: L-BFGS-B's default relative test stops after one iteration (a
    reduction below 220 absolute), far from the minimum; the driver holds the
    reduction test at 1e-4 absolute."""
    centre = np.array([3.0, -2.0])
    weights = np.array([0.1, 10.0])

    def fun_and_grad(theta):
        d = theta - centre
        return 1e11 + float(weights @ d**2), 2.0 * weights * d

    result = gm.optimize.minimize_hyperparameters(fun_and_grad, np.zeros(2))
    assert result.success
    np.testing.assert_allclose(result.theta, centre, atol=2e-3)
