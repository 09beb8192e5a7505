"""Expectations under q (Gauss–Hermite), the ELBO with every constant, its θ-gradient.

The prior terms of −ELBO at fixed q are those of the Laplace objective at fixed
(z*, Σ_c): both gradients come from :func:`gmrf_core.latent.prior_partials` (built from
the rules of :mod:`gmrf_core.rules.sparse`). The likelihood term E_q[ℓ] and its
derivatives are :func:`gmrf_core.rules.likelihood.expected_likelihood` and its pullback:
θ̄ = E_q[∂ℓ/∂θ] for the θ-gradient, m̄ = E_q[ℓ'] and v̄ = ½E_q[ℓ''] for the
natural-gradient step.
"""

import numpy as np

from ..errors import ConvergenceError, InputError
from ..latent import prior_partials
from ..rules import likelihood as likelihood_rules
from .q import _check_model, _check_q, _constraint_count, _prior_parts

__all__ = ["DEFAULT_QUADRATURE", "elbo", "elbo_and_grad_theta", "elbo_grad_theta"]

DEFAULT_QUADRATURE = 20


# -- quadrature -------------------------------------------------------------------------
def _check_quadrature(points):
    if isinstance(points, (bool, np.bool_)) or not isinstance(points, (int, np.integer)):
        raise InputError(f"quadrature must be an integer number of points; got {points!r}.")
    if not 1 <= points <= 200:
        raise InputError(f"quadrature must be between 1 and 200 points; got {points}.")
    return int(points)


def _check_arguments(model, q, quadrature):
    """Validate (model, q, quadrature) of an ELBO call -> the number of quadrature points."""
    _check_model(model)
    _check_q(model, q)
    return _check_quadrature(quadrature)


# -- expectations under q: the rules of gmrf_core.rules.likelihood -----------------------------
def _expected_cotangents(model, q, theta_lik, points, wrt):
    """The cotangents ``wrt`` of E_q[ℓ] for ȳ = 1 (mean: E_q[ℓ'], var: ½E_q[ℓ''], theta:
    E_q[∂ℓ/∂θ]) from :func:`~gmrf_core.rules.likelihood.expected_likelihood_vjp`."""
    _y, pullback = likelihood_rules.expected_likelihood_vjp(
        q.predictor_mean,
        q._eta_variance,
        theta_lik,
        likelihood=model.likelihood,
        points=points,
        value=False,
        wrt=wrt,
    )
    return pullback(1.0)


def _expected_eta_derivatives(model, q, theta_lik, points):
    """E_q[ℓ_i'(η_i)] and E_q[ℓ_i''(η_i)]: the mean and (twice the) variance cotangents of
    the expected log-likelihood."""
    e1, half_e2, _theta_bar = _expected_cotangents(model, q, theta_lik, points, ("mean", "var"))
    e2 = 2.0 * half_e2
    if not (np.all(np.isfinite(e1)) and np.all(np.isfinite(e2))):
        raise ConvergenceError(
            "the expected likelihood derivatives under q are not finite (the linear "
            "predictor's variance or mean is too large); start from init='laplace' or use a "
            "smaller step."
        )
    return e1, e2


def _expected_log_likelihood(model, q, theta_lik, points):
    return likelihood_rules.expected_likelihood(
        q.predictor_mean, q._eta_variance, theta_lik, likelihood=model.likelihood, points=points
    )


def _expected_theta_derivatives(model, q, theta_lik, points):
    """E_q[∂ℓ/∂θ]: the θ-cotangent of the expected log-likelihood."""
    return _expected_cotangents(model, q, theta_lik, points, ("theta",))[2]


