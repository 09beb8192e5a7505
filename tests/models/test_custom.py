"""Tests of the Custom model (user-supplied precision callables)."""

import numpy as np
import pytest
import scipy.sparse as sp

from gmrf_core.errors import InputError, NotSymmetricError, PatternError
from gmrf_core.models import Custom, NormalPrior

N = 6
LAPLACIAN = sp.csc_matrix(
    sp.diags([-np.ones(N - 1), np.r_[1, 2 * np.ones(N - 2), 1], -np.ones(N - 1)], [-1, 0, 1])
)


def ar_like(theta):
    """Q = exp(θ₀) (L + exp(θ₁) I): a proper model with two hyperparameters."""
    return np.exp(theta[0]) * (LAPLACIAN + np.exp(theta[1]) * sp.identity(N))


def ar_like_grad(theta):
    q = ar_like(theta)
    return [q, np.exp(theta[0] + theta[1]) * sp.identity(N)]


def make(**overrides):
    kwargs = dict(
        n=N,
        precision=ar_like,
        precision_grad=ar_like_grad,
        theta0=[0.0, 0.0],
        theta_names=("log_scale", "log_nugget"),
    )
    kwargs.update(overrides)
    return Custom(**kwargs)


def test_valid_model(check, rng):
    model = make(prior={"log_nugget": NormalPrior(0, 1)})
    theta = np.array([0.3, -0.5])
    np.testing.assert_allclose(model.precision(theta).toarray(), ar_like(theta).toarray())
    check.precision_grad(model, theta)
    check.fixed_pattern(model, rng)
    check.scalar_grad(model.log_prior, model.log_prior_grad, theta)
    assert model.to_natural(theta) == {"log_scale": 0.3, "log_nugget": -0.5}
    assert model.logdet(theta) is None and model.constrained_logdet(theta) is None


def test_entries_left_out_become_explicit_zeros():
    def precision(theta):
        q = ar_like(theta).tolil()
        if theta[0] > 1:
            q[0, 1] = q[1, 0] = 0.0
        q = sp.csc_matrix(q)
        q.eliminate_zeros()
        return q

    model = make(precision=precision)
    reference = model.precision([0.0, 0.0])
    q = model.precision([2.0, 0.0])
    np.testing.assert_array_equal(q.indices, reference.indices)
    assert q.toarray()[0, 1] == 0.0


def test_pattern_change_raises():
    def precision(theta):
        q = ar_like(theta).tolil()
        if theta[0] > 1:
            q[0, 5] = q[5, 0] = 0.1
        return sp.csc_matrix(q)

    model = make(precision=precision)
    with pytest.raises(PatternError):
        model.precision([2.0, 0.0])
    assert isinstance(PatternError("x"), InputError)
    # with an explicit, larger pattern the same callable is accepted
    wide = make(precision=precision, pattern=sp.csc_matrix(np.ones((N, N))))
    assert wide.precision([2.0, 0.0]).toarray()[0, 5] == pytest.approx(0.1)


def test_gradient_validation():
    with pytest.raises(InputError, match="returned 1 matrices"):
        make(precision_grad=lambda theta: [ar_like(theta)])
    with pytest.raises(PatternError):
        make(precision_grad=lambda theta: [ar_like(theta), sp.csc_matrix(np.ones((N, N)))])
    with pytest.raises(InputError, match="shape"):
        make(precision_grad=lambda theta: [ar_like(theta), sp.identity(N + 1)])
    upper = sp.csc_matrix(sp.diags([np.ones(N), np.ones(N - 1)], [0, 1]))  # inside the pattern
    with pytest.raises(NotSymmetricError):
        make(precision_grad=lambda theta: [ar_like(theta), upper])


def test_precision_validation():
    with pytest.raises(InputError, match="shape"):
        make(precision=lambda theta: sp.identity(N - 1))
    with pytest.raises(InputError, match="NaN"):
        make(precision=lambda theta: np.nan * ar_like(theta))
    with pytest.raises(InputError, match="scipy.sparse"):
        make(precision=lambda theta: [[1.0]])
    nonsymmetric = LAPLACIAN + sp.csc_matrix(([0.5], ([0], [1])), shape=(N, N))
    with pytest.raises(NotSymmetricError):
        make(precision=lambda theta: nonsymmetric)
    one_sided = sp.csc_matrix(
        ([1.0] * N + [0.0], (list(range(N)) + [0], list(range(N)) + [1])), shape=(N, N)
    )
    with pytest.raises(NotSymmetricError, match="pattern"):
        make(precision=lambda theta: one_sided)


