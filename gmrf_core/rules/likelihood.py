"""Derivative rules for the likelihood terms of the Laplace objective and of the ELBO.

Both objectives reach the likelihood through the linear predictor η = Ã z + offset and the
likelihood's hyperparameters θ (a :class:`gmrf_core.likelihoods.Likelihood` gives the
exact derivatives: ``eta_derivatives`` ℓ', ℓ'', ℓ''' and ``theta_derivatives``
∂ℓ/∂θ, ∂ℓ'/∂θ, ∂ℓ''/∂θ, elementwise in η, 0 where y is missing):

* :func:`likelihood_jvp` / :func:`likelihood_vjp`: (η, θ) ↦ (ℓ, s, w) with
  ℓ = Σ_i log p(y_i | η_i, θ), s = ∂ℓ_i/∂η_i (the score, in ∇_z g = −Ãᵀ s + Q̃ r) and
  w = −∂²ℓ_i/∂η_i² (the weights of H = Q̃ + Ãᵀ diag(w) Ã). The Laplace gradient is
  built from its pullback: v = Ãᵀ η̄ for w̄ = ½ diag(Ã Σ_c Ãᵀ) (the weight cotangent of
  ½ log det H, :func:`gmrf_core.rules.sparse.weighted_logdet_vjp`), and the likelihood
  hyperparameters' gradient −ℓ_θ + w̄·w_θ + (Ãλ)·s_θ, λ = Σ_c v the adjoint of the mode
  (Rue, Martino & Chopin 2009; the implicit function theorem for z*(θ)).
* :func:`expected_likelihood_jvp` / :func:`expected_likelihood_vjp`: (m, v, θ) ↦
  E[Σ_i log p(y_i | η_i, θ)] for independent η_i ~ N(m_i, v_i), by Gauss–Hermite
  quadrature, with m̄ = E[ℓ'], v̄ = ½ E[ℓ''] (Bonnet 1964; Price 1958) and
  θ̄ = E[∂ℓ/∂θ]: the ELBO's θ-gradient and the natural-gradient (CVI) targets
  (Khan & Lin 2017) are its cotangents.

Conventions as in :mod:`gmrf_core.rules.sparse`: ``<op>_jvp(primals, tangents)``,
``<op>_vjp(primals) -> (out, pullback)``; a None tangent or cotangent is zero; the
likelihood (and the number of quadrature points) are keyword arguments, not primals.
"""

import math
from functools import lru_cache

import numpy as np
from numpy.polynomial.hermite_e import hermegauss

from ..errors import InputError
from .sparse import _scalar_bar, _vector

__all__ = [
    "gauss_hermite",
    "likelihood_jvp",
    "likelihood_vjp",
    "expected_likelihood",
    "expected_likelihood_jvp",
    "expected_likelihood_vjp",
]


def _theta(likelihood, theta):
    theta = np.asarray(theta, dtype=np.float64).reshape(-1)
    if theta.shape != np.shape(likelihood.theta0):
        raise InputError(
            f"theta must have the likelihood's {np.size(likelihood.theta0)} entries; "
            f"got shape {theta.shape}."
        )
    return theta


def _tangent(value, size, name):
    return None if value is None else _vector(value, size, name)


# -- (η, θ) ↦ (ℓ, s, w) ---------------------------------------------------------------------


class _Derivatives:
    """ℓ', ℓ'', ℓ''' at (η, θ) (computed with the primal) and the θ-derivatives (on demand,
    once)."""

    def __init__(self, likelihood, eta, theta):
        self.likelihood, self.eta, self.theta = likelihood, eta, theta
        self.d1, self.d2, self.d3 = likelihood.eta_derivatives(eta, theta)
        self._theta_derivatives = None

    def of_theta(self):
        if self._theta_derivatives is None:
            self._theta_derivatives = self.likelihood.theta_derivatives(self.eta, self.theta)
        return self._theta_derivatives


def _likelihood_primal(likelihood, eta, theta, value=True):
    eta = np.asarray(eta, dtype=np.float64)
    theta = _theta(likelihood, theta)
    derivatives = _Derivatives(likelihood, eta, theta)
    ll = likelihood.log_density(eta, theta) if value else None
    return eta, theta, derivatives, (ll, derivatives.d1, -derivatives.d2)


