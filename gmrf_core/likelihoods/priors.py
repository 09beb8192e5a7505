"""Priors on a single likelihood hyperparameter, expressed on its internal (unconstrained) scale.

A likelihood's ``log_prior(theta)`` is the sum of the log densities of the priors
attached to its hyperparameters. Every density here is a density *of the internal
parameter* (e.g. the log precision), so the Jacobian of the change of variables from
the natural parameter is included and the result can be added directly to a
log-likelihood that is optimised or integrated over θ.

References
----------
Simpson, D., Rue, H., Riebler, A., Martins, T. G. and Sørbye, S. H. (2017).
Penalising model component complexity: a principled, practical approach to
constructing priors. *Statistical Science* 32(1), 1–28.
"""

import math

import numpy as np

from ..errors import InputError

__all__ = ["Prior", "PCPrecision", "NormalPrior", "pc_precision_rate"]


def _finite_scalar(value, name, owner):
    try:
        value = float(value)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{owner}: {name} must be a real number, got {value!r}.") from exc
    if not math.isfinite(value):
        raise InputError(f"{owner}: {name} must be finite, got {value}.")
    return value


class Prior:
    """Base class: prior density of one hyperparameter on its internal scale.

    Subclasses implement :meth:`log_density`, :meth:`log_density_grad` and
    :meth:`log_density_hess`, each taking the internal-scale value as a float.
    """

    def log_density(self, value):  # pragma: no cover - abstract
        """Log density at ``value`` (internal scale, Jacobian included)."""
        raise NotImplementedError

    def log_density_grad(self, value):  # pragma: no cover - abstract
        """First derivative of :meth:`log_density` at ``value``."""
        raise NotImplementedError

    def log_density_hess(self, value):  # pragma: no cover - abstract
        """Second derivative of :meth:`log_density` at ``value``."""
        raise NotImplementedError

    def _value(self, value):
        return _finite_scalar(value, "value", type(self).__name__)


def pc_precision_rate(u, alpha):
    """Rate λ of the PC prior on a standard deviation σ with P(σ > u) = α.

    The PC prior of a Gaussian precision τ = σ⁻² puts an exponential distribution on
    σ (Simpson et al. 2017, section 3.3), so P(σ > u) = exp(-λu) = α gives
    λ = -log(α) / u.

    Parameters
    ----------
    u : float
        Upper reference value of the standard deviation, u > 0.
    alpha : float
        Tail probability P(σ > u), 0 < α < 1.

    Returns
    -------
    float
        λ > 0.

    Raises
    ------
    InputError
        If u is not a finite positive number or α is not in (0, 1).
    """
    u = _finite_scalar(u, "u", "PCPrecision")
    alpha = _finite_scalar(alpha, "alpha", "PCPrecision")
    if u <= 0:
        raise InputError(f"PCPrecision: u must be > 0 (a standard deviation), got {u}.")
    if not 0.0 < alpha < 1.0:
        raise InputError(f"PCPrecision: alpha must be in (0, 1) (a probability), got {alpha}.")
    return -math.log(alpha) / u


class PCPrecision(Prior):
    """Penalised-complexity prior on a Gaussian precision, on the log-precision scale.

    With σ = τ^(-1/2) the standard deviation and θ = log τ the internal parameter,
    the PC prior is σ ~ Exponential(λ) with λ = -log(α)/u, i.e. P(σ > u) = α
    (Simpson et al. 2017, section 3.3; R-INLA's ``pc.prec``). Since σ = exp(-θ/2)
    and |dσ/dθ| = σ/2, the density of θ is

        log π(θ) = log(λ/2) − θ/2 − λ exp(−θ/2),
        d/dθ     = −1/2 + (λ/2) exp(−θ/2),
        d²/dθ²   = −(λ/4) exp(−θ/2).

    Parameters
    ----------
    u : float
        Reference standard deviation, u > 0.
    alpha : float
        P(σ > u), 0 < α < 1.

    Attributes
    ----------
    u, alpha : float
        As given.
    rate : float
        λ = -log(α)/u.

    Raises
    ------
    InputError
        If u is not a finite positive number or α is not in (0, 1).
    """

    def __init__(self, u, alpha):
        self.rate = pc_precision_rate(u, alpha)
        self.u = float(u)
        self.alpha = float(alpha)

    def _inverse_sd(self, value):
        # exp(-θ/2) = 1/σ; overflows to inf (density -inf) only for θ < about -1419
        with np.errstate(over="ignore"):
            return float(np.exp(-value / 2.0))

    def log_density(self, value):
        """log π(θ) at θ = ``value`` (log precision), Jacobian included."""
        value = self._value(value)
        return math.log(self.rate / 2.0) - value / 2.0 - self.rate * self._inverse_sd(value)

    def log_density_grad(self, value):
        """d log π(θ)/dθ = −1/2 + (λ/2) exp(−θ/2)."""
        value = self._value(value)
        return -0.5 + 0.5 * self.rate * self._inverse_sd(value)

    def log_density_hess(self, value):
        """d² log π(θ)/dθ² = −(λ/4) exp(−θ/2)."""
        value = self._value(value)
        return -0.25 * self.rate * self._inverse_sd(value)

    def __repr__(self):
        return f"PCPrecision(u={self.u!r}, alpha={self.alpha!r})"


class NormalPrior(Prior):
    """Normal prior N(mean, sd²) directly on the internal-scale hyperparameter.

    log π(θ) = −½ log(2π sd²) − (θ − mean)² / (2 sd²). Useful e.g. as a weakly
    informative prior on the log size of the negative binomial.

    Parameters
    ----------
    mean : float
        Prior mean on the internal scale.
    sd : float
        Prior standard deviation on the internal scale, sd > 0.

    Raises
    ------
    InputError
        If mean is not finite or sd is not a finite positive number.
    """

    def __init__(self, mean, sd):
        self.mean = _finite_scalar(mean, "mean", "NormalPrior")
        self.sd = _finite_scalar(sd, "sd", "NormalPrior")
        if self.sd <= 0:
            raise InputError(f"NormalPrior: sd must be > 0, got {self.sd}.")

    def log_density(self, value):
        """log π(θ) at θ = ``value``."""
        z = (self._value(value) - self.mean) / self.sd
        return -0.5 * z * z - math.log(self.sd) - 0.5 * math.log(2.0 * np.pi)

    def log_density_grad(self, value):
        """d log π(θ)/dθ = −(θ − mean)/sd²."""
        return -(self._value(value) - self.mean) / self.sd**2

    def log_density_hess(self, value):
        """d² log π(θ)/dθ² = −1/sd²."""
        self._value(value)
        return -1.0 / self.sd**2

    def __repr__(self):
        return f"NormalPrior(mean={self.mean!r}, sd={self.sd!r})"
