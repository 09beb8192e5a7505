"""Subtree-parallel factorization and selected inversion (threads >= 2) against dense NumPy.

The small test matrices fall below the size where a schedule pays, so most tests lower the
thresholds to force one: the threaded code paths then run on matrices whose dense
references are cheap.
"""

import numpy as np
import pytest
import scipy.sparse as sp

import gmrf_core as gm
from gmrf_core import linalg
from tests.test_linalg import CASES, block_diagonal, grid_laplacian, spde_like


@pytest.fixture
def always_parallel(monkeypatch):
    monkeypatch.setattr(linalg, "_PARALLEL_MIN_FLOPS", 0.0)
    monkeypatch.setattr(linalg, "_PARALLEL_GAIN", 1.0)


def _schedule_is_valid(symbolic, schedule):
    """Every supernode in exactly one subtree or in the top; subtrees closed under
    descendants; the top closed under ancestors."""
    orders, owner, top = schedule
    seen = np.concatenate([*orders, top])
    assert np.array_equal(np.sort(seen), np.arange(symbolic.nsuper))
    parent = symbolic.super_parent
    for k, order in enumerate(orders):
        assert np.all(owner[order] == k)
        assert np.all(np.diff(order) > 0)
        p = parent[order]
        # a subtree node's parent is in the same subtree or on top
        assert np.all((p < 0) | (owner[np.maximum(p, 0)] == k) | (owner[np.maximum(p, 0)] == -1))
    assert np.all(owner[top] == -1)
    p = parent[top]
    assert np.all((p < 0) | (owner[np.maximum(p, 0)] == -1))


@pytest.mark.parametrize("name", ["grid20", "spde13", "random60", "blocks", "dense70"])
@pytest.mark.parametrize("ordering", ["nd", "amd"])
def test_threaded_factor_and_inverse_match_dense(always_parallel, name, ordering):
    Q = CASES[name]
    dense = Q.toarray()
    factor = gm.cholesky(Q, ordering=ordering, threads=2)
    schedule = factor.symbolic.schedule(2)
    if schedule is not None:
        _schedule_is_valid(factor.symbolic, schedule)
    sign, logdet = np.linalg.slogdet(dense)
    assert sign == 1 and factor.logdet() == pytest.approx(logdet, rel=1e-12)
    b = np.random.default_rng(3).standard_normal((Q.shape[0], 2))
    np.testing.assert_allclose(dense @ factor.solve(b), b, atol=1e-9)
    L = factor.L().toarray()
    perm = factor.perm
    np.testing.assert_allclose(L @ L.T, dense[np.ix_(perm, perm)], atol=1e-10 * abs(dense).max())
    inverse = np.linalg.inv(dense)
    Z = factor.selected_inverse()
    np.testing.assert_allclose(Z.diag(), np.diag(inverse), rtol=1e-10)
    mask = dense != 0
    np.testing.assert_allclose(Z.values_at(Q).toarray()[mask], inverse[mask], rtol=1e-9, atol=1e-13)


def test_a_schedule_is_found_and_used(always_parallel):
    Q = grid_laplacian(30)
    symbolic = gm.analyze(Q, ordering="nd", threads=2)
    schedule = symbolic.schedule(2)
    assert schedule is not None and all(order.size for order in schedule[0])
    _schedule_is_valid(symbolic, schedule)
    assert symbolic.schedule(2) is schedule  # cached
    assert symbolic.schedule(1) is None
    one = gm.analyze(Q, ordering=symbolic.perm, threads=1).factorize(Q)
    two = symbolic.factorize(Q)
    assert two._schedule is schedule
    assert two.logdet() == pytest.approx(one.logdet(), rel=1e-13)
    np.testing.assert_allclose(
        two.selected_inverse().diag(), one.selected_inverse().diag(), rtol=1e-12
    )


def test_three_workers_and_a_forest(always_parallel):
    Q = sp.csc_matrix(sp.block_diag([grid_laplacian(9), spde_like(6), grid_laplacian(5, 11)]))
    factor = gm.cholesky(Q, ordering="amd", threads=3)
    schedule = factor.symbolic.schedule(3)
    assert schedule is not None and len(schedule[0]) == 3
    _schedule_is_valid(factor.symbolic, schedule)
    dense = Q.toarray()
    assert factor.logdet() == pytest.approx(np.linalg.slogdet(dense)[1], rel=1e-12)
    np.testing.assert_allclose(
        factor.selected_inverse().diag(), np.diag(np.linalg.inv(dense)), rtol=1e-10
    )


