"""Gaussian variational inference with natural gradients for latent GMRF models.

For a :class:`~gmrf_core.LatentGaussianModel` (latent vector z = (x, β), prior
N(μ̃, Q̃⁻¹) with Q̃ = blockdiag(Q(θ), τ_β I), linear predictor η = Ã z + offset,
Ã = [A X], optional hard constraints A_c z = e) the posterior p(z | y, θ) is
approximated by a Gaussian q(z) = N(m, Σ) on the constraint surface, chosen to
maximise the evidence lower bound (ELBO)::

    L(θ, q) = E_q[log p(y | z, θ)] − KL(q ‖ p(z | θ))  ≤  log p(y | θ).

**Family.** q has the sparse precision of the Laplace Hessian, parameterised by
one *site* per observation (Opper & Archambeau 2009 show that the optimal
Gaussian has exactly this form)::

    Λ = Q̃_b + Ãᵀ diag(λ) Ã,     Λ m = b_b + Ãᵀ γ     (λ ≥ 0 site precisions, γ site
                                                       linear terms)

where (Q̃_b, b_b) is the *base* part, equal to the prior's (Q̃(θ), Q̃(θ) μ̃(θ))
whenever q was built at θ by :func:`initial_q` or natural-gradient steps at a fixed
θ (a step at a new θ mixes the old base into the new prior, see below). Λ lives on
the model's fixed pattern, so every q is factorised with the model's single
symbolic analysis (:meth:`~gmrf_core.LatentGaussianModel.factorize_precision`).
With constraints q is N(Λ⁻¹(Λm), Λ⁻¹) conditioned on A_c z = e (Rue & Held 2005,
sec. 2.3.3): Σ_c = Λ⁻¹ − V S⁻¹ Vᵀ (V = Λ⁻¹A_cᵀ, S = A_c V) and
m = z₀ + Σ_c (b − Λ z₀) for any feasible z₀.

**ELBO with every constant.** With B an orthonormal basis of the constraint null
space (B = I without constraints), d = n_total − #constraints and r = m − μ̃, the
prior density on the surface is the one of the Laplace objective
(:mod:`gmrf_core.laplace`), so::

    KL(q ‖ p) = ½ [tr(Q̃ Σ_c) + rᵀ Q̃ r − d + log det(BᵀΛB) − log det(BᵀQ̃B)],
    log det(BᵀΛB) = log|Λ| + log|A_c Λ⁻¹ A_cᵀ| − log|A_c A_cᵀ|

(Rue & Held 2005, eq. 2.32; the d/2·log 2π of entropy and prior cancel).
tr(Q̃ Σ_c) and the predictor variances v_i = (Ã Σ_c Ãᵀ)_ii come from the selected
inverse of Λ (entries on Q̃'s pattern and on the pairs of each row of Ã), with the
rank-k kriging correction; E_q[log p(y | z)] = Σ_i E[ℓ_i(η_i)], η_i ~ N(m_η,i, v_i),
by Gauss–Hermite quadrature (missing observations contribute 0). For Gaussian
observations with the exact posterior the ELBO equals log p(y | θ) = −objective(θ).

**Natural-gradient step** (conjugate-computation VI, Khan & Lin 2017, eq. 8–10;
Salimbeni et al. 2018). The natural gradient of L in q's natural parameters
(Λ, Λm) is the gradient in its mean parameters; for observation i, with
s_i = ã_iᵀ z ~ N(ã_iᵀm, v_i), ∂E[ℓ_i]/∂E[s_i²] = ½E[ℓ_i''] and
∂E[ℓ_i]/∂E[s_i] = E[ℓ_i'] − E[ℓ_i''] ã_iᵀm, so a step of size ρ ∈ (0, 1] is::

    λ_i ← (1 − ρ) λ_i + ρ (−E[ℓ_i''])
    γ_i ← (1 − ρ) γ_i + ρ (E[ℓ_i'] − E[ℓ_i''] · (E[η_i] − offset_i))
    (Q̃_b, b_b) ← (1 − ρ)(Q̃_b, b_b) + ρ (Q̃(θ), Q̃(θ) μ̃(θ))

followed by one factorisation of the new Λ and one solve for m. The offset enters
because the sites act on s = η − offset (Λm = Q̃μ̃ + Ãᵀγ). At a fixed θ the base part
is unchanged; for Gaussian observations a step with ρ = 1 gives the exact posterior
from any q (the targets do not depend on q). The expectations are one-dimensional
Gauss–Hermite sums of the likelihood's ``eta_derivatives``.

**Hyperparameters.** At fixed q (fixed m, Σ_c) the ELBO depends on θ through the
prior and the likelihood's own hyperparameters::

    ∂L/∂θ_k = −½ [tr(Σ_c ∂Q̃_k) + rᵀ ∂Q̃_k r − 2 rᵀ Q̃ ∂μ̃_k − ∂ log det(BᵀQ̃B)/∂θ_k]
              (prior θ_k: selected inversion, no dense matrices)
    ∂L/∂θ_j = Σ_i E[∂ℓ_i/∂θ_j]   (likelihood θ_j: Gauss–Hermite of theta_derivatives)

:func:`fit_variational` minimises the profile −L(θ, q*(θ)) − log π(θ) with scipy's
L-BFGS-B; q*(θ) comes from natural-gradient steps warm-started from the previous q
(the interleaving of NaturalGradient and a gradient optimizer in GPflow), and by the
envelope theorem the profile's gradient is ∂L/∂θ at fixed q*(θ).

**Plain gradient baseline.** :func:`gradient_ascent_step` moves (m, λ) along the
Euclidean gradient of L (projected onto the constraint surface)::

    ∂L/∂m = Ãᵀ E[ℓ'] − Q̃ (m − μ̃),
    ∂L/∂λ_i = −½ ã_iᵀ Σ_c (Ãᵀ diag(E[ℓ''] + λ) Ã + Q̃_b − Q̃) Σ_c ã_i
            = ½ d/dt v_i(Λ + t (Ãᵀ diag(E[ℓ''] + λ) Ã + Q̃_b − Q̃)) at t = 0

(dΣ_c = −Σ_c dΛ Σ_c). The λ-part needs off-diagonal entries of Ã Σ_c Ãᵀ, so it is
taken as the directional derivative of the selected inverse by central differences
(two extra factorisations; about 1e-8 relative accuracy
 for well-conditioned Λ). It is the reference that
natural gradients are compared with, not an exact derivative.

References
----------
Khan, M. E. & Lin, W. (2017). Conjugate-computation variational inference:
converting variational inference in non-conjugate models to inferences in conjugate
models. AISTATS.
Salimbeni, H., Eleftheriadis, S. & Hensman, J. (2018). Natural gradients in practice:
non-conjugate variational inference in Gaussian process models. AISTATS.
Opper, M. & Archambeau, C. (2009). The variational Gaussian approximation revisited.
Neural Computation 21(3).
Rue, H. & Held, L. (2005). Gaussian Markov Random Fields. Chapman & Hall.
"""

