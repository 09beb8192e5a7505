"""Protocol-level tests run on every likelihood: finite-difference checks of all
derivatives, missing data, argument validation and numerically extreme η."""

import numpy as np
import pytest

from gmrf_core.errors import InputError
from gmrf_core.likelihoods import (
    Bernoulli,
    Binomial,
    Gaussian,
    Likelihood,
    NegativeBinomial,
    NormalPrior,
    PCPrecision,
    Poisson,
)

NAN = np.nan


def _gaussian():
    y = np.array([0.3, -1.2, NAN, 2.5, 0.0, -0.7, 1.1])
    scale = np.array([1.0, 2.0, NAN, 0.5, 3.0, 1.0, 1.5])
    return Gaussian(y, scale=scale, prior=PCPrecision(1.0, 0.01)), np.array([0.7])


def _gaussian_plain():
    return Gaussian([1.0, -2.0, 0.5, NAN]), np.array([-1.3])


def _poisson():
    y = np.array([0, 3, NAN, 1, 7, 12, 2])
    exposure = np.array([1.0, 2.5, NAN, 0.3, 1.0, 4.0, 0.8])
    return Poisson(y, exposure=exposure), np.zeros(0)


def _bernoulli():
    return Bernoulli([0, 1, 1, NAN, 0, 1, 0]), np.zeros(0)


def _binomial():
    y = np.array([0, 3, NAN, 5, 2, 10, 1])
    trials = np.array([4, 5, NAN, 5, 9, 12, 1])
    return Binomial(y, trials), np.zeros(0)


def _negative_binomial():
    y = np.array([0, 3, NAN, 1, 7, 25, 2])
    exposure = np.array([1.0, 2.5, 1.0, 0.3, 1.0, 4.0, 0.8])
    return NegativeBinomial(y, exposure=exposure, prior=NormalPrior(1.0, 2.0)), np.array([0.4])


def _negative_binomial_large_size():
    return NegativeBinomial([0, 5, 2, 9, NAN], size0=np.exp(6.0)), np.array([6.0])


FACTORIES = {
    "gaussian": _gaussian,
    "gaussian_plain": _gaussian_plain,
    "poisson": _poisson,
    "bernoulli": _bernoulli,
    "binomial": _binomial,
    "negative_binomial": _negative_binomial,
    "negative_binomial_large_size": _negative_binomial_large_size,
}


@pytest.fixture(params=sorted(FACTORIES))
def case(request):
    likelihood, theta = FACTORIES[request.param]()
    eta = np.random.default_rng(42).normal(0.3, 0.8, size=likelihood.n)
    return likelihood, eta, theta


H = 1e-5


def _assert_close(analytic, numeric, scale=1.0):
    analytic = np.asarray(analytic, dtype=float)
    numeric = np.asarray(numeric, dtype=float)
    tol = 1e-6 * max(scale, float(np.max(np.abs(numeric), initial=0.0)), 1.0)
    np.testing.assert_allclose(analytic, numeric, rtol=0, atol=tol)


def test_is_a_likelihood_with_consistent_attributes(case):
    likelihood, eta, theta = case
    assert isinstance(likelihood, Likelihood)
    assert likelihood.theta0.shape == (len(likelihood.theta_names),)
    assert likelihood.observed.shape == (likelihood.n,)
    assert likelihood.observed.dtype == bool
    assert np.array_equal(likelihood.observed, ~np.isnan(likelihood.y))
    assert theta.shape == likelihood.theta0.shape
    assert repr(likelihood).startswith(type(likelihood).__name__)


def test_first_eta_derivative_matches_finite_differences_of_log_density(case):
    likelihood, eta, theta = case
    d1, _, _ = likelihood.eta_derivatives(eta, theta)
    numeric = np.empty(likelihood.n)
    for i in range(likelihood.n):
        step = np.zeros(likelihood.n)
        step[i] = H
        numeric[i] = (
            likelihood.log_density(eta + step, theta) - likelihood.log_density(eta - step, theta)
        ) / (2 * H)
    _assert_close(d1, numeric)