def likelihood_jvp(eta, theta, eta_dot, theta_dot, *, likelihood):
    """Forward rule of (ℓ, s, w) = (Σ_i log p(y_i | η_i, θ), ℓ'(η), −ℓ''(η)).

    ℓ̇ = ℓ'·η̇ + ℓ_θ·θ̇,  ṡ = ℓ'' ⊙ η̇ + Σ_j θ̇_j ∂ℓ'/∂θ_j,
    ẇ = −ℓ''' ⊙ η̇ − Σ_j θ̇_j ∂ℓ''/∂θ_j  (observation i depends on η_i only).

    Parameters
    ----------
    eta : array (m,)
    theta : array (p,)
        The likelihood's hyperparameters (internal scale).
    eta_dot : array (m,) or None
    theta_dot : array (p,) or None
    likelihood : gmrf_core.likelihoods.Likelihood

    Returns
    -------
    ((ll, s, w), (ll_dot, s_dot, w_dot))
    """
    eta, theta, derivatives, out = _likelihood_primal(likelihood, eta, theta)
    eta_dot = _tangent(eta_dot, eta.size, "eta_dot")
    theta_dot = _tangent(theta_dot, theta.size, "theta_dot")
    ll_dot, s_dot, w_dot = 0.0, np.zeros(eta.size), np.zeros(eta.size)
    if eta_dot is not None:
        ll_dot += float(derivatives.d1 @ eta_dot)
        s_dot += derivatives.d2 * eta_dot
        w_dot -= derivatives.d3 * eta_dot
    if theta_dot is not None and theta.size:
        g, g_eta, g_eta2 = derivatives.of_theta()
        ll_dot += float(g @ theta_dot)
        s_dot += theta_dot @ g_eta
        w_dot -= theta_dot @ g_eta2
    return out, (ll_dot, s_dot, w_dot)


def likelihood_vjp(eta, theta, *, likelihood, value=True):
    """Reverse rule of (ℓ, s, w) (see :func:`likelihood_jvp`).

    η̄ = ℓ̄ ℓ' + s̄ ⊙ ℓ'' − w̄ ⊙ ℓ''',  θ̄_j = ℓ̄ ∂ℓ/∂θ_j + s̄·∂ℓ'/∂θ_j − w̄·∂ℓ''/∂θ_j.
    The θ-derivatives are computed once, on the first pullback that needs them.
    ``value=False`` skips ℓ (then None): the Laplace gradient has it from Newton.

    Returns
    -------
    ((ll, s, w), pullback) : pullback((ll_bar, s_bar, w_bar)) -> (eta_bar, theta_bar);
    any of the three cotangents may be None (zero).
    """
    eta, theta, derivatives, out = _likelihood_primal(likelihood, eta, theta, value)

    def likelihood_pullback(out_bar):
        ll_bar, s_bar, w_bar = out_bar
        ll_bar = 0.0 if ll_bar is None else _scalar_bar(ll_bar)
        s_bar = _tangent(s_bar, eta.size, "s_bar")
        w_bar = _tangent(w_bar, eta.size, "w_bar")
        eta_bar = ll_bar * derivatives.d1 if ll_bar else np.zeros(eta.size)
        if s_bar is not None:
            eta_bar = eta_bar + s_bar * derivatives.d2
        if w_bar is not None:
            eta_bar = eta_bar - w_bar * derivatives.d3
        theta_bar = np.zeros(theta.size)
        if theta.size:
            g, g_eta, g_eta2 = derivatives.of_theta()
            theta_bar += ll_bar * g
            if s_bar is not None:
                theta_bar += g_eta @ s_bar
            if w_bar is not None:
                theta_bar -= g_eta2 @ w_bar
        return eta_bar, theta_bar

    return out, likelihood_pullback


# -- (m, v, θ) ↦ E[ℓ(η; θ)], η_i ~ N(m_i, v_i) ------------------------------------------------


@lru_cache(maxsize=16)
def gauss_hermite(points):
    """Nodes and weights for E[f(Z)], Z ~ N(0, 1) (probabilists' Hermite, weights sum to 1)."""
    nodes, weights = hermegauss(points)
    return nodes, weights / math.sqrt(2.0 * math.pi)


def _expected_primal(mean, var, theta, likelihood, points):
    mean = np.asarray(mean, dtype=np.float64)
    var = _vector(var, mean.size, "var")
    if np.any(var < 0):
        raise InputError("var must be non-negative (variances of the linear predictor).")
    theta = _theta(likelihood, theta)
    nodes, weights = gauss_hermite(int(points))
    return mean, np.sqrt(var), theta, nodes, weights


