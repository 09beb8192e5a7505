"""The latent-prior protocol shared by every model in :mod:`gmrf_core.models`."""

import numpy as np

from ..errors import InputError
from ..pattern import FixedPattern
from ..priors import PCBYM2Phi, PCPrecision, Prior

__all__ = ["LatentModel"]


class LatentModel:
    """Base class of latent GMRF priors x | θ ~ N(μ(θ), Q(θ)⁻¹).

    Subclasses set ``n``, ``theta_names`` and ``theta0`` and implement
    :meth:`precision` and :meth:`precision_grad`. The sparsity pattern of
    ``precision(theta)`` never changes with θ (explicit zeros are kept) and every
    matrix returned by ``precision_grad`` is stored on that same pattern, so the
    Cholesky analysis is done once per model and dQ/dθ_k can be paired with
    selected-inverse entries position by position.

    Attributes
    ----------
    n : int
        Number of latent variables.
    theta_names : tuple of str
        Names of the hyperparameters, on their unconstrained (internal) scale.
    theta0 : numpy.ndarray
        Default starting values on the internal scale.
    constraints : None or tuple (A, e)
        Hard linear constraints ``A x = e`` (dense ``A`` of shape (k, n)), e.g. the
        sum-to-zero constraint of intrinsic models.
    rank_deficiency : int
        Dimension of the null space of Q (0 for proper models).
    has_mean : bool
        True when the prior mean depends on θ (then :meth:`mean_grad` is nonzero).
    priors : tuple
        One entry per hyperparameter: a :class:`~gmrf_core.likelihoods.priors.Prior`
        on the internal scale, or None (flat, contributes 0 to :meth:`log_prior`).
        Empty when no prior was set at all.
    """

    n = 0
    theta_names = ()
    theta0 = np.zeros(0)
    constraints = None
    rank_deficiency = 0
    has_mean = False
    priors = ()
    # True when the rows of the constraint matrix span the null space of Q exactly, so the
    # density of the constrained model needs only the generalised determinant of Q.
    _constraints_span_null_space = False
    # Hyperparameter names on which a PCPrecision prior is meaningful (log precisions),
    # and those that are a BYM2-type logit mixing parameter (PCBYM2Phi).
    _log_precision_names = ("log_tau",)
    _mixing_names = ()

    # -- to be implemented -------------------------------------------------
    def precision(self, theta):  # pragma: no cover - abstract
        """Q(θ) as a scipy.sparse CSC matrix on the model's fixed pattern."""
        raise NotImplementedError

    def precision_grad(self, theta):  # pragma: no cover - abstract
        """List of dQ/dθ_k, each CSC on exactly the pattern of :meth:`precision`."""
        raise NotImplementedError

    # -- defaults -------------------------------------------------------------
    def mean(self, theta):
        """Prior mean μ(θ) (zeros unless the model has mean hyperparameters)."""
        self.check_theta(theta)
        return np.zeros(self.n)

    def mean_grad(self, theta):
        """dμ/dθ as an array of shape (len(theta), n) (zeros by default)."""
        theta = self.check_theta(theta)
        return np.zeros((theta.size, self.n))

    def log_prior(self, theta):
        """Log prior density of θ on the internal scale (0: no prior set).

        The sum over hyperparameters of ``prior.log_density(θ_k)`` for the priors in
        :attr:`priors`; hyperparameters without a prior contribute 0.
        """
        theta = self.check_theta(theta)
        return float(
            sum(prior.log_density(t) for prior, t in zip(self.priors, theta) if prior is not None)
        )

    def log_prior_grad(self, theta):
        """Gradient of :meth:`log_prior` in θ."""
        theta = self.check_theta(theta)
        grad = np.zeros(theta.size)
        for k, prior in enumerate(self.priors):
            if prior is not None:
                grad[k] = prior.log_density_grad(theta[k])
        return grad

    def logdet(self, theta):
        """The model's own log-determinant of Q(θ) (generalised for intrinsic models), or None.

        In closed form for most models; MaternSPDE takes it from one factorization of
        its far sparser K = κ²C + G. For intrinsic models this is the generalised
        log-determinant log|Q|*, the sum of the logs of the nonzero eigenvalues. None
        means "not available from the model": callers factorize Q instead.
        """
        return None

    def logdet_grad(self, theta):
        """Gradient of :meth:`logdet` in θ, or None when :meth:`logdet` is None."""
        return None

    def constrained_logdet(self, theta):
        """log det(Bᵀ Q(θ) B), B an orthonormal basis of {x : A x = 0}, or None.

        The log-determinant that normalises the density of the constrained model on
        its (n - k)-dimensional support {x : A x = e}: there, with x = x₀ + B y,
        y has precision BᵀQB. Without constraints it is :meth:`logdet`; when the
        constraint rows span the null space of Q (RW1, RW2, Besag, and Kronecker
        products and stacks of them) it equals the generalised log-determinant
        :meth:`logdet` as well. Models whose constraints do not span the null space
        of Q (e.g. :class:`~gmrf_core.models.BYM2`, constrained on a block only)
        override it. None means "not available analytically".
        """
        if self.constraints is None or self._constraints_span_null_space:
            return self.logdet(theta)
        return None

    def constrained_logdet_grad(self, theta):
        """Gradient of :meth:`constrained_logdet` in θ, or None when it is None."""
        if self.constraints is None or self._constraints_span_null_space:
            return self.logdet_grad(theta)
        return None

    def to_natural(self, theta):
        """Hyperparameters on their natural scale, as a dict name -> value.

        The default is the identity (each internal name mapped to its value);
        models with transformed hyperparameters override it and document the map.
        """
        theta = self.check_theta(theta)
        return {name: float(value) for name, value in zip(self.theta_names, theta)}

    # -- helpers ----------------------------------------------------------------
    def check_theta(self, theta):
        """Return θ as a float array of the right length, or raise InputError."""
        try:
            theta = (
                np.asarray(theta, dtype=float).reshape(-1)
                if np.ndim(theta)
                else np.asarray([theta], dtype=float)
            )
        except (TypeError, ValueError) as exc:
            raise InputError(
                f"{type(self).__name__}: hyperparameters must be real numbers, got {theta!r}."
            ) from exc
        if theta.size != len(self.theta_names):
            raise InputError(
                f"{type(self).__name__} expects {len(self.theta_names)} hyperparameters "
                f"{self.theta_names}, got {theta.size}."
            )
        if not np.all(np.isfinite(theta)):
            raise InputError(f"{type(self).__name__}: hyperparameters must be finite, got {theta}.")
        return theta

    @staticmethod
    def on_pattern(pattern, matrix):
        """Return ``matrix`` stored on ``pattern`` (CSC, sorted indices, explicit zeros kept).

        The pattern is the structure of ``pattern`` (values ignored); see
        :meth:`gmrf_core.pattern.FixedPattern.data_of`.

        Raises
        ------
        PatternError
            If ``matrix`` has a nonzero outside the pattern (an InputError).
        """
        fixed = FixedPattern.of(pattern)
        return fixed.matrix(fixed.data_of(matrix))

    def _set_priors(self, prior):
        """Attach priors to hyperparameters and store them in :attr:`priors`.

        Parameters
        ----------
        prior : None, Prior, or dict
            None: no prior. A single :class:`~gmrf_core.likelihoods.priors.Prior`: only
            for models with one hyperparameter. A dict ``{theta_name: Prior or None}``:
            priors for the named hyperparameters (the others stay flat).

        Raises
        ------
        InputError
            Unknown names, a non-Prior value, a single prior for a model with several
            hyperparameters, or a PCPrecision on a hyperparameter that is not a log
            precision.
        """
        name = type(self).__name__
        names = tuple(self.theta_names)
        if prior is None:
            self.priors = (None,) * len(names)
            return
        if isinstance(prior, Prior):
            if len(names) != 1:
                raise InputError(
                    f"{name} has {len(names)} hyperparameters {names}: give priors as a dict "
                    f"{{name: prior}}, e.g. prior={{{names[0]!r}: PCPrecision(1.0, 0.01)}}."
                )
            prior = {names[0]: prior}
        if not isinstance(prior, dict):
            raise InputError(
                f"{name}: prior must be None, a Prior, or a dict {{theta_name: Prior}}, got "
                f"{type(prior).__name__}."
            )
        unknown = [key for key in prior if key not in names]
        if unknown:
            raise InputError(
                f"{name}: prior given for unknown hyperparameter(s) {unknown}; the "
                f"hyperparameters are {names}."
            )
        priors = []
        for key in names:
            value = prior.get(key)
            if value is not None and not isinstance(value, Prior):
                raise InputError(
                    f"{name}: the prior of {key!r} must be a gmrf_core Prior (e.g. PCPrecision, "
                    f"NormalPrior) or None, got {type(value).__name__}."
                )
            if isinstance(value, PCPrecision) and key not in self._log_precision_names:
                raise InputError(
                    f"{name}: PCPrecision is a prior on a log precision; {key!r} is not one "
                    f"(log precisions: {self._log_precision_names})."
                )
            if isinstance(value, PCBYM2Phi) and key not in self._mixing_names:
                raise InputError(
                    f"{name}: PCBYM2Phi is the prior of the BYM2 mixing parameter logit(phi); "
                    f"{key!r} is not one."
                )
            priors.append(self._bind_prior(key, value))
        self.priors = tuple(priors)

    def _bind_prior(self, name, prior):
        """Hook for priors that need the model (e.g. eigenvalues); identity by default."""
        return prior

    def __repr__(self):
        return f"{type(self).__name__}(n={self.n}, theta_names={self.theta_names})"
