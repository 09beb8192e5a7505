"""Test matrices and the two generic checks every dense rule passes.

Each case is ``(f, f_jvp, f_vjp, point, tangent, symmetric_directions)``: the primal, its
rules, builders of a point and a tangent from ``(rng, n)``, and whether the dot-product
test uses symmetric directions.
"""

import numpy as np
import pytest

from gmrf_core import testing

SIZES = [1, 2, 5, 20]


def well_conditioned(rng, n):
    return 2.0 * np.eye(n) + rng.standard_normal((n, n)) / np.sqrt(n)


def spd(rng, n):
    factor = rng.standard_normal((n, n))
    matrix = factor @ factor.T / n + np.eye(n)
    return 0.5 * (matrix + matrix.T)


def symmetric(rng, n):
    matrix = rng.standard_normal((n, n))
    return 0.5 * (matrix + matrix.T)


def stable(rng, n):
    return rng.standard_normal((n, n)) / np.sqrt(n) - 2.0 * np.eye(n)


def contractive(rng, n):
    return 0.4 * rng.standard_normal((n, n)) / np.sqrt(n)


def primal_inputs(n):
    """The matrices of the primal-value tests, drawn in one fixed order from rng(n)."""
    rng = np.random.default_rng(n)
    a = well_conditioned(rng, n)
    s = spd(rng, n)
    b = rng.standard_normal((n, 2))
    c = rng.standard_normal((n, n))
    return {
        "a": a,
        "s": s,
        "b": b,
        "c": c,
        "stable_a": stable(rng, n),
        "contractive_a": contractive(rng, n),
    }


def rule_tests(cases):
    """The two generic tests over ``cases`` (name -> case), for a test module to bind.

    ``test_jvp_matches_finite_differences, test_vjp_dot_product_test = rule_tests(CASES)``
    """

    @pytest.mark.parametrize("n", SIZES)
    @pytest.mark.parametrize("name", sorted(cases))
    def test_jvp_matches_finite_differences(name, n):
        assert_jvp_matches_finite_differences(cases[name], n)

    @pytest.mark.parametrize("n", SIZES)
    @pytest.mark.parametrize("name", sorted(cases))
    def test_vjp_dot_product_test(name, n):
        assert_vjp_dot_product_test(cases[name], n)

    return test_jvp_matches_finite_differences, test_vjp_dot_product_test


def assert_jvp_matches_finite_differences(case, n):
    f, f_jvp, _, point, tangent, _ = case
    rng = np.random.default_rng(100 + n)
    x = point(rng, n)
    x_dot = tangent(rng, n)
    result = testing.check_jvp(f, f_jvp, x, x_dot)
    assert result.max_rel_error < 1e-7


def assert_vjp_dot_product_test(case, n):
    f, f_jvp, f_vjp, point, _, symmetric_directions = case
    rng = np.random.default_rng(200 + n)
    x = point(rng, n)
    # against finite differences, in random directions ...
    testing.check_vjp(f, f_vjp, x, rng=rng, symmetric=symmetric_directions)
    # ... and against the exact JVP, to rounding
    result = testing.check_vjp(
        f, f_vjp, x, rng=rng, f_jvp=f_jvp, symmetric=symmetric_directions, rtol=1e-11
    )
    assert result.max_rel_error < 1e-11