def expected_likelihood(mean, var, theta, *, likelihood, points):
    """E[Σ_i log p(y_i | η_i, θ)] for independent η_i ~ N(m_i, v_i): Σ_t w_t ℓ(m + x_t √v; θ)
    with ``points`` Gauss–Hermite nodes x_t and weights w_t."""
    mean, sd, theta, nodes, weights = _expected_primal(mean, var, theta, likelihood, points)
    return _expected_value(likelihood, mean, sd, theta, nodes, weights)


def _expected_value(likelihood, mean, sd, theta, nodes, weights):
    total = 0.0
    for t, w in zip(nodes, weights):
        total += w * likelihood.log_density(mean + t * sd, theta)
    return total


def _expected_cotangents(likelihood, mean, sd, theta, nodes, weights, of_eta=True, of_theta=True):
    """(E[ℓ'], E[ℓ''], E[∂ℓ/∂θ]) by the same quadrature (None for a part not asked for)."""
    e1 = e2 = e_theta = None
    if of_eta:
        e1 = np.zeros(mean.size)
        e2 = np.zeros(mean.size)
    if of_theta:
        e_theta = np.zeros(theta.size)
        of_theta = theta.size > 0
    for t, w in zip(nodes, weights):
        eta = mean + t * sd
        if of_eta:
            d1, d2, _d3 = likelihood.eta_derivatives(eta, theta)
            e1 += w * d1
            e2 += w * d2
        if of_theta:
            e_theta += w * likelihood.theta_derivatives(eta, theta)[0]
    return e1, e2, e_theta


def expected_likelihood_jvp(mean, var, theta, mean_dot, var_dot, theta_dot, *, likelihood, points):
    """Forward rule of :func:`expected_likelihood`.

    ẏ = E[ℓ']·ṁ + ½ E[ℓ'']·v̇ + E[∂ℓ/∂θ]·θ̇ (Bonnet's and Price's theorems,
    ∂E[f]/∂m = E[f'], ∂E[f]/∂v = ½ E[f'']), each expectation by the same quadrature:
    the derivatives of the exact expectation, which those of the quadrature sum approach
    as the number of points grows.
    """
    mean, sd, theta, nodes, weights = _expected_primal(mean, var, theta, likelihood, points)
    mean_dot = _tangent(mean_dot, mean.size, "mean_dot")
    var_dot = _tangent(var_dot, mean.size, "var_dot")
    theta_dot = _tangent(theta_dot, theta.size, "theta_dot")
    y = _expected_value(likelihood, mean, sd, theta, nodes, weights)
    e1, e2, e_theta = _expected_cotangents(likelihood, mean, sd, theta, nodes, weights)
    y_dot = 0.0
    if mean_dot is not None:
        y_dot += float(e1 @ mean_dot)
    if var_dot is not None:
        y_dot += 0.5 * float(e2 @ var_dot)
    if theta_dot is not None:
        y_dot += float(e_theta @ theta_dot)
    return y, y_dot


def expected_likelihood_vjp(
    mean, var, theta, *, likelihood, points, value=True, wrt=("mean", "var", "theta")
):
    """Reverse rule of :func:`expected_likelihood`: m̄ = ȳ E[ℓ'], v̄ = ½ ȳ E[ℓ''],
    θ̄ = ȳ E[∂ℓ/∂θ] (see :func:`expected_likelihood_jvp`).

    ``value=False`` skips the primal (then y is None), and ``wrt`` names the cotangents
    the pullback computes (the others come back as None, not computed): the
    natural-gradient step needs m̄ and v̄ at a q whose ELBO it already has, the ELBO's
    θ-gradient only θ̄.

    Returns
    -------
    (y, pullback) : pullback(y_bar) -> (mean_bar, var_bar, theta_bar)
    """
    unknown = set(wrt) - {"mean", "var", "theta"}
    if unknown:
        raise InputError(f"wrt names 'mean', 'var' and 'theta' only; got {sorted(unknown)}.")
    mean, sd, theta, nodes, weights = _expected_primal(mean, var, theta, likelihood, points)
    y = _expected_value(likelihood, mean, sd, theta, nodes, weights) if value else None
    cache = []

    def expected_likelihood_pullback(y_bar):
        y_bar = _scalar_bar(y_bar)
        if not cache:
            of_eta = "mean" in wrt or "var" in wrt
            cache.append(
                _expected_cotangents(
                    likelihood, mean, sd, theta, nodes, weights, of_eta, "theta" in wrt
                )
            )
        e1, e2, e_theta = cache[0]
        return (
            y_bar * e1 if "mean" in wrt else None,
            0.5 * y_bar * e2 if "var" in wrt else None,
            y_bar * e_theta if "theta" in wrt else None,
        )

    return y, expected_likelihood_pullback