def test_constructor_validation():
    with pytest.raises(InputError):
        make(n=-1)
    with pytest.raises(InputError, match="callables"):
        make(precision=None)
    with pytest.raises(InputError, match="distinct"):
        make(theta_names=("a", "a"))
    with pytest.raises(InputError, match="expects 2"):
        make(theta0=[0.0])
    with pytest.raises(InputError, match="finite"):
        make(theta0=[0.0, np.nan])
    with pytest.raises(InputError, match="rank_deficiency"):
        make(rank_deficiency=N)
    with pytest.raises(InputError, match="shape"):
        make(constraints=(np.ones((1, N + 1)), [0.0]))
    with pytest.raises(InputError, match="right-hand side"):
        make(constraints=(np.ones((1, N)), [0.0, 1.0]))
    with pytest.raises(InputError, match="full row rank"):
        make(constraints=(np.ones((2, N)), [0.0, 0.0]))
    model = make(constraints=(np.ones((1, N)), 0.0))
    np.testing.assert_allclose(model.constraints[0], np.ones((1, N)))
    assert model.constrained_logdet([0.0, 0.0]) is None
    with pytest.raises(InputError, match="dict"):
        make(to_natural=lambda theta: 1.0).to_natural([0.0, 0.0])
    custom_natural = make(to_natural=lambda theta: {"scale": float(np.exp(theta[0]))})
    assert custom_natural.to_natural([0.0, 1.0]) == {"scale": 1.0}


def test_user_callable_errors_name_the_callable():
    class Boom(RuntimeError):
        pass

    def failing(theta):
        if theta[0] > 1:
            raise Boom("no precision here")
        return ar_like(theta)

    def failing_grad(theta):
        if theta[1] > 1:
            raise ZeroDivisionError("grad broke")
        return ar_like_grad(theta)

    model = make(precision=failing, precision_grad=failing_grad)
    with pytest.raises(InputError, match=r"precision\(theta\) raised Boom") as info:
        model.precision([2.0, 0.0])
    assert isinstance(info.value.__cause__, Boom)
    grad_failed = r"precision_grad\(theta\) raised ZeroDivisionError"
    with pytest.raises(InputError, match=grad_failed) as info:
        model.precision_grad([0.0, 2.0])
    assert isinstance(info.value.__cause__, ZeroDivisionError)
    # at construction (theta0) the same error, from either callable
    with pytest.raises(InputError, match=r"precision\(theta\) raised Boom"):
        make(precision=failing, theta0=[2.0, 0.0])
    with pytest.raises(InputError, match=r"precision_grad\(theta\) raised ZeroDivisionError"):
        make(precision_grad=failing_grad, theta0=[0.0, 2.0])
    bad_natural = make(to_natural=lambda theta: {"x": 1.0 / 0.0})
    with pytest.raises(InputError, match=r"to_natural\(theta\) raised ZeroDivisionError"):
        bad_natural.to_natural([0.0, 0.0])


def test_explicit_zeros_outside_the_pattern_are_dropped():
    def precision(theta):
        q = ar_like(theta).tocoo()  # plus explicit zeros at (0, 5) and (5, 0)
        rows, cols = np.r_[q.row, 0, 5], np.r_[q.col, 5, 0]
        return sp.csc_matrix((np.r_[q.data, 0.0, 0.0], (rows, cols)), shape=(N, N))

    model = make()
    with_zeros = precision([0.3, 0.1])
    assert with_zeros.nnz == ar_like([0.3, 0.1]).nnz + 2
    mapped = model._pattern.matrix(model._values(with_zeros, "precision(theta)"))
    np.testing.assert_array_equal(mapped.indices, model.precision([0.3, 0.1]).indices)
    np.testing.assert_allclose(mapped.toarray(), ar_like([0.3, 0.1]).toarray())
    with pytest.raises(PatternError, match=r"nonzero at \(\d, \d\) outside"):
        model._values(ar_like([0.3, 0.1]) + sp.csc_matrix(np.ones((N, N))), "q")