import math
import sys
import time
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import scipy.sparse as sp
from numpy.polynomial.hermite_e import hermegauss

from .errors import ConvergenceError, InputError, NotPositiveDefiniteError
from .laplace import LatentGaussianModel
from .latent import prior_partials
from .optimize import (
    check_bounds,
    check_theta0,
    estimates_table,
    fit_verdict,
    minimize_hyperparameters,
    natural_scale,
    standard_errors,
)

__all__ = [
    "VariationalGaussian",
    "QOptimizeResult",
    "VariationalFitResult",
    "initial_q",
    "natural_gradient_step",
    "gradient_ascent_step",
    "elbo",
    "elbo_grad_theta",
    "elbo_and_grad_theta",
    "elbo_grad_q",
    "optimize_q",
    "fit_variational",
    "DEFAULT_QUADRATURE",
]

DEFAULT_QUADRATURE = 20

# Relative size of the perturbation of Λ in the central difference of the baseline's
# site-precision gradient: truncation error ~ δ², rounding ~ ε/δ.
_FD_RELATIVE_STEP = 1e-4


# -- quadrature -------------------------------------------------------------------------
@lru_cache(maxsize=16)
def _gauss_hermite(points):
    """Nodes and weights for E[f(Z)], Z ~ N(0, 1) (probabilists' Hermite, weights sum to 1)."""
    nodes, weights = hermegauss(points)
    return nodes, weights / math.sqrt(2.0 * math.pi)


