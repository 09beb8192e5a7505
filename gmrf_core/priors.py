"""Priors on hyperparameters, on their internal (unconstrained) scale — all of them.

Every density here is a density *of the internal parameter* (e.g. the log precision,
logit φ, log range), so the Jacobian of the change of variables from the natural
parameter is included and the result can be added directly to a log-likelihood that
is optimised or integrated over θ. Latent models and likelihoods share these classes:
a model's or likelihood's ``log_prior(θ)`` is the sum of the log densities of the
priors attached to its hyperparameters.

One-parameter priors (protocol :class:`Prior`: ``log_density``, ``log_density_grad``,
``log_density_hess`` of a float): :class:`PCPrecision` (P(σ > u) = α on a log
precision), :class:`NormalPrior`, :class:`PCBYM2Phi` (BYM2 mixing parameter).
Joint prior: :class:`PCMaternPrior` (range and standard deviation of a Matérn field,
θ = (log ρ, log σ), arrays in and out).

References
----------
Simpson, D., Rue, H., Riebler, A., Martins, T. G. and Sørbye, S. H. (2017). Penalising
model component complexity: a principled, practical approach to constructing priors.
*Statistical Science* 32(1), 1–28.

Riebler, A., Sørbye, S. H., Simpson, D. and Rue, H. (2016). An intuitive Bayesian
spatial model for disease mapping that accounts for scaling. *Statistical Methods in
Medical Research* 25(4), 1145–1165.

Fuglstad, G.-A., Simpson, D., Lindgren, F. and Rue, H. (2019). Constructing priors that
penalize the complexity of Gaussian random fields. *JASA* 114(525), 445–452.
"""

import math

import numpy as np

from .errors import InputError
from .validation import check_positive, check_probability

__all__ = [
    "Prior",
    "PCPrecision",
    "NormalPrior",
    "pc_precision_rate",
    "PCBYM2Phi",
    "PCMaternPrior",
]

# |z| below which H(z) = (z - log(1+z))/z² and its derivatives use their Taylor series
_SERIES_RADIUS = 0.05
_SERIES_TERMS = 24
# |logit φ| above which (1 - φ)³ underflows in the second derivative (φ = 1 - 1e-87 there)
_LOGIT_LIMIT = 200.0


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


# ---------------------------------------------------------------- BYM2 mixing
def _h_functions(z, w, log_w):
    """H(z) = (z - log(1+z))/z² and its first two derivatives, elementwise.

    ``w`` = 1 + z and ``log_w`` = log(1 + z) are passed separately because the caller
    computes them without cancellation. Series H(z) = Σ_{m>=2} (-1)^m z^(m-2)/m near 0.
    """
    small = np.abs(z) < _SERIES_RADIUS
    h = np.empty_like(z)
    h1 = np.empty_like(z)
    h2 = np.empty_like(z)
    zs = z[small]
    m = np.arange(2, 2 + _SERIES_TERMS, dtype=float)
    signs = (-1.0) ** m
    powers = zs[:, None] ** np.arange(_SERIES_TERMS)[None, :]
    h[small] = powers @ (signs / m)
    # H'(z) = Σ_{m>=3} (-1)^m (m-2) z^(m-3)/m,  H''(z) = Σ_{m>=4} (-1)^m (m-2)(m-3) z^(m-4)/m
    h1[small] = powers[:, : _SERIES_TERMS - 1] @ (signs[1:] * (m[1:] - 2) / m[1:])
    h2[small] = powers[:, : _SERIES_TERMS - 2] @ (signs[2:] * (m[2:] - 2) * (m[2:] - 3) / m[2:])
    big = ~small
    zb, wb = z[big], w[big]
    hb = (zb - log_w[big]) / zb**2
    h1b = 1.0 / (zb * wb) - 2.0 * hb / zb
    h[big] = hb
    h1[big] = h1b
    h2[big] = -(1.0 + 2.0 * zb) / (zb * wb) ** 2 - 2.0 * h1b / zb + 2.0 * hb / zb**2
    return h, h1, h2


