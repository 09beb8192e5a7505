"""The package's exception hierarchy.

Every error raised on purpose by gmrf_core derives from :class:`GMRFError`, so
``except gm.GMRFError`` catches them all. Each subclass also derives from the
closest built-in exception (``ValueError``, ``ArithmeticError``) so generic
handlers keep working.
"""

__all__ = [
    "GMRFError",
    "InputError",
    "NotSymmetricError",
    "NotPositiveDefiniteError",
    "PatternMismatchError",
    "PatternError",
    "ConvergenceError",
    "TaskError",
]


class GMRFError(Exception):
    """Base class of every exception raised by gmrf_core."""


class InputError(GMRFError, ValueError):
    """Input of the wrong shape, type or content (NaN/inf, empty, bad counts, ...)."""


class NotSymmetricError(InputError):
    """A matrix that must be symmetric is not (beyond the relative tolerance)."""


class NotPositiveDefiniteError(GMRFError, ArithmeticError):
    """The Cholesky factorization broke down: the matrix is not positive definite.

    Attributes
    ----------
    column : int
        Column of the matrix, in the *original* (unpermuted) ordering, at which
        the pivot was zero, negative or not finite.
    """

    def __init__(self, message, column):
        super().__init__(message)
        self.column = int(column)


class PatternMismatchError(InputError):
    """A matrix given to ``refactorize`` does not have the analysed sparsity pattern."""


class PatternError(InputError):
    """Entries requested outside the sparsity pattern where they are available."""


class ConvergenceError(GMRFError, RuntimeError):
    """An iterative method (e.g. Newton for the Laplace mode) did not converge."""


class TaskError(GMRFError, RuntimeError):
    """A task run by :func:`gmrf_core.parallel.map_model` failed twice (it is retried once).

    Attributes
    ----------
    item : object
        The task's item (usually θ) it failed at.
    index : int
        Position of the item in the submitted sequence.
    original : BaseException
        The exception the task raised the second time (also ``__cause__``).
    """

    def __init__(self, message, item=None, index=None, original=None):
        super().__init__(message)
        self.item = item
        self.index = index
        self.original = original

    def __reduce__(self):
        return (type(self), (str(self), self.item, self.index, self.original))