@pytest.mark.parametrize("name", ["1x1", "diagonal", "tridiagonal", "dense30"])
def test_trivial_trees_under_a_forced_schedule(always_parallel, name):
    Q = CASES[name]
    factor = gm.cholesky(Q, ordering="natural", threads=2)
    if factor._schedule is not None:
        _schedule_is_valid(factor.symbolic, factor._schedule)
    dense = Q.toarray()
    assert factor.logdet() == pytest.approx(np.linalg.slogdet(dense)[1], rel=1e-12)
    np.testing.assert_allclose(
        factor.selected_inverse().diag(), np.diag(np.linalg.inv(dense)), rtol=1e-10
    )


def test_small_or_trivial_trees_stay_on_one_thread():
    # below the size where threads pay, and trees with nothing to split
    assert gm.analyze(grid_laplacian(8), threads=2).schedule(2) is None
    for name in ("1x1", "diagonal", "tridiagonal"):
        factor = gm.cholesky(CASES[name], ordering="natural", threads=2)
        assert factor._schedule is None or len(factor._schedule[0]) >= 2
        dense = CASES[name].toarray()
        assert factor.logdet() == pytest.approx(np.linalg.slogdet(dense)[1], rel=1e-12)


def test_large_lattice_gets_a_balanced_schedule():
    Q = spde_like(80, kappa=0.2)
    symbolic = gm.analyze(Q, ordering="nd", threads=2)
    schedule = symbolic.schedule(2)
    assert schedule is not None
    _schedule_is_valid(symbolic, schedule)
    weight = np.empty(symbolic.nsuper)
    linalg._ksym._factorization_work(
        symbolic.nsuper,
        symbolic.super_ptr,
        symbolic.rows_ptr,
        symbolic.rows,
        symbolic.col_super,
        weight,
    )
    loads = [weight[order].sum() for order in schedule[0]]
    assert max(loads) < 0.6 * weight.sum()
    one = gm.cholesky(Q, ordering=symbolic.perm)
    two = symbolic.factorize(Q)
    assert two.logdet() == pytest.approx(one.logdet(), rel=1e-13)


@pytest.mark.parametrize("where", [0.1, 0.5, 0.97])
def test_not_positive_definite_column_is_the_one_thread_column(always_parallel, where):
    Q = grid_laplacian(14).tolil()
    j = int(where * Q.shape[0])
    Q[j, j] = -4.0
    Q = Q.tocsc()
    perm = gm.analyze(Q, ordering="nd").perm
    columns = []
    for threads in (1, 2):
        factor = gm.analyze(Q, ordering=perm, threads=threads)
        with pytest.raises(gm.NotPositiveDefiniteError) as info:
            factor.factorize(Q)
        columns.append(info.value.column)
    assert columns[0] == columns[1]
    # a failed factorization leaves a factor that refactorizes cleanly
    good = grid_laplacian(14)
    factor = gm.analyze(good, ordering=perm, threads=2).factorize(good)
    with pytest.raises(gm.NotPositiveDefiniteError):
        factor.refactorize(Q)
    factor.refactorize(good)
    assert factor.logdet() == pytest.approx(np.linalg.slogdet(good.toarray())[1], rel=1e-12)


def test_refactorize_many_times(always_parallel):
    Q = block_diagonal(np.random.default_rng(5))
    factor = gm.cholesky(Q, ordering="amd", threads=2)
    for scale in (0.5, 2.0, 7.0):
        Qs = Q.copy()
        Qs.data = Qs.data * scale
        factor.refactorize(Qs)
        assert factor.logdet() == pytest.approx(np.linalg.slogdet(Qs.toarray())[1], rel=1e-12)


@pytest.mark.parametrize("threads", [1, 2])
def test_selected_inverses_are_snapshots_and_storage_is_reused(always_parallel, threads):
    Q = spde_like(8)
    factor = gm.cholesky(Q, threads=threads)
    first = factor.selected_inverse()
    diag = first.diag()
    Q2 = Q.copy()
    Q2.data = Q2.data * 3.0
    factor.refactorize(Q2)
    second = factor.selected_inverse()  # the first is alive: new storage
    assert second._zx is not first._zx
    np.testing.assert_allclose(first.diag(), diag, rtol=0)
    np.testing.assert_allclose(second.diag(), diag / 3.0, rtol=1e-12)
    storage = second._zx
    del second
    third = factor.selected_inverse()  # the second was released: its storage is reused
    assert third._zx is storage
    np.testing.assert_allclose(third.diag(), diag / 3.0, rtol=1e-12)
    np.testing.assert_allclose(first.diag(), diag, rtol=0)


