"""The observation-model protocol shared by every likelihood in :mod:`gmrf_core.likelihoods`.

A likelihood holds the data y (NaN marks a missing observation) and evaluates
log p(y | η, θ) = Σ_i log p(y_i | η_i, θ) for a linear predictor η of the same
length, together with its exact derivatives in η (orders 1–3, elementwise, since
observation i depends on η_i only) and in the likelihood's own hyperparameters θ.
Missing observations contribute zero to every quantity.

The public methods validate their arguments and then call the private per-observation
formulas that each subclass implements (``_log_density_terms``, ``_eta_derivatives``,
``_theta_derivatives``, ``_mean``, ``_sample``); the base class applies the
missing-data mask and does the sums.
"""

import numpy as np

from ..errors import InputError
from ..priors import Prior

__all__ = ["Likelihood"]


class Likelihood:
    """Base class of observation models p(y | η, θ) with a canonical link.

    Attributes
    ----------
    n : int
        Number of observations, i.e. the length of ``y`` (missing ones included).
    theta_names : tuple of str
        Names of the likelihood's own hyperparameters, on their unconstrained scale.
    theta0 : numpy.ndarray
        Default hyperparameter values, shape ``(len(theta_names),)``.
    observed : numpy.ndarray of bool
        ``True`` where ``y`` is not missing (not NaN).
    y : numpy.ndarray
        The data as floats, NaN where missing.
    priors : tuple
        One entry per hyperparameter: a :class:`~gmrf_core.likelihoods.priors.Prior`
        on the internal scale, or None (flat, contributes 0 to :meth:`log_prior`).
    """

    n = 0
    theta_names = ()
    theta0 = np.zeros(0)
    observed = np.zeros(0, dtype=bool)

    def __init__(self, y):
        self.y, self.observed = self._check_response(y)
        self.n = self.y.size
        # y with the missing entries set to 0 so the vectorised formulas stay finite there;
        # those entries are masked out of every result.
        self._y = np.where(self.observed, self.y, 0.0)
        self.theta0 = np.zeros(len(self.theta_names))
        self.priors = (None,) * len(self.theta_names)

    # -- public API ------------------------------------------------------------
    def log_density(self, eta, theta=None):
        """Log-likelihood Σ_{i observed} log p(y_i | η_i, θ), all normalising constants included.

        Parameters
        ----------
        eta : array_like, shape (n,)
            Linear predictor (finite).
        theta : array_like, shape (p,), optional
            Likelihood hyperparameters on the internal scale; default :attr:`theta0`.

        Returns
        -------
        float

        Raises
        ------
        InputError
            If ``eta`` or ``theta`` has the wrong length or is not finite.
        """
        eta = self._check_eta(eta)
        theta = self._check_theta(theta)
        with np.errstate(over="ignore"):
            return float(self._log_density_sum(eta, theta))

    def _log_density_sum(self, eta, theta):
        """Σ_{i observed} of :meth:`_log_density_terms` (η, θ validated); a subclass with a
        one-pass kernel for the sum overrides it."""
        return np.sum(np.where(self.observed, self._log_density_terms(eta, theta), 0.0))

    def pointwise_log_density(self, eta, theta=None):
        """Per-observation log p(y_i | η_i, θ), 0 where y_i is missing.

        Parameters
        ----------
        eta : array_like, shape (n,)
            Linear predictor (finite).
        theta : array_like, shape (p,), optional
            Likelihood hyperparameters on the internal scale; default :attr:`theta0`.

        Returns
        -------
        numpy.ndarray, shape (n,)
            Terms whose sum is :meth:`log_density` (e.g. for pointwise model criteria).

        Raises
        ------
        InputError
            If ``eta`` or ``theta`` has the wrong length or is not finite.
        """
        eta = self._check_eta(eta)
        theta = self._check_theta(theta)
        with np.errstate(over="ignore"):
            terms = self._log_density_terms(eta, theta)
        return np.where(self.observed, terms, 0.0)

    def eta_derivatives(self, eta, theta=None):
        """First, second and third derivatives of log p(y_i | η_i, θ) in η_i.

        Parameters
        ----------
        eta : array_like, shape (n,)
            Linear predictor (finite).
        theta : array_like, shape (p,), optional
            Hyperparameters on the internal scale; default :attr:`theta0`.

        Returns
        -------
        d1, d2, d3 : numpy.ndarray, each of shape (n,)
            Elementwise derivatives; 0 where y_i is missing.

        Raises
        ------
        InputError
            If ``eta`` or ``theta`` has the wrong length or is not finite.
        """
        eta = self._check_eta(eta)
        theta = self._check_theta(theta)
        with np.errstate(over="ignore"):
            return self._observed_eta_derivatives(eta, theta)

    def _observed_eta_derivatives(self, eta, theta):
        """:meth:`_eta_derivatives` as three new arrays of shape (n,), 0 where missing (η, θ
        validated); a subclass with a one-pass kernel overrides it."""
        derivatives = self._eta_derivatives(eta, theta)
        return tuple(
            np.where(self.observed, np.broadcast_to(d, (self.n,)), 0.0) for d in derivatives
        )

    def theta_derivatives(self, eta, theta=None):
        """Derivatives of the log-likelihood in the hyperparameters θ.

        Parameters
        ----------
        eta : array_like, shape (n,)
            Linear predictor (finite).
        theta : array_like, shape (p,), optional
            Hyperparameters on the internal scale; default :attr:`theta0`.

        Returns
        -------
        g : numpy.ndarray, shape (p,)
            ``g[k] = ∂/∂θ_k Σ_i log p(y_i | η_i, θ)``.
        g_eta : numpy.ndarray, shape (p, n)
            ``g_eta[k, i] = ∂² log p_i / ∂η_i ∂θ_k``.
        g_eta2 : numpy.ndarray, shape (p, n)
            ``g_eta2[k, i] = ∂³ log p_i / ∂η_i² ∂θ_k``.

        All three are empty (p = 0) for likelihoods without hyperparameters; missing
        observations contribute 0.

        Raises
        ------
        InputError
            If ``eta`` or ``theta`` has the wrong length or is not finite.
        """
        eta = self._check_eta(eta)
        theta = self._check_theta(theta)
        p = theta.size
        if p == 0:
            return np.zeros(0), np.zeros((0, self.n)), np.zeros((0, self.n))
        with np.errstate(over="ignore"):
            terms, g_eta, g_eta2 = self._theta_derivatives(eta, theta)
        terms, g_eta, g_eta2 = (
            np.where(self.observed, np.broadcast_to(a, (p, self.n)), 0.0)
            for a in (terms, g_eta, g_eta2)
        )
        return terms.sum(axis=1), g_eta, g_eta2

    def log_prior(self, theta=None):
        """Log prior density of θ on the internal scale (0 for hyperparameters without a prior).

        Parameters
        ----------
        theta : array_like, shape (p,), optional
            Default :attr:`theta0`.

        Returns
        -------
        float
        """
        theta = self._check_theta(theta)
        return float(
            sum(prior.log_density(t) for prior, t in zip(self.priors, theta) if prior is not None)
        )

    def log_prior_grad(self, theta=None):
        """Gradient of :meth:`log_prior` in θ, shape (p,)."""
        theta = self._check_theta(theta)
        return np.array(
            [
                0.0 if prior is None else prior.log_density_grad(t)
                for prior, t in zip(self.priors, theta)
            ],
            dtype=float,
        ).reshape(theta.size)

    def mean(self, eta, theta=None):
        """E[y_i | η_i, θ] for every i (missing observations included), shape (n,).

        Where a per-observation setting (exposure, trials, scale) was left NaN at a
        missing observation, the mean there is NaN.
        """
        eta = self._check_eta(eta)
        theta = self._check_theta(theta)
        with np.errstate(over="ignore"):
            return np.asarray(self._mean(eta, theta), dtype=float)

    def sample(self, eta, theta=None, rng=None):
        """Draw y ~ p(y | η, θ) for every i (missing observations included), shape (n,).

        Parameters
        ----------
        eta : array_like, shape (n,)
            Linear predictor (finite).
        theta : array_like, shape (p,), optional
            Hyperparameters on the internal scale; default :attr:`theta0`.
        rng : None, int or numpy.random.Generator, optional
            Random source, passed to :func:`numpy.random.default_rng`.

        Returns
        -------
        numpy.ndarray, shape (n,)
            Simulated data as floats; NaN where a per-observation setting is NaN.

        Raises
        ------
        InputError
            If ``eta``/``theta`` are invalid, ``rng`` is not a valid seed or
            generator, or the mean is too large for NumPy's sampler.
        """
        eta = self._check_eta(eta)
        theta = self._check_theta(theta)
        try:
            rng = np.random.default_rng(rng)
        except (TypeError, ValueError) as exc:
            raise InputError(
                f"rng must be None, an integer seed or a numpy.random.Generator, got {rng!r}."
            ) from exc
        with np.errstate(over="ignore"):
            return np.asarray(self._sample(eta, theta, rng), dtype=float)

    def __repr__(self):
        return (
            f"{type(self).__name__}(n={self.n}, observed={int(self.observed.sum())}, "
            f"theta_names={self.theta_names})"
        )

    # -- per-observation formulas (subclasses) ----------------------------------
    def _log_density_terms(self, eta, theta):  # pragma: no cover - abstract
        raise NotImplementedError

    def _eta_derivatives(self, eta, theta):  # pragma: no cover - abstract
        raise NotImplementedError

    def _theta_derivatives(self, eta, theta):  # pragma: no cover - abstract
        raise NotImplementedError

    def _mean(self, eta, theta):  # pragma: no cover - abstract
        raise NotImplementedError

    def _sample(self, eta, theta, rng):  # pragma: no cover - abstract
        raise NotImplementedError

    # -- validation helpers ------------------------------------------------------
    @property
    def _name(self):
        return type(self).__name__

    def _check_response(self, y):
        """y as a 1-D float array (NaN = missing) and its observed mask, or InputError."""
        y = self._real_array(y, "y")
        if y.ndim != 1:
            raise InputError(
                f"{self._name}: y must be one-dimensional, got shape {y.shape}; "
                "pass y.ravel() for a column vector."
            )
        if y.size == 0:
            raise InputError(f"{self._name}: y is empty; give at least one entry (NaN = missing).")
        infinite = np.isinf(y)
        if infinite.any():
            raise InputError(
                f"{self._name}: y has {int(infinite.sum())} infinite value(s) (first at index "
                f"{int(np.argmax(infinite))}); use NaN to mark a missing observation."
            )
        return y, ~np.isnan(y)

    def _check_counts(self, what="counts"):
        """Raise InputError unless every observed y_i is a non-negative integer."""
        values = self.y[self.observed]
        bad = (values < 0) | (values != np.floor(values))
        if bad.any():
            index = int(np.flatnonzero(self.observed)[np.argmax(bad)])
            raise InputError(
                f"{self._name}: y must be non-negative integer {what}, got {self.y[index]!r} "
                f"at index {index} ({int(bad.sum())} bad value(s)); use NaN for missing."
            )

    def _per_observation(self, value, name, default, integer=False, allow_zero=False):
        """A per-observation setting (exposure, trials, scale) as a float array of length n.

        ``None`` gives ``default`` everywhere, a scalar is broadcast. Every entry must be
        finite and positive (non-negative with ``allow_zero``; an integer with
        ``integer``), except that NaN is accepted where y is missing (it is never used
        there except by :meth:`mean` and :meth:`sample`, which then return NaN).

        Returns
        -------
        values : numpy.ndarray
            As given (NaN kept).
        filled : numpy.ndarray
            NaN entries replaced by ``default`` for the vectorised formulas.
        """
        if value is None:
            values = np.full(self.n, float(default))
            return values, values.copy()
        values = self._real_array(value, name, "must be numeric")
        if values.ndim == 0:
            values = np.full(self.n, float(values))
        elif values.shape != (self.n,):
            raise InputError(
                f"{self._name}: {name} has shape {values.shape} but y has shape ({self.n},); "
                "give one value per observation or a scalar."
            )
        nan = np.isnan(values)
        if (nan & self.observed).any():
            index = int(np.argmax(nan & self.observed))
            raise InputError(
                f"{self._name}: {name} is NaN at index {index} where y is observed; "
                f"{name} may be NaN only where y is missing."
            )
        finite = values[~nan]
        if allow_zero:
            bad = ~np.isfinite(finite) | (finite < 0)
            requirement = "finite and >= 0"
        else:
            bad = ~np.isfinite(finite) | (finite <= 0)
            requirement = "finite and > 0"
        if integer:
            bad |= np.isfinite(finite) & (finite != np.floor(finite))
            requirement += " integers"
        if bad.any():
            index = int(np.flatnonzero(~nan)[np.argmax(bad)])
            raise InputError(
                f"{self._name}: {name} must be {requirement}, got {values[index]!r} at index "
                f"{index} ({int(bad.sum())} bad value(s))."
            )
        return values, np.where(nan, float(default), values)

    def _set_prior(self, k, prior):
        """Attach ``prior`` (a Prior or None) to hyperparameter ``k``."""
        if prior is not None and not isinstance(prior, Prior):
            raise InputError(
                f"{self._name}: prior must be a gmrf_core.likelihoods Prior (e.g. PCPrecision, "
                f"NormalPrior) or None, got {type(prior).__name__}."
            )
        priors = list(self.priors)
        priors[k] = prior
        self.priors = tuple(priors)

    def _set_log_theta0(self, k, value, name):
        """Set θ0[k] = log(value) from a natural-scale start value, a finite number > 0."""
        array = self._real_array(value, name, "must be a number")
        if array.ndim != 0:
            raise InputError(
                f"{self._name}: {name} must be a single number, got shape {array.shape}."
            )
        value = float(array)
        if not (np.isfinite(value) and value > 0.0):
            raise InputError(f"{self._name}: {name} must be finite and > 0, got {value!r}.")
        self.theta0[k] = np.log(value)

    def _real_array(self, value, name, requirement="must be an array of numbers"):
        """``value`` as a float array, or InputError for strings, complex numbers and
        anything else that is not real (NumPy would parse strings and drop imaginary parts)."""
        try:
            array = np.asarray(value)
        except (TypeError, ValueError) as exc:
            raise InputError(f"{self._name}: {name} {requirement} ({exc}).") from exc
        kind = array.dtype.kind
        if kind == "c" or (kind == "O" and any(isinstance(v, complex) for v in array.flat)):
            raise InputError(
                f"{self._name}: {name} {requirement}, got complex values; pass real numbers "
                "(the imaginary part would be dropped)."
            )
        if kind in "USO" and any(isinstance(v, (str, bytes)) for v in array.flat):
            raise InputError(
                f"{self._name}: {name} {requirement}, got strings; convert them first "
                "(e.g. np.asarray(values, dtype=float))."
            )
        if kind not in "biufO":
            raise InputError(f"{self._name}: {name} {requirement}, got dtype {array.dtype}.")
        try:
            return np.array(array, dtype=float)
        except (TypeError, ValueError) as exc:
            raise InputError(f"{self._name}: {name} {requirement} ({exc}).") from exc

    def _check_eta(self, eta):
        """η as a finite float array of shape (n,), or InputError."""
        eta = self._real_array(eta, "eta")
        if eta.shape != (self.n,):
            raise InputError(
                f"{self._name}: eta has shape {eta.shape}, expected ({self.n},) "
                "(one linear predictor per observation, missing ones included)."
            )
        finite = np.isfinite(eta)
        if not finite.all():
            index = int(np.argmin(finite))
            raise InputError(
                f"{self._name}: eta must be finite, got {eta[index]} at index {index} "
                f"({int((~finite).sum())} non-finite value(s))."
            )
        return eta

    def _check_theta(self, theta):
        """θ as a finite float array of shape (p,) (θ0 when None), or InputError."""
        p = len(self.theta_names)
        if theta is None:
            return self.theta0.copy()
        theta = self._real_array(theta, "theta").reshape(-1)
        if theta.size != p:
            raise InputError(
                f"{self._name} expects {p} hyperparameter(s) {self.theta_names}, got {theta.size}."
            )
        if not np.all(np.isfinite(theta)):
            raise InputError(f"{self._name}: hyperparameters must be finite, got {theta}.")
        return theta
