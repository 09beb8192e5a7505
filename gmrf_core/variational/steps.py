"""Natural-gradient (CVI) steps on q and the ascent loop that maximises the ELBO at fixed θ.

The loop (:func:`optimize_q`) takes an :class:`AscentMethod`: :class:`NaturalGradient`
here; the plain-gradient baseline of ``bench/plain_gradient.py`` is another method for
the same loop.
"""

import time
from dataclasses import dataclass, field

import numpy as np

from ..errors import ConvergenceError, InputError, NotPositiveDefiniteError
from .elbo import (
    DEFAULT_QUADRATURE,
    _check_arguments,
    _check_quadrature,
    _elbo_state,
    _expected_eta_derivatives,
)
from .q import (
    VariationalGaussian,
    _assemble,
    _check_model,
    _check_q,
    _check_step,
    _on_pattern,
    _prior_parts,
    initial_q,
)

__all__ = [
    "natural_gradient_step",
    "QOptimizeResult",
    "AscentMethod",
    "NaturalGradient",
    "optimize_q",
]


# -- natural-gradient step --------------------------------------------------------------------
def natural_gradient_step(model, theta, q, step=1.0, *, quadrature=DEFAULT_QUADRATURE):
    """One natural-gradient (CVI) step on q at θ -> a new :class:`VariationalGaussian`.

    Parameters
    ----------
    model : LatentGaussianModel
    theta : array_like
        Hyperparameters (internal scale).
    q : VariationalGaussian
        The current distribution (not modified).
    step : float in (0, 1]
        ρ: the fraction of the way to the conjugate target (ρ = 1: the full step,
        exact for Gaussian observations).
    quadrature : int
        Gauss–Hermite points.

    Returns
    -------
    VariationalGaussian

    Raises
    ------
    InputError
        Wrong θ, a q of another model, ``step`` outside (0, 1].
    ConvergenceError
        The expected curvature −E[ℓ''] is negative (a likelihood that is not log-concave
        in η) or the expectations are not finite.
    NotPositiveDefiniteError
        The new Λ is not positive definite.

    Notes
    -----
    Khan & Lin (2017), eq. 10: λ ← (1−ρ)λ + ρ(−E[ℓ'']),
    γ ← (1−ρ)γ + ρ(E[ℓ'] − E[ℓ''](E[η] − offset)), base ← (1−ρ) base + ρ prior(θ).
    """
    points = _check_arguments(model, q, quadrature)
    rho = _check_step(step)
    structure = model.structure
    split = structure.split_theta(theta)
    theta, theta_lik = split.full, split.likelihood
    Q_tilde, mu = _prior_parts(structure, split.prior)
    e1, e2 = _expected_eta_derivatives(model, q, theta_lik, points)
    lam_target = -e2
    scale = max(1.0, float(np.max(np.abs(lam_target))) if lam_target.size else 1.0)
    if np.any(lam_target < -1e-12 * scale):
        index = int(np.argmin(lam_target))
        raise ConvergenceError(
            f"the expected curvature −E[ℓ''] is negative ({lam_target[index]:.3g} at "
            f"observation {index}); natural-gradient steps in site form need a likelihood "
            "that is log-concave in η."
        )
    lam_target = np.maximum(lam_target, 0.0)
    gam_target = e1 + lam_target * (q.predictor_mean - model.offset)
    lam = (1.0 - rho) * q.site_precision + rho * lam_target
    gam = (1.0 - rho) * q.site_linear + rho * gam_target
    # at an unchanged θ the base part is the prior already: keep it bit for bit
    if np.array_equal(q.base_precision.data, Q_tilde.data):
        base_precision = q.base_precision
    else:
        base_data = (1.0 - rho) * q.base_precision.data + rho * Q_tilde.data
        base_precision = _on_pattern(Q_tilde, base_data)
    prior_linear = Q_tilde @ mu
    if np.array_equal(q.base_linear, prior_linear):
        base_linear = q.base_linear
    else:
        base_linear = (1.0 - rho) * q.base_linear + rho * prior_linear
    return _assemble(model, theta, base_precision, base_linear, lam, gam)


# -- optimising q at fixed θ --------------------------------------------------------------------
@dataclass
class QOptimizeResult:
    """Result of :func:`optimize_q`.

    Attributes
    ----------
    q : VariationalGaussian
        The final distribution.
    elbo : float
        Its ELBO.
    nit : int
        Accepted steps.
    converged : bool
    message : str
    history : list of (iteration, elbo, step size, seconds)
    """

    q: VariationalGaussian
    elbo: float
    nit: int
    converged: bool
    message: str
    history: list = field(default_factory=list)


def _relative_change(old, new):
    dm = np.max(np.abs(new.mean - old.mean)) / (1.0 + np.max(np.abs(old.mean)))
    if old.site_precision.size:
        dl = np.max(np.abs(new.site_precision - old.site_precision)) / (
            1.0 + np.max(np.abs(old.site_precision))
        )
    else:
        dl = 0.0
    return float(max(dm, dl))


class AscentMethod:
    """How :func:`optimize_q` proposes and accepts steps on q (subclass to add methods).

    ``check_step(step)`` validates the initial step size; ``prepare(model, theta, q,
    points)`` is called before each iteration and returns (state, converged message or
    None); ``propose(model, theta, q, rate, state, points)`` returns a new q;
    ``accepts(value, new_value, rate, state)`` decides; ``next_rate(rate, step)`` gives
    the step size after an accepted step; ``converged(change, tol)`` tests the relative
    change of (m, λ) per unit step (None: never by change).
    """

    name = "method"

    def check_step(self, step):  # pragma: no cover - abstract
        raise NotImplementedError

    def prepare(self, model, theta, q, points):
        return None, None

    def propose(self, model, theta, q, rate, state, points):  # pragma: no cover - abstract
        raise NotImplementedError

    def accepts(self, value, new_value, rate, state):  # pragma: no cover - abstract
        raise NotImplementedError

    def next_rate(self, rate, step):
        return rate

    def converged(self, change, tol):
        return None


