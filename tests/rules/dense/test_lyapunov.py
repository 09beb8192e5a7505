"""Tests of gmrf_core.rules.dense.lyapunov (continuous and discrete equations)."""

import numpy as np
import pytest
import scipy.linalg as sla

from gmrf_core.errors import InputError
from gmrf_core.rules import dense
from tests.rules.dense.cases import (
    contractive,
    primal_inputs,
    rule_tests,
    stable,
)

CASES = {
    "continuous_lyapunov": (
        dense.solve_continuous_lyapunov,
        dense.solve_continuous_lyapunov_jvp,
        dense.solve_continuous_lyapunov_vjp,
        lambda rng, n: (stable(rng, n), rng.standard_normal((n, n))),
        lambda rng, n: (rng.standard_normal((n, n)), rng.standard_normal((n, n))),
        False,
    ),
    "discrete_lyapunov": (
        dense.solve_discrete_lyapunov,
        dense.solve_discrete_lyapunov_jvp,
        dense.solve_discrete_lyapunov_vjp,
        lambda rng, n: (contractive(rng, n), rng.standard_normal((n, n))),
        lambda rng, n: (rng.standard_normal((n, n)), rng.standard_normal((n, n))),
        False,
    ),
}

test_jvp_matches_finite_differences, test_vjp_dot_product_test = rule_tests(CASES)


@pytest.mark.parametrize("n", [1, 3, 12])
def test_primal_values_match_scipy(n):
    inputs = primal_inputs(n)
    c = inputs["c"]
    stable_a = inputs["stable_a"]
    x = dense.solve_continuous_lyapunov(stable_a, c)
    np.testing.assert_allclose(stable_a @ x + x @ stable_a.T, c, atol=1e-12)
    np.testing.assert_allclose(x, sla.solve_continuous_lyapunov(stable_a, c), atol=1e-12)
    contractive_a = inputs["contractive_a"]
    x = dense.solve_discrete_lyapunov(contractive_a, c)
    np.testing.assert_allclose(contractive_a @ x @ contractive_a.T - x + c, 0.0, atol=1e-12)


def test_lyapunov_aliases():
    assert dense.lyap_jvp is dense.solve_continuous_lyapunov_jvp
    assert dense.dlyap_vjp is dense.solve_discrete_lyapunov_vjp


@pytest.mark.parametrize(
    "call",
    [
        lambda: dense.solve_continuous_lyapunov(-np.eye(2), np.eye(3)),
        lambda: dense.solve_discrete_lyapunov(0.5 * np.eye(2), np.ones((2, 1))),
    ],
)
def test_bad_input_raises_input_error(call):
    with pytest.raises(InputError):
        call()


def test_unsolvable_lyapunov_equations_raise():
    # eigenvalues 1 and -1 sum to zero: A X + X A^T = C is singular
    with pytest.raises(InputError, match="no unique solution"):
        dense.solve_continuous_lyapunov(np.diag([1.0, -1.0]), np.eye(2))
    with pytest.raises(InputError, match="no unique solution"):
        dense.solve_continuous_lyapunov_vjp(np.zeros((2, 2)), np.eye(2))
    # eigenvalues 2 and 0.5 multiply to one: A X A^T - X + C = 0 is singular
    with pytest.raises(InputError, match="no unique solution"):
        dense.solve_discrete_lyapunov(np.diag([2.0, 0.5]), np.eye(2))
    with pytest.raises(InputError, match="no unique solution"):
        dense.solve_discrete_lyapunov_jvp(np.eye(3), np.eye(3), None, None)