def test_factors_and_models_pickle_after_a_selected_inversion(always_parallel):
    import pickle

    from gmrf_core import likelihoods, models

    prior = models.Matern2D((12, 11))
    y = np.random.default_rng(0).poisson(2.0, prior.n)
    model = gm.LatentGaussianModel(prior, likelihoods.Poisson(y), threads=2)
    _value, grad = model.value_and_grad(model.theta0)
    np.testing.assert_allclose(
        pickle.loads(pickle.dumps(model)).value_and_grad(model.theta0)[1], grad, rtol=1e-10
    )
    Q = spde_like(9)
    factor = gm.cholesky(Q, threads=2)
    kept = factor.selected_inverse()
    copy = pickle.loads(pickle.dumps(factor))
    assert copy.logdet() == factor.logdet()
    np.testing.assert_allclose(copy.selected_inverse().diag(), kept.diag(), rtol=1e-14)
    copy.refactorize(Q)


# Python >= 3.12 warns about fork() in a process with threads: that is the situation tested
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_threaded_factorization_in_a_forked_child(always_parallel):
    """A child forked after the thread pool exists must not wait on the parent's threads."""
    import multiprocessing

    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("no fork start method on this platform")
    Q = grid_laplacian(12)
    factor = gm.cholesky(Q, ordering="nd", threads=2)
    assert factor._schedule is not None  # the pool has been used in this process
    context = multiprocessing.get_context("fork")
    with context.Pool(1) as pool:
        logdet = pool.apply_async(_child_logdet, (Q,)).get(timeout=120)
    assert logdet == pytest.approx(factor.logdet(), rel=1e-12)


def _child_logdet(Q):
    linalg._PARALLEL_MIN_FLOPS = 0.0
    linalg._PARALLEL_GAIN = 1.0
    return gm.cholesky(Q, ordering="nd", threads=2).logdet()


# -- threading contract: concurrent use of one Factor / SelectedInverse -----------------------
# Every future is awaited with a timeout, so a deadlock fails the test instead of hanging CI.
_TIMEOUT = 120


def _pool_map(func, items, workers=4):
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(workers)
    try:
        futures = [pool.submit(func, item) for item in items]
        return [future.result(timeout=_TIMEOUT) for future in futures]
    finally:
        # on a timeout, report the failure instead of waiting for stuck threads
        pool.shutdown(wait=False, cancel_futures=True)


@pytest.mark.parametrize("threads", [1, 2])
def test_selected_inverse_from_many_threads_matches_serial(always_parallel, threads):
    Q = spde_like(14, kappa=0.4)
    factor = gm.cholesky(Q, ordering="nd", threads=threads)
    reference = np.diag(np.linalg.inv(Q.toarray()))
    serial = factor.selected_inverse().diag()
    np.testing.assert_allclose(serial, reference, rtol=1e-10)
    diagonals = _pool_map(lambda _: factor.selected_inverse().diag(), range(40))
    for diag in diagonals:
        # to rounding: the BLAS thread count of the ancestors' blocks may differ
        np.testing.assert_allclose(diag, serial, rtol=1e-13)


@pytest.mark.parametrize("threads", [1, 2])
def test_queries_during_refactorizations_see_one_whole_factor(always_parallel, threads):
    """Solves, log-determinants and selected inversions running while other threads
    refactorize between two matrices give the results of one of the two, never a mix."""
    Q1 = spde_like(12, kappa=0.3)
    Q2 = Q1.copy()
    Q2.data = Q2.data * 3.0 + 0.0
    Q2 = sp.csc_matrix(Q2 + sp.eye_array(Q2.shape[0]))
    factor = gm.cholesky(Q1, ordering="nd", threads=threads)
    b = np.random.default_rng(0).standard_normal(Q1.shape[0])
    dense = [Q1.toarray(), Q2.toarray()]
    solutions = [np.linalg.solve(d, b) for d in dense]
    logdets = [np.linalg.slogdet(d)[1] for d in dense]
    variances = [np.diag(np.linalg.inv(d)) for d in dense]

    def work(k):
        if k % 4 == 0:
            factor.refactorize(Q2 if k % 8 == 0 else Q1)
            return None
        if k % 4 == 1:
            return ("solve", factor.solve(b))
        if k % 4 == 2:
            return ("logdet", factor.logdet())
        return ("diag", factor.selected_inverse().diag())

    results = _pool_map(work, range(160), workers=6)
    seen = set()
    for result in results:
        if result is None:
            continue
        kind, value = result
        references = {"solve": solutions, "logdet": logdets, "diag": variances}[kind]
        matches = [np.allclose(value, ref, rtol=1e-9, atol=1e-12) for ref in references]
        assert any(matches), f"{kind} matches neither matrix"
        seen.add(matches.index(True))
    assert factor.factorizations == 1 + 40


