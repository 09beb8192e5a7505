"""Plain (Euclidean) gradient ascent on q's (m, λ): the baseline for natural gradients.

Moved out of :mod:`gmrf_core.variational` (it is a benchmark reference, not a library
method); ``bench/compare_variational.py`` and the tests use it through
:class:`PlainGradient`, an :class:`~gmrf_core.variational.AscentMethod` for
:func:`~gmrf_core.variational.optimize_q`.

:func:`gradient_ascent_step` moves (m, λ) along the
Euclidean gradient of L (projected onto the constraint surface)::

    ∂L/∂m = Ãᵀ E[ℓ'] − Q̃ (m − μ̃),
    ∂L/∂λ_i = −½ ã_iᵀ Σ_c (Ãᵀ diag(E[ℓ''] + λ) Ã + Q̃_b − Q̃) Σ_c ã_i
            = ½ d/dt v_i(Λ + t (Ãᵀ diag(E[ℓ''] + λ) Ã + Q̃_b − Q̃)) at t = 0

(dΣ_c = −Σ_c dΛ Σ_c). The λ-part needs off-diagonal entries of Ã Σ_c Ãᵀ, so it is
taken as the directional derivative of the selected inverse by central differences
(two extra factorisations; about 1e-8 relative accuracy
 for well-conditioned Λ). It is the reference that
natural gradients are compared with, not an exact derivative.

With :class:`PlainGradient`, :func:`~gmrf_core.variational.optimize_q` backtracks the
learning rate α (start ``step``, halved until the ELBO rises by the Armijo amount
1e-4·α·|∇|², doubled after each accepted step) and stops when |∇L|∞ ≤ ``tol``.
"""

import numpy as np

from gmrf_core.errors import InputError
from gmrf_core.variational import DEFAULT_QUADRATURE, AscentMethod, optimize_q
from gmrf_core.variational.elbo import _check_quadrature, _expected_eta_derivatives
from gmrf_core.variational.q import (
    _assemble,
    _check_model,
    _check_q,
    _on_pattern,
    _prior_parts,
    _site_matvec,
)

__all__ = ["elbo_grad_q", "gradient_ascent_step", "PlainGradient", "optimize_q_plain"]

# Relative size of the perturbation of Λ in the central difference of the site-precision
# gradient: truncation error ~ δ², rounding ~ ε/δ.
_FD_RELATIVE_STEP = 1e-4


def elbo_grad_q(model, theta, q, *, quadrature=DEFAULT_QUADRATURE):
    """Euclidean gradient of the ELBO in q's (m, λ) parameterisation.

    ∂L/∂m = Ãᵀ E[ℓ'] − Q̃ (m − μ̃), projected orthogonally onto the constraint
    surface; ∂L/∂λ as in the module docstring, the directional derivative of the
    predictor variances taken by central differences (two extra factorisations of Λ).

    Returns
    -------
    grad_mean : numpy.ndarray, shape (n_total,)
    grad_site_precision : numpy.ndarray, shape (n_obs,)
        (0 at missing observations.)

    Raises
    ------
    InputError
        As :func:`elbo`.
    """
    _check_model(model)
    _check_q(model, q)
    points = _check_quadrature(quadrature)
    structure = model.structure
    split = structure.split_theta(theta)
    Q_tilde, mu = _prior_parts(structure, split.prior)
    e1, e2 = _expected_eta_derivatives(model, q, split.likelihood, points)
    grad_mean = model.A_full.T @ e1 - Q_tilde @ (q.mean - mu)
    grad_mean = structure.feasible(q.mean + grad_mean) - structure.feasible(q.mean)
    site_direction = e2 + q.site_precision
    base_direction = q.base_precision.data - Q_tilde.data
    a_abs = abs(model.A_full)
    direction_size = float(
        np.max(a_abs.T @ (np.abs(site_direction) * np.asarray(a_abs.sum(axis=1)).ravel()))
    )
    if base_direction.size:
        direction_size += float(np.max(np.abs(base_direction)))
    if direction_size == 0.0:
        return grad_mean, np.zeros(model.n_obs)
    diag_precision = q.base_precision.diagonal() + (a_abs.power(2)).T @ q.site_precision
    t = _FD_RELATIVE_STEP * float(np.max(np.abs(diag_precision))) / direction_size
    variances = []
    for sign in (1.0, -1.0):
        base = _on_pattern(Q_tilde, q.base_precision.data + sign * t * base_direction)
        lam = q.site_precision + sign * t * site_direction
        with structure.hessian_pool.borrow() as item:
            variances.append(structure.predictor_variance(structure.factorize(item, base, lam)))
    grad_lam = 0.25 * (variances[0] - variances[1]) / t
    return grad_mean, np.where(model.likelihood.observed, grad_lam, 0.0)