class PCBYM2Phi(Prior):
    """PC prior of the BYM2 mixing parameter φ, exact, on θ = logit φ.

    The base model is φ = 0 (unstructured iid effect only). For the BYM2 field
    b = √(1-φ) v + √φ u (precision fixed at 1) the covariance is
    Σ(φ) = (1-φ) I + φ R*⁻ with R*⁻ the generalised inverse of the scaled Besag
    structure R* (zero on the null space, i.e. the covariance of the
    sum-to-zero-constrained model). With γ̃_i the eigenvalues of R*⁻ (1/γ_i for the
    nonzero eigenvalues γ_i of R*, 0 for the rank-deficiency ones) and x_i = γ̃_i - 1,
    the Kullback–Leibler divergence from the base model is (Riebler et al. 2016)

        KLD(φ) = ½ Σ_i [φ x_i - log(1 + φ x_i)],

    the distance d(φ) = √(2 KLD(φ)) gets an exponential prior with rate λ, and
    P(φ < u) = α gives λ = -log(1-α)/d(u). The density of θ = logit φ is

        log π(θ) = log λ - λ d(φ) + log d'(φ) + log φ + log(1 - φ).

    Everything is evaluated exactly from the eigenvalues (no spline table as in
    R-INLA's ``inla.pc.bym.phi``, which interpolates log d on a grid and
    renormalises numerically, so values agree with R-INLA up to that interpolation).
    Writing d = φ √S₂ with S₂ = Σ x_i² H(φx_i), H(z) = (z - log(1+z))/z², and
    d' = S₁ / (2√S₂) with S₁ = Σ x_i²/(1 + φx_i) keeps every term free of
    cancellation as φ → 0.

    A PCBYM2Phi made with only ``u`` and ``alpha`` is a specification: give it to
    :class:`~gmrf_core.models.BYM2` (``prior={"logit_phi": PCBYM2Phi()}``), which binds
    it to the eigenvalues of its scaled structure. It can also be bound by hand with
    ``eigenvalues`` (all n eigenvalues of R*, null ones included) and
    ``rank_deficiency`` (how many of the smallest are structural zeros).

    Parameters
    ----------
    u : float
        Reference value of φ, 0 < u < 1 (default 0.5).
    alpha : float
        P(φ < u), 0 < α < 1 (default 2/3, R-INLA's default).
    eigenvalues : array_like, optional
        Eigenvalues of the scaled structure matrix R*.
    rank_deficiency : int, optional
        Number of zero eigenvalues of R* (required with ``eigenvalues``).

    Raises
    ------
    InputError
        u or α outside (0, 1); eigenvalues that are negative, non-finite, or whose
        ``rank_deficiency`` smallest are not numerically zero; a structure equal to
        the identity (only islands: φ is not identifiable).
    """

    def __init__(self, u=0.5, alpha=2.0 / 3.0, eigenvalues=None, rank_deficiency=None):
        self.u = check_probability(u, "u", "PCBYM2Phi")
        self.alpha = check_probability(alpha, "alpha", "PCBYM2Phi")
        self._excess = None
        self.rate = None
        if eigenvalues is not None:
            if rank_deficiency is None:
                raise InputError(
                    "PCBYM2Phi: give rank_deficiency (number of zero eigenvalues) with eigenvalues."
                )
            self._excess = self._excess_variances(eigenvalues, rank_deficiency)
            self.rate = -math.log1p(-self.alpha) / self._distance(self.u)

    @staticmethod
    def _excess_variances(eigenvalues, rank_deficiency):
        """x_i = γ̃_i - 1 from the eigenvalues of R*."""
        values = np.sort(np.asarray(eigenvalues, dtype=float).reshape(-1))
        if values.size == 0 or not np.all(np.isfinite(values)):
            raise InputError("PCBYM2Phi: eigenvalues must be a non-empty finite array.")
        k = int(rank_deficiency)
        if not 0 <= k < values.size:
            raise InputError(
                f"PCBYM2Phi: rank_deficiency must be in [0, {values.size}), got {rank_deficiency}."
            )
        tolerance = 1e-8 * max(values[-1], 1.0)
        if np.any(np.abs(values[:k]) > tolerance) or np.any(values[k:] <= tolerance):
            raise InputError(
                f"PCBYM2Phi: expected exactly {k} zero eigenvalue(s) and positive others; got "
                f"smallest eigenvalues {values[: k + 2]}."
            )
        inverse = np.concatenate([np.zeros(k), 1.0 / values[k:]])
        excess = inverse - 1.0
        if np.all(np.abs(excess) < 1e-12):
            raise InputError(
                "PCBYM2Phi: the structure is the identity (a graph of islands only), so the "
                "BYM2 mixing parameter is not identifiable and the PC prior is undefined."
            )
        return excess

    def bind(self, eigenvalues, rank_deficiency):
        """A copy of this prior bound to the eigenvalues of a scaled structure R*."""
        return PCBYM2Phi(self.u, self.alpha, eigenvalues, rank_deficiency)

    @property
    def is_bound(self):
        """True once the eigenvalues of the structure are known."""
        return self._excess is not None

    def _sums(self, phi, one_minus_phi):
        """S₁, S₂ and their first two φ-derivatives at φ."""
        x = self._excess
        z = phi * x
        w = one_minus_phi + phi * (x + 1.0)  # 1 + φx without cancellation as φ → 1
        h, h1, h2 = _h_functions(z, w, np.log(w))
        x2 = x * x
        s1 = np.sum(x2 / w)
        s1_d = -np.sum(x2 * x / w**2)
        s1_dd = 2.0 * np.sum(x2 * x2 / w**3)
        s2 = np.sum(x2 * h)
        s2_d = np.sum(x2 * x * h1)
        s2_dd = np.sum(x2 * x2 * h2)
        return s1, s1_d, s1_dd, s2, s2_d, s2_dd

    def _distance(self, phi):
        """d(φ) = √(2 KLD(φ))."""
        _, _, _, s2, _, _ = self._sums(phi, 1.0 - phi)
        return phi * math.sqrt(s2)

    def distance(self, phi):
        """The distance d(φ) = √(2 KLD(φ)) from the base model φ = 0 (bound prior only)."""
        self._require_bound()
        phi = float(phi)
        if not 0.0 <= phi < 1.0:
            raise InputError(f"PCBYM2Phi: phi must lie in [0, 1), got {phi}.")
        return self._distance(phi)

    def _require_bound(self):
        if self._excess is None:
            raise InputError(
                "PCBYM2Phi needs the eigenvalues of the scaled Besag structure: attach it to a "
                "BYM2 model (prior={'logit_phi': PCBYM2Phi(u, alpha)}) or pass eigenvalues= "
                "and rank_deficiency=."
            )

    def _terms(self, value):
        """φ, 1-φ, and the pieces of log π(θ) and its derivatives."""
        self._require_bound()
        theta = self._value(value)
        if abs(theta) > _LOGIT_LIMIT:
            raise InputError(
                f"PCBYM2Phi: logit phi = {theta} is outside [-{_LOGIT_LIMIT}, {_LOGIT_LIMIT}], "
                "where powers of 1 - phi underflow."
            )
        phi = 1.0 / (1.0 + math.exp(-theta))
        one_minus_phi = 1.0 / (1.0 + math.exp(theta))
        return theta, phi, one_minus_phi, self._sums(phi, one_minus_phi)

    def log_density(self, value):
        """log π(θ) at θ = logit φ = ``value``."""
        theta, phi, one_minus_phi, (s1, _, _, s2, _, _) = self._terms(value)
        log_phi = -np.logaddexp(0.0, -theta)
        log_one_minus_phi = -np.logaddexp(0.0, theta)
        distance = phi * math.sqrt(s2)
        log_distance_d = math.log(0.5 * s1) - 0.5 * math.log(s2)
        return float(
            math.log(self.rate)
            - self.rate * distance
            + log_distance_d
            + log_phi
            + log_one_minus_phi
        )

    def log_density_grad(self, value):
        """d log π(θ)/dθ = φ(1-φ)[-λ d'(φ) + (log d')'(φ)] + 1 - 2φ."""
        _, phi, one_minus_phi, (s1, s1_d, _, s2, s2_d, _) = self._terms(value)
        distance_d = 0.5 * s1 / math.sqrt(s2)
        log_distance_dd = s1_d / s1 - 0.5 * s2_d / s2
        jacobian = phi * one_minus_phi
        return float(jacobian * (-self.rate * distance_d + log_distance_dd) + one_minus_phi - phi)

    def log_density_hess(self, value):
        """d² log π(θ)/dθ², by the chain rule through φ(θ) (φ' = φ(1-φ), φ'' = φ'(1-2φ))."""
        _, phi, one_minus_phi, (s1, s1_d, s1_dd, s2, s2_d, s2_dd) = self._terms(value)
        distance_d = 0.5 * s1 / math.sqrt(s2)
        log_distance_dd = s1_d / s1 - 0.5 * s2_d / s2
        log_distance_ddd = s1_dd / s1 - (s1_d / s1) ** 2 - 0.5 * (s2_dd / s2 - (s2_d / s2) ** 2)
        distance_dd = distance_d * log_distance_dd
        inner = -self.rate * distance_d + log_distance_dd
        inner_d = -self.rate * distance_dd + log_distance_ddd
        jacobian = phi * one_minus_phi
        return float(
            jacobian * (one_minus_phi - phi) * inner + jacobian**2 * inner_d - 2.0 * jacobian
        )

    def __repr__(self):
        state = "bound" if self.is_bound else "unbound"
        return f"PCBYM2Phi(u={self.u!r}, alpha={self.alpha!r}, {state})"