def test_refactorizations_from_many_threads_do_not_hang(always_parallel):
    # concurrent refactorizations of one factor used to corrupt its shared update lists
    # (an endless loop inside the kernel); they now take turns
    Q = spde_like(12, kappa=0.3)
    factor = gm.cholesky(Q, ordering="nd", threads=2)
    scales = [1.0 + 0.1 * k for k in range(24)]

    def refactorize_and_read(scale):
        Qs = Q.copy()
        Qs.data = Qs.data * scale
        factor.refactorize(Qs)
        return factor.logdet()

    logdets = _pool_map(refactorize_and_read, scales, workers=4)
    reference = np.linalg.slogdet(Q.toarray())[1]
    n = Q.shape[0]
    # each read sees some completed factorization: log det(sQ) = n log s + log det Q
    allowed = [reference + n * np.log(s) for s in scales]
    for value in logdets:
        assert min(abs(value - a) for a in allowed) < 1e-8 * abs(reference)
    assert factor.factorizations == 1 + len(scales)


def test_a_selected_inverse_is_read_from_many_threads():
    Q = spde_like(10)
    Z = gm.cholesky(Q).selected_inverse()
    inverse = np.linalg.inv(Q.toarray())
    values = _pool_map(lambda _: Z.values_at(Q).toarray(), range(24))
    mask = Q.toarray() != 0
    for value in values:
        np.testing.assert_allclose(value[mask], inverse[mask], rtol=1e-9, atol=1e-13)


def test_copies_are_independent():
    import copy

    Q = grid_laplacian(6)
    factor = gm.cholesky(Q)
    logdet = factor.logdet()
    for duplicate in (copy.copy(factor), copy.deepcopy(factor), factor.copy()):
        assert duplicate._lx is not factor._lx
        duplicate.refactorize(Q * 4.0)
        assert duplicate.logdet() == pytest.approx(logdet + 36 * np.log(4.0), rel=1e-12)
        assert factor.logdet() == logdet


def test_blas_thread_limits_from_several_threads_restore_the_original():
    import threading

    from gmrf_core.bindings import blas

    libraries = blas._openblas_libraries()
    if not any("scipy.libs" in lib.filepath.replace("\\", "/") for lib in libraries):
        pytest.skip("SciPy's OpenBLAS is not visible to threadpoolctl")
    original = [lib.get_num_threads() for lib in libraries]
    barrier = threading.Barrier(3)

    def hold(limit):
        with blas.blas_threads(limit):
            barrier.wait(timeout=_TIMEOUT)  # all three contexts open at once
            inside = [lib.get_num_threads() for lib in libraries]
            barrier.wait(timeout=_TIMEOUT)
        return inside

    insides = _pool_map(hold, [1, 2, 1], workers=3)
    # the smallest open limit applies, to SciPy's OpenBLAS and to NumPy's alike
    assert insides == [[1] * len(libraries)] * 3
    assert [lib.get_num_threads() for lib in libraries] == original


def test_blas_thread_limits_cover_numpys_openblas():
    from gmrf_core.bindings import blas

    numpy_libraries = [
        lib for lib in blas._openblas_libraries() if "numpy" in lib.filepath.replace("\\", "/")
    ]
    if not numpy_libraries:
        pytest.skip("NumPy's OpenBLAS is not visible to threadpoolctl")
    original = numpy_libraries[0].get_num_threads()
    with blas.blas_threads(1):
        assert numpy_libraries[0].get_num_threads() == 1
    assert numpy_libraries[0].get_num_threads() == original
