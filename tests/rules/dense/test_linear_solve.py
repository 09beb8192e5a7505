"""Tests of gmrf_core.rules.dense.linear_solve: finite differences, dot-product test, values."""

import numpy as np
import pytest

from gmrf_core import testing
from gmrf_core.errors import InputError
from gmrf_core.rules import dense
from tests.rules.dense.cases import (
    primal_inputs,
    rule_tests,
    well_conditioned,
)

CASES = {
    "solve_vector": (
        dense.solve,
        dense.solve_jvp,
        dense.solve_vjp,
        lambda rng, n: (well_conditioned(rng, n), rng.standard_normal(n)),
        lambda rng, n: (rng.standard_normal((n, n)), rng.standard_normal(n)),
        False,
    ),
    "solve_matrix": (
        dense.solve,
        dense.solve_jvp,
        dense.solve_vjp,
        lambda rng, n: (well_conditioned(rng, n), rng.standard_normal((n, 3))),
        lambda rng, n: (rng.standard_normal((n, n)), rng.standard_normal((n, 3))),
        False,
    ),
}

test_jvp_matches_finite_differences, test_vjp_dot_product_test = rule_tests(CASES)


@pytest.mark.parametrize("n", [1, 3, 12])
def test_primal_values_match_numpy(n):
    inputs = primal_inputs(n)
    a, b = inputs["a"], inputs["b"]
    np.testing.assert_allclose(dense.solve(a, b), np.linalg.solve(a, b), rtol=1e-12, atol=1e-14)


def test_none_tangent_means_zero():
    rng = np.random.default_rng(5)
    a = well_conditioned(rng, 4)
    b = rng.standard_normal(4)
    b_dot = rng.standard_normal(4)
    x, x_dot = dense.solve_jvp(a, b, None, b_dot)
    np.testing.assert_allclose(x_dot, np.linalg.solve(a, b_dot), rtol=1e-12)
    testing.check_jvp(dense.solve, dense.solve_jvp, (a, b), (None, b_dot))


@pytest.mark.parametrize(
    "call",
    [
        lambda: dense.solve(np.eye(3), np.ones(2)),
        lambda: dense.solve(np.eye(3), np.ones((3, 2, 1))),
        lambda: dense.solve_jvp(np.eye(3), np.ones(3), None, np.ones((3, 1))),
    ],
)
def test_bad_input_raises_input_error(call):
    with pytest.raises(InputError):
        call()