def gradient_ascent_step(model, theta, q, learning_rate, *, quadrature=DEFAULT_QUADRATURE):
    """One plain (Euclidean) gradient-ascent step on (m, λ) -> a new :class:`VariationalGaussian`.

    m ← m + α ∂L/∂m (on the constraint surface), λ ← max(λ + α ∂L/∂λ, 0); the base
    precision and γ are kept, b_b is set so that Λ m = b_b + Ãᵀγ. The baseline that
    natural gradients are compared with (see :func:`elbo_grad_q`).

    Parameters
    ----------
    learning_rate : float
        α > 0.

    Raises
    ------
    InputError
        As :func:`elbo`, or a learning rate that is not finite and positive.
    """
    _check_model(model)
    _check_q(model, q)
    try:
        alpha = float(learning_rate)
    except (TypeError, ValueError) as exc:
        raise InputError(
            f"learning_rate must be a positive number; got {learning_rate!r}."
        ) from exc
    if not (np.isfinite(alpha) and alpha > 0.0):
        raise InputError(f"learning_rate must be finite and positive; got {learning_rate!r}.")
    grad_mean, grad_lam = elbo_grad_q(model, theta, q, quadrature=quadrature)
    return _gradient_update(model, theta, q, grad_mean, grad_lam, alpha)


def _gradient_update(model, theta, q, grad_mean, grad_lam, alpha):
    theta = model.structure.split_theta(theta).full
    mean = model.structure.feasible(q.mean + alpha * grad_mean)
    lam = np.maximum(q.site_precision + alpha * grad_lam, 0.0)
    base_linear = (
        q.base_precision @ mean + _site_matvec(model, lam, mean) - model.A_full.T @ q.site_linear
    )
    return _assemble(
        model, theta, q.base_precision, base_linear, lam, q.site_linear.copy(), mean=mean
    )


class PlainGradient(AscentMethod):
    """Plain gradient ascent on (m, λ) with a backtracking (Armijo) learning rate."""

    name = "gradient"

    def check_step(self, step):
        step = float(step)
        if not (np.isfinite(step) and step > 0):
            raise InputError(f"step (learning rate) must be positive; got {step!r}.")
        return step

    def prepare(self, model, theta, q, points):
        grad = elbo_grad_q(model, theta, q, quadrature=points)
        grad_norm = max(np.max(np.abs(grad[0])), np.max(np.abs(grad[1]), initial=0.0))
        self._tol_norm = grad_norm
        return grad, None

    def propose(self, model, theta, q, rate, state, points):
        return _gradient_update(model, theta, q, state[0], state[1], rate)

    def accepts(self, value, new_value, rate, state):
        gain = 1e-4 * rate * (float(state[0] @ state[0]) + float(state[1] @ state[1]))
        return bool(np.isfinite(new_value) and new_value >= value + gain)

    def next_rate(self, rate, step):
        return 2.0 * rate


class _PlainGradientTol(PlainGradient):
    def __init__(self, tol):
        self.tol = tol

    def prepare(self, model, theta, q, points):
        grad, _ = super().prepare(model, theta, q, points)
        if self._tol_norm <= self.tol:
            return grad, f"|∇L|∞ = {self._tol_norm:.3e} ≤ tol"
        return grad, None


def optimize_q_plain(model, theta, q=None, *, step=1e-2, tol=1e-9, **options):
    """:func:`~gmrf_core.variational.optimize_q` with plain gradient steps (converged when
    |∇L|∞ ≤ ``tol``)."""
    return optimize_q(model, theta, q, method=_PlainGradientTol(tol), step=step, tol=tol, **options)
