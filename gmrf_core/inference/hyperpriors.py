"""Default hyperparameter priors for full Bayesian inference, and the model that carries them.

:func:`gmrf_core.inla` integrates over θ, so every hyperparameter needs a proper prior.
Where a latent model or likelihood was built without one, a documented default in the
spirit of R-INLA's defaults is attached to that hyperparameter (by its internal name; the
part after the last ``.`` for stacked / Kronecker models):

============================== =======================================================
internal name                  default prior (on the internal scale, Jacobian included)
============================== =======================================================
``log_tau``, ``log_*precision`` PC prior on the precision, P(σ > 1) = 0.01
                               (R-INLA's ``pc.prec`` with ``param = c(1, 0.01)``)
``log_range``                  PC prior on the Matérn range, P(ρ < D/20) = 0.05 with D the
                               model's diameter (Fuglstad et al. 2019, the range half of
                               R-INLA's ``inla.spde2.pcmatern``); D = 1 when unknown
``log_sigma``                  PC prior on the standard deviation, P(σ > 1) = 0.01
``atanh_rho``                  N(0, 1/0.6): R-INLA's N(0, precision 0.15) on
                               log((1+ρ)/(1−ρ)) = 2 atanh ρ
``logit_phi``                  the BYM2 PC prior P(φ < 0.5) = 0.5 (R-INLA's default) when
                               the model can bind it, else N(0, 1.5²) on logit φ
``mu`` (a mean)                N(0, 1000): the vague prior of the fixed effects
anything else                  N(0, 10²) on the internal scale
============================== =======================================================

:class:`WithDefaultPriors` wraps a :class:`~gmrf_core.LatentGaussianModel` and adds
these log-densities to its objective and gradient; everything else is delegated to the
model, so it can go wherever a model goes (``gm.fit``, ``gmrf_core.parallel.map_model``).

References
----------
Simpson, D., Rue, H., Riebler, A., Martins, T. G. and Sørbye, S. H. (2017). Penalising model
component complexity: a principled, practical approach to constructing priors. *Statistical
Science* 32(1), 1–28.

Fuglstad, G.-A., Simpson, D., Lindgren, F. and Rue, H. (2019). Constructing priors that
penalize the complexity of Gaussian random fields. *JASA* 114(525), 445–452.
"""

import math

import numpy as np

from ..priors import NormalPrior, PCBYM2Phi, PCPrecision, Prior

__all__ = ["PCRange", "PCStandardDeviation", "default_priors", "WithDefaultPriors"]


class PCRange(Prior):
    """PC prior on a 2-D Matérn range ρ, on θ = log ρ: P(ρ < ρ₀) = α.

    Fuglstad et al. (2019): the inverse range 1/ρ is exponential with rate
    λ = −log(α) ρ₀ (in two dimensions), so log π(θ) = log λ − θ − λ e^(−θ).
    """

    def __init__(self, range0, alpha):
        self.range0 = float(range0)
        self.alpha = float(alpha)
        self.rate = -math.log(self.alpha) * self.range0

    def log_density(self, value):
        value = self._value(value)
        return math.log(self.rate) - value - self.rate * math.exp(-value)

    def log_density_grad(self, value):
        value = self._value(value)
        return -1.0 + self.rate * math.exp(-value)

    def log_density_hess(self, value):
        value = self._value(value)
        return -self.rate * math.exp(-value)

    def __repr__(self):
        return f"PCRange(range0={self.range0:.4g}, alpha={self.alpha!r})"


class PCStandardDeviation(Prior):
    """PC prior on a standard deviation σ, on θ = log σ: P(σ > σ₀) = α.

    σ is exponential with rate λ = −log(α)/σ₀ (Simpson et al. 2017), so
    log π(θ) = log λ + θ − λ e^θ.
    """

    def __init__(self, sigma0, alpha):
        self.sigma0 = float(sigma0)
        self.alpha = float(alpha)
        self.rate = -math.log(self.alpha) / self.sigma0

    def log_density(self, value):
        value = self._value(value)
        return math.log(self.rate) + value - self.rate * math.exp(value)

    def log_density_grad(self, value):
        value = self._value(value)
        return 1.0 - self.rate * math.exp(value)

    def log_density_hess(self, value):
        value = self._value(value)
        return -self.rate * math.exp(value)

    def __repr__(self):
        return f"PCStandardDeviation(sigma0={self.sigma0!r}, alpha={self.alpha!r})"


def _leaves(part, names):
    """(leaf model, its θ names) in θ order for a latent model, stacks/products unrolled."""
    blocks = getattr(part, "blocks", None)
    if blocks is not None:
        out = []
        for block in blocks:
            out.extend(_leaves(block, block.theta_names))
        return out
    time_model = getattr(part, "time_model", None)
    if time_model is not None:
        return _leaves(time_model, time_model.theta_names) + _leaves(
            part.space_model, part.space_model.theta_names
        )
    return [(part, tuple(names))]