def _check_quadrature(points):
    if isinstance(points, (bool, np.bool_)) or not isinstance(points, (int, np.integer)):
        raise InputError(f"quadrature must be an integer number of points; got {points!r}.")
    if not 1 <= points <= 200:
        raise InputError(f"quadrature must be between 1 and 200 points; got {points}.")
    return int(points)


# -- the variational distribution ------------------------------------------------------------
class VariationalGaussian:
    """A Gaussian q(z) = N(m, Σ_c) on the model's constraint surface, in site form.

    Create with :func:`initial_q`; :func:`natural_gradient_step` and
    :func:`gradient_ascent_step` return new instances (q is never modified).

    Attributes
    ----------
    theta : numpy.ndarray
        Hyperparameters of the last update (informational; :func:`elbo` accepts any θ).
    mean : numpy.ndarray, shape (n_total,)
        m = (mean of x, mean of β).
    latent, fixed_effects : numpy.ndarray
        The two parts of ``mean``.
    site_precision : numpy.ndarray, shape (n_obs,)
        λ ≥ 0 (0 at missing observations).
    site_linear : numpy.ndarray, shape (n_obs,)
        γ (0 at missing observations).
    base_precision : scipy.sparse.csc_matrix
        Q̃_b on the prior's pattern (the prior precision Q̃(θ) in pure site form).
    base_linear : numpy.ndarray, shape (n_total,)
        b_b, so that Λ m = b_b + Ãᵀ γ (Q̃(θ) μ̃(θ) in pure site form).
    factor : Factor
        Cholesky factor of Λ (a private copy).
    logdet : float
        log det(BᵀΛB): the log-determinant of q's precision on the constraint surface.
    predictor_mean, predictor_variance : numpy.ndarray, shape (n_obs,)
        Marginal mean Ãm + offset and variance diag(Ã Σ_c Ãᵀ) of η (variance 0 where
        missing).
    """

    def __init__(self, model, theta, base_precision, base_linear, lam, gam, mean, constrained):
        self._model = model
        structure = model.structure
        self.theta = np.array(theta, dtype=float)
        self.base_precision = base_precision
        self.base_linear = base_linear
        self.site_precision = lam
        self.site_linear = gam
        self.mean = mean
        self.latent = mean[: model.n_latent]
        self.fixed_effects = mean[model.n_latent :]
        self.constrained = constrained
        self.factor = constrained.factor
        self.selected_inverse = constrained.selected_inverse()
        self.logdet = constrained.logdet()
        self.predictor_mean = structure.linear_predictor(mean)
        self.predictor_variance = np.maximum(structure.predictor_variance(constrained), 0.0)
        self._variance = None

    @property
    def sites(self):
        """(λ, γ): site precisions and site linear terms."""
        return self.site_precision.copy(), self.site_linear.copy()

    def precision(self):
        """Λ = Q̃_b + Ãᵀ diag(λ) Ã as a sparse CSC matrix (before the constraint)."""
        a = self._model.A_full
        return sp.csc_matrix(self.base_precision + a.T @ sp.diags_array(self.site_precision) @ a)

    def marginal_variance(self):
        """Marginal variances diag(Σ_c) of z = (x, β) under q (selected inversion)."""
        if self._variance is None:
            self._variance = np.maximum(self.constrained.marginal_variance(), 0.0)
        return self._variance.copy()

    def marginal_sd(self):
        """Square roots of :meth:`marginal_variance`."""
        return np.sqrt(self.marginal_variance())

    def __repr__(self):
        return (
            f"VariationalGaussian(n_total={self.mean.size}, n_obs={self.site_precision.size}, "
            f"theta={np.array2string(self.theta, precision=4)})"
        )


# -- validation -------------------------------------------------------------------------------
def _check_model(model):
    """The model's :class:`~gmrf_core.latent.LatentStructure` (a LatentGaussianModel only)."""
    if not isinstance(model, LatentGaussianModel):
        raise InputError(f"model must be a gmrf_core.LatentGaussianModel; got {model!r}.")
    return model.structure


