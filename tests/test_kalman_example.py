"""Tests of examples/kalman_gradient.py: the Kalman log-likelihood and its hand-built gradients."""

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from gmrf_core import testing
from gmrf_core.errors import InputError
from gmrf_core.rules import dense


@pytest.fixture(autouse=True)
def _single_blas_thread():
    # small matrices gain nothing from BLAS threads, and on a loaded machine OpenBLAS
    # threads slowed these tests more than ten-fold
    with threadpool_limits(limits=1, user_api="blas"):
        yield


_PATH = Path(__file__).resolve().parents[1] / "examples" / "kalman_gradient.py"


def _load_example():
    name = "gmrf_examples_kalman_gradient"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, _PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


kg = _load_example()


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(7)
    times = np.sort(rng.uniform(0.0, 8.0, 40))
    times[5] = times[4]  # a repeated time (dt = 0) must work too
    y = kg.simulate(np.log([1.5, 1.2, 0.3]), times, rng)
    return times, y


THETAS = [np.log([1.0, 1.0, 0.5]), np.log([0.3, 2.0, 0.1]), np.array([1.2, -0.4, -1.5])]


def test_stationary_covariance_is_analytic():
    theta = np.log([0.7, 1.3, 0.2])
    model, _ = kg.matern32_model(theta)
    stationary = dense.solve_continuous_lyapunov(model.drift, -model.diffusion)
    lam = math.sqrt(3.0) / 0.7
    np.testing.assert_allclose(
        stationary, np.diag([1.3**2, lam**2 * 1.3**2]), rtol=1e-12, atol=1e-12
    )


@pytest.mark.parametrize("theta", THETAS)
def test_kalman_value_matches_dense_gp(theta, data):
    times, y = data
    value = kg.log_likelihood(theta, times, y)
    reference = kg.dense_gp_log_likelihood(theta, times, y)
    assert value == pytest.approx(reference, rel=1e-9)
    assert kg.log_likelihood_grad_forward(theta, times, y)[0] == pytest.approx(value, rel=1e-12)
    assert kg.log_likelihood_grad_reverse(theta, times, y)[0] == pytest.approx(value, rel=1e-12)


@pytest.mark.parametrize("theta", THETAS)
@pytest.mark.parametrize("mode", ["forward", "reverse"])
def test_gradient_matches_finite_differences(theta, mode, data):
    times, y = data
    gradient = {
        "forward": kg.log_likelihood_grad_forward,
        "reverse": kg.log_likelihood_grad_reverse,
    }[mode]
    result = testing.check_grad(
        lambda t: kg.log_likelihood(t, times, y),
        lambda t: gradient(t, times, y)[1],
        theta,
        full=True,
        rng=0,
    )
    assert result.max_rel_error < 1e-6


def test_forward_and_reverse_agree_to_rounding(data):
    times, y = data
    theta = THETAS[0]
    forward = kg.log_likelihood_grad_forward(theta, times, y)[1]
    reverse = kg.log_likelihood_grad_reverse(theta, times, y)[1]
    np.testing.assert_allclose(forward, reverse, rtol=1e-10, atol=1e-10)


def test_model_derivatives_match_finite_differences():
    theta = np.log([0.8, 1.1, 0.4])
    _, derivatives = kg.matern32_model(theta)
    for i in range(3):
        for field in ("drift", "diffusion", "noise"):

            def entry(t, i=i, field=field):
                shifted = theta.copy()
                shifted[i] = t
                return getattr(kg.matern32_model(shifted)[0], field)

            def entry_jvp(t, t_dot, i=i, field=field):
                return entry(t), getattr(derivatives[i], field) * t_dot

            testing.check_jvp(entry, entry_jvp, float(theta[i]), 1.0)


def test_demo_runs_and_reports_timings(capsys):
    results = kg.main(n_obs=25, repeats=1)
    printed = capsys.readouterr().out
    assert "ratio FD / reverse" in printed and "ratio FD / forward" in printed
    np.testing.assert_allclose(results["grad_forward"], results["grad_reverse"], rtol=1e-10)
    np.testing.assert_allclose(results["grad_fd"], results["grad_reverse"], rtol=1e-5)


def test_bad_data_raise_input_error():
    theta = THETAS[0]
    with pytest.raises(InputError, match="sorted"):
        kg.log_likelihood(theta, [0.0, 2.0, 1.0], [0.1, 0.2, 0.3])
    with pytest.raises(InputError, match="shape"):
        kg.log_likelihood_grad_reverse(theta, [0.0, 1.0], [0.1, 0.2, 0.3])
    with pytest.raises(InputError, match="finite"):
        kg.log_likelihood_grad_forward(theta, [0.0, 1.0], [0.1, np.nan])
    with pytest.raises(InputError, match="theta"):
        kg.log_likelihood([0.0, 1.0], [0.0, 1.0], [0.1, 0.2])
