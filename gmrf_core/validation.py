"""Small validators of scalar arguments, shared by models, priors and datasets.

Each returns the value in its canonical Python type or raises
:class:`~gmrf_core.errors.InputError` naming the owner (model or function), the
argument and what is accepted, so that every constructor rejects bad input the
same way.
"""

import math
import numbers

from .errors import InputError

__all__ = ["check_count", "check_probability", "check_positive"]


def check_count(value, name, owner, minimum=1):
    """Return ``value`` as an ``int >= minimum``, or raise InputError.

    Python and NumPy integers are accepted; booleans, floats (even integral ones such
    as ``3.0``) and strings are not, so a count computed by float arithmetic is
    rejected rather than silently truncated.

    Parameters
    ----------
    value : object
        The count to check.
    name : str
        Argument name, for the message.
    owner : str
        Model or function name, for the message.
    minimum : int
        Smallest accepted value (default 1).

    Returns
    -------
    int

    Raises
    ------
    InputError
        Not an integer, or smaller than ``minimum``.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InputError(f"{owner}: {name} must be an integer, got {value!r}.")
    value = int(value)
    if value < minimum:
        raise InputError(f"{owner}: {name} must be >= {minimum}, got {value}.")
    return value


def _real(value, name, owner):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InputError(f"{owner}: {name} must be a real number, got {value!r}.")
    return float(value)


def check_probability(value, name, owner):
    """Return ``value`` as a float in the open interval (0, 1), or raise InputError.

    Raises
    ------
    InputError
        Not a real number (booleans and strings included), or outside (0, 1)
        (NaN included).
    """
    value = _real(value, name, owner)
    if not 0.0 < value < 1.0:
        raise InputError(f"{owner}: {name} must be a probability in (0, 1), got {value!r}.")
    return value


def check_positive(value, name, owner):
    """Return ``value`` as a finite float > 0, or raise InputError.

    Raises
    ------
    InputError
        Not a real number (booleans and strings included), not finite, or <= 0.
    """
    value = _real(value, name, owner)
    if not math.isfinite(value) or value <= 0.0:
        raise InputError(f"{owner}: {name} must be a finite number > 0, got {value!r}.")
    return value