def test_higher_eta_derivatives_match_finite_differences(case):
    likelihood, eta, theta = case
    d1, d2, d3 = likelihood.eta_derivatives(eta, theta)
    # observation i depends on eta_i only, so one shift of every eta_i differentiates all at once
    d1_plus, d2_plus, _ = likelihood.eta_derivatives(eta + H, theta)
    d1_minus, d2_minus, _ = likelihood.eta_derivatives(eta - H, theta)
    _assert_close(d2, (d1_plus - d1_minus) / (2 * H), scale=np.max(np.abs(d1)))
    _assert_close(d3, (d2_plus - d2_minus) / (2 * H), scale=np.max(np.abs(d2)))
    # pointwise terms, differentiated elementwise, give d1 as well
    p_plus = likelihood.pointwise_log_density(eta + H, theta)
    p_minus = likelihood.pointwise_log_density(eta - H, theta)
    _assert_close(d1, (p_plus - p_minus) / (2 * H))


def test_theta_derivatives_match_finite_differences(case):
    likelihood, eta, theta = case
    g, g_eta, g_eta2 = likelihood.theta_derivatives(eta, theta)
    p = theta.size
    assert g.shape == (p,)
    assert g_eta.shape == (p, likelihood.n)
    assert g_eta2.shape == (p, likelihood.n)
    for k in range(p):
        step = np.zeros(p)
        step[k] = H
        numeric_g = (
            likelihood.log_density(eta, theta + step) - likelihood.log_density(eta, theta - step)
        ) / (2 * H)
        plus = likelihood.eta_derivatives(eta, theta + step)
        minus = likelihood.eta_derivatives(eta, theta - step)
        _assert_close(g[k], numeric_g, scale=abs(likelihood.log_density(eta, theta)))
        _assert_close(g_eta[k], (plus[0] - minus[0]) / (2 * H), scale=np.max(np.abs(plus[0])))
        _assert_close(g_eta2[k], (plus[1] - minus[1]) / (2 * H), scale=np.max(np.abs(plus[1])))


def test_log_prior_gradient_matches_finite_differences(case):
    likelihood, _, theta = case
    grad = likelihood.log_prior_grad(theta)
    assert grad.shape == theta.shape
    for k in range(theta.size):
        step = np.zeros(theta.size)
        step[k] = H
        numeric = (likelihood.log_prior(theta + step) - likelihood.log_prior(theta - step)) / (
            2 * H
        )
        _assert_close(grad[k], numeric)


def test_log_density_is_sum_of_pointwise_terms(case):
    likelihood, eta, theta = case
    terms = likelihood.pointwise_log_density(eta, theta)
    assert terms.shape == (likelihood.n,)
    assert np.all(terms[~likelihood.observed] == 0.0)
    assert np.all(np.isfinite(terms))
    assert likelihood.log_density(eta, theta) == pytest.approx(terms.sum(), rel=1e-14)


def test_theta_none_means_theta0(case):
    likelihood, eta, _ = case
    theta0 = likelihood.theta0
    assert likelihood.log_density(eta) == likelihood.log_density(eta, theta0)
    for a, b in zip(likelihood.eta_derivatives(eta), likelihood.eta_derivatives(eta, theta0)):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(likelihood.theta_derivatives(eta), likelihood.theta_derivatives(eta, theta0)):
        np.testing.assert_array_equal(a, b)
    assert likelihood.log_prior(None) == likelihood.log_prior(theta0)


def test_missing_observations_contribute_nothing(case):
    likelihood, eta, theta = case
    missing = ~likelihood.observed
    assert missing.any()
    for d in likelihood.eta_derivatives(eta, theta):
        assert d.shape == (likelihood.n,)
        assert np.all(d[missing] == 0.0)
    _, g_eta, g_eta2 = likelihood.theta_derivatives(eta, theta)
    assert np.all(g_eta[:, missing] == 0.0)
    assert np.all(g_eta2[:, missing] == 0.0)
    # moving eta at a missing observation changes nothing
    moved = eta.copy()
    moved[missing] += 3.7
    assert likelihood.log_density(moved, theta) == likelihood.log_density(eta, theta)
    np.testing.assert_array_equal(
        likelihood.theta_derivatives(moved, theta)[0], likelihood.theta_derivatives(eta, theta)[0]
    )