def test_a_matrix_on_the_pattern_is_read_as_it_is_others_are_mapped():
    """precision_values reads a returned CSC matrix with the pattern's own index arrays
    directly, and maps any other onto the pattern: the same values either way, and the
    same checks (a pattern with the same column counts but other rows is still refused)."""
    theta = np.array([0.3, -0.5])
    pattern_matrix = make().precision(theta)  # on the fixed pattern
    indptr, indices = make().precision_pattern()
    assert not indices.flags.writeable
    np.testing.assert_array_equal(indptr, pattern_matrix.indptr)
    on_pattern = make(precision=lambda t: make().precision(t))
    mapped = make(precision=lambda t: sp.csr_matrix(ar_like(t)))  # CSR: converted, mapped
    values = on_pattern.precision_values(theta)
    np.testing.assert_array_equal(values, mapped.precision_values(theta))
    np.testing.assert_array_equal(values, pattern_matrix.data)
    # the values are a copy: the returned matrix is the user's
    returned = make().precision(theta)
    model = make(precision=lambda t: returned)
    model.precision_values(theta)[0] = 123.0
    assert returned.data[0] != 123.0
    # as many entries per column as the pattern, at other rows: a PatternError
    shifted = pattern_matrix.copy()
    shifted.indices = (shifted.indices + 2) % N
    shifted.sort_indices()
    assert np.array_equal(shifted.indptr, pattern_matrix.indptr)
    with pytest.raises(PatternError, match=r"nonzero at \(\d, \d\) outside"):
        make()._values(shifted, "precision(theta)")
    # on the pattern but not symmetric: refused as before
    skew = pattern_matrix.copy()
    skew.data[1] += 1.0
    with pytest.raises(NotSymmetricError, match="not symmetric"):
        make()._values(skew, "precision(theta)")
    bad = pattern_matrix.copy()
    bad.data[0] = np.nan
    with pytest.raises(InputError, match="NaN or inf"):
        make()._values(bad, "precision(theta)")


def test_gradient_values_equal_the_gradient_matrices():
    model = make()
    theta = np.array([0.3, -0.5])
    for dQ, values in zip(model.precision_grad(theta), model.precision_grad_values(theta)):
        np.testing.assert_array_equal(dQ.indices, model.precision_pattern()[1])
        np.testing.assert_array_equal(dQ.data, values)


def test_matrices_of_a_known_structure_are_read_without_the_mapping(monkeypatch):
    """A CSC matrix on the fixed pattern, or on the last sub-pattern mapped (here the
    diagonal term of dQ/dθ_1), is read by one checked pass: the same values as the
    mapping, no conversion, and the same errors."""

    def grad(theta):  # CSC matrices, as scipy's products of CSC matrices are
        return [sp.csc_matrix(ar_like(theta)), np.exp(theta[1]) * sp.identity(N, format="csc")]

    model = make(precision=lambda theta: sp.csc_matrix(ar_like(theta)), precision_grad=grad)
    theta = np.array([0.3, -0.5])
    expected = [model._pattern.data_of(m) for m in [ar_like(theta), *grad(theta)]]
    _, known_indices, _ = model._known  # the identity, mapped at construction
    np.testing.assert_array_equal(known_indices, np.arange(N))

    def refuse(*args, **kwargs):
        raise AssertionError("mapped although the structure is known")

    with monkeypatch.context() as patch:
        patch.setattr(model, "_as_matrix", refuse)
        patch.setattr(model._pattern, "data_of", refuse)
        values = [model.precision_values(theta), *model.precision_grad_values(theta)]
        for got, want in zip(values, expected):
            np.testing.assert_array_equal(got, want)
        nan_diagonal = sp.csc_matrix(np.nan * sp.identity(N))
        with pytest.raises(InputError, match="NaN or inf"):
            model._values(nan_diagonal, "q")
        on_pattern = model.precision(theta)
        on_pattern.data[on_pattern.indices == 0] = np.inf  # the first row
        with pytest.raises(InputError, match="NaN or inf"):
            model._values(on_pattern, "q")


def test_sub_patterns_of_one_size_are_told_apart():
    """Two sub-patterns with as many entries (the diagonal, and pairs off it) returned in
    turns: each is placed at its own positions, an asymmetric one is refused."""
    pairs = sp.csc_matrix(([1.0] * 6, ([0, 1, 2, 3, 4, 5], [1, 0, 3, 2, 5, 4])), shape=(N, N))
    lower = sp.csc_matrix(sp.tril(pairs))

    def grad(theta):
        second = {0: np.exp(theta[1]) * sp.identity(N, format="csc"), 1: 2.0 * pairs}
        return [ar_like(theta), second[int(theta[1] > 0)]]

    model = make(precision_grad=grad)
    for theta in ([0.0, 0.5], [0.0, -0.5], [0.1, 0.2], [0.0, -0.5], [0.0, 0.5]):
        dense = grad(np.array(theta))[1].toarray()
        values = model.precision_grad_values(theta)[1]
        np.testing.assert_array_equal(model._pattern.matrix(values).toarray(), dense)
    for matrix in (lower, pairs.multiply(np.arange(N)[:, None] + 1.0).tocsc()):
        with pytest.raises(NotSymmetricError, match="not symmetric"):
            model._values(sp.csc_matrix(matrix), "q")