def _check_q(model, q):
    if not isinstance(q, VariationalGaussian):
        raise InputError(
            f"q must be a VariationalGaussian (from gmrf_core.variational.initial_q); got "
            f"{type(q).__name__}."
        )
    if q._model is not model:
        raise InputError("q was built for a different model; create it with initial_q(model, θ).")


def _check_step(step, name="step"):
    try:
        value = float(step)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name} must be a number in (0, 1]; got {step!r}.") from exc
    if not (np.isfinite(value) and 0.0 < value <= 1.0):
        raise InputError(f"{name} must lie in (0, 1]; got {step!r}.")
    return value


def _observation_vector(model, values, name, nonnegative=False):
    try:
        values = np.array(values, dtype=float).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name} must be an array of numbers ({exc}).") from exc
    if values.shape != (model.n_obs,):
        raise InputError(
            f"{name} must have one entry per observation, shape ({model.n_obs},); got "
            f"{values.shape}."
        )
    observed = model.likelihood.observed
    if not np.all(np.isfinite(values[observed])):
        raise InputError(f"{name} must be finite at the observed entries.")
    if nonnegative and np.any(values[observed] < 0):
        index = int(np.flatnonzero(observed & (values < 0))[0])
        raise InputError(
            f"{name} must be non-negative (site precisions λ ≥ 0); got {values[index]!r} at "
            f"index {index}."
        )
    return np.where(observed, values, 0.0)


def _constraint_count(structure):
    return 0 if structure.constraints is None else structure.constraints.k


# -- assembling q --------------------------------------------------------------------------------
def _on_pattern(Q_tilde, data):
    """A CSC matrix with the prior's pattern (that of ``Q_tilde``) and the given values."""
    return sp.csc_matrix((data, Q_tilde.indices, Q_tilde.indptr), shape=Q_tilde.shape)


def _site_matvec(model, lam, z):
    """Ãᵀ diag(λ) Ã z."""
    a = model.A_full
    return a.T @ (lam * (a @ z))


def _factorize(structure, base_precision, lam):
    """Λ = Q̃_b + Ãᵀ diag(λ) Ã with the constraints, on a private copy of a pool factor."""
    with structure.hessian_pool.borrow() as item:
        return structure.factorize(item, base_precision, lam).copy()


def _assemble(model, theta, base_precision, base_linear, lam, gam, mean=None):
    """Factorise Λ and build q; the mean from Λ m = b_b + Ãᵀγ unless given."""
    structure = model.structure
    constrained = _factorize(structure, base_precision, lam)
    if mean is None:
        # m = z₀ + Σ_c (b − Λ z₀): the conditional mean on A_c z = e (z₀ feasible)
        z0 = structure.feasible(np.zeros(model.n_total))
        rhs = base_linear + model.A_full.T @ gam
        if constrained.has_constraints:
            rhs = rhs - (base_precision @ z0 + _site_matvec(model, lam, z0))
            mean = z0 + constrained.solve(rhs)
        else:
            mean = constrained.solve(rhs)
    return VariationalGaussian(
        model, theta, base_precision, base_linear, lam, gam, mean, constrained
    )


def _prior_parts(structure, theta_prior):
    return structure.prior_precision(theta_prior), structure.prior_mean(theta_prior)


