"""Tests of the public derivative checkers in gmrf_core.testing: they pass correct
derivatives and, above all, fail wrong ones."""

import numpy as np
import pytest
import scipy.linalg as sla
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from gmrf_core import testing
from gmrf_core.errors import InputError, PatternError
from gmrf_core.rules import dense


@pytest.fixture(autouse=True)
def _single_blas_thread():
    # small matrices gain nothing from BLAS threads, and on a loaded machine OpenBLAS
    # threads slowed these tests more than ten-fold
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def general(n, seed=0):
    rng = np.random.default_rng(seed)
    return 2.0 * np.eye(n) + rng.standard_normal((n, n)) / np.sqrt(n)


def spd(n, seed=0):
    rng = np.random.default_rng(seed)
    factor = rng.standard_normal((n, n))
    return factor @ factor.T / n + np.eye(n)


# ----------------------------------------------------------------------------------
# deliberately wrong derivatives


def inv_jvp_wrong_sign(A, A_dot):
    inverse = np.linalg.inv(A)
    return inverse, inverse @ A_dot @ inverse


def inv_vjp_missing_transpose(A):
    inverse = np.linalg.inv(A)

    def pullback(Y_bar):
        return (-(inverse @ Y_bar @ inverse),)

    return inverse, pullback


def cholesky_jvp_full_diagonal(A, A_dot):
    # forgets to halve the diagonal in Phi: wrong only on the diagonal of L_dot
    factor = np.linalg.cholesky(A)
    middle = np.linalg.solve(factor, np.linalg.solve(factor, A_dot).T).T
    return factor, factor @ np.tril(middle)


def cholesky_vjp_full_diagonal(A):
    # forgets to halve the diagonal in Phi of the reverse rule
    factor = np.linalg.cholesky(A)

    def pullback(L_bar):
        middle = np.tril(factor.T @ np.tril(L_bar))
        middle = 0.5 * (middle + middle.T)
        inverse = np.linalg.inv(factor)
        return (inverse.T @ middle @ inverse,)

    return factor, pullback


def test_check_jvp_detects_wrong_sign():
    with pytest.raises(AssertionError) as info:
        testing.check_jvp(dense.inv, inv_jvp_wrong_sign, general(4), rng=1)
    message = str(info.value)
    assert "JVP disagrees with central finite differences" in message
    assert "step h = " in message
    assert "relative" in message and "worst entry" in message
    assert "rng seed = 1" in message


def test_check_jvp_detects_subtle_diagonal_error():
    matrix = spd(5)
    direction = np.random.default_rng(2).standard_normal((5, 5))
    direction = direction + direction.T
    with pytest.raises(AssertionError, match="JVP disagrees"):
        testing.check_jvp(dense.cholesky, cholesky_jvp_full_diagonal, matrix, direction)
    testing.check_jvp(dense.cholesky, dense.cholesky_jvp, matrix, direction)


def test_check_jvp_detects_wrong_primal_output():
    def shifted_jvp(A, A_dot):
        out, out_dot = dense.expm_jvp(A, A_dot)
        return out + 1e-3, out_dot

    with pytest.raises(AssertionError, match="primal output of f_jvp differs from f"):
        testing.check_jvp(dense.expm, shifted_jvp, general(3), rng=0)


def test_check_jvp_detects_error_in_one_output_of_a_tuple():
    def f(a):
        return np.sin(a), np.sum(a**2)

    def f_jvp_wrong(a, a_dot):
        return f(a), (np.cos(a) * a_dot, np.sum(a * a_dot))  # second should have 2 *

    def f_jvp(a, a_dot):
        return f(a), (np.cos(a) * a_dot, 2.0 * np.sum(a * a_dot))

    x = np.linspace(0.1, 1.0, 6)
    with pytest.raises(AssertionError, match=r"output\[1\]"):
        testing.check_jvp(f, f_jvp_wrong, x, rng=0)
    testing.check_jvp(f, f_jvp, x, rng=0)


