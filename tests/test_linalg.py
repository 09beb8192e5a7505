"""Sparse Cholesky (gmrf_core.linalg) against dense NumPy and CHOLMOD references."""

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

import gmrf_core as gm


def grid_laplacian(m, n=None, shift=0.1):
    n = m if n is None else n
    tm = sp.diags_array([-np.ones(m - 1), 2 * np.ones(m), -np.ones(m - 1)], offsets=[-1, 0, 1])
    tn = sp.diags_array([-np.ones(n - 1), 2 * np.ones(n), -np.ones(n - 1)], offsets=[-1, 0, 1])
    lap = sp.kron(tm, sp.eye_array(n)) + sp.kron(sp.eye_array(m), tn)
    return sp.csc_matrix(lap + shift * sp.eye_array(m * n))


def spde_like(m, kappa=0.5):
    k = grid_laplacian(m, shift=kappa**2)
    return sp.csc_matrix(k @ k)


def random_spd(n, density, rng):
    a = sp.random(n, n, density=density, random_state=rng, format="csc")
    a = a + a.T
    diag = np.asarray(abs(a).sum(axis=1)).ravel() + 1.0
    return sp.csc_matrix(a + sp.diags_array(diag))


def dense_dense_spd(n, rng):
    x = rng.standard_normal((n, n))
    return sp.csc_matrix(x @ x.T + n * np.eye(n))


def block_diagonal(rng):
    blocks = [grid_laplacian(4), random_spd(7, 0.3, rng), sp.csc_matrix([[2.0]]), spde_like(3)]
    return sp.csc_matrix(sp.block_diag(blocks))


def cases():
    rng = np.random.default_rng(0)
    return {
        "1x1": sp.csc_matrix([[3.0]]),
        "diagonal": sp.csc_matrix(sp.diags_array(rng.uniform(1, 2, 9))),
        "tridiagonal": grid_laplacian(1, 17),
        "grid7x5": grid_laplacian(7, 5),
        "grid20": grid_laplacian(20),
        "spde13": spde_like(13),
        "random60": random_spd(60, 0.08, rng),
        "dense30": dense_dense_spd(30, rng),
        "dense70": dense_dense_spd(70, rng),
        "blocks": block_diagonal(rng),
    }


CASES = cases()
ORDERINGS = ["natural", "nd", "amd"]


def _has_amd():
    try:
        import gmrf_core.kernels.amd  # noqa: F401
    except ImportError:
        return False
    return True