def test_missing_observations_match_the_likelihood_of_the_observed_subset():
    y = np.array([2.0, NAN, 0.0, 5.0, NAN, 1.0])
    exposure = np.array([1.5, NAN, 2.0, 0.5, 3.0, 1.0])
    keep = ~np.isnan(y)
    eta = np.linspace(-1.0, 1.0, y.size)
    theta = np.array([0.8])
    full = NegativeBinomial(y, exposure=exposure)
    subset = NegativeBinomial(y[keep], exposure=exposure[keep])
    assert full.log_density(eta, theta) == pytest.approx(subset.log_density(eta[keep], theta))
    for a, b in zip(full.eta_derivatives(eta, theta), subset.eta_derivatives(eta[keep], theta)):
        np.testing.assert_allclose(a[keep], b, rtol=1e-14)
    g_full, ge_full, ge2_full = full.theta_derivatives(eta, theta)
    g_sub, ge_sub, ge2_sub = subset.theta_derivatives(eta[keep], theta)
    np.testing.assert_allclose(g_full, g_sub, rtol=1e-13)
    np.testing.assert_allclose(ge_full[:, keep], ge_sub, rtol=1e-14)
    np.testing.assert_allclose(ge2_full[:, keep], ge2_sub, rtol=1e-14)
    # mean is reported everywhere, NaN where the exposure is unknown
    mean = full.mean(eta, theta)
    assert np.isnan(mean[1]) and np.isfinite(np.delete(mean, 1)).all()


def test_all_missing_likelihood_can_simulate():
    eta = np.array([0.0, 1.0, -1.0])
    likelihood = Poisson(np.full(3, NAN), exposure=2.0)
    assert likelihood.log_density(eta) == 0.0
    draws = likelihood.sample(eta, rng=0)
    assert draws.shape == (3,) and np.all(draws >= 0) and np.all(draws == np.floor(draws))


def test_eta_of_wrong_shape_is_rejected(case):
    likelihood, eta, theta = case
    for bad in (eta[:-1], np.append(eta, 0.0), eta.reshape(-1, 1), 0.5):
        with pytest.raises(InputError, match="eta has shape"):
            likelihood.log_density(bad, theta)
        with pytest.raises(InputError, match="eta has shape"):
            likelihood.eta_derivatives(bad, theta)
        with pytest.raises(InputError, match="eta has shape"):
            likelihood.theta_derivatives(bad, theta)


def test_non_finite_or_non_numeric_eta_is_rejected(case):
    likelihood, eta, theta = case
    for value in (np.nan, np.inf, -np.inf):
        bad = eta.copy()
        bad[1] = value
        with pytest.raises(InputError, match="eta must be finite.*index 1"):
            likelihood.eta_derivatives(bad, theta)
    with pytest.raises(InputError, match="eta must be an array of numbers"):
        likelihood.log_density(["a"] * likelihood.n, theta)


def test_theta_of_wrong_length_or_non_finite_is_rejected(case):
    likelihood, eta, theta = case
    with pytest.raises(InputError, match="expects .* hyperparameter"):
        likelihood.log_density(eta, np.append(theta, 1.0))
    with pytest.raises(InputError, match="expects .* hyperparameter"):
        likelihood.theta_derivatives(eta, np.append(theta, 1.0))
    with pytest.raises(InputError, match="expects .* hyperparameter"):
        likelihood.log_prior(np.append(theta, 1.0))
    if theta.size:
        with pytest.raises(InputError, match="finite"):
            likelihood.eta_derivatives(eta, np.full(theta.size, np.nan))
        with pytest.raises(InputError, match="expects .* hyperparameter"):
            likelihood.eta_derivatives(eta, np.zeros(0))