@pytest.mark.parametrize("use_jvp", [False, True])
def test_check_vjp_detects_missing_transpose(use_jvp):
    f_jvp = dense.inv_jvp if use_jvp else None
    with pytest.raises(AssertionError) as info:
        testing.check_vjp(dense.inv, inv_vjp_missing_transpose, general(4), rng=3, f_jvp=f_jvp)
    message = str(info.value)
    assert "dot-product test failed" in message
    assert "<out_bar, J x_dot>" in message and "<J^T out_bar, x_dot>" in message
    assert "relative error" in message


def test_check_vjp_detects_subtle_diagonal_error():
    with pytest.raises(AssertionError, match="dot-product test failed"):
        testing.check_vjp(dense.cholesky, cholesky_vjp_full_diagonal, spd(4), rng=4, symmetric=True)
    testing.check_vjp(dense.cholesky, dense.cholesky_vjp, spd(4), rng=4, symmetric=True)


def test_check_vjp_detects_wrong_number_of_cotangents():
    def solve_vjp_one_cotangent(A, b):
        out, pullback = dense.solve_vjp(A, b)
        return out, lambda x_bar: pullback(x_bar)[:1]

    with pytest.raises(AssertionError, match="1 cotangents for 2 primals"):
        testing.check_vjp(dense.solve, solve_vjp_one_cotangent, (general(3), np.ones(3)), rng=0)


def test_check_vjp_with_given_directions():
    a = general(3)
    x_dot = np.random.default_rng(5).standard_normal((3, 3))
    out_bar = np.random.default_rng(6).standard_normal((3, 3))
    result = testing.check_vjp(dense.expm, dense.expm_vjp, a, x_dot, out_bar)
    assert result.n_directions == 1
    with pytest.raises(AssertionError):
        testing.check_vjp(dense.expm, dense.expm_vjp, a, x_dot, out_bar, f_jvp=inv_jvp_wrong_sign)


def test_check_grad_passes_and_fails():
    def f(x):
        return np.sum(np.sin(x) * x**2)

    def grad(x):
        return np.cos(x) * x**2 + 2.0 * x * np.sin(x)

    def grad_wrong(x):
        g = grad(x)
        g[2] *= 1.01
        return g

    x = np.linspace(-1.0, 2.0, 5)
    result = testing.check_grad(f, grad, x, full=True, rng=0)
    assert result.n_directions == 3 + 5
    assert result.max_rel_error < 1e-8
    with pytest.raises(AssertionError, match="directional derivative disagrees"):
        testing.check_grad(f, grad_wrong, x, rng=0)
    with pytest.raises(AssertionError, match=r"x entry \(2,\): grad ="):
        testing.check_grad(f, grad_wrong, x, n_directions=0, full=True)


def test_check_grad_tuple_and_scalar_primals():
    def f(a, s):
        return s * dense.logdet(a)

    def grad(a, s):
        return s * np.linalg.inv(a), dense.logdet(a)

    testing.check_grad(f, grad, (spd(3), 1.7), rng=0, symmetric=True, full=True)
    testing.check_grad(lambda t: np.exp(2.0 * t), lambda t: 2.0 * np.exp(2.0 * t), 0.3, rng=0)
    with pytest.raises(AssertionError):
        testing.check_grad(lambda t: np.exp(2.0 * t), lambda t: np.exp(2.0 * t), 0.3, rng=0)


def test_check_grad_requires_scalar_function():
    with pytest.raises(InputError, match="real scalar"):
        testing.check_grad(lambda x: x, lambda x: np.ones_like(x), np.ones(3))


def test_rounding_term_allows_large_values_with_small_derivatives():
    # f ~ 1e6 with derivative ~ 1e-3: cancellation in the difference is bounded, not an error
    def f(x):
        return 1e6 + 1e-3 * np.sin(x)

    def f_jvp(x, x_dot):
        return f(x), 1e-3 * np.cos(x) * x_dot

    testing.check_jvp(f, f_jvp, np.linspace(0.0, 1.0, 4), rng=0)