def _orderings():
    return [o for o in ORDERINGS if o != "amd" or _has_amd()]


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("ordering", _orderings())
def test_factor_matches_dense(name, ordering):
    Q = CASES[name]
    dense = Q.toarray()
    factor = gm.cholesky(Q, ordering=ordering)
    perm = factor.perm
    assert np.array_equal(np.sort(perm), np.arange(Q.shape[0]))
    L = factor.L().toarray()
    assert np.allclose(np.triu(L, 1), 0.0)
    np.testing.assert_allclose(
        L @ L.T, dense[np.ix_(perm, perm)], rtol=1e-12, atol=1e-12 * abs(dense).max()
    )
    np.testing.assert_allclose(
        L, np.linalg.cholesky(dense[np.ix_(perm, perm)]), rtol=1e-10, atol=1e-12
    )
    sign, logdet = np.linalg.slogdet(dense)
    assert sign == 1
    assert factor.logdet() == pytest.approx(logdet, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("name", sorted(CASES))
def test_solve_vector_and_matrix(name):
    Q = CASES[name]
    dense = Q.toarray()
    rng = np.random.default_rng(1)
    factor = gm.cholesky(Q, ordering="nd" if Q.shape[0] > 1 else "natural")
    b = rng.standard_normal(Q.shape[0])
    x = factor.solve(b)
    assert x.shape == b.shape
    assert np.linalg.norm(dense @ x - b) <= 1e-10 * np.linalg.norm(b)
    B = rng.standard_normal((Q.shape[0], 3))
    X = factor.solve(B)
    assert X.shape == B.shape
    np.testing.assert_allclose(X, np.linalg.solve(dense, B), rtol=1e-9, atol=1e-12)
    # half solves compose to the full solve
    y = factor.solve_L(b)
    np.testing.assert_allclose(factor.solve_Lt(y), x, rtol=1e-10, atol=1e-13)
    L = factor.L().toarray()
    np.testing.assert_allclose(L @ y, b[factor.perm], rtol=1e-10, atol=1e-12)


def test_refactorize_new_values_same_pattern():
    Q = spde_like(12, kappa=0.3)
    symbolic = gm.analyze(Q, ordering="nd")
    factor = symbolic.factorize(Q)
    for kappa in [0.1, 1.0, 3.0]:
        Q2 = spde_like(12, kappa=kappa)
        assert factor.refactorize(Q2) is factor
        assert factor.logdet() == pytest.approx(np.linalg.slogdet(Q2.toarray())[1], rel=1e-12)


def test_factorizations_counter_counts_numeric_factorizations():
    Q = grid_laplacian(4)
    symbolic = gm.analyze(Q)
    factor = symbolic.factorize(Q)
    assert factor.factorizations == 1
    factor.refactorize(2.0 * Q)
    assert factor.factorizations == 2
    bad = Q.copy()
    bad.data = -bad.data
    with pytest.raises(gm.NotPositiveDefiniteError):
        factor.refactorize(bad)
    assert factor.factorizations == 3  # failed ones count
    with pytest.raises(gm.PatternMismatchError):
        factor.refactorize(grid_laplacian(3))
    assert factor.factorizations == 3  # rejected before the kernel ran
    assert factor.copy().factorizations == 0
    assert symbolic.factorize(Q).factorizations == 1


def test_refactorize_keeps_explicit_zeros():
    Q = grid_laplacian(6)
    Q0 = Q.copy()
    Q0.data[Q0.indices != np.repeat(np.arange(36), np.diff(Q0.indptr))] = (
        0.0  # diagonal only, pattern kept
    )
    factor = gm.cholesky(Q, ordering="amd" if _has_amd() else "nd")
    factor.refactorize(Q0)
    assert factor.logdet() == pytest.approx(np.sum(np.log(Q.diagonal())), rel=1e-12)


@pytest.mark.parametrize("fmt", ["csr", "coo", "lil", "dok", "bsr", "dia"])
def test_accepts_any_sparse_format_and_arrays(fmt):
    Q = grid_laplacian(5)
    ref = np.linalg.slogdet(Q.toarray())[1]
    assert gm.cholesky(Q.asformat(fmt)).logdet() == pytest.approx(ref, rel=1e-12)
    assert gm.cholesky(sp.csc_array(Q).asformat(fmt)).logdet() == pytest.approx(ref, rel=1e-12)


def test_accepts_dense_and_duplicates():
    Q = grid_laplacian(4)
    assert gm.cholesky(Q.toarray()).logdet() == pytest.approx(np.linalg.slogdet(Q.toarray())[1])
    coo = Q.tocoo()
    dup = sp.coo_matrix(
        (np.concatenate([coo.data / 2, coo.data / 2]), (np.tile(coo.row, 2), np.tile(coo.col, 2))),
        shape=Q.shape,
    )
    assert gm.cholesky(dup).logdet() == pytest.approx(np.linalg.slogdet(Q.toarray())[1])


def test_user_ordering_is_respected_up_to_postorder():
    Q = grid_laplacian(6)
    rng = np.random.default_rng(3)
    perm = rng.permutation(36)
    factor = gm.cholesky(Q, ordering=perm)
    dense = Q.toarray()
    L = factor.L().toarray()
    p = factor.perm
    np.testing.assert_allclose(L @ L.T, dense[np.ix_(p, p)], atol=1e-12)


def test_sample_moments():
    Q = spde_like(6, kappa=1.0)
    factor = gm.cholesky(Q)
    draws = factor.sample(size=40000, rng=np.random.default_rng(5))
    assert draws.shape == (40000, 36)
    cov = np.cov(draws, rowvar=False)
    ref = np.linalg.inv(Q.toarray())
    assert np.abs(cov - ref).max() < 0.05 * np.abs(ref).max()
    assert np.abs(draws.mean(axis=0)).max() < 0.05 * np.sqrt(np.diag(ref).max())
    one = factor.sample(rng=1)
    assert one.shape == (36,)
    np.testing.assert_array_equal(one, factor.sample(rng=1))


def test_threads_option():
    Q = spde_like(15, kappa=0.3)
    one = gm.cholesky(Q, ordering="nd")
    two = gm.cholesky(Q, ordering="nd", threads=2)
    assert two.symbolic.threads == 2
    assert two.logdet() == pytest.approx(one.logdet(), rel=1e-13)
    np.testing.assert_allclose(
        two.selected_inverse().diag(), one.selected_inverse().diag(), rtol=1e-12
    )
    for bad in (0, 1.5, -2):
        with pytest.raises(gm.InputError, match="threads"):
            gm.analyze(Q, threads=bad)


def test_symbolic_attributes():
    Q = grid_laplacian(10)
    symbolic = gm.analyze(Q, ordering="nd")
    factor = symbolic.factorize(Q)
    assert factor.nnz == factor.L().nnz == symbolic.nnz
    assert symbolic.nsuper <= Q.shape[0]
    assert symbolic.flops > 0
    assert "Symbolic" in repr(symbolic) and "Factor" in repr(factor)


# -- bad input ------------------------------------------------------------------------


def test_not_positive_definite_reports_column():
    Q = grid_laplacian(5).tolil()
    Q[7, 7] = -10.0
    Q = Q.tocsc()
    with pytest.raises(gm.NotPositiveDefiniteError) as info:
        gm.cholesky(Q, ordering="natural")
    assert info.value.column == 7
    assert "column 7" in str(info.value)


def test_not_positive_definite_column_in_original_ordering():
    # indefinite only through a 2x2 block: the breakdown is at whichever of the two is
    # eliminated second, reported in the original ordering
    Q = sp.csc_matrix(sp.block_diag([grid_laplacian(3), sp.csc_matrix([[1.0, 2.0], [2.0, 1.0]])]))
    with pytest.raises(gm.NotPositiveDefiniteError) as info:
        gm.cholesky(Q, ordering="nd")
    assert info.value.column in (9, 10)


def test_zero_pivot_and_semidefinite():
    lap = grid_laplacian(4, shift=0.0)  # graph Laplacian with Dirichlet rows: still PD
    assert gm.cholesky(lap).logdet() == pytest.approx(np.linalg.slogdet(lap.toarray())[1])
    singular = sp.csc_matrix(np.array([[1.0, 1.0], [1.0, 1.0]]))
    with pytest.raises(gm.NotPositiveDefiniteError) as info:
        gm.cholesky(singular, ordering="natural")
    assert info.value.column == 1
    with pytest.raises(gm.NotPositiveDefiniteError):
        gm.cholesky(sp.csc_matrix(np.zeros((3, 3)) + np.diag([1.0, 0.0, 1.0])))


def test_missing_diagonal_is_not_positive_definite():
    Q = sp.csc_matrix(np.array([[0.0, 1.0], [1.0, 0.0]]))
    with pytest.raises(gm.NotPositiveDefiniteError):
        gm.cholesky(Q)


def test_failed_refactorize_then_recovers():
    Q = grid_laplacian(4)
    factor = gm.cholesky(Q)
    bad = Q.copy()
    bad.data = -bad.data
    with pytest.raises(gm.NotPositiveDefiniteError):
        factor.refactorize(bad)
    factor.refactorize(Q)
    assert factor.logdet() == pytest.approx(np.linalg.slogdet(Q.toarray())[1])


def test_non_square_empty_and_wrong_types():
    with pytest.raises(gm.InputError, match="square"):
        gm.cholesky(sp.csc_matrix(np.ones((3, 2))))
    with pytest.raises(gm.InputError, match="empty"):
        gm.cholesky(sp.csc_matrix((0, 0)))
    with pytest.raises(gm.InputError, match="2-D"):
        gm.cholesky(np.ones(4))
    with pytest.raises(gm.InputError, match="real"):
        gm.cholesky(sp.csc_matrix(np.eye(2) * (1 + 1j)))
    with pytest.raises(gm.InputError, match="ordering"):
        gm.cholesky(grid_laplacian(2), ordering="colamd")
    with pytest.raises(gm.InputError, match="permutation"):
        gm.cholesky(grid_laplacian(2), ordering=np.array([0, 0, 1, 2]))
    with pytest.raises(gm.InputError):
        gm.cholesky(grid_laplacian(2), ordering=np.array([0, 1, 2, 7]))


def test_non_symmetric_values_and_pattern():
    Q = grid_laplacian(4).tolil()
    Q[0, 1] = -0.5
    with pytest.raises(gm.NotSymmetricError, match="column"):
        gm.cholesky(Q.tocsc())
    lower = sp.csc_matrix(sp.tril(grid_laplacian(4)))
    with pytest.raises(gm.NotSymmetricError, match="both triangles"):
        gm.analyze(lower)
    # tiny asymmetry from floating-point arithmetic is accepted
    Q2 = grid_laplacian(4).tolil()
    Q2[0, 1] = -1.0 + 1e-14
    gm.cholesky(Q2.tocsc())


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_entries(bad):
    Q = grid_laplacian(3).tocsc()
    Q.data[4] = bad
    with pytest.raises(gm.InputError, match="NaN or infinite"):
        gm.cholesky(Q)


def test_pattern_change_in_refactorize():
    Q = grid_laplacian(5)
    factor = gm.cholesky(Q)
    other = grid_laplacian(5).tolil()
    other[0, 24] = other[24, 0] = -0.01
    with pytest.raises(gm.PatternMismatchError, match="pattern"):
        factor.refactorize(other.tocsc())
    with pytest.raises(gm.PatternMismatchError, match="shape"):
        factor.refactorize(grid_laplacian(4))
    # dropping a zero changes the pattern too
    dropped = Q.copy()
    dropped.data[1] = 0.0
    dropped.eliminate_zeros()
    with pytest.raises(gm.PatternMismatchError):
        factor.refactorize(dropped)


def test_wrong_rhs_shape_and_values():
    factor = gm.cholesky(grid_laplacian(3))
    with pytest.raises(gm.InputError, match="shape"):
        factor.solve(np.ones(8))
    with pytest.raises(gm.InputError, match="shape"):
        factor.solve(np.ones((9, 2, 2)))
    with pytest.raises(gm.InputError, match="NaN"):
        factor.solve(np.full(9, np.nan))
    with pytest.raises(gm.InputError):
        factor.sample(size=-1)


# -- CHOLMOD reference -------------------------------------------------------------------


@pytest.mark.cholmod
@pytest.mark.parametrize("name", ["grid20", "spde13", "random60", "blocks"])
def test_against_cholmod_same_permutation(name):
    cholmod = pytest.importorskip("sksparse.cholmod")
    Q = CASES[name]
    factor = gm.cholesky(Q, ordering="nd")
    p = factor.perm
    ref = cholmod.cholesky(sp.csc_matrix(Q[p][:, p]), ordering_method="natural")
    assert factor.logdet() == pytest.approx(ref.logdet(), rel=1e-10)
    b = np.random.default_rng(2).standard_normal(Q.shape[0])
    np.testing.assert_allclose(factor.solve(b), ref(b[p])[np.argsort(p)], rtol=1e-9, atol=1e-12)


@pytest.mark.cholmod
@pytest.mark.parametrize("ordering", ["amd", "nd"])
@pytest.mark.parametrize("name", ["grid20", "spde13", "random60", "tridiagonal", "spde40"])
def test_supernodes_are_cholmods(name, ordering):
    """The relaxed amalgamation follows cholmod_super_symbolic to the letter: on the same
    ordering both libraries store the same supernodal factor (explicit zeros included)."""
    cholmod = pytest.importorskip("sksparse.cholmod")
    Q = spde_like(40, kappa=0.2) if name == "spde40" else CASES[name]
    symbolic = gm.analyze(Q, ordering=ordering)
    p = symbolic.perm
    Qp = sp.csc_matrix(Q[p][:, p])
    ref = cholmod.analyze(Qp, mode="supernodal", ordering_method="natural").cholesky(Qp)
    assert symbolic.nnz == ref.L().nnz


@pytest.mark.cholmod
def test_larger_spde_against_cholmod():
    cholmod = pytest.importorskip("sksparse.cholmod")
    Q = spde_like(60, kappa=0.2)
    factor = gm.cholesky(Q, ordering="nd")
    ref = cholmod.cholesky(Q)
    assert factor.logdet() == pytest.approx(ref.logdet(), rel=1e-10)
    b = np.random.default_rng(4).standard_normal(Q.shape[0])
    x = factor.solve(b)
    assert np.linalg.norm(Q @ x - b) / np.linalg.norm(b) < 1e-10


# -- a failed refactorize leaves the factor refusing ------------------------------------------


def _queries(factor):
    b = np.ones(factor.n)
    return {
        "logdet": factor.logdet,
        "solve": lambda: factor.solve(b),
        "solve_L": lambda: factor.solve_L(b),
        "solve_Lt": lambda: factor.solve_Lt(b),
        "sample": lambda: factor.sample(rng=0),
        "L": factor.L,
        "selected_inverse": factor.selected_inverse,
    }


@pytest.mark.parametrize("threads", [1, 2])
def test_failed_refactorize_refuses_every_query_until_a_success(threads):
    Q = grid_laplacian(5)
    factor = gm.cholesky(Q, threads=threads)
    good = {name: query() for name, query in _queries(factor).items() if name != "L"}
    bad = Q.copy()
    bad.data = -bad.data
    with pytest.raises(gm.NotPositiveDefiniteError):
        factor.refactorize(bad)
    assert not factor.valid
    for query in _queries(factor).values():
        with pytest.raises(gm.InputError, match="no valid factorization.*NotPositiveDefinite"):
            query()
    # rejected input (before any kernel ran) also leaves it refusing
    factor.refactorize(Q)
    with pytest.raises(gm.PatternMismatchError):
        factor.refactorize(grid_laplacian(4))
    with pytest.raises(gm.InputError, match="no valid factorization.*PatternMismatch"):
        factor.logdet()
    factor.refactorize(Q)
    assert factor.valid
    assert factor.logdet() == good["logdet"]
    np.testing.assert_array_equal(factor.solve(np.ones(25)), good["solve"])
    np.testing.assert_array_equal(factor.sample(rng=0), good["sample"])


def test_a_never_factorized_factor_refuses():
    symbolic = gm.analyze(grid_laplacian(3))
    factor = gm.Factor(symbolic)
    with pytest.raises(gm.InputError, match="no numeric factorization"):
        factor.logdet()
    with pytest.raises(gm.InputError, match="Symbolic"):
        gm.Factor(grid_laplacian(3))


# -- property-based: random SPD matrices against dense NumPy ----------------------------------


@st.composite
def sparse_spd(draw):
    n = draw(st.integers(1, 40))
    density = draw(st.floats(0.0, 0.4))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    a = sp.random(n, n, density=density, random_state=rng, format="csc")
    a = a + a.T
    shift = draw(st.floats(1e-3, 10.0))
    diag = np.asarray(abs(a).sum(axis=1)).ravel() + shift
    return sp.csc_matrix(a + sp.diags_array(diag)), seed


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(sparse_spd(), st.sampled_from(["natural", "amd", "nd"]), st.sampled_from([1, 2]))
def test_property_logdet_solve_and_selected_inverse(case, ordering, threads):
    Q, seed = case
    dense = Q.toarray()
    factor = gm.cholesky(Q, ordering=ordering, threads=threads)
    assert factor.logdet() == pytest.approx(np.linalg.slogdet(dense)[1], rel=1e-10, abs=1e-10)
    b = np.random.default_rng(seed).standard_normal(Q.shape[0])
    np.testing.assert_allclose(dense @ factor.solve(b), b, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(
        factor.selected_inverse().diag(), np.diag(np.linalg.inv(dense)), rtol=1e-9
    )


def test_logdet_is_that_of_the_last_factorization_in_copies_and_pickles():
    # the factorization takes Σ log L_jj as it goes: the value must follow refactorize,
    # travel with copies and pickles, and not be left over from a failed factorization
    import pickle

    Q1 = spde_like(12, kappa=0.3)
    Q2 = spde_like(12, kappa=0.9)
    factor = gm.cholesky(Q1, ordering="amd")
    first = factor.copy()
    factor.refactorize(Q2)
    for f, Q in ((factor, Q2), (first, Q1), (pickle.loads(pickle.dumps(factor)), Q2)):
        sign, logdet = np.linalg.slogdet(Q.toarray())
        assert sign == 1 and f.logdet() == pytest.approx(logdet, rel=1e-13)
    assert factor.logdet() != pytest.approx(first.logdet(), rel=1e-6)
    bad = Q2.copy().tolil()
    bad[0, 0] = -10.0
    with pytest.raises(gm.NotPositiveDefiniteError):
        factor.refactorize(bad.tocsc())
    with pytest.raises(gm.GMRFError):
        factor.logdet()