def initial_q(model, theta, init="laplace", *, site_precision=None, site_linear=None, mean=None):
    """A starting variational distribution at θ.

    Parameters
    ----------
    model : LatentGaussianModel
    theta : array_like
        Hyperparameters (internal scale), ``len(model.theta0)`` entries.
    init : {"laplace", "prior"}
        ``"laplace"``: the sites of the Laplace approximation at θ,
        λ = −ℓ''(η*), γ = ℓ'(η*) + λ (η* − offset), so q starts as N(z*, H⁻¹) (the
        zero-variance fixed point of the natural-gradient step). ``"prior"``: λ = γ = 0,
        q = the prior (needs a proper prior or constraints that make Q̃ definite).
    site_precision, site_linear : array_like, shape (n_obs,), optional
        Explicit sites λ ≥ 0 and γ, replacing those of ``init``.
    mean : array_like, shape (n_total,), optional
        An explicit mean m (feasible: A_c m = e); Λ keeps the prior and the sites, and
        b_b = Λ m − Ãᵀγ.

    Returns
    -------
    VariationalGaussian

    Raises
    ------
    InputError
        Wrong θ length, unknown ``init``, sites of the wrong shape, negative or not
        finite, or a mean of the wrong shape, not finite or off the constraint surface.
    NotPositiveDefiniteError
        Λ = Q̃ + Ãᵀ diag(λ) Ã is not positive definite (e.g. ``init="prior"`` with an
        intrinsic prior).
    """
    structure = _check_model(model)
    split = structure.split_theta(theta)
    theta, theta_prior, theta_lik = split.full, split.prior, split.likelihood
    if init not in ("laplace", "prior"):
        raise InputError(f"init must be 'laplace' or 'prior'; got {init!r}.")
    Q_tilde, mu = _prior_parts(structure, theta_prior)
    if init == "laplace" and (site_precision is None or site_linear is None):
        approx = model.laplace(theta)
        eta = approx.linear_predictor
        d1, d2, _d3 = model.likelihood.eta_derivatives(eta, theta_lik)
        lam = -d2
        gam = d1 + lam * (eta - model.offset)
    else:
        lam = np.zeros(model.n_obs)
        gam = np.zeros(model.n_obs)
    if site_precision is not None:
        lam = site_precision
    if site_linear is not None:
        gam = site_linear
    lam = _observation_vector(model, lam, "site_precision", nonnegative=True)
    gam = _observation_vector(model, gam, "site_linear")
    base_linear = Q_tilde @ mu
    if mean is None:
        return _assemble(model, theta, Q_tilde, base_linear, lam, gam)
    mean = _check_mean(model, mean)
    base_linear = Q_tilde @ mean + _site_matvec(model, lam, mean) - model.A_full.T @ gam
    return _assemble(model, theta, Q_tilde, base_linear, lam, gam, mean=mean)


def _check_mean(model, mean):
    try:
        mean = np.array(mean, dtype=float).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise InputError(f"mean must be an array of numbers ({exc}).") from exc
    if mean.shape != (model.n_total,) or not np.all(np.isfinite(mean)):
        raise InputError(f"mean must be a finite vector of length n_total = {model.n_total}.")
    projected = model.structure.feasible(mean)
    if np.max(np.abs(projected - mean)) > 1e-8 * max(1.0, np.max(np.abs(mean))):
        raise InputError(
            "mean violates the prior's constraints A_c m = e; project it with "
            "model.structure.feasible(mean) first."
        )
    return mean


# -- expectations under q ----------------------------------------------------------------------
def _nodes(q, points):
    nodes, weights = _gauss_hermite(points)
    sd = np.sqrt(q.predictor_variance)
    return nodes, weights, sd


def _expected_eta_derivatives(model, q, theta_lik, points):
    """E_q[ℓ_i'(η_i)] and E_q[ℓ_i''(η_i)] by Gauss–Hermite quadrature."""
    nodes, weights, sd = _nodes(q, points)
    e1 = np.zeros(model.n_obs)
    e2 = np.zeros(model.n_obs)
    for t, w in zip(nodes, weights):
        d1, d2, _d3 = model.likelihood.eta_derivatives(q.predictor_mean + t * sd, theta_lik)
        e1 += w * d1
        e2 += w * d2
    if not (np.all(np.isfinite(e1)) and np.all(np.isfinite(e2))):
        raise ConvergenceError(
            "the expected likelihood derivatives under q are not finite (the linear "
            "predictor's variance or mean is too large); start from init='laplace' or use a "
            "smaller step."
        )
    return e1, e2


def _expected_log_likelihood(model, q, theta_lik, points):
    nodes, weights, sd = _nodes(q, points)
    total = 0.0
    for t, w in zip(nodes, weights):
        total += w * model.likelihood.log_density(q.predictor_mean + t * sd, theta_lik)
    return total