# ------------------------------------------------------------------ a user log-determinant
LAPLACIAN_EIGENVALUES = np.linalg.eigvalsh(LAPLACIAN.toarray())


def ar_like_logdet(theta):
    """log|Q| of :func:`ar_like` from the dense eigenvalues of L (computed in the test)."""
    return float(np.sum(theta[0] + np.log(LAPLACIAN_EIGENVALUES + np.exp(theta[1]))))


def ar_like_logdet_grad(theta):
    nugget = np.exp(theta[1])
    return np.array([N, float(np.sum(nugget / (LAPLACIAN_EIGENVALUES + nugget)))])


def test_user_logdet_matches_the_dense_log_determinant():
    model = make(logdet=ar_like_logdet, logdet_grad=ar_like_logdet_grad)
    for theta in ([0.0, 0.0], [0.7, -1.2], [-0.4, 2.0]):
        theta = np.array(theta)
        sign, expected = np.linalg.slogdet(ar_like(theta).toarray())
        assert sign == 1.0
        assert model.logdet(theta) == pytest.approx(expected, rel=1e-12)
        step = 1e-6
        fd = [
            (
                np.linalg.slogdet(ar_like(theta + step * e).toarray())[1]
                - np.linalg.slogdet(ar_like(theta - step * e).toarray())[1]
            )
            / (2 * step)
            for e in np.eye(2)
        ]
        np.testing.assert_allclose(model.logdet_grad(theta), fd, rtol=1e-7)
    assert make().logdet([0.0, 0.0]) is None and make().logdet_grad([0.0, 0.0]) is None


def test_user_logdet_spares_the_laplace_objective_the_factorization_of_q_tilde():
    """The same objective and gradient as without the user logdet, and no factorization or
    selected inversion of Q̃ (a Custom prior without one takes one of each)."""
    import gmrf_core as gm
    from gmrf_core import likelihoods
    from gmrf_core.testing import counting_factorizations

    y = np.random.default_rng(4).poisson(2.0, N)
    given = gm.LatentGaussianModel(
        make(logdet=ar_like_logdet, logdet_grad=ar_like_logdet_grad), likelihoods.Poisson(y)
    )
    plain = gm.LatentGaussianModel(make(), likelihoods.Poisson(y))
    for theta in ([0.1, -0.2], [0.5, 0.3]):
        theta = np.array(theta)
        plain_value, plain_grad = plain.value_and_grad(theta)
        with counting_factorizations(given) as counts:
            value, grad = given.value_and_grad(theta)
        assert counts["Q"] == 0
        assert value == pytest.approx(plain_value, rel=1e-12)
        np.testing.assert_allclose(grad, plain_grad, rtol=1e-9)
        with counting_factorizations(plain) as counts:
            plain.value_and_grad(theta + 0.01)
        assert counts["Q"] == 1


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"logdet": ar_like_logdet}, "together"),
        ({"logdet_grad": ar_like_logdet_grad}, "together"),
        ({"logdet": 1.0, "logdet_grad": ar_like_logdet_grad}, "callables"),
        (
            {"logdet": lambda t: ar_like_logdet(t) + 1e-3, "logdet_grad": ar_like_logdet_grad},
            r"logdet\(theta0\) = .* log\|Q\|",
        ),
        (
            {"logdet": ar_like_logdet, "logdet_grad": lambda t: ar_like_logdet_grad(t) * 1.01},
            r"logdet_grad\(theta0\)",
        ),
        ({"logdet": ar_like_logdet, "logdet_grad": lambda t: [1.0]}, "shape"),
        ({"logdet": lambda t: "x", "logdet_grad": ar_like_logdet_grad}, "a number"),
        (
            {
                "logdet": ar_like_logdet,
                "logdet_grad": ar_like_logdet_grad,
                "constraints": (np.ones((1, N)), [0.0]),
            },
            "without constraints",
        ),
    ],
)
def test_user_logdet_validation(overrides, message):
    with pytest.raises(InputError, match=message):
        make(**overrides)


def test_user_logdet_not_finite_later_is_an_input_error():
    def logdet(theta):
        return ar_like_logdet(theta) if theta[0] < 1.0 else np.nan

    def logdet_grad(theta):
        return ar_like_logdet_grad(theta) if theta[0] < 1.0 else [np.inf, 0.0]

    model = make(logdet=logdet, logdet_grad=logdet_grad)
    with pytest.raises(InputError, match="logdet"):
        model.logdet([2.0, 0.0])
    with pytest.raises(InputError, match="NaN or inf"):
        model.logdet_grad([2.0, 0.0])