def _has_prior_flags(part):
    """One bool per θ of a leaf model or likelihood: True where a prior is attached."""
    names = tuple(part.theta_names)
    priors = tuple(getattr(part, "priors", ()) or ())
    if len(priors) == len(names):
        return [p is not None for p in priors]
    joint = getattr(part, "prior", None)  # e.g. a Matérn model's joint PC prior
    if joint is not None and hasattr(joint, "log_density"):
        return [True] * len(names)
    return [False] * len(names)


def _default_for(name, owner):
    """(Prior, description) of the default prior of one hyperparameter."""
    leaf = name.rsplit(".", 1)[-1]
    if leaf == "log_tau" or (leaf.startswith("log_") and leaf.endswith("precision")):
        return PCPrecision(1.0, 0.01), "PC prior on the precision, P(sigma > 1) = 0.01"
    if leaf == "log_range":
        diameter = float(getattr(owner, "diameter", 1.0) or 1.0)
        prior = PCRange(diameter / 20.0, 0.05)
        return prior, f"PC prior on the range, P(range < {diameter / 20.0:.4g}) = 0.05"
    if leaf == "log_sigma":
        return PCStandardDeviation(1.0, 0.01), "PC prior on sigma, P(sigma > 1) = 0.01"
    if leaf == "atanh_rho":
        sd = 1.0 / math.sqrt(0.6)
        return NormalPrior(0.0, sd), f"N(0, {sd:.4g}^2) on atanh(rho)"
    if leaf == "logit_phi":
        bind = getattr(owner, "_bind_prior", None)
        if bind is not None:
            try:
                prior = bind(leaf, PCBYM2Phi(0.5, 0.5))
                if getattr(prior, "is_bound", False):
                    return prior, "PC prior on phi, P(phi < 0.5) = 0.5"
            except Exception:  # noqa: BLE001 - any failure falls back to the normal default
                pass
        return NormalPrior(0.0, 1.5), "N(0, 1.5^2) on logit(phi)"
    if leaf == "mu":
        return NormalPrior(0.0, math.sqrt(1000.0)), "N(0, 1000) on the mean"
    return NormalPrior(0.0, 10.0), "N(0, 10^2) on the internal scale"


def default_priors(model):
    """The default priors for the hyperparameters of ``model`` that have none.

    Parameters
    ----------
    model : LatentGaussianModel

    Returns
    -------
    list of (index, name, Prior, description)
        One entry per θ without a prior, in ``model.theta_names`` order.
    """
    owners, flags = [], []
    for leaf, names in _leaves(model.prior, model.prior.theta_names):
        owners.extend([leaf] * len(names))
        flags.extend(_has_prior_flags(leaf))
    owners.extend([model.likelihood] * len(model.likelihood.theta_names))
    flags.extend(_has_prior_flags(model.likelihood))
    out = []
    for index, (name, owner, has) in enumerate(zip(model.theta_names, owners, flags)):
        if not has:
            prior, description = _default_for(name, owner)
            out.append((index, name, prior, description))
    return out


class WithDefaultPriors:
    """A model whose objective includes default priors on the θ that had none.

    ``objective(θ) = model.objective(θ) − Σ_k log π_k(θ_k)`` over the defaults, and the
    gradient likewise; every other attribute is the model's own.

    Parameters
    ----------
    model : LatentGaussianModel
    defaults : list of (index, name, Prior, description)
        From :func:`default_priors`.
    """

    def __init__(self, model, defaults):
        self.__dict__["_model"] = model
        self.__dict__["_defaults"] = list(defaults)

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.__dict__["_model"], name)

    def __getstate__(self):
        return {"_model": self._model, "_defaults": self._defaults}

    def __setstate__(self, state):
        self.__dict__.update(state)

    @property
    def base_model(self):
        """The wrapped model."""
        return self._model

    @property
    def defaults(self):
        """The default priors, as given."""
        return list(self._defaults)

    def default_log_prior(self, theta):
        """Σ_k log π_k(θ_k) over the default priors."""
        theta = np.asarray(theta, dtype=float).reshape(-1)
        return float(sum(prior.log_density(theta[k]) for k, _n, prior, _d in self._defaults))

    def default_log_prior_grad(self, theta):
        """Gradient of :meth:`default_log_prior`."""
        theta = np.asarray(theta, dtype=float).reshape(-1)
        grad = np.zeros(theta.size)
        for k, _name, prior, _description in self._defaults:
            grad[k] = prior.log_density_grad(theta[k])
        return grad

    def log_prior(self, theta):
        return self._model.log_prior(theta) + self.default_log_prior(theta)

    def log_prior_grad(self, theta):
        return self._model.log_prior_grad(theta) + self.default_log_prior_grad(theta)

    def objective(self, theta):
        return self._model.objective(theta) - self.default_log_prior(theta)

    def value_and_grad(self, theta):
        value, grad = self._model.value_and_grad(theta)
        return value - self.default_log_prior(theta), grad - self.default_log_prior_grad(theta)

    def gradient(self, theta):
        return self._model.gradient(theta) - self.default_log_prior_grad(theta)

    def __repr__(self):
        return f"WithDefaultPriors({self._model!r}, {len(self._defaults)} default prior(s))"
