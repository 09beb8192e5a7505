"""Tests for the approximate minimum degree ordering (gmrf_core.kernels.amd)."""

import ctypes
import ctypes.util

import numpy as np
import pytest
import scipy.sparse as sp

from gmrf_core.errors import GMRFError, InputError, NotSymmetricError
from gmrf_core.kernels import amd as amd_kernels
from gmrf_core.kernels._status import OK, WORKSPACE_TOO_SMALL
from gmrf_core.ordering import amd_order

# ----------------------------------------------------------------------------
# patterns and a reference fill count
# ----------------------------------------------------------------------------


def _csc(a):
    """Canonical CSC (sorted, no duplicates) with float data."""
    a = sp.csc_matrix(a, dtype=np.float64)
    a.sum_duplicates()
    a.sort_indices()
    return a


def grid_5pt(m):
    """Full pattern, diagonal included, of the 5-point Laplacian on an m-by-m grid."""
    t = sp.diags([1.0, 1.0, 1.0], [-1, 0, 1], shape=(m, m))
    eye = sp.identity(m)
    return _csc(sp.kron(t, eye) + sp.kron(eye, t))


def grid_9pt(m):
    """Full pattern of the 9-point stencil on an m-by-m grid."""
    t = sp.diags([1.0, 1.0, 1.0], [-1, 0, 1], shape=(m, m))
    return _csc(sp.kron(t, t))


def random_pattern(n, avg_degree, seed):
    """Symmetric random pattern with about ``avg_degree`` off-diagonals per row."""
    rng = np.random.default_rng(seed)
    r = sp.random(n, n, density=avg_degree / (2 * n), random_state=rng)
    return _csc(r + r.T + sp.identity(n))


def strip_diagonal(a):
    a = a.tolil()
    a.setdiag(0)
    a = sp.csc_matrix(a)
    a.eliminate_zeros()
    return _csc(a)


def order(a, **kwargs):
    return amd_order(a.indptr, a.indices, a.shape[0], **kwargs)


def factor_nnz(a, perm):
    """nnz(L), diagonal included, of the Cholesky factor of a[perm][:, perm].

    Row k of L is the union of the elimination-tree paths from each i < k with
    a'[k, i] != 0 up to k (Liu 1990, "The role of elimination trees in sparse
    factorization"); the tree is built along the way. Independent of the code
    under test.
    """
    n = a.shape[0]
    pinv = np.empty(n, dtype=np.int64)
    pinv[perm] = np.arange(n)
    parent = [-1] * n
    mark = [-1] * n
    indptr = a.indptr.tolist()
    rows = pinv[a.indices].tolist()
    count = n
    for k in range(n):
        mark[k] = k
        col = int(perm[k])
        for p in range(indptr[col], indptr[col + 1]):
            i = rows[p]
            while i < k and mark[i] != k:
                mark[i] = k
                count += 1
                if parent[i] == -1:
                    parent[i] = k
                i = parent[i]
    return count


def assert_permutation(perm, n):
    assert perm.dtype == np.int64
    assert perm.shape == (n,)
    np.testing.assert_array_equal(np.sort(perm), np.arange(n))


def run_kernel(a, iwlen=None, dense_threshold=10.0, aggressive=1):
    """Call the kernel directly; returns (status code, perm, info)."""
    n = a.shape[0]
    nnz = a.indptr[-1]
    if iwlen is None:
        iwlen = nnz + nnz // 5 + n
    iw, arrays = amd_kernels._workspace(n, iwlen)
    perm = np.full(n, -1, dtype=np.int64)
    info = np.zeros(2, dtype=np.int64)
    status, _where = amd_kernels._amd(
        n,
        a.indptr.astype(np.int64),
        a.indices.astype(np.int64),
        perm,
        iw,
        *arrays,
        info,
        dense_threshold,
        aggressive,
    )
    return status, perm, info