def test_rng_seed_reproduces_directions():
    a = general(3)
    first = testing.check_jvp(dense.inv, dense.inv_jvp, a, rng=11)
    second = testing.check_jvp(dense.inv, dense.inv_jvp, a, rng=11)
    assert first.seed == 11
    assert first.max_abs_error == second.max_abs_error


def test_explicit_step():
    result = testing.check_jvp(dense.expm, dense.expm_jvp, general(2), rng=0, eps=1e-5)
    assert result.step == 1e-5
    # a far too large step makes the truncation error visible: the checker reports it
    with pytest.raises(AssertionError, match="step h = 1.000e"):
        testing.check_jvp(dense.expm, dense.expm_jvp, 3.0 * general(2), rng=0, eps=1.0)


# ----------------------------------------------------------------------------------
# sparse primals


def sparse_spd(n, fmt="csc"):
    main = 2.0 + np.arange(n) / n
    off = -0.5 * np.ones(n - 1)
    return sp.diags([off, main, off], [-1, 0, 1], format=fmt)


def sparse_logdet(Q):
    return dense.logdet(Q.toarray())


def sparse_logdet_jvp(Q, Q_dot):
    return dense.logdet_jvp(Q.toarray(), Q_dot.toarray())


def sparse_logdet_vjp(Q):
    value, pullback = dense.logdet_vjp(Q.toarray())

    def sparse_pullback(value_bar):
        # cotangent on the pattern only, as a sparse rule would return it
        full = pullback(value_bar)[0]
        rows, cols = Q.nonzero()
        return (sp.csc_matrix((full[rows, cols], (rows, cols)), shape=Q.shape),)

    return value, sparse_pullback


def test_sparse_primal_jvp_vjp_grad():
    Q = sparse_spd(6)
    Q_dot = Q.copy()
    Q_dot.data = np.random.default_rng(0).standard_normal(Q.nnz)
    Q_dot = Q_dot + Q_dot.T  # symmetric, same pattern set, different stored order
    testing.check_jvp(sparse_logdet, sparse_logdet_jvp, Q, Q_dot)
    testing.check_jvp(sparse_logdet, sparse_logdet_jvp, Q, rng=0, symmetric=True)
    testing.check_vjp(sparse_logdet, sparse_logdet_vjp, Q, rng=0, symmetric=True)
    # a dense cotangent is accepted too (entries off the pattern do not pair with anything)
    testing.check_vjp(
        sparse_logdet, lambda Q: dense.logdet_vjp(Q.toarray()), Q, rng=0, symmetric=True
    )
    testing.check_grad(
        sparse_logdet,
        lambda Q: np.linalg.inv(Q.toarray()),
        Q,
        rng=0,
        symmetric=True,
        full=True,
    )


def test_sparse_wrong_derivative_fails():
    Q = sparse_spd(5, fmt="csr")

    def wrong_jvp(Q, Q_dot):
        return sparse_logdet(Q), float(np.sum(Q_dot.diagonal() / Q.diagonal()))

    with pytest.raises(AssertionError, match="JVP disagrees"):
        testing.check_jvp(sparse_logdet, wrong_jvp, Q, rng=0, symmetric=True)

    def wrong_vjp(Q):
        return sparse_logdet(Q), lambda value_bar: (sp.diags(value_bar / Q.diagonal()),)

    with pytest.raises(AssertionError, match="dot-product test failed"):
        testing.check_vjp(sparse_logdet, wrong_vjp, Q, rng=0, symmetric=True)


