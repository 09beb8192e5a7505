"""Tests of gmrf_core.rules.dense: finite differences and the dot-product test for every rule."""

import numpy as np
import pytest
import scipy.linalg as sla
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from gmrf_core import testing
from gmrf_core.errors import InputError, NotPositiveDefiniteError, NotSymmetricError
from gmrf_core.rules import dense


@pytest.fixture(autouse=True)
def _single_blas_thread():
    # small matrices gain nothing from BLAS threads, and on a loaded machine OpenBLAS
    # threads slowed these tests more than ten-fold
    with threadpool_limits(limits=1, user_api="blas"):
        yield


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


# Each case: primal function, jvp, vjp, point builder, tangent builder, symmetric directions.
CASES = {
    "inv": (
        dense.inv,
        dense.inv_jvp,
        dense.inv_vjp,
        lambda rng, n: well_conditioned(rng, n),
        lambda rng, n: rng.standard_normal((n, n)),
        False,
    ),
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
    "cholesky": (
        dense.cholesky,
        dense.cholesky_jvp,
        dense.cholesky_vjp,
        spd,
        symmetric,
        True,
    ),
    "expm": (
        dense.expm,
        dense.expm_jvp,
        dense.expm_vjp,
        lambda rng, n: rng.standard_normal((n, n)) / np.sqrt(n),
        lambda rng, n: rng.standard_normal((n, n)),
        False,
    ),
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


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("name", sorted(CASES))
def test_jvp_matches_finite_differences(name, n):
    f, f_jvp, _, point, tangent, _ = CASES[name]
    rng = np.random.default_rng(100 + n)
    x = point(rng, n)
    x_dot = tangent(rng, n)
    result = testing.check_jvp(f, f_jvp, x, x_dot)
    assert result.max_rel_error < 1e-7


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("name", sorted(CASES))
def test_vjp_dot_product_test(name, n):
    f, f_jvp, f_vjp, point, _, symmetric_directions = CASES[name]
    rng = np.random.default_rng(200 + n)
    x = point(rng, n)
    # against finite differences, in random directions ...
    testing.check_vjp(f, f_vjp, x, rng=rng, symmetric=symmetric_directions)
    # ... and against the exact JVP, to rounding
    result = testing.check_vjp(
        f, f_vjp, x, rng=rng, f_jvp=f_jvp, symmetric=symmetric_directions, rtol=1e-11
    )
    assert result.max_rel_error < 1e-11


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
def test_primal_values_match_numpy_scipy(n):
    rng = np.random.default_rng(n)
    a = well_conditioned(rng, n)
    s = spd(rng, n)
    b = rng.standard_normal((n, 2))
    c = rng.standard_normal((n, n))
    np.testing.assert_allclose(dense.inv(a), np.linalg.inv(a), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(dense.solve(a, b), np.linalg.solve(a, b), rtol=1e-12, atol=1e-14)
    assert dense.logdet(s) == pytest.approx(np.linalg.slogdet(s)[1], rel=1e-12, abs=1e-13)
    sign, logabsdet = dense.slogdet(-a)
    ref_sign, ref_logabsdet = np.linalg.slogdet(-a)
    assert sign == ref_sign
    assert logabsdet == pytest.approx(ref_logabsdet, rel=1e-12, abs=1e-13)
    np.testing.assert_allclose(dense.cholesky(s), np.linalg.cholesky(s), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(dense.expm(c / n), sla.expm(c / n), rtol=1e-12, atol=1e-14)
    stable_a = stable(rng, n)
    x = dense.solve_continuous_lyapunov(stable_a, c)
    np.testing.assert_allclose(stable_a @ x + x @ stable_a.T, c, atol=1e-12)
    np.testing.assert_allclose(x, sla.solve_continuous_lyapunov(stable_a, c), atol=1e-12)
    contractive_a = contractive(rng, n)
    x = dense.solve_discrete_lyapunov(contractive_a, c)
    np.testing.assert_allclose(contractive_a @ x @ contractive_a.T - x + c, 0.0, atol=1e-12)


def test_none_tangent_means_zero():
    rng = np.random.default_rng(5)
    a = well_conditioned(rng, 4)
    b = rng.standard_normal(4)
    b_dot = rng.standard_normal(4)
    x, x_dot = dense.solve_jvp(a, b, None, b_dot)
    np.testing.assert_allclose(x_dot, np.linalg.solve(a, b_dot), rtol=1e-12)
    testing.check_jvp(dense.solve, dense.solve_jvp, (a, b), (None, b_dot))
    _, zero = dense.inv_jvp(a, None)
    assert np.all(zero == 0.0)
    assert dense.logdet_jvp(spd(rng, 3), None)[1] == 0.0


def test_analytic_formulas_on_small_examples():
    # d/dt log det(A + t I) at t = 0 is tr(A^{-1}); d/dt exp(t A) = A exp(tA) along A itself
    s = np.array([[4.0, 1.0], [1.0, 3.0]])
    assert dense.logdet_jvp(s, np.eye(2))[1] == pytest.approx(np.trace(np.linalg.inv(s)))
    a = np.array([[0.1, 0.7], [-0.3, 0.2]])
    np.testing.assert_allclose(dense.expm_jvp(a, a)[1], a @ sla.expm(a), rtol=1e-12)
    value, pullback = dense.logdet_vjp(s)
    np.testing.assert_allclose(pullback(2.0)[0], 2.0 * np.linalg.inv(s), rtol=1e-12)
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


def test_slogdet_pullback_requires_pair():
    _, pullback = dense.slogdet_vjp(np.eye(2) * 3.0)
    with pytest.raises(InputError, match="pair"):
        pullback(1.0)
    np.testing.assert_allclose(pullback((None, 1.0))[0], np.eye(2) / 3.0)


def test_lyapunov_aliases():
    assert dense.lyap_jvp is dense.solve_continuous_lyapunov_jvp
    assert dense.dlyap_vjp is dense.solve_discrete_lyapunov_vjp


# ----------------------------------------------------------------------------------
# bad input


@pytest.mark.parametrize(
    "call",
    [
        lambda: dense.inv(np.ones((2, 3))),
        lambda: dense.inv(np.ones(3)),
        lambda: dense.inv(np.zeros((0, 0))),
        lambda: dense.inv(np.array([[1.0, np.nan], [0.0, 1.0]])),
        lambda: dense.inv(np.array([[1.0, np.inf], [0.0, 1.0]])),
        lambda: dense.inv(np.eye(2) * (1 + 1j)),
        lambda: dense.inv(np.array([["a", "b"], ["c", "d"]])),
        lambda: dense.inv(sp.eye(3, format="csc")),
        lambda: dense.inv_jvp(np.eye(2), np.eye(3)),
        lambda: dense.inv_jvp(np.eye(2), np.full((2, 2), np.nan)),
        lambda: dense.solve(np.eye(3), np.ones(2)),
        lambda: dense.solve(np.eye(3), np.ones((3, 2, 1))),
        lambda: dense.solve_jvp(np.eye(3), np.ones(3), None, np.ones((3, 1))),
        lambda: dense.expm_jvp(np.eye(2), np.ones((2, 1))),
        lambda: dense.solve_continuous_lyapunov(-np.eye(2), np.eye(3)),
        lambda: dense.solve_discrete_lyapunov(0.5 * np.eye(2), np.ones((2, 1))),
        lambda: dense.inv_vjp(np.eye(2))[1](np.eye(3)),
        lambda: dense.logdet_vjp(np.eye(2))[1](np.ones(2)),
        lambda: dense.logdet_vjp(np.eye(2))[1](np.nan),
    ],
)
def test_bad_input_raises_input_error(call):
    with pytest.raises(InputError):
        call()


def test_error_messages_name_the_problem():
    with pytest.raises(InputError, match=r"square 2-D array, got shape \(2, 3\)"):
        dense.inv(np.ones((2, 3)))
    with pytest.raises(InputError, match=r"NaN or inf \(first at index \(0, 1\)\)"):
        dense.expm(np.array([[1.0, np.nan], [0.0, 1.0]]))
    with pytest.raises(InputError, match="A_dot has shape"):
        dense.expm_jvp(np.eye(2), np.eye(3))
    with pytest.raises(InputError, match="toarray"):
        dense.logdet(sp.eye(2, format="csr"))


@pytest.mark.parametrize("op", [dense.inv, dense.slogdet, lambda a: dense.solve(a, np.ones(3))])
def test_singular_matrix_raises(op):
    singular = np.array([[1.0, 2.0, 3.0], [2.0, 4.0, 6.0], [0.0, 1.0, 1.0]])
    with pytest.raises(InputError, match="singular"):
        op(singular)


@pytest.mark.parametrize("op", [dense.logdet, dense.cholesky, dense.logdet_vjp])
def test_not_positive_definite_reports_column(op):
    matrix = np.diag([2.0, 1.0, -1.0, 3.0])
    matrix[0, 1] = matrix[1, 0] = 0.5
    with pytest.raises(NotPositiveDefiniteError) as info:
        op(matrix)
    assert info.value.column == 2
    assert "column 2" in str(info.value)


def test_not_positive_definite_first_column():
    with pytest.raises(NotPositiveDefiniteError) as info:
        dense.cholesky_jvp(np.array([[-1.0, 0.0], [0.0, 1.0]]), np.eye(2))
    assert info.value.column == 0


@pytest.mark.parametrize("op", [dense.logdet, dense.cholesky, dense.cholesky_vjp])
def test_not_symmetric_raises(op):
    with pytest.raises(NotSymmetricError, match="symmetric"):
        op(np.array([[2.0, 1.0], [0.0, 2.0]]))


def test_cholesky_jvp_requires_symmetric_tangent():
    with pytest.raises(NotSymmetricError, match="A_dot"):
        dense.cholesky_jvp(np.eye(2), np.array([[0.0, 1.0], [0.0, 0.0]]))


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
