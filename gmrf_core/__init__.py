"""gmrf_core: fast, exact-gradient inference for latent Gaussian Markov random fields."""

from . import errors
from .errors import (
    ConvergenceError,
    DerivativeError,
    GMRFError,
    InputError,
    NotPositiveDefiniteError,
    NotSymmetricError,
    PatternError,
    PatternMismatchError,
)

__version__ = "0.1.0"

__all__ = [
    "errors",
    "GMRFError",
    "InputError",
    "NotSymmetricError",
    "NotPositiveDefiniteError",
    "PatternMismatchError",
    "PatternError",
    "ConvergenceError",
    "DerivativeError",
]

from . import likelihoods  # noqa: E402
from .gmrf import GMRF  # noqa: E402
from .linalg import Factor, SelectedInverse, Symbolic, analyze, cholesky  # noqa: E402

__all__ += ["GMRF", "Factor", "SelectedInverse", "Symbolic", "analyze", "cholesky", "likelihoods"]