def test_empty_theta_derivatives_without_hyperparameters():
    likelihood = Bernoulli([0, 1, 1])
    g, g_eta, g_eta2 = likelihood.theta_derivatives(np.zeros(3))
    assert g.shape == (0,) and g_eta.shape == (0, 3) and g_eta2.shape == (0, 3)
    assert likelihood.log_prior(np.zeros(0)) == 0.0
    assert likelihood.log_prior_grad(None).shape == (0,)


@pytest.mark.parametrize("bad", [[[1.0, 2.0]], [], [1.0, np.inf], ["x", "y"], 3.0])
@pytest.mark.parametrize("cls", [Gaussian, Poisson, Bernoulli, NegativeBinomial])
def test_malformed_y_is_rejected(cls, bad):
    with pytest.raises(InputError, match="y"):
        cls(bad)
    with pytest.raises(InputError, match="y"):
        Binomial(bad, trials=5)


def test_bad_rng_is_rejected():
    with pytest.raises(InputError, match="rng"):
        Poisson([1, 2]).sample(np.zeros(2), rng="seed")


def test_sample_is_reproducible_and_mean_has_right_shape(case):
    likelihood, eta, theta = case
    a = likelihood.sample(eta, theta, rng=np.random.default_rng(3))
    b = likelihood.sample(eta, theta, rng=3)
    assert a.shape == (likelihood.n,)
    np.testing.assert_array_equal(a, b)
    assert likelihood.mean(eta, theta).shape == (likelihood.n,)


@pytest.mark.parametrize("cls", [Gaussian, NegativeBinomial])
def test_prior_must_be_a_prior(cls):
    with pytest.raises(InputError, match="prior must be"):
        cls([1.0, 2.0], prior="pc")


@pytest.mark.parametrize("name", sorted(FACTORIES))
@pytest.mark.parametrize("magnitude", [50.0, 700.0])
def test_extreme_eta_gives_finite_results(name, magnitude):
    likelihood, theta = FACTORIES[name]()
    if name.startswith("gaussian") and magnitude > 50:
        magnitude = 1e6
    eta = magnitude * np.where(np.arange(likelihood.n) % 2 == 0, 1.0, -1.0)
    for sign in (1.0, -1.0):
        values = [likelihood.log_density(sign * eta, theta)]
        values += list(likelihood.eta_derivatives(sign * eta, theta))
        values += list(likelihood.theta_derivatives(sign * eta, theta))
        values += [likelihood.mean(sign * eta, theta)[likelihood.observed]]
        for value in values:
            assert np.all(np.isfinite(value))


def _with_settings(name, y):
    """A likelihood of the named family on data y, without optional settings."""
    return {
        "gaussian": lambda: Gaussian(y),
        "poisson": lambda: Poisson(y),
        "bernoulli": lambda: Bernoulli(y),
        "binomial": lambda: Binomial(y, trials=5),
        "negative_binomial": lambda: NegativeBinomial(y),
    }[name]()


FAMILIES = ["gaussian", "poisson", "bernoulli", "binomial", "negative_binomial"]


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (np.array([1.0, 0.0 + 1e-3j]), "y must be an array of numbers, got complex"),
        ([1.0, 1j], "y must be an array of numbers, got complex"),
        (np.array([1.0, 0.0], dtype=complex), "y must be an array of numbers, got complex"),
        (["1", "0"], "y must be an array of numbers, got strings"),
        (np.array([1, 0], dtype=object).astype(str), "got strings"),
        (np.array(["2026-01-01"], dtype="datetime64[D]"), "got dtype datetime64"),
    ],
)
def test_complex_string_and_non_numeric_y_are_rejected(name, bad, message):
    # NumPy would drop the imaginary part (with only a warning) or parse the strings
    with pytest.raises(InputError, match=message):
        _with_settings(name, bad)