def _expected_theta_derivatives(model, q, theta_lik, points):
    nodes, weights, sd = _nodes(q, points)
    grad = np.zeros(model.n_theta_lik)
    for t, w in zip(nodes, weights):
        g, _g_eta, _g_eta2 = model.likelihood.theta_derivatives(
            q.predictor_mean + t * sd, theta_lik
        )
        grad += w * g
    return grad


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
    _check_model(model)
    _check_q(model, q)
    points = _check_quadrature(quadrature)
    return float(_elbo_state(model, theta, q, points)["value"])


def elbo_and_grad_theta(model, theta, q, *, quadrature=DEFAULT_QUADRATURE):
    """The ELBO and its exact gradient in θ at fixed q (see the module docstring).

    Prior hyperparameters: −½[tr(Σ_c ∂Q̃_k) + rᵀ∂Q̃_k r − 2 rᵀQ̃ ∂μ̃_k − ∂log det(BᵀQ̃B)/∂θ_k]
    from the selected inverse of Λ; likelihood hyperparameters: Gauss–Hermite sums of
    the likelihood's ``theta_derivatives``.

    Returns
    -------
    value : float
    grad : numpy.ndarray, shape (len(theta),)

    Raises
    ------
    InputError
        As :func:`elbo`.
    """
    _check_model(model)
    _check_q(model, q)
    points = _check_quadrature(quadrature)
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
    _check_model(model)
    _check_q(model, q)
    rho = _check_step(step)
    points = _check_quadrature(quadrature)
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


# -- plain gradient (baseline) -----------------------------------------------------------------
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

    ``method="natural"``: natural-gradient steps, ρ starting at ``step``; a step that
    lowers the ELBO (beyond rounding, 1e-12 relative) or fails to factorise is
    rejected and retried with ρ/2, and after an accepted step ρ grows back (×2, at
    most ``step``), so the ELBO never decreases. Converged when the accepted step's
    relative change of (m, λ), divided by ρ, is below ``tol`` (for ρ = 1 the distance
    to the fixed point of the iteration).

    ``method="gradient"``: plain gradient ascent on (m, λ) (:func:`gradient_ascent_step`)
    with a backtracking learning rate α (start ``step``, halved until the ELBO rises
    by the Armijo amount 1e-4·α·|∇|², doubled after each accepted step). Converged
    when |∇L|∞ ≤ ``tol``.

    Parameters
    ----------
    model : LatentGaussianModel
    theta : array_like
    q : VariationalGaussian, optional
        Starting point; ``initial_q(model, theta)`` by default.
    method : {"natural", "gradient"}
    step : float
        Initial (and largest) ρ in (0, 1] for natural gradients; initial α > 0 for
        plain gradients.
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
    if method not in ("natural", "gradient"):
        raise InputError(f"method must be 'natural' or 'gradient'; got {method!r}.")
    if method == "natural":
        step = _check_step(step)
    else:
        step = float(step)
        if not (np.isfinite(step) and step > 0):
            raise InputError(f"step (learning rate) must be positive; got {step!r}.")
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
    grad = None
    while iteration < maxiter:
        if max_time is not None and time.perf_counter() - start > max_time:
            message = f"stopped after max_time = {max_time} s"
            break
        if method == "gradient":
            if grad is None:
                grad = elbo_grad_q(model, theta, q, quadrature=points)
            grad_norm = max(np.max(np.abs(grad[0])), np.max(np.abs(grad[1]), initial=0.0))
            if grad_norm <= tol:
                converged, message = True, f"|∇L|∞ = {grad_norm:.3e} ≤ tol"
                break
        accepted = False
        while rate >= 1e-12 * step:
            try:
                if method == "natural":
                    new = natural_gradient_step(model, theta, q, rate, quadrature=points)
                else:
                    new = _gradient_update(model, theta, q, grad[0], grad[1], rate)
                new_value = float(_elbo_state(model, theta, new, points)["value"])
            except (NotPositiveDefiniteError, ConvergenceError):
                rate *= 0.5
                continue
            if method == "natural":
                accepted = np.isfinite(new_value) and new_value >= value - 1e-12 * max(
                    1.0, abs(value)
                )
            else:
                accepted = np.isfinite(new_value) and new_value >= value + 1e-4 * rate * (
                    float(grad[0] @ grad[0]) + float(grad[1] @ grad[1])
                )
            if accepted:
                break
            rate *= 0.5
        if not accepted:
            raise ConvergenceError(
                f"{method} steps found no ascent direction at iteration {iteration + 1} (step "
                f"size fell below {1e-12 * step:.1e}); ELBO {value:.10g}."
            )
        iteration += 1
        change = _relative_change(q, new) / rate
        q, value, grad = new, new_value, None
        history.append((iteration, value, rate, time.perf_counter() - start))
        stop = callback is not None and bool(callback(iteration, q, value))
        if method == "natural":
            rate = min(step, 2.0 * rate)
            if change <= tol:
                converged, message = True, f"relative change {change:.3e} ≤ tol"
                break
        else:
            rate *= 2.0
        if stop:
            message = "stopped by callback"
            break
    return QOptimizeResult(
        q=q, elbo=value, nit=iteration, converged=converged, message=message, history=history
    )


