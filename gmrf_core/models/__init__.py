"""Latent GMRF priors: Q(θ) on a fixed sparsity pattern and dQ/dθ_k on that pattern.

Every model follows :class:`LatentModel`: ``n``, ``theta_names``, ``theta0``,
``precision(θ)`` (CSC on a pattern fixed across θ), ``precision_grad(θ)`` (dQ/dθ_k on
that same pattern), ``mean``/``mean_grad``, ``constraints``, ``rank_deficiency``,
analytic ``logdet``/``logdet_grad`` and ``constrained_logdet``/``constrained_logdet_grad``
where available, ``log_prior``/``log_prior_grad`` and ``to_natural``.

Models: :class:`IID`, :class:`AR1`, :class:`RW1`, :class:`RW2`, :class:`Besag`,
:class:`BYM2`, :class:`Kronecker`, :class:`Stack`, :class:`Custom`, and the SPDE/Matérn
fields :class:`Matern2D`, :class:`MaternSPDE`. Priors on hyperparameters:
:class:`PCPrecision`, :class:`NormalPrior`, :class:`PCBYM2Phi`.
"""

from ..mesh import Mesh, lattice_projection, mesh_from_points, projection_matrix
from ..priors import (
    NormalPrior,
    PCBYM2Phi,
    PCMaternPrior,
    PCPrecision,
    Prior,
    pc_precision_rate,
)
from .ar1 import AR1
from .base import LatentModel
from .besag import BYM2, Besag
from .composite import Kronecker, Stack
from .custom import Custom
from .iid import IID
from .random_walk import RW1, RW2

__all__ = [
    "LatentModel",
    "IID",
    "AR1",
    "RW1",
    "RW2",
    "Besag",
    "BYM2",
    "Kronecker",
    "Stack",
    "Custom",
    "Prior",
    "PCPrecision",
    "NormalPrior",
    "PCBYM2Phi",
    "pc_precision_rate",
    "Matern2D",
    "MaternSPDE",
    "PCMaternPrior",
    "Mesh",
    "mesh_from_points",
    "projection_matrix",
    "lattice_projection",
]

from .matern import Matern2D, MaternSPDE  # noqa: E402