class NaturalGradient(AscentMethod):
    """Natural-gradient (CVI) steps: ρ in (0, 1], halved on a step that lowers the ELBO
    (beyond rounding, 1e-12 relative) or fails to factorise, doubled back (at most the
    initial ρ) after an accepted step; converged when the relative change of (m, λ)
    divided by ρ is below ``tol``."""

    name = "natural"

    def check_step(self, step):
        return _check_step(step)

    def propose(self, model, theta, q, rate, state, points):
        return natural_gradient_step(model, theta, q, rate, quadrature=points)

    def accepts(self, value, new_value, rate, state):
        return bool(np.isfinite(new_value) and new_value >= value - 1e-12 * max(1.0, abs(value)))

    def next_rate(self, rate, step):
        return min(step, 2.0 * rate)

    def converged(self, change, tol):
        return f"relative change {change:.3e} ≤ tol" if change <= tol else None


def optimize_q(
    model,
    theta,
    q=None,
    *,
    method="natural",
    step=1.0,
    tol=1e-9,
    maxiter=500,
    max_time=None,
    quadrature=DEFAULT_QUADRATURE,
    callback=None,
):
    """Maximise the ELBO over q at fixed θ.

    ``method="natural"`` (:class:`NaturalGradient`): natural-gradient steps, ρ starting
    at ``step``; a step that lowers the ELBO (beyond rounding, 1e-12 relative) or fails
    to factorise is rejected and retried with ρ/2, and after an accepted step ρ grows
    back (×2, at most ``step``), so the ELBO never decreases. Converged when the
    accepted step's relative change of (m, λ), divided by ρ, is below ``tol`` (for ρ = 1
    the distance to the fixed point of the iteration). Any other
    :class:`AscentMethod` instance runs in the same loop (the plain-gradient baseline of
    ``bench/plain_gradient.py`` does).

    Parameters
    ----------
    model : LatentGaussianModel
    theta : array_like
    q : VariationalGaussian, optional
        Starting point; ``initial_q(model, theta)`` by default.
    method : "natural" or AscentMethod
    step : float
        Initial (and largest) ρ in (0, 1] for natural gradients.
    tol : float
    maxiter : int
        Accepted steps at most.
    max_time : float, optional
        Stop after this many seconds (``converged=False``).
    quadrature : int
    callback : callable, optional
        ``callback(iteration, q, elbo)`` after every accepted step; returning True stops.

    Returns
    -------
    QOptimizeResult

    Raises
    ------
    InputError
        Bad arguments.
    ConvergenceError
        No ascent step could be found (the step size fell below 1e-12 of its start).
    """
    _check_model(model)
    if method == "natural":
        method = NaturalGradient()
    if not isinstance(method, AscentMethod):
        raise InputError(f"method must be 'natural' or an AscentMethod; got {method!r}.")
    step = method.check_step(step)
    try:
        tol = float(tol)
    except (TypeError, ValueError) as exc:
        raise InputError(f"tol must be a positive number; got {tol!r}.") from exc
    if not (np.isfinite(tol) and tol > 0):
        raise InputError(f"tol must be positive; got {tol!r}.")
    if max_time is not None and not (isinstance(max_time, (int, float)) and max_time > 0):
        raise InputError(f"max_time must be a positive number of seconds; got {max_time!r}.")
    if not (isinstance(maxiter, (int, np.integer)) and maxiter >= 0):
        raise InputError(f"maxiter must be a non-negative integer; got {maxiter!r}.")
    points = _check_quadrature(quadrature)
    theta = model.structure.split_theta(theta).full
    if q is None:
        q = initial_q(model, theta)
    _check_q(model, q)
    start = time.perf_counter()
    value = float(_elbo_state(model, theta, q, points)["value"])
    history = [(0, value, step, 0.0)]
    rate = step
    iteration = 0
    converged = False
    message = f"reached maxiter = {maxiter}"
    while iteration < maxiter:
        if max_time is not None and time.perf_counter() - start > max_time:
            message = f"stopped after max_time = {max_time} s"
            break
        state, done = method.prepare(model, theta, q, points)
        if done is not None:
            converged, message = True, done
            break
        accepted = False
        while rate >= 1e-12 * step:
            try:
                new = method.propose(model, theta, q, rate, state, points)
                new_value = float(_elbo_state(model, theta, new, points)["value"])
            except (NotPositiveDefiniteError, ConvergenceError):
                rate *= 0.5
                continue
            accepted = method.accepts(value, new_value, rate, state)
            if accepted:
                break
            rate *= 0.5
        if not accepted:
            raise ConvergenceError(
                f"{method.name} steps found no ascent direction at iteration {iteration + 1} "
                f"(step size fell below {1e-12 * step:.1e}); ELBO {value:.10g}."
            )
        iteration += 1
        change = _relative_change(q, new) / rate
        q, value = new, new_value
        history.append((iteration, value, rate, time.perf_counter() - start))
        stop = callback is not None and bool(callback(iteration, q, value))
        rate = method.next_rate(rate, step)
        done = method.converged(change, tol)
        if done is not None:
            converged, message = True, done
            break
        if stop:
            message = "stopped by callback"
            break
    return QOptimizeResult(
        q=q, elbo=value, nit=iteration, converged=converged, message=message, history=history
    )
