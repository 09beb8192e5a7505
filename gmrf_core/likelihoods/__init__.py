"""Observation models: log-likelihood of the linear predictor and its derivatives.

Every likelihood follows the protocol of :class:`Likelihood`: ``log_density``,
``eta_derivatives`` (orders 1–3 in η), ``theta_derivatives`` (in the likelihood's
own hyperparameters, including the mixed η–θ derivatives), ``log_prior`` /
``log_prior_grad``, ``mean`` and ``sample``. NaN in ``y`` marks a missing
observation, which contributes nothing.
"""

from ..priors import NormalPrior, PCPrecision, Prior, pc_precision_rate
from .base import Likelihood
from .binomial import Bernoulli, Binomial
from .gaussian import Gaussian
from .negative_binomial import NegativeBinomial
from .poisson import Poisson

__all__ = [
    "Likelihood",
    "Gaussian",
    "Poisson",
    "Bernoulli",
    "Binomial",
    "NegativeBinomial",
    "Prior",
    "PCPrecision",
    "NormalPrior",
    "pc_precision_rate",
]
