"""Tests of gmrf_core.rules.dense.cholesky_factor: finite differences, dot-product test."""

import numpy as np
import pytest

from gmrf_core.errors import NotPositiveDefiniteError, NotSymmetricError
from gmrf_core.rules import dense
from tests.rules.dense.cases import (
    primal_inputs,
    rule_tests,
    spd,
    symmetric,
)

CASES = {
    "cholesky": (
        dense.cholesky,
        dense.cholesky_jvp,
        dense.cholesky_vjp,
        spd,
        symmetric,
        True,
    ),
}

test_jvp_matches_finite_differences, test_vjp_dot_product_test = rule_tests(CASES)


@pytest.mark.parametrize("n", [1, 3, 12])
def test_primal_values_match_numpy(n):
    s = primal_inputs(n)["s"]
    np.testing.assert_allclose(dense.cholesky(s), np.linalg.cholesky(s), rtol=1e-12, atol=1e-14)


def test_analytic_formulas_on_small_examples():
    # scalar case of the Cholesky rules: L = sqrt(a), dL = da / (2 sqrt(a))
    factor, factor_dot = dense.cholesky_jvp([[4.0]], [[1.0]])
    assert factor_dot[0, 0] == pytest.approx(0.25)
    assert dense.cholesky_vjp([[4.0]])[1]([[1.0]])[0][0, 0] == pytest.approx(0.25)


def test_cholesky_pullback_ignores_upper_triangle_of_cotangent():
    rng = np.random.default_rng(8)
    s = spd(rng, 5)
    factor_bar = rng.standard_normal((5, 5))
    _, pullback = dense.cholesky_vjp(s)
    np.testing.assert_allclose(pullback(factor_bar)[0], pullback(np.tril(factor_bar))[0])
    assert np.allclose(pullback(factor_bar)[0], pullback(factor_bar)[0].T)


def test_not_positive_definite_first_column():
    with pytest.raises(NotPositiveDefiniteError) as info:
        dense.cholesky_jvp(np.array([[-1.0, 0.0], [0.0, 1.0]]), np.eye(2))
    assert info.value.column == 0


def test_cholesky_jvp_requires_symmetric_tangent():
    with pytest.raises(NotSymmetricError, match="A_dot"):
        dense.cholesky_jvp(np.eye(2), np.array([[0.0, 1.0], [0.0, 0.0]]))