def test_boolean_y_is_accepted_as_zero_one():
    likelihood = Bernoulli(np.array([True, False, True]))
    np.testing.assert_array_equal(likelihood.y, [1.0, 0.0, 1.0])


def test_complex_or_string_eta_and_theta_are_rejected(case):
    likelihood, eta, theta = case
    with pytest.raises(InputError, match="eta must be an array of numbers, got complex"):
        likelihood.log_density(eta + 1e-9j, theta)
    with pytest.raises(InputError, match="eta must be an array of numbers, got strings"):
        likelihood.eta_derivatives([str(v) for v in eta], theta)
    if theta.size:
        with pytest.raises(InputError, match="theta must be an array of numbers, got complex"):
            likelihood.log_density(eta, theta + 0.5j)
        with pytest.raises(InputError, match="theta must be an array of numbers, got strings"):
            likelihood.theta_derivatives(eta, [str(t) for t in theta])
        with pytest.raises(InputError, match="theta must be an array of numbers, got strings"):
            likelihood.log_prior("1.0")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda: Poisson([1, 2], exposure=[1.0, 2.0 + 1j]),
            "exposure must be numeric, got complex",
        ),
        (lambda: Poisson([1, 2], exposure=["1", "2"]), "exposure must be numeric, got strings"),
        (lambda: NegativeBinomial([1, 2], exposure=1j), "exposure must be numeric, got complex"),
        (lambda: Gaussian([1.0, 2.0], scale=[1.0, 1j]), "scale must be numeric, got complex"),
        (lambda: Binomial([1, 2], trials=[3, 4 + 0j]), "trials must be numeric, got complex"),
        (lambda: Binomial([1, 2], trials="5"), "trials must be numeric, got strings"),
    ],
)
def test_complex_or_string_settings_are_rejected(make, message):
    with pytest.raises(InputError, match=message):
        make()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Poisson([1, -1]), "non-negative integer counts.*index 1"),
        (lambda: Poisson([1, np.inf]), "infinite"),
        (lambda: Poisson([1, -np.inf]), "infinite"),
        (lambda: NegativeBinomial([-3, 1]), "non-negative integer counts.*index 0"),
        (lambda: Binomial([1, 6], trials=5), "y must not exceed trials.*index 1"),
        (lambda: Binomial([1, 2], trials=[3, np.inf]), "trials must be finite"),
        (lambda: Binomial([1, 2], trials=[3, 2.5]), "trials must be finite and >= 0 integers"),
        (lambda: Bernoulli([0, 2]), "must be 0 or 1"),
        (lambda: Gaussian([1.0, np.inf]), "infinite"),
    ],
)
def test_counts_out_of_their_range_are_rejected(make, message):
    with pytest.raises(InputError, match=message):
        make()


def test_sampling_at_extreme_hyperparameters_is_finite_or_refused():
    eta = np.zeros(3)
    # σ = e^400 at log precision −800 is a float (1/√e^−800 was 1/0)
    draws = Gaussian([1.0, NAN, 0.0]).sample(eta, [-800.0], rng=0)
    assert np.all(np.isfinite(draws)) and np.all(np.abs(draws) < 10 * np.exp(400.0))
    with pytest.raises(InputError, match="infinite noise standard deviation"):
        Gaussian([1.0, NAN, 0.0]).sample(eta, [-1500.0], rng=0)
    assert np.all(np.abs(Gaussian([1.0, NAN, 0.0]).sample(eta, [800.0], rng=0)) < 1e-170)
    # log size 800: r = inf, the Poisson limit (mean exp(0) = 1)
    draws = NegativeBinomial(np.full(4000, NAN)).sample(np.zeros(4000), [800.0], rng=2)
    assert np.all(np.isfinite(draws)) and abs(draws.mean() - 1.0) < 0.1
    assert draws.var() == pytest.approx(1.0, rel=0.15)
    with pytest.raises(InputError, match="cannot simulate with size"):
        NegativeBinomial([1.0, NAN]).sample(np.zeros(2), [-800.0], rng=0)