# -- hyperparameters ----------------------------------------------------------------------------
@dataclass
class VariationalFitResult:
    """Result of :func:`fit_variational` (in the style of :class:`gmrf_core.FitResult`).

    Attributes
    ----------
    theta : numpy.ndarray
        Estimated hyperparameters (internal scale).
    theta_natural : dict
        The same on the natural scale.
    theta_names : tuple of str
    fun : float
        −ELBO(θ, q*) − log π(θ) at the optimum.
    elbo : float
        The ELBO at the optimum.
    grad : numpy.ndarray
        Gradient of ``fun`` at the optimum.
    nit, nfev : int
        L-BFGS-B iterations and profile evaluations.
    natgrad_steps : int
        Natural-gradient steps taken in all.
    success : bool
    message : str
    std_err : numpy.ndarray
        From the central-difference Hessian of the profile gradient (NaN when not
        requested or not positive definite).
    hessian : numpy.ndarray
    mean : numpy.ndarray
        Variational mean of (x, β).
    marginal_sd : numpy.ndarray
        Variational marginal standard deviations of (x, β).
    q : VariationalGaussian
    time : float
    history : list of (iteration, fun, |grad|)
    """

    theta: np.ndarray
    theta_natural: dict
    theta_names: tuple
    fun: float
    elbo: float
    grad: np.ndarray
    nit: int
    nfev: int
    natgrad_steps: int
    success: bool
    message: str
    std_err: np.ndarray
    hessian: np.ndarray
    mean: np.ndarray
    marginal_sd: np.ndarray
    q: VariationalGaussian
    time: float
    history: list = field(default_factory=list)

    def summary(self):
        """A readable table of the estimates and standard errors."""
        lines = estimates_table(self.theta_names, self.theta, self.std_err, self.theta_natural)
        lines.append(
            f"-ELBO {self.fun:.6f}, |grad| {np.linalg.norm(self.grad):.2e}, {self.nit} "
            f"iterations, {self.nfev} evaluations, {self.natgrad_steps} natural-gradient "
            f"steps, {self.time:.1f} s, success={self.success}"
        )
        return "\n".join(lines)

    def __str__(self):
        return self.summary()