# --------------------------------------------------------------- Matérn range, sd
class PCMaternPrior:
    """Joint PC prior of the practical range ρ and marginal standard deviation σ (d = 2).

    Fuglstad et al. (2019, theorem 2.6) with d = 2: ρ and σ are independent,

        π(ρ) = λ_ρ ρ⁻² exp(−λ_ρ / ρ),   λ_ρ = −log(α_ρ) ρ₀      (P(ρ < ρ₀) = α_ρ),
        π(σ) = λ_σ exp(−λ_σ σ),          λ_σ = −log(α_σ) / σ₀    (P(σ > σ₀) = α_σ).

    On the internal scale θ = (log ρ, log σ) the Jacobians ρ and σ are included:

        log π(θ) = log λ_ρ − θ₀ − λ_ρ e^(−θ₀) + log λ_σ + θ₁ − λ_σ e^(θ₁),
        ∂/∂θ₀ = −1 + λ_ρ e^(−θ₀),    ∂/∂θ₁ = 1 − λ_σ e^(θ₁),
        ∂²/∂θ₀² = −λ_ρ e^(−θ₀),      ∂²/∂θ₁² = −λ_σ e^(θ₁),  mixed = 0.

    Parameters
    ----------
    range0 : float
        Reference practical range ρ₀ > 0.
    range_alpha : float
        P(ρ < ρ₀), in (0, 1).
    sigma0 : float
        Reference standard deviation σ₀ > 0.
    sigma_alpha : float
        P(σ > σ₀), in (0, 1).

    Attributes
    ----------
    range_rate, sigma_rate : float
        λ_ρ and λ_σ.

    Raises
    ------
    InputError
        If a reference value is not a finite positive number or a probability is
        not in (0, 1).

    References
    ----------
    Fuglstad, Simpson, Lindgren and Rue (2019), JASA 114(525), 445–452; R-INLA's
    ``inla.spde2.pcmatern``.
    """

    def __init__(self, range0, range_alpha, sigma0, sigma_alpha):
        owner = "PCMaternPrior"
        self.range0 = check_positive(range0, "range0", owner)
        self.range_alpha = check_probability(range_alpha, "range_alpha", owner)
        self.sigma0 = check_positive(sigma0, "sigma0", owner)
        self.sigma_alpha = check_probability(sigma_alpha, "sigma_alpha", owner)
        self.range_rate = -math.log(self.range_alpha) * self.range0
        self.sigma_rate = -math.log(self.sigma_alpha) / self.sigma0

    def _exponentials(self, theta):
        theta = np.asarray(theta, dtype=float).reshape(-1)
        if theta.size != 2 or not np.all(np.isfinite(theta)):
            raise InputError(
                "PCMaternPrior: theta must be 2 finite numbers (log range, log sigma), "
                f"got {theta}."
            )
        # overflow to inf gives density -inf / gradient ±inf: the honest value
        with np.errstate(over="ignore"):
            return theta, float(np.exp(-theta[0])), float(np.exp(theta[1]))

    def log_density(self, theta):
        """log π(θ) on the internal scale (Jacobian included)."""
        theta, inv_range, sigma = self._exponentials(theta)
        return (
            math.log(self.range_rate)
            - theta[0]
            - self.range_rate * inv_range
            + math.log(self.sigma_rate)
            + theta[1]
            - self.sigma_rate * sigma
        )

    def log_density_grad(self, theta):
        """Gradient of :meth:`log_density` in θ, shape (2,)."""
        _, inv_range, sigma = self._exponentials(theta)
        return np.array([-1.0 + self.range_rate * inv_range, 1.0 - self.sigma_rate * sigma])

    def log_density_hess(self, theta):
        """Hessian of :meth:`log_density` in θ, shape (2, 2) (diagonal)."""
        _, inv_range, sigma = self._exponentials(theta)
        return np.diag([-self.range_rate * inv_range, -self.sigma_rate * sigma])

    def __repr__(self):
        return (
            f"PCMaternPrior(range0={self.range0!r}, range_alpha={self.range_alpha!r}, "
            f"sigma0={self.sigma0!r}, sigma_alpha={self.sigma_alpha!r})"
        )
