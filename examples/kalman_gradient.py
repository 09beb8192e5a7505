"""Exact gradient of a Kalman-filter log-likelihood from the dense derivative rules.

A Matérn-3/2 Gaussian process observed with noise at irregular times is a linear-Gaussian
state-space model (J. Hartikainen and S. Särkkä, "Kalman filtering and smoothing solutions
to temporal Gaussian process regression models", MLSP 2010; S. Särkkä and A. Solin,
"Applied Stochastic Differential Equations", 2019). With state ``x = (f, f')`` and
``lam = sqrt(3) / lengthscale``::

    dx = F x dt + L dW,   F = [[0, 1], [-lam^2, -2 lam]],   L = [0, 1]^T,
    spectral density q = 4 lam^3 magnitude^2,   y_k = H x(t_k) + noise,  H = [1, 0].

Exact discretisation between observation times (``dt = t_k - t_{k-1}``)::

    A_k = expm(F dt),   P_inf = solve_continuous_lyapunov(F, -L q L^T),
    Q_k = P_inf - A_k P_inf A_k^T,

and the Kalman filter gives the exact log-likelihood ``log p(y | theta)`` for
``theta = (log lengthscale, log magnitude, log noise_sd)``.

The gradient in ``theta`` is assembled by hand from :mod:`gmrf_core.rules.dense`:

* :func:`log_likelihood_grad_forward`: forward mode, one tangent sweep per parameter
  through ``expm_jvp``, ``solve_continuous_lyapunov_jvp``, ``solve_jvp``, ``logdet_jvp``;
* :func:`log_likelihood_grad_reverse`: reverse mode, one forward sweep that records the
  pullbacks of ``expm_vjp``, ``solve_vjp``, ``logdet_vjp`` and one backward sweep
  (cost independent of the number of parameters).

Run ``python examples/kalman_gradient.py`` for a timing comparison with central finite
differences.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import scipy.linalg as sla
from threadpoolctl import threadpool_limits

from gmrf_core.errors import InputError
from gmrf_core.rules import dense

LOG_2PI = math.log(2.0 * math.pi)
THETA_NAMES = ("log_lengthscale", "log_magnitude", "log_noise_sd")


@dataclass(frozen=True)
class StateSpaceModel:
    """Continuous-time linear-Gaussian model ``dx = F x dt + L dW``, ``y = H x + e``.

    Attributes
    ----------
    drift : (p, p) ndarray
        ``F``.
    diffusion : (p, p) ndarray
        ``L q L^T``, the covariance rate of the driving noise.
    observation : (d, p) ndarray
        ``H``.
    noise : (d, d) ndarray
        ``R``, covariance of the observation noise.
    """

    drift: np.ndarray
    diffusion: np.ndarray
    observation: np.ndarray
    noise: np.ndarray


def matern32_model(theta):
    """Matérn-3/2 state-space model and its derivatives in ``theta``.

    Parameters
    ----------
    theta : (3,) array_like
        ``(log lengthscale, log magnitude, log noise_sd)``.

    Returns
    -------
    model : StateSpaceModel
    derivatives : list of StateSpaceModel
        ``derivatives[i]`` holds the partial derivatives of every matrix in ``theta[i]``
        (the observation matrix is constant, its derivative zero).
    """
    log_lengthscale, log_magnitude, log_noise = _theta(theta)
    lam = math.sqrt(3.0) / math.exp(log_lengthscale)
    variance = math.exp(2.0 * log_magnitude)
    noise_variance = math.exp(2.0 * log_noise)
    q = 4.0 * lam**3 * variance

    drift = np.array([[0.0, 1.0], [-(lam**2), -2.0 * lam]])
    diffusion = np.array([[0.0, 0.0], [0.0, q]])
    observation = np.array([[1.0, 0.0]])
    noise = np.array([[noise_variance]])
    model = StateSpaceModel(drift, diffusion, observation, noise)

    zero_2, zero_1 = np.zeros((2, 2)), np.zeros((1, 1))
    zero_h = np.zeros_like(observation)
    # d lam / d log_lengthscale = -lam; dq/dlam = 3 q / lam; dq / d log_magnitude = 2 q
    drift_dlam = np.array([[0.0, 0.0], [-2.0 * lam, -2.0]])
    derivatives = [
        StateSpaceModel(-lam * drift_dlam, np.array([[0.0, 0.0], [0.0, -3.0 * q]]), zero_h, zero_1),
        StateSpaceModel(zero_2, np.array([[0.0, 0.0], [0.0, 2.0 * q]]), zero_h, zero_1),
        StateSpaceModel(zero_2, zero_2, zero_h, 2.0 * noise),
    ]
    return model, derivatives


def _theta(theta):
    values = np.asarray(theta, dtype=float)
    if values.shape != (3,) or not np.all(np.isfinite(values)):
        raise InputError(f"theta must be 3 finite numbers {THETA_NAMES}, got {theta!r}")
    return (float(v) for v in values)


def _data(times, y):
    times = np.asarray(times, dtype=float)
    y = np.asarray(y, dtype=float)
    if times.ndim != 1 or times.size == 0:
        raise InputError(f"times must be a non-empty 1-D array, got shape {times.shape}")
    if y.shape != times.shape:
        raise InputError(f"y must have the shape of times {times.shape}, got {y.shape}")
    if not (np.all(np.isfinite(times)) and np.all(np.isfinite(y))):
        raise InputError("times and y must be finite (no NaN or inf)")
    if np.any(np.diff(times) < 0):
        raise InputError("times must be sorted in non-decreasing order (use np.argsort)")
    return times, y.reshape(-1, 1)


def log_likelihood(theta, times, y):
    """Exact log-likelihood by the Kalman filter, plain NumPy/SciPy (no rules).

    Parameters
    ----------
    theta : (3,) array_like
        ``(log lengthscale, log magnitude, log noise_sd)``.
    times : (N,) array_like
        Sorted observation times.
    y : (N,) array_like
        Observations.

    Returns
    -------
    float
        ``log p(y | theta)``.
    """
    model, _ = matern32_model(theta)
    times, observations = _data(times, y)
    H, R = model.observation, model.noise
    stationary = sla.solve_continuous_lyapunov(model.drift, -model.diffusion)
    mean = np.zeros(2)
    covariance = stationary
    total = 0.0
    for k in range(times.size):
        if k > 0:
            transition = sla.expm(model.drift * (times[k] - times[k - 1]))
            mean = transition @ mean
            covariance = (
                transition @ (covariance - stationary) @ transition.T + stationary
            )  # A P A^T + (P_inf - A P_inf A^T)
        residual = observations[k] - H @ mean
        innovation = H @ covariance @ H.T + R
        gain_t = np.linalg.solve(innovation, H @ covariance)
        total -= 0.5 * (
            residual.size * LOG_2PI
            + np.linalg.slogdet(innovation)[1]
            + residual @ np.linalg.solve(innovation, residual)
        )
        mean = mean + gain_t.T @ residual
        covariance = covariance - (H @ covariance).T @ gain_t
        covariance = 0.5 * (covariance + covariance.T)
    return float(total)


def log_likelihood_grad_forward(theta, times, y):
    """Log-likelihood and its gradient by forward mode (JVP rules, one sweep per parameter).

    Parameters
    ----------
    theta, times, y
        As in :func:`log_likelihood`.

    Returns
    -------
    value : float
    gradient : (3,) ndarray
    """
    model, derivatives = matern32_model(theta)
    times, observations = _data(times, y)
    H, R = model.observation, model.noise
    n_params = len(derivatives)

    stationary_dot = []
    for derivative in derivatives:
        stationary, tangent = dense.solve_continuous_lyapunov_jvp(
            model.drift, -model.diffusion, derivative.drift, -derivative.diffusion
        )
        stationary_dot.append(tangent)

    mean = np.zeros(2)
    covariance = stationary
    mean_dot = [np.zeros(2) for _ in range(n_params)]
    covariance_dot = list(stationary_dot)
    total = 0.0
    total_dot = np.zeros(n_params)
    for k in range(times.size):
        if k > 0:
            dt = times[k] - times[k - 1]
            predicted_mean_dot, predicted_covariance_dot = [], []
            transition = dense.expm(model.drift * dt)
            for i, derivative in enumerate(derivatives):
                if np.any(derivative.drift):
                    _, transition_dot = dense.expm_jvp(model.drift * dt, derivative.drift * dt)
                else:  # parameters that do not enter F leave the transition unchanged
                    transition_dot = np.zeros_like(transition)
                # P_pred = A (P - P_inf) A^T + P_inf, differentiated by the product rule
                deviation = covariance - stationary
                deviation_dot = covariance_dot[i] - stationary_dot[i]
                cross = transition_dot @ deviation @ transition.T
                predicted_covariance_dot.append(
                    cross + cross.T + transition @ deviation_dot @ transition.T + stationary_dot[i]
                )
                predicted_mean_dot.append(transition_dot @ mean + transition @ mean_dot[i])
            mean = transition @ mean
            covariance = transition @ (covariance - stationary) @ transition.T + stationary
            mean_dot, covariance_dot = predicted_mean_dot, predicted_covariance_dot

        residual = observations[k] - H @ mean
        projected = H @ covariance
        innovation = projected @ H.T + R
        for i, derivative in enumerate(derivatives):
            residual_dot = -(H @ mean_dot[i])
            projected_dot = H @ covariance_dot[i]
            innovation_dot = projected_dot @ H.T + derivative.noise
            logdet, logdet_dot = dense.logdet_jvp(innovation, innovation_dot)
            # one solve for both right-hand sides: S^{-1} [v, H P]
            solved, solved_dot = dense.solve_jvp(
                innovation,
                np.column_stack([residual, projected]),
                innovation_dot,
                np.column_stack([residual_dot, projected_dot]),
            )
            whitened, gain_t = solved[:, 0], solved[:, 1:]
            whitened_dot, gain_t_dot = solved_dot[:, 0], solved_dot[:, 1:]
            total_dot[i] -= 0.5 * (logdet_dot + residual_dot @ whitened + residual @ whitened_dot)
            mean_dot[i] = mean_dot[i] + gain_t_dot.T @ residual + gain_t.T @ residual_dot
            raw_dot = covariance_dot[i] - projected_dot.T @ gain_t - projected.T @ gain_t_dot
            covariance_dot[i] = 0.5 * (raw_dot + raw_dot.T)
        total -= 0.5 * (residual.size * LOG_2PI + logdet + residual @ whitened)
        mean = mean + gain_t.T @ residual
        covariance = covariance - projected.T @ gain_t
        covariance = 0.5 * (covariance + covariance.T)
    return float(total), total_dot


def log_likelihood_grad_reverse(theta, times, y):
    """Log-likelihood and its gradient by reverse mode (VJP rules, one backward sweep).

    Parameters
    ----------
    theta, times, y
        As in :func:`log_likelihood`.

    Returns
    -------
    value : float
    gradient : (3,) ndarray
    """
    model, derivatives = matern32_model(theta)
    times, observations = _data(times, y)
    H, R = model.observation, model.noise
    stationary, stationary_pullback = dense.solve_continuous_lyapunov_vjp(
        model.drift, -model.diffusion
    )

    # forward sweep: keep what the backward sweep needs
    tape = []
    mean = np.zeros(2)
    covariance = stationary
    total = 0.0
    for k in range(times.size):
        step = {}
        if k > 0:
            dt = times[k] - times[k - 1]
            transition, step["expm_pullback"] = dense.expm_vjp(model.drift * dt)
            step.update(dt=dt, transition=transition, mean=mean, covariance=covariance)
            mean = transition @ mean
            covariance = transition @ (covariance - stationary) @ transition.T + stationary
        residual = observations[k] - H @ mean
        projected = H @ covariance
        innovation = projected @ H.T + R
        logdet, step["logdet_pullback"] = dense.logdet_vjp(innovation)
        # one solve for both right-hand sides: S^{-1} [v, H P]
        solved, step["solve_pullback"] = dense.solve_vjp(
            innovation, np.column_stack([residual, projected])
        )
        whitened, gain_t = solved[:, 0], solved[:, 1:]
        step.update(residual=residual, projected=projected, whitened=whitened, gain_t=gain_t)
        tape.append(step)
        total -= 0.5 * (residual.size * LOG_2PI + logdet + residual @ whitened)
        mean = mean + gain_t.T @ residual
        covariance = covariance - projected.T @ gain_t
        covariance = 0.5 * (covariance + covariance.T)

    # backward sweep, total_bar = 1
    drift_bar = np.zeros_like(model.drift)
    stationary_bar = np.zeros_like(stationary)
    noise_bar = np.zeros_like(R)
    mean_bar = np.zeros(2)
    covariance_bar = np.zeros((2, 2))
    for k in range(times.size - 1, -1, -1):
        step = tape[k]
        residual, projected = step["residual"], step["projected"]
        whitened, gain_t = step["whitened"], step["gain_t"]
        # covariance = sym(predicted - projected^T gain_t)
        raw_bar = 0.5 * (covariance_bar + covariance_bar.T)
        predicted_covariance_bar = raw_bar.copy()
        projected_bar = -(gain_t @ raw_bar.T)
        gain_t_bar = -(projected @ raw_bar)
        # mean = predicted_mean + gain_t^T residual
        predicted_mean_bar = mean_bar.copy()
        gain_t_bar += np.outer(residual, mean_bar)
        residual_bar = gain_t @ mean_bar
        # total -= (logdet(S) + residual . whitened) / 2
        (innovation_bar,) = step["logdet_pullback"](-0.5)
        residual_bar += -0.5 * whitened
        innovation_from_solve, stacked_bar = step["solve_pullback"](
            np.column_stack([-0.5 * residual, gain_t_bar])
        )
        innovation_bar = innovation_bar + innovation_from_solve
        residual_bar += stacked_bar[:, 0]
        projected_bar += stacked_bar[:, 1:]
        # innovation = projected H^T + R; projected = H P_pred; residual = y - H m_pred
        projected_bar += innovation_bar @ H
        noise_bar += innovation_bar
        predicted_covariance_bar += H.T @ projected_bar
        predicted_mean_bar -= H.T @ residual_bar
        if k == 0:
            stationary_bar += predicted_covariance_bar
            continue
        # P_pred = A (P - P_inf) A^T + P_inf; m_pred = A m
        transition = step["transition"]
        deviation = step["covariance"] - stationary
        transition_bar = predicted_covariance_bar @ transition @ deviation.T
        transition_bar += predicted_covariance_bar.T @ transition @ deviation
        transition_bar += np.outer(predicted_mean_bar, step["mean"])
        deviation_bar = transition.T @ predicted_covariance_bar @ transition
        covariance_bar = deviation_bar
        stationary_bar += predicted_covariance_bar - deviation_bar
        mean_bar = transition.T @ predicted_mean_bar
        (exponent_bar,) = step["expm_pullback"](transition_bar)
        drift_bar += step["dt"] * exponent_bar

    drift_from_stationary, rhs_bar = stationary_pullback(stationary_bar)
    drift_bar += drift_from_stationary
    diffusion_bar = -rhs_bar
    gradient = np.array(
        [
            np.sum(drift_bar * d.drift)
            + np.sum(diffusion_bar * d.diffusion)
            + np.sum(noise_bar * d.noise)
            for d in derivatives
        ]
    )
    return float(total), gradient


def finite_difference_grad(theta, times, y, step=None):
    """Central finite-difference gradient of :func:`log_likelihood` (``2 * 3`` evaluations).

    Parameters
    ----------
    theta, times, y
        As in :func:`log_likelihood`.
    step : float, optional
        Step in each ``theta_i``; default ``eps**(1/3) * max(1, |theta_i|)``.

    Returns
    -------
    (3,) ndarray
    """
    theta = np.asarray(theta, dtype=float)
    gradient = np.empty_like(theta)
    for i in range(theta.size):
        h = step if step is not None else np.finfo(float).eps ** (1 / 3) * max(1, abs(theta[i]))
        shift = np.zeros_like(theta)
        shift[i] = h
        forward = log_likelihood(theta + shift, times, y)
        backward = log_likelihood(theta - shift, times, y)
        gradient[i] = (forward - backward) / (2.0 * h)
    return gradient


def matern32_covariance(theta, times):
    """Matérn-3/2 kernel matrix ``s^2 (1 + sqrt(3) r / l) exp(-sqrt(3) r / l)``."""
    log_lengthscale, log_magnitude, _ = _theta(theta)
    distance = np.abs(np.subtract.outer(times, times)) * math.sqrt(3.0)
    distance /= math.exp(log_lengthscale)
    return math.exp(2.0 * log_magnitude) * (1.0 + distance) * np.exp(-distance)


def dense_gp_log_likelihood(theta, times, y):
    """Reference ``log N(y | 0, K + noise^2 I)`` with the dense kernel matrix (O(N^3))."""
    times, observations = _data(times, y)
    y = observations.ravel()
    noise_variance = math.exp(2.0 * float(np.asarray(theta, dtype=float)[2]))
    covariance = matern32_covariance(theta, times) + noise_variance * np.eye(times.size)
    factor = np.linalg.cholesky(covariance)
    whitened = sla.solve_triangular(factor, y, lower=True)
    logdet = 2.0 * np.sum(np.log(np.diag(factor)))
    return float(-0.5 * (times.size * LOG_2PI + logdet + whitened @ whitened))


def simulate(theta, times, rng):
    """Draw ``y ~ N(0, K + noise^2 I)`` at the given times."""
    times = np.asarray(times, dtype=float)
    noise_variance = math.exp(2.0 * float(np.asarray(theta, dtype=float)[2]))
    covariance = matern32_covariance(theta, times) + noise_variance * np.eye(times.size)
    return np.linalg.cholesky(covariance) @ rng.standard_normal(times.size)


def _best_time(function, repeats):
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - start)
    return best, result


def main(n_obs=500, repeats=5, seed=0):
    """Simulate data, compare the three gradients and time them against finite differences.

    BLAS is limited to one thread: the matrices are 2 x 2, and OpenBLAS threads on a loaded
    machine slowed every small call ten-fold in our measurements.
    """
    with threadpool_limits(limits=1, user_api="blas"):
        return _compare(n_obs, repeats, seed)


def _compare(n_obs, repeats, seed):
    rng = np.random.default_rng(seed)
    times = np.sort(rng.uniform(0.0, 0.1 * n_obs, n_obs))
    truth = np.log([2.0, 1.5, 0.3])
    y = simulate(truth, times, rng)
    theta = np.log([1.0, 1.0, 0.5])

    t_value, value = _best_time(lambda: log_likelihood(theta, times, y), repeats)
    t_fd, grad_fd = _best_time(lambda: finite_difference_grad(theta, times, y), repeats)
    t_fwd, (value_fwd, grad_fwd) = _best_time(
        lambda: log_likelihood_grad_forward(theta, times, y), repeats
    )
    t_rev, (value_rev, grad_rev) = _best_time(
        lambda: log_likelihood_grad_reverse(theta, times, y), repeats
    )
    print(f"Matérn-3/2 state-space model, {n_obs} irregular observations")
    print(f"log-likelihood {value:.10f} (forward {value_fwd:.10f}, reverse {value_rev:.10f})")
    for name, g in (("finite differences", grad_fd), ("forward (JVP)", grad_fwd)):
        print(f"  gradient, {name:<18}: {np.array2string(g, precision=8)}")
    print(f"  gradient, {'reverse (VJP)':<18}: {np.array2string(grad_rev, precision=8)}")
    scale = np.max(np.abs(grad_rev))
    print(
        f"max |forward - reverse| / max|grad| = {np.max(np.abs(grad_fwd - grad_rev)) / scale:.1e}"
    )
    print(f"max |FD - reverse| / max|grad|      = {np.max(np.abs(grad_fd - grad_rev)) / scale:.1e}")
    print(f"times (best of {repeats}):")
    print(f"  log-likelihood alone          {1e3 * t_value:9.2f} ms")
    print(f"  central finite differences    {1e3 * t_fd:9.2f} ms  (6 evaluations)")
    print(
        f"  forward mode, exact           {1e3 * t_fwd:9.2f} ms  ratio FD / forward = "
        f"{t_fd / t_fwd:.2f}"
    )
    print(
        f"  reverse mode, exact           {1e3 * t_rev:9.2f} ms  ratio FD / reverse = "
        f"{t_fd / t_rev:.2f}"
    )
    return {
        "value": value,
        "grad_fd": grad_fd,
        "grad_forward": grad_fwd,
        "grad_reverse": grad_rev,
        "time_fd": t_fd,
        "time_forward": t_fwd,
        "time_reverse": t_rev,
    }


if __name__ == "__main__":
    main()
