"""Tests of gmrf_core.rules.dense.inverse: finite differences, dot-product test, values."""

import numpy as np
import pytest

from gmrf_core.errors import InputError
from gmrf_core.rules import dense
from tests.rules.dense.cases import (
    primal_inputs,
    rule_tests,
    well_conditioned,
)

CASES = {
    "inv": (
        dense.inv,
        dense.inv_jvp,
        dense.inv_vjp,
        lambda rng, n: well_conditioned(rng, n),
        lambda rng, n: rng.standard_normal((n, n)),
        False,
    ),
}

test_jvp_matches_finite_differences, test_vjp_dot_product_test = rule_tests(CASES)


@pytest.mark.parametrize("n", [1, 3, 12])
def test_primal_values_match_numpy(n):
    a = primal_inputs(n)["a"]
    np.testing.assert_allclose(dense.inv(a), np.linalg.inv(a), rtol=1e-12, atol=1e-14)


def test_none_tangent_means_zero():
    a = well_conditioned(np.random.default_rng(5), 4)
    _, zero = dense.inv_jvp(a, None)
    assert np.all(zero == 0.0)


@pytest.mark.parametrize(
    "call",
    [
        lambda: dense.inv_jvp(np.eye(2), np.eye(3)),
        lambda: dense.inv_jvp(np.eye(2), np.full((2, 2), np.nan)),
        lambda: dense.inv_vjp(np.eye(2))[1](np.eye(3)),
    ],
)
def test_bad_tangents_raise_input_error(call):
    with pytest.raises(InputError):
        call()
