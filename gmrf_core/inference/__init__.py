"""Full Bayesian inference over θ: the integrated nested Laplace approximation.

:func:`inla` (Rue, Martino & Chopin 2009; Martins et al. 2013) with exact-gradient mode
and Hessian; one module per concept: :mod:`.hyperpriors` (default priors),
:mod:`.design` (z-coordinates, grid, CCD), :mod:`.points` (the θ-level tasks),
:mod:`.marginals` (θ and latent marginals), :mod:`.criteria` (DIC, WAIC, CPO, PIT),
:mod:`.result` (:class:`InlaResult`) and :mod:`.driver` (:func:`inla`).
"""

from .driver import inla
from .hyperpriors import WithDefaultPriors, default_priors
from .result import InlaResult

__all__ = ["inla", "InlaResult", "default_priors", "WithDefaultPriors"]