def test_sparse_output():
    # Q(theta) = theta_0 R + theta_1 I on a fixed pattern, as a prior's precision
    structure = sparse_spd(5)

    def precision(theta):
        return theta[0] * structure + theta[1] * sp.identity(5, format="csc")

    def precision_jvp(theta, theta_dot):
        return precision(theta), theta_dot[0] * structure + theta_dot[1] * sp.identity(5)

    def precision_jvp_wrong(theta, theta_dot):
        return precision(theta), theta_dot[0] * structure + theta_dot[1] * structure

    def precision_vjp(theta):
        def pullback(Q_bar):
            return (np.array([Q_bar.multiply(structure).sum(), Q_bar.diagonal().sum()]),)

        return precision(theta), pullback

    theta = np.array([1.3, 0.4])
    testing.check_jvp(precision, precision_jvp, theta, rng=0)
    testing.check_vjp(precision, precision_vjp, theta, rng=0)
    with pytest.raises(AssertionError, match="JVP disagrees"):
        testing.check_jvp(precision, precision_jvp_wrong, theta, rng=0)


def test_sparse_tangent_off_pattern_is_rejected():
    Q = sparse_spd(4)
    off_pattern = sp.csc_matrix(([1.0], ([0], [3])), shape=(4, 4))
    with pytest.raises(PatternError, match=r"outside the sparsity pattern"):
        testing.check_jvp(sparse_logdet, sparse_logdet_jvp, Q, off_pattern)
    with pytest.raises(InputError, match="must be a sparse matrix on the pattern"):
        testing.check_jvp(sparse_logdet, sparse_logdet_jvp, Q, np.eye(4))


def test_sparse_tangent_in_other_format_is_mapped_onto_pattern():
    Q = sparse_spd(4, fmt="csc")
    tangent = sp.identity(4, format="csr")  # on the pattern, stored differently
    seen = []

    def recording_jvp(Q, Q_dot):
        seen.append(Q_dot)
        return sparse_logdet_jvp(Q, Q_dot)

    testing.check_jvp(sparse_logdet, recording_jvp, Q, tangent)
    assert seen[0].format == "csc"
    np.testing.assert_array_equal(seen[0].indices, Q.indices)
    np.testing.assert_allclose(seen[0].toarray(), np.eye(4))


def test_unsupported_sparse_format():
    with pytest.raises(InputError, match="tocsc"):
        testing.check_jvp(sparse_logdet, sparse_logdet_jvp, sparse_spd(3).tolil(), rng=0)


# ----------------------------------------------------------------------------------
# malformed arguments


def test_malformed_arguments():
    a = general(3)
    with pytest.raises(InputError, match="shape"):
        testing.check_jvp(dense.inv, dense.inv_jvp, a, np.ones((2, 2)))
    with pytest.raises(InputError, match="NaN"):
        testing.check_jvp(dense.inv, dense.inv_jvp, np.full((2, 2), np.nan), rng=0)
    with pytest.raises(InputError, match="zero"):
        testing.check_jvp(dense.inv, dense.inv_jvp, a, np.zeros((3, 3)))
    with pytest.raises(InputError, match="mirror x"):
        testing.check_jvp(dense.solve, dense.solve_jvp, (a, np.ones(3)), np.ones((3, 3)))
    with pytest.raises(InputError, match="entirely None"):
        testing.check_jvp(dense.solve, dense.solve_jvp, (a, np.ones(3)), (None, None))
    with pytest.raises(InputError, match="rng"):
        testing.check_vjp(dense.inv, dense.inv_vjp, a, rng="seed")
    with pytest.raises(InputError, match="eps"):
        testing.check_jvp(dense.inv, dense.inv_jvp, a, rng=0, eps=-1.0)


def test_result_reports_errors():
    result = testing.check_vjp(
        sla.expm, dense.expm_vjp, general(3), rng=0, f_jvp=dense.expm_jvp, rtol=1e-12
    )
    assert result.check == "vjp"
    assert result.step == 0.0
    assert 0.0 <= result.max_rel_error < 1e-12
