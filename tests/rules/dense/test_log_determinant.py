"""Tests of gmrf_core.rules.dense.log_determinant (logdet, slogdet)."""

import numpy as np
import pytest

from gmrf_core.errors import InputError
from gmrf_core.rules import dense
from tests.rules.dense.cases import (
    primal_inputs,
    rule_tests,
    spd,
    symmetric,
    well_conditioned,
)

CASES = {
    "logdet": (
        dense.logdet,
        dense.logdet_jvp,
        dense.logdet_vjp,
        spd,
        symmetric,
        True,
    ),
    "slogdet": (
        dense.slogdet,
        dense.slogdet_jvp,
        dense.slogdet_vjp,
        lambda rng, n: well_conditioned(rng, n) * np.where(np.arange(n) == 0, -1.0, 1.0),
        lambda rng, n: rng.standard_normal((n, n)),
        False,
    ),
}

test_jvp_matches_finite_differences, test_vjp_dot_product_test = rule_tests(CASES)


@pytest.mark.parametrize("n", [1, 3, 12])
def test_primal_values_match_numpy(n):
    inputs = primal_inputs(n)
    a, s = inputs["a"], inputs["s"]
    assert dense.logdet(s) == pytest.approx(np.linalg.slogdet(s)[1], rel=1e-12, abs=1e-13)
    sign, logabsdet = dense.slogdet(-a)
    ref_sign, ref_logabsdet = np.linalg.slogdet(-a)
    assert sign == ref_sign
    assert logabsdet == pytest.approx(ref_logabsdet, rel=1e-12, abs=1e-13)


def test_none_tangent_means_zero():
    assert dense.logdet_jvp(spd(np.random.default_rng(5), 3), None)[1] == 0.0


def test_analytic_formulas_on_small_examples():
    # d/dt log det(A + t I) at t = 0 is tr(A^{-1})
    s = np.array([[4.0, 1.0], [1.0, 3.0]])
    assert dense.logdet_jvp(s, np.eye(2))[1] == pytest.approx(np.trace(np.linalg.inv(s)))
    value, pullback = dense.logdet_vjp(s)
    np.testing.assert_allclose(pullback(2.0)[0], 2.0 * np.linalg.inv(s), rtol=1e-12)


def test_slogdet_pullback_requires_pair():
    _, pullback = dense.slogdet_vjp(np.eye(2) * 3.0)
    with pytest.raises(InputError, match="pair"):
        pullback(1.0)
    np.testing.assert_allclose(pullback((None, 1.0))[0], np.eye(2) / 3.0)


@pytest.mark.parametrize(
    "call",
    [
        lambda: dense.logdet_vjp(np.eye(2))[1](np.ones(2)),
        lambda: dense.logdet_vjp(np.eye(2))[1](np.nan),
    ],
)
def test_bad_cotangent_raises_input_error(call):
    with pytest.raises(InputError):
        call()