PATTERNS = {
    "grid5_30": lambda: grid_5pt(30),
    "grid5_60": lambda: grid_5pt(60),
    "grid9_40": lambda: grid_9pt(40),
    "random_600": lambda: random_pattern(600, 4, seed=1),
    "random_1500": lambda: random_pattern(1500, 3, seed=2),
}


# ----------------------------------------------------------------------------
# basic properties and edge cases
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(PATTERNS))
def test_perm_is_permutation(name):
    a = PATTERNS[name]()
    assert_permutation(order(a), a.shape[0])


@pytest.mark.parametrize("aggressive", [True, False])
def test_diagonal_presence_does_not_matter(aggressive):
    a = random_pattern(400, 5, seed=3)
    with_diag = order(a, aggressive=aggressive)
    without = order(strip_diagonal(a), aggressive=aggressive)
    np.testing.assert_array_equal(with_diag, without)


def test_n_zero():
    perm = amd_order(np.zeros(1, dtype=np.int64), np.zeros(0, dtype=np.int64), 0)
    assert perm.shape == (0,)
    assert perm.dtype == np.int64


@pytest.mark.parametrize("indptr, indices", [([0, 0], []), ([0, 1], [0])])
def test_n_one(indptr, indices):
    perm = amd_order(np.array(indptr), np.array(indices, dtype=np.int64), 1)
    np.testing.assert_array_equal(perm, [0])


@pytest.mark.parametrize("with_diagonal", [True, False])
def test_diagonal_matrix(with_diagonal):
    n = 7
    if with_diagonal:
        a = _csc(sp.identity(n))
    else:
        a = _csc(sp.csc_matrix((n, n)))
    perm = order(a)
    # every node is its own tree; roots are visited in index order
    np.testing.assert_array_equal(perm, np.arange(n))


def test_disconnected_components_stay_contiguous():
    # two grids and three isolated nodes, interleaved by a random relabelling
    blocks = sp.block_diag([grid_5pt(12), grid_9pt(9), sp.identity(3)], format="csc")
    n = blocks.shape[0]
    component = np.repeat([0, 1, 2, 3, 4], [144, 81, 1, 1, 1])
    relabel = np.random.default_rng(4).permutation(n)
    a = _csc(blocks[relabel][:, relabel])
    component = component[relabel]
    perm = order(a)
    assert_permutation(perm, n)
    # each connected component is one assembly tree, and the postorder
    # visits a tree completely before the next
    labels = component[perm]
    changes = np.count_nonzero(np.diff(labels))
    assert changes == 4
    # fill of a block-diagonal pattern is the sum over its blocks, each of
    # which is ordered about as well as on its own
    total = 3  # the isolated nodes
    for label, block in ((0, grid_5pt(12)), (1, grid_9pt(9))):
        members = np.flatnonzero(component == label)
        local = np.full(n, -1)
        local[members] = np.arange(members.size)
        sub = _csc(a[members][:, members])
        sub_perm = local[perm[labels == label]]
        sub_fill = factor_nnz(sub, sub_perm)
        assert sub_fill <= 1.1 * factor_nnz(block, order(block))
        total += sub_fill
    assert factor_nnz(a, perm) == total


def test_dense_row_is_ordered_last():
    # a 30x30 grid plus one node coupled to every grid node
    g = grid_5pt(30)
    m = g.shape[0]
    hub = 417
    a = sp.lil_matrix((m + 1, m + 1))
    a[:m, :m] = g
    a[m, :] = 1.0
    a[:, m] = 1.0
    # move the hub to the middle of the numbering
    labels = np.insert(np.arange(m), hub, m)
    a = _csc(sp.csc_matrix(a)[labels][:, labels])
    n = m + 1
    status, perm, info = run_kernel(a)
    assert status == OK
    assert info[1] == 1  # one dense row
    assert perm[-1] == hub
    np.testing.assert_array_equal(order(a), perm)
    # The dense row costs one full row of L; the rest is ordered about as well
    # as the grid alone (not identically: initial degrees count the dense row).
    keep = np.delete(np.arange(n), hub)
    grid = _csc(a[keep][:, keep])
    new_label = np.full(n, -1)
    new_label[keep] = np.arange(m)
    rest_perm = new_label[perm[:-1]]
    assert factor_nnz(a, perm) == factor_nnz(grid, rest_perm) + n
    assert factor_nnz(grid, rest_perm) <= 1.1 * factor_nnz(grid, order(grid))