# -- the ELBO and its θ-gradient -------------------------------------------------------------
def _elbo_state(model, theta, q, points, *, keep_prior_logdet=False):
    """The ELBO's parts at θ for fixed q. With ``keep_prior_logdet`` the caller gets the
    open :class:`~gmrf_core.latent.PriorLogdet` (for its gradient) and must close it."""
    structure = model.structure
    theta = structure.split_theta(theta)
    Q_tilde, mu = _prior_parts(structure, theta.prior)
    r = q.mean - mu
    Qr = Q_tilde @ r
    trace = float(structure.prior_traces(q.constrained, [Q_tilde.data])[0])
    dim = model.n_total - _constraint_count(structure)
    prior_logdet = structure.prior_logdet(theta.prior, Q_tilde)
    try:
        kl = 0.5 * (trace + float(r @ Qr) - dim + q.logdet - prior_logdet.value)
        expected = _expected_log_likelihood(model, q, theta.likelihood, points)
    finally:
        if not keep_prior_logdet:
            prior_logdet.close()
    return dict(
        theta=theta,
        Q_tilde=Q_tilde,
        mu=mu,
        r=r,
        kl=kl,
        expected=expected,
        value=expected - kl,
        prior_logdet=prior_logdet,
    )


def elbo(model, theta, q, *, quadrature=DEFAULT_QUADRATURE):
    """The evidence lower bound E_q[log p(y | z, θ)] − KL(q ‖ p(z | θ)), every constant included.

    Parameters
    ----------
    model : LatentGaussianModel
    theta : array_like
        Hyperparameters (internal scale); q is held fixed (its m and Σ_c).
    q : VariationalGaussian
    quadrature : int
        Gauss–Hermite points per observation.

    Returns
    -------
    float
        ≤ log p(y | θ) (no hyperparameter prior log π(θ) is included). For Gaussian
        observations and the exact posterior q it equals −model.objective(θ) (without
        θ priors).

    Raises
    ------
    InputError
        Wrong θ length or non-finite θ, a q of another model, a bad ``quadrature``.
    """
    points = _check_arguments(model, q, quadrature)
    return float(_elbo_state(model, theta, q, points)["value"])


def elbo_and_grad_theta(model, theta, q, *, quadrature=DEFAULT_QUADRATURE):
    """The ELBO and its exact gradient in θ at fixed q (see the module docstring).

    Prior hyperparameters: −½[tr(Σ_c ∂Q̃_k) + rᵀ∂Q̃_k r − 2 rᵀQ̃ ∂μ̃_k − ∂log det(BᵀQ̃B)/∂θ_k]
    from the selected inverse of Λ; likelihood hyperparameters: E_q[∂ℓ/∂θ], the θ-cotangent
    of :func:`gmrf_core.rules.likelihood.expected_likelihood_vjp` (Gauss–Hermite sums of the
    likelihood's ``theta_derivatives``).

    Returns
    -------
    value : float
    grad : numpy.ndarray, shape (len(theta),)

    Raises
    ------
    InputError
        As :func:`elbo`.
    """
    points = _check_arguments(model, q, quadrature)
    structure = model.structure
    state = _elbo_state(model, theta, q, points, keep_prior_logdet=True)
    theta = state["theta"]
    grad = np.zeros(theta.full.size)
    try:
        if model.n_theta_prior:
            # the prior terms of −ELBO at fixed q are those of the Laplace objective at
            # fixed (z*, Σ_c): one function for both
            dQ = structure.prior_precision_grad(theta.prior)
            dmu = structure.prior_mean_grad(theta.prior)
            partial = prior_partials(
                structure,
                state["Q_tilde"],
                state["r"],
                q.constrained,
                dQ,
                dmu,
                state["prior_logdet"],
            )
            grad[: model.n_theta_prior] = -partial
    finally:
        state["prior_logdet"].close()
    if model.n_theta_lik:
        grad[model.n_theta_prior :] = _expected_theta_derivatives(
            model, q, theta.likelihood, points
        )
    return float(state["value"]), grad


def elbo_grad_theta(model, theta, q, *, quadrature=DEFAULT_QUADRATURE):
    """Exact gradient of :func:`elbo` in θ at fixed q (see :func:`elbo_and_grad_theta`)."""
    return elbo_and_grad_theta(model, theta, q, quadrature=quadrature)[1]
