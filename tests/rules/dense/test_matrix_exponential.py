"""Tests of gmrf_core.rules.dense.matrix_exponential: finite differences, dot-product test."""

import numpy as np
import pytest
import scipy.linalg as sla

from gmrf_core import testing
from gmrf_core.errors import InputError
from gmrf_core.rules import dense
from tests.rules.dense.cases import (
    primal_inputs,
    rule_tests,
)

CASES = {
    "expm": (
        dense.expm,
        dense.expm_jvp,
        dense.expm_vjp,
        lambda rng, n: rng.standard_normal((n, n)) / np.sqrt(n),
        lambda rng, n: rng.standard_normal((n, n)),
        False,
    ),
}

test_jvp_matches_finite_differences, test_vjp_dot_product_test = rule_tests(CASES)


def test_expm_large_uses_scipy_frechet_and_matches_block_formula():
    # n = 25 is above the block-formula threshold, so scipy.linalg.expm_frechet is used
    rng = np.random.default_rng(3)
    n = 25
    matrix = rng.standard_normal((n, n)) / np.sqrt(n)
    direction = rng.standard_normal((n, n))
    testing.check_jvp(dense.expm, dense.expm_jvp, matrix, direction)
    testing.check_vjp(dense.expm, dense.expm_vjp, matrix, rng=rng, f_jvp=dense.expm_jvp)
    block = np.block([[matrix, direction], [np.zeros((n, n)), matrix]])
    np.testing.assert_allclose(
        dense.expm_jvp(matrix, direction)[1], sla.expm(block)[:n, n:], rtol=1e-10, atol=1e-12
    )


@pytest.mark.parametrize("n", [1, 3, 12])
def test_primal_values_match_scipy(n):
    c = primal_inputs(n)["c"]
    np.testing.assert_allclose(dense.expm(c / n), sla.expm(c / n), rtol=1e-12, atol=1e-14)


def test_analytic_formulas_on_small_examples():
    # d/dt exp(t A) = A exp(tA) along A itself
    a = np.array([[0.1, 0.7], [-0.3, 0.2]])
    np.testing.assert_allclose(dense.expm_jvp(a, a)[1], a @ sla.expm(a), rtol=1e-12)


def test_bad_tangent_raises_input_error():
    with pytest.raises(InputError):
        dense.expm_jvp(np.eye(2), np.ones((2, 1)))