def test_dense_threshold_controls_detection():
    g = grid_5pt(20)
    m = g.shape[0]
    a = sp.lil_matrix((m + 1, m + 1))
    a[:m, :m] = g
    a[m, :] = 1.0
    a[:, m] = 1.0
    a = _csc(a)
    _, _, info_default = run_kernel(a, dense_threshold=10.0)
    _, _, info_off = run_kernel(a, dense_threshold=np.inf)
    _, _, info_full_only = run_kernel(a, dense_threshold=-1.0)
    _, _, info_low = run_kernel(a, dense_threshold=0.0)
    assert info_default[1] == 1
    assert info_off[1] == 0
    assert info_full_only[1] == 1  # the hub is coupled to all n - 1 others
    # threshold 0: rows with more than 16 entries are dense, grid rows have 4
    assert info_low[1] == 1
    for threshold in (np.inf, -1.0, 0.0, 10.0):
        assert_permutation(order(a, dense_threshold=threshold), m + 1)


@pytest.mark.parametrize("n", [20, 300])
def test_complete_graph(n):
    a = _csc(np.ones((n, n)))
    perm = order(a)
    assert_permutation(perm, n)
    assert factor_nnz(a, perm) == n * (n + 1) // 2
    # n = 300: every row is dense (299 > 10 sqrt(300)), all ordered last in
    # index order; n = 20: one supervariable, eliminated at once
    if n == 300:
        _, _, info = run_kernel(a)
        assert info[1] == n


def test_path_graph_has_no_fill():
    n = 50
    a = _csc(sp.diags([1.0, 1.0, 1.0], [-1, 0, 1], shape=(n, n)))
    relabel = np.random.default_rng(5).permutation(n)
    a = _csc(a[relabel][:, relabel])
    perm = order(a)
    assert factor_nnz(a, perm) == 2 * n - 1  # a tree: a perfect elimination order exists


# ----------------------------------------------------------------------------
# quality
# ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, max_ratio",
    [("grid5_30", 0.5), ("grid5_60", 0.35), ("grid9_40", 0.6), ("random_600", 0.5)],
)
def test_much_better_than_natural(name, max_ratio):
    a = PATTERNS[name]()
    n = a.shape[0]
    assert factor_nnz(a, order(a)) < max_ratio * factor_nnz(a, np.arange(n))


def test_aggressive_off_gives_a_similar_ordering():
    a = grid_5pt(40)
    fill_on = factor_nnz(a, order(a, aggressive=True))
    fill_off = factor_nnz(a, order(a, aggressive=False))
    assert abs(fill_off - fill_on) <= 0.1 * fill_on


def test_garbage_collection_keeps_the_ordering():
    # With the minimum elbow room (n) the workspace must be compacted, which
    # must not change any decision of the algorithm.
    for a in (grid_5pt(30), random_pattern(800, 6, seed=6)):
        a = strip_diagonal(a)
        n = a.shape[0]
        status, roomy, info_roomy = run_kernel(a, iwlen=3 * a.nnz + n)
        assert status == OK
        assert info_roomy[0] == 0
        status, tight, info_tight = run_kernel(a, iwlen=a.nnz + n)
        assert status == OK
        assert info_tight[0] > 0
        np.testing.assert_array_equal(tight, roomy)


