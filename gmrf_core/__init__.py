"""gmrf_core: fast, exact-gradient inference for latent Gaussian Markov random fields.

Layers: :mod:`gmrf_core.kernels` (Numba kernels) and :mod:`gmrf_core.bindings` (BLAS)
underneath; :mod:`gmrf_core.linalg` (sparse Cholesky, selected inversion) and
:mod:`gmrf_core.rules` (hand-derived JVP/VJP rules) in the middle; latent
:mod:`~gmrf_core.models`, :mod:`~gmrf_core.likelihoods`, the Laplace objective
(:class:`LatentGaussianModel`) and :func:`fit` on top.
"""

from . import (
    datasets,
    errors,
    lattice,
    likelihoods,
    mesh,
    models,
    parallel,
    priors,
    rules,
    testing,
    variational,
)
from .errors import (
    ConvergenceError,
    GMRFError,
    InputError,
    NotPositiveDefiniteError,
    NotSymmetricError,
    PatternError,
    PatternMismatchError,
    TaskError,
)
from .formula import formula
from .gmrf import GMRF
from .inference import InlaResult, inla
from .laplace import LaplaceApproximation, LatentGaussianModel
from .linalg import Factor, SelectedInverse, Symbolic, analyze, cholesky
from .many import CrossValidationResult, cross_validate, fit_many, inla_many
from .optimize import FitResult, fit
from .variational import VariationalFitResult, fit_variational

__version__ = "0.1.0"

__all__ = [
    "analyze",
    "cholesky",
    "Symbolic",
    "Factor",
    "SelectedInverse",
    "GMRF",
    "LatentGaussianModel",
    "LaplaceApproximation",
    "fit",
    "fit_many",
    "inla_many",
    "cross_validate",
    "CrossValidationResult",
    "inla",
    "InlaResult",
    "formula",
    "FitResult",
    "fit_variational",
    "VariationalFitResult",
    "variational",
    "datasets",
    "lattice",
    "mesh",
    "priors",
    "errors",
    "likelihoods",
    "models",
    "rules",
    "testing",
    "GMRFError",
    "InputError",
    "NotSymmetricError",
    "NotPositiveDefiniteError",
    "PatternMismatchError",
    "PatternError",
    "ConvergenceError",
    "TaskError",
    "parallel",
]
