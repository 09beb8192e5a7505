"""Tests of the shared scalar validators."""

import numpy as np
import pytest

from gmrf_core.errors import InputError
from gmrf_core.validation import check_count, check_positive, check_probability


def test_check_count():
    assert check_count(3, "n", "t") == 3
    assert check_count(np.int32(5), "n", "t", minimum=5) == 5
    assert isinstance(check_count(np.int64(2), "n", "t"), int)
    assert check_count(0, "k", "t", minimum=0) == 0
    for bad in (True, 2.5, 3.0, "3", None, np.float64(2.0)):
        with pytest.raises(InputError, match="t: n must be an integer"):
            check_count(bad, "n", "t")
    with pytest.raises(InputError, match=">= 2, got 1"):
        check_count(1, "n", "t", minimum=2)


def test_check_probability():
    assert check_probability(0.25, "u", "t") == 0.25
    assert isinstance(check_probability(np.float32(0.5), "u", "t"), float)
    for bad in (0.0, 1.0, -0.1, 1.5, np.nan, np.inf):
        with pytest.raises(InputError, match=r"t: u must be a probability in \(0, 1\)"):
            check_probability(bad, "u", "t")
    for bad in (True, "0.5", None, [0.5]):
        with pytest.raises(InputError, match="real number"):
            check_probability(bad, "u", "t")


def test_check_positive():
    assert check_positive(2, "tau", "t") == 2.0
    assert check_positive(1e-300, "tau", "t") == 1e-300
    for bad in (0.0, -1.0, np.nan, np.inf, -np.inf):
        with pytest.raises(InputError, match="t: tau must be a finite number > 0"):
            check_positive(bad, "tau", "t")
    for bad in (True, "1", None):
        with pytest.raises(InputError, match="real number"):
            check_positive(bad, "tau", "t")