def test_kernel_reports_too_small_workspace():
    a = strip_diagonal(grid_5pt(10))
    status, _, _ = run_kernel(a, iwlen=a.nnz + a.shape[0] - 1)
    assert status == WORKSPACE_TOO_SMALL
    status, _, _ = run_kernel(a, iwlen=a.nnz - 1)
    assert status == WORKSPACE_TOO_SMALL


# ----------------------------------------------------------------------------
# input validation
# ----------------------------------------------------------------------------


def test_rejects_bad_n():
    with pytest.raises(InputError, match="non-negative integer"):
        amd_order(np.array([0]), np.array([], dtype=np.int64), -1)
    with pytest.raises(InputError, match="non-negative integer"):
        amd_order(np.array([0, 0]), np.array([], dtype=np.int64), 1.0)


def test_rejects_bad_indptr():
    with pytest.raises(InputError, match="length n \\+ 1"):
        amd_order(np.array([0, 1]), np.array([0]), 2)
    with pytest.raises(InputError, match="non-decreasing"):
        amd_order(np.array([0, 2, 1]), np.array([0, 1]), 2)
    with pytest.raises(InputError, match="exceeds len"):
        amd_order(np.array([0, 1, 3]), np.array([0, 1]), 2)
    with pytest.raises(InputError, match="integers"):
        amd_order(np.array([0.0, 1.0, 2.0]), np.array([0, 1]), 2)
    with pytest.raises(InputError, match="one-dimensional"):
        amd_order(np.zeros((3, 1), dtype=np.int64), np.array([0, 1]), 2)


def test_rejects_bad_indices():
    with pytest.raises(InputError, match="out of range"):
        amd_order(np.array([0, 1, 2]), np.array([0, 2]), 2)
    with pytest.raises(InputError, match="out of range"):
        amd_order(np.array([0, 1, 2]), np.array([-1, 1]), 2)
    with pytest.raises(InputError, match="not strictly increasing"):
        amd_order(np.array([0, 2, 4]), np.array([1, 0, 0, 1]), 2)
    with pytest.raises(InputError, match="not strictly increasing"):
        amd_order(np.array([0, 3, 5]), np.array([0, 1, 1, 0, 1]), 2)
    # a later unsorted column is reported as such, not as an asymmetry
    with pytest.raises(InputError, match="column 1 are not strictly increasing"):
        amd_order(np.array([0, 1, 3]), np.array([1, 1, 0]), 2)
    with pytest.raises(InputError, match="out of range .* column 1"):
        amd_order(np.array([0, 1, 3]), np.array([1, 5, 0]), 2)


def test_rejects_asymmetric_pattern():
    a = sp.csc_matrix(np.array([[1.0, 1.0, 0.0], [0.0, 1.0, 1.0], [0.0, 1.0, 1.0]]))
    a.sort_indices()
    with pytest.raises(NotSymmetricError, match="not symmetric"):
        order(a)
    # an entry whose mirror is missing in a later column
    a = _csc(np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]))
    with pytest.raises(NotSymmetricError):
        order(a)


def test_rejects_nan_threshold():
    a = grid_5pt(3)
    with pytest.raises(InputError, match="dense_threshold"):
        order(a, dense_threshold=float("nan"))


def test_error_classes():
    assert issubclass(NotSymmetricError, InputError)
    assert issubclass(InputError, GMRFError)


# ----------------------------------------------------------------------------
# comparisons with SuiteSparse (CHOLMOD, and AMD itself)
# ----------------------------------------------------------------------------


@pytest.mark.cholmod
def test_reference_fill_count_matches_cholmod():
    cholmod = pytest.importorskip("sksparse.cholmod")
    for a, perm in [
        (grid_5pt(15), np.arange(225)),
        (random_pattern(300, 4, seed=7), np.random.default_rng(8).permutation(300)),
    ]:
        n = a.shape[0]
        # make it SPD: off-diagonal -1, diagonally dominant
        spd = a.copy()
        spd.data[:] = -1.0
        spd = _csc(spd + sp.diags(np.asarray(abs(spd).sum(axis=0)).ravel() + 1.0))
        permuted = _csc(spd[perm][:, perm])
        factor = cholmod.cholesky(permuted, ordering_method="natural", mode="simplicial")
        assert factor.L().nnz == factor_nnz(a, perm)
        assert n == permuted.shape[0]


