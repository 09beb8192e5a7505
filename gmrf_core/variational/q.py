"""The variational Gaussian q(z) = N(m, Σ_c) in site form, its checks and its assembly.

Λ = Q̃_b + Ãᵀ diag(λ) Ã on the model's fixed pattern of H, factorized through the
model's :class:`~gmrf_core.latent.LatentStructure`, and conditioned on the prior's
constraints by :class:`~gmrf_core.constrained.ConstrainedFactor` (see
:mod:`gmrf_core.variational`).
"""

import numpy as np
import scipy.sparse as sp

from ..errors import InputError
from ..laplace import LatentGaussianModel

__all__ = ["VariationalGaussian", "initial_q"]


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
    predictor_mean : numpy.ndarray, shape (n_obs,)
        Marginal mean Ãm + offset of η (its variances: :meth:`linear_predictor_variance`,
        the same name as on :class:`~gmrf_core.LaplaceApproximation`).
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
        self._eta_variance = np.maximum(structure.predictor_variance(constrained), 0.0)
        self._variance = None

    def linear_predictor_variance(self):
        """Variances diag(Ã Σ_c Ãᵀ) of η under q, one per observation (0 where missing)."""
        return self._eta_variance.copy()

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
        rhs = base_linear + structure.A_full_T @ gam
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
    base_linear = Q_tilde @ mean + _site_matvec(model, lam, mean) - model.structure.A_full_T @ gam
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