def fit_variational(
    model,
    theta0=None,
    *,
    q0=None,
    init="laplace",
    step=1.0,
    tol=1e-10,
    max_natgrad=200,
    bounds=None,
    maxiter=200,
    gtol=1e-5,
    std_err=True,
    quadrature=DEFAULT_QUADRATURE,
    progress=True,
    stream=None,
):
    """Variational estimate of θ: maximise the ELBO jointly over q and θ.

    L-BFGS-B (scipy.optimize) on the profile F(θ) = −L(θ, q*(θ)) − log π(θ), where
    q*(θ) is found by natural-gradient steps (:func:`optimize_q`) warm-started from
    the q of the previous evaluation, so q and θ updates interleave as GPflow's
    NaturalGradient + Adam do. By the envelope theorem ∇F(θ) = −∂L/∂θ at fixed q*(θ)
    − ∇log π(θ) (:func:`elbo_and_grad_theta`), exact up to the inner tolerance.

    Parameters
    ----------
    model : LatentGaussianModel
    theta0 : array_like, optional
        Starting θ (internal scale); ``model.theta0`` by default.
    q0 : VariationalGaussian, optional
        Starting q; ``initial_q(model, theta0, init)`` by default.
    init : {"laplace", "prior"}
        How the default q0 is built.
    step : float in (0, 1]
        Largest natural-gradient step.
    tol : float
        Inner convergence tolerance (relative change of (m, λ) per unit step).
    max_natgrad : int
        Natural-gradient steps per profile evaluation at most.
    bounds : sequence of (low, high), optional
        Bounds on θ for L-BFGS-B.
    maxiter, gtol : int, float
        L-BFGS-B options.
    std_err : bool
        Standard errors from a central-difference Hessian of the profile gradient
        (2p extra evaluations; default True, as in :func:`gmrf_core.fit`).
    quadrature : int
    progress : bool
        Print iteration, −ELBO and gradient norm per iteration (default True, as in
        :func:`gmrf_core.fit`).
    stream : file-like, optional

    Returns
    -------
    VariationalFitResult

    Raises
    ------
    InputError
        Bad arguments.
    ConvergenceError
        The profile cannot be evaluated at θ0.
    """
    _check_model(model)
    theta0 = check_theta0(model, theta0)
    step = _check_step(step)
    points = _check_quadrature(quadrature)
    if not (isinstance(max_natgrad, (int, np.integer)) and max_natgrad >= 1):
        raise InputError(f"max_natgrad must be a positive integer; got {max_natgrad!r}.")
    stream = sys.stdout if stream is None else stream
    start = time.perf_counter()
    q = initial_q(model, theta0, init) if q0 is None else q0
    _check_q(model, q)
    state = {"q": q, "natgrad": 0, "inner": {}}

    def profile(theta):
        inner = optimize_q(
            model, theta, state["q"], step=step, tol=tol, maxiter=max_natgrad, quadrature=points
        )
        state["natgrad"] += inner.nit
        value, grad = elbo_and_grad_theta(model, theta, inner.q, quadrature=points)
        return inner, -value - model.log_prior(theta), -grad - model.log_prior_grad(theta)

    def fun_and_grad(theta):
        inner, value, grad = profile(theta)
        # warm start of the next evaluation; the q of each θ is kept for the result
        state["q"] = inner.q
        state["inner"] = {"theta": theta.copy(), "q": inner.q, "converged": inner.converged}
        return value, grad

    if progress:
        print(
            f"variational fit of {len(theta0)} hyperparameters {model.theta_names}",
            file=stream,
            flush=True,
        )
    driver = minimize_hyperparameters(
        fun_and_grad,
        theta0,
        bounds=check_bounds(bounds, theta0.size),
        maxiter=maxiter,
        gtol=gtol,
        progress=progress,
        stream=stream,
        label="-ELBO",
    )
    theta, value, grad = driver.theta, driver.fun, driver.grad
    if np.array_equal(state["inner"].get("theta"), theta):
        q_final, inner_converged = state["inner"]["q"], state["inner"]["converged"]
    else:
        inner, value, grad = profile(theta)
        q_final, inner_converged = inner.q, inner.converged
    state["q"] = q_final
    p = theta.size
    if std_err:
        se, hess = standard_errors(lambda t: profile(t)[2], theta)
    else:
        hess = np.full((p, p), np.nan)
        se = np.full(p, np.nan)
    driver.grad = grad
    success, message = fit_verdict(driver, check_bounds(bounds, p), hess if std_err else None)
    if not inner_converged:
        # the gradient is exact only at the optimal q: report an unconverged inner problem
        success = False
        message += f"; natural-gradient steps did not converge in max_natgrad = {max_natgrad}"
    out = VariationalFitResult(
        theta=theta,
        theta_natural=natural_scale(model, theta),
        theta_names=model.theta_names,
        fun=float(value),
        elbo=float(-value - model.log_prior(theta)),
        grad=grad,
        nit=driver.nit,
        nfev=driver.nfev,
        natgrad_steps=int(state["natgrad"]),
        success=success,
        message=message,
        std_err=se,
        hessian=hess,
        mean=q_final.mean.copy(),
        marginal_sd=q_final.marginal_sd(),
        q=q_final,
        time=time.perf_counter() - start,
        history=driver.history,
    )
    if progress:
        print(out.summary(), file=stream, flush=True)
    return out