@pytest.mark.cholmod
@pytest.mark.parametrize("name", sorted(PATTERNS))
def test_fill_within_ten_percent_of_cholmod_amd(name):
    cholmod = pytest.importorskip("sksparse.cholmod")
    a = PATTERNS[name]()
    ours = factor_nnz(a, order(a))
    theirs = factor_nnz(a, cholmod.analyze(a, ordering_method="amd").P())
    assert abs(ours - theirs) <= 0.10 * theirs


def _libamd():
    for name in (ctypes.util.find_library("amd"), "libamd.so.3", "libamd.so.2"):
        if name is None:
            continue
        try:
            lib = ctypes.CDLL(name)
            lib.amd_l2  # noqa: B018 - raises AttributeError if missing
            return lib
        except (OSError, AttributeError):
            continue
    return None


def suitesparse_amd_2(a, dense_threshold=10.0, aggressive=1):
    """SuiteSparse's ``amd_l2`` on the same quotient-graph input as our kernel.

    Given identical initial lists (the sorted off-diagonal rows), a faithful
    implementation of the algorithm makes identical choices at every step.
    """
    lib = _libamd()
    if lib is None:
        pytest.skip("SuiteSparse libamd not found")
    b = strip_diagonal(a)
    n = b.shape[0]
    nz = b.nnz
    iwlen = nz + nz // 5 + n
    iw = np.zeros(iwlen, dtype=np.int64)
    iw[:nz] = b.indices
    pe = b.indptr[:-1].astype(np.int64)
    lengths = np.diff(b.indptr).astype(np.int64)
    work = [np.zeros(n, dtype=np.int64) for _ in range(7)]  # Nv Next Last Head Elen Degree W
    control = np.array([dense_threshold, aggressive, 0.0, 0.0, 0.0])
    info = np.zeros(20)
    i64p = ctypes.POINTER(ctypes.c_int64)
    f64p = ctypes.POINTER(ctypes.c_double)
    lib.amd_l2(
        ctypes.c_int64(n),
        pe.ctypes.data_as(i64p),
        iw.ctypes.data_as(i64p),
        lengths.ctypes.data_as(i64p),
        ctypes.c_int64(iwlen),
        ctypes.c_int64(nz),
        *[w.ctypes.data_as(i64p) for w in work],
        control.ctypes.data_as(f64p),
        info.ctypes.data_as(f64p),
    )
    return work[2]  # Last: the permutation


@pytest.mark.cholmod
@pytest.mark.parametrize("aggressive", [1, 0])
@pytest.mark.parametrize("name", sorted(PATTERNS))
def test_identical_to_suitesparse_amd(name, aggressive):
    a = PATTERNS[name]()
    expected = suitesparse_amd_2(a, aggressive=aggressive)
    np.testing.assert_array_equal(order(a, aggressive=bool(aggressive)), expected)


@pytest.mark.cholmod
@pytest.mark.parametrize("threshold", [10.0, 0.5, -1.0])
def test_identical_to_suitesparse_amd_with_dense_rows(threshold):
    g = grid_5pt(15)
    m = g.shape[0]
    a = sp.lil_matrix((m + 2, m + 2))
    a[:m, :m] = g
    a[m, : m // 2] = 1.0
    a[: m // 2, m] = 1.0
    a[m + 1, :] = 1.0
    a[:, m + 1] = 1.0
    a = _csc(a)
    expected = suitesparse_amd_2(a, dense_threshold=threshold)
    np.testing.assert_array_equal(order(a, dense_threshold=threshold), expected)
