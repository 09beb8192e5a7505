"""Malformed sparse input reaches no kernel: every linalg entry point raises InputError.

Hand-built CSC matrices with broken index structure (out-of-range or negative indices,
decreasing or short pointers, wrong dtypes, short data, arrays mutated after
construction) used to crash the interpreter inside ``analyze`` or scipy's C++ helpers.
Each entry point runs in a subprocess, so a crash fails the test instead of killing
pytest; the child reports, per malformed case, the exception it got.
"""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import scipy.sparse as sp

import gmrf_core as gm
from gmrf_core.linalg import as_csc
from tests.test_linalg import grid_laplacian

_CHILD = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import scipy.sparse as sp
    import gmrf_core as gm
    from gmrf_core.linalg import as_csc

    def good():
        t = sp.diags_array([-np.ones(3), 2.5 * np.ones(4), -np.ones(3)], offsets=[-1, 0, 1])
        Q = sp.csc_matrix(sp.kron(t, sp.eye_array(4)) + sp.kron(sp.eye_array(4), t))
        Q.sort_indices()
        return Q

    def malformed(case):
        Q = good()
        assert Q.has_canonical_format  # scipy caches the flag: mutations below go unseen
        if case == "index_too_large":
            Q.indices[5] = 99
        elif case == "index_negative":
            Q.indices[5] = -1
        elif case == "indptr_decreasing":
            Q.indptr[3] = Q.indptr[5]
        elif case == "indptr_past_the_end":
            Q.indptr[-1] = Q.indices.size + 10
        elif case == "indptr_not_from_zero":
            Q.indptr[0] = 1
        elif case == "indptr_too_short":
            Q.indptr = Q.indptr[:-1]
        elif case == "float_indices":
            Q.indices = Q.indices.astype(float)
        elif case == "data_too_short":
            Q.data = Q.data[:-3]
        elif case == "csr_index_too_large":
            Q = Q.tocsr()
            Q.indices[2] = 1000
        elif case == "coo_index_too_large":
            Q = Q.tocoo()
            Q.row[2] = 1000
        return Q

    CASES = sys.argv[2].split(",")
    entry = sys.argv[1]
    base = good()
    factor = gm.cholesky(base)
    inverse = factor.selected_inverse()

    call = {
        "as_csc": as_csc,
        "analyze": gm.analyze,
        "cholesky": gm.cholesky,
        "refactorize": factor.refactorize,
        "values_at": inverse.values_at,
        "trace_product": inverse.trace_product,
        "quadratic_diag": inverse.quadratic_diag,
    }[entry]

    for case in CASES:
        try:
            call(malformed(case))
            result = ["no error", ""]
        except Exception as exc:  # report every kind, the test decides
            result = [type(exc).__name__, str(exc)]
        print(json.dumps([case] + result), flush=True)
    """
)

MALFORMED = [
    "index_too_large",
    "index_negative",
    "indptr_decreasing",
    "indptr_past_the_end",
    "indptr_not_from_zero",
    "indptr_too_short",
    "float_indices",
    "data_too_short",
    "csr_index_too_large",
    "coo_index_too_large",
]


def _run_child(code, *args):
    run = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, f"child died with status {run.returncode}:\n{run.stderr[-3000:]}"
    return [json.loads(line) for line in run.stdout.splitlines() if line.startswith("[")]


ENTRY_POINTS = [
    "as_csc",
    "analyze",
    "cholesky",
    "refactorize",
    "values_at",
    "trace_product",
    "quadratic_diag",
]


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_malformed_csc_raises_input_error_in_every_entry_point(entry):
    reports = _run_child(_CHILD, entry, ",".join(MALFORMED))
    assert [case for case, _, _ in reports] == MALFORMED  # the child reached every case
    for case, kind, message in reports:
        assert kind == "InputError", (case, kind, message)
        assert "malformed" in message or "integer" in message, (case, message)


_POSITIONS_CHILD = textwrap.dedent(
    """
    import json
    import numpy as np
    import scipy.sparse as sp
    import gmrf_core as gm

    bands = [-np.ones(8), 3 * np.ones(9), -np.ones(8)]
    Q = sp.csc_matrix(sp.diags_array(bands, offsets=[-1, 0, 1]))
    factor = gm.cholesky(Q, ordering="natural")
    inverse = factor.selected_inverse()
    size = factor.symbolic.lx_ptr[-1]
    calls = {
        "positions_too_large": lambda: inverse.values_at_positions(np.array([0, size + 5])),
        "positions_huge": lambda: inverse.values_at_positions(np.array([2**40])),
        "positions_negative": lambda: inverse.values_at_positions(np.array([-1])),
        "positions_float": lambda: inverse.values_at_positions(np.array([0.5, 1.0])),
        "positions_2d": lambda: inverse.values_at_positions(np.zeros((2, 2), dtype=int)),
        "rows_out_of_range": lambda: factor.symbolic.positions([0, 9], [0, 0]),
        "rows_negative": lambda: factor.symbolic.positions([-1], [0]),
        "rows_float": lambda: factor.symbolic.positions([0.7], [0]),
        "rows_cols_lengths": lambda: factor.symbolic.positions([0, 1], [0]),
    }
    for case, call in calls.items():
        try:
            call()
            result = ["no error", ""]
        except Exception as exc:
            result = [type(exc).__name__, str(exc)]
        print(json.dumps([case] + result), flush=True)
    """
)


def test_out_of_range_positions_raise_input_error():
    reports = _run_child(_POSITIONS_CHILD)
    assert len(reports) == 9
    for case, kind, message in reports:
        assert kind == "InputError", (case, kind, message)


def _dense_from_raw(data, indices, indptr, shape):
    """Dense reference summing every stored entry, whatever the order (no scipy)."""
    dense = np.zeros(shape)
    for j in range(shape[1]):
        for p in range(indptr[j], indptr[j + 1]):
            dense[indices[p], j] += data[p]
    return dense


def test_mutated_order_is_canonicalized_not_trusted():
    # scipy caches has_canonical_format; reordering indices afterwards goes unseen by it
    Q = grid_laplacian(4).tocsc()
    Q.sort_indices()
    assert Q.has_canonical_format
    start = Q.indptr[5]
    Q.indices[start], Q.indices[start + 1] = Q.indices[start + 1], Q.indices[start]
    assert Q.has_canonical_format  # stale
    reference = _dense_from_raw(Q.data, Q.indices, Q.indptr, Q.shape)
    out = as_csc(Q)
    assert np.all(np.diff(out.indices[out.indptr[5] : out.indptr[6]]) > 0)
    np.testing.assert_array_equal(out.toarray(), reference)


def test_duplicates_and_unsorted_hand_built_csc_are_summed():
    rng = np.random.default_rng(4)
    n = 6
    indptr = np.array([0, 3, 5, 5, 8, 9, 12], dtype=np.int32)
    indices = np.array([2, 0, 2, 1, 1, 5, 3, 3, 4, 0, 5, 0], dtype=np.int32)
    data = rng.standard_normal(indices.size)
    M = sp.csc_matrix((data, indices, indptr), shape=(n, n))
    out = as_csc(M)
    assert out.has_canonical_format and out.dtype == np.float64
    for j in range(n):
        assert np.all(np.diff(out.indices[out.indptr[j] : out.indptr[j + 1]]) > 0)
    np.testing.assert_allclose(out.toarray(), _dense_from_raw(data, indices, indptr, (n, n)))
    # and the factorization of a symmetric one built that way is the dense one's
    S = sp.csc_matrix(M + M.T + 20 * sp.eye_array(n))
    coo = S.tocoo()
    shuffled = rng.permutation(coo.nnz)
    twice = sp.coo_matrix(
        (
            np.concatenate([coo.data[shuffled] / 2] * 2),
            (np.tile(coo.row[shuffled], 2), np.tile(coo.col[shuffled], 2)),
        ),
        shape=S.shape,
    )
    assert gm.cholesky(twice).logdet() == pytest.approx(np.linalg.slogdet(S.toarray())[1])


def test_valid_csc_is_shared_not_copied():
    Q = grid_laplacian(5).tocsc()
    Q.sort_indices()
    out = as_csc(Q)
    assert out.indices is Q.indices or np.shares_memory(out.indices, Q.indices)
    assert np.shares_memory(out.data, Q.data)


def test_longer_arrays_than_indptr_announces_are_trimmed():
    Q = grid_laplacian(3).tocsc()
    nnz = Q.nnz
    M = sp.csc_matrix(Q.shape)
    M.indptr, M.indices, M.data = (
        Q.indptr.copy(),
        np.concatenate([Q.indices, [7, 7]]).astype(Q.indices.dtype),
        np.concatenate([Q.data, [1.0, 1.0]]),
    )
    out = as_csc(M)
    assert out.nnz == nnz
    np.testing.assert_array_equal(out.toarray(), Q.toarray())


def test_refactorize_with_the_analysed_arrays_mutated_is_a_mismatch():
    # the analysis keeps its own copy of the pattern: the caller's arrays can change
    Q = grid_laplacian(4).tocsc()
    factor = gm.cholesky(Q)
    Q.indices[3] = 15  # still in range, but a different pattern
    with pytest.raises(gm.InputError):
        factor.refactorize(Q)
    assert factor.symbolic._indices.flags.writeable is False


@pytest.mark.parametrize("bad", [np.nan, -1e-3, -np.inf, "1e-8", True, None])
def test_symmetry_rtol_must_be_a_non_negative_number(bad):
    with pytest.raises(gm.InputError, match="symmetry_rtol"):
        gm.analyze(grid_laplacian(3), symmetry_rtol=bad)


def test_symmetry_rtol_inf_skips_the_check():
    Q = grid_laplacian(3).tolil()
    Q[0, 1] = -0.5
    factor = gm.cholesky(Q.tocsc(), symmetry_rtol=np.inf)
    assert np.isfinite(factor.logdet())


def test_complex_and_non_numeric_right_hand_sides_are_rejected():
    factor = gm.cholesky(grid_laplacian(3))
    b = np.ones(9) + 1j * np.arange(9)
    for solve in (factor.solve, factor.solve_L, factor.solve_Lt):
        with pytest.raises(gm.InputError, match="real"):
            solve(b)
    with pytest.raises(gm.InputError, match="real numbers"):
        factor.solve(np.array(["1"] * 9))
    # a real one still works
    np.testing.assert_allclose(grid_laplacian(3) @ factor.solve(b.real), b.real)


@pytest.mark.parametrize("size", [2.5, "3", True, -1, np.float64(2.0)])
def test_sample_size_must_be_a_non_negative_integer(size):
    factor = gm.cholesky(grid_laplacian(3))
    with pytest.raises(gm.InputError, match="size"):
        factor.sample(size=size)


def test_sample_size_integer_types():
    factor = gm.cholesky(grid_laplacian(3))
    assert factor.sample(size=np.int64(3), rng=0).shape == (3, 9)
    assert factor.sample(size=0, rng=0).shape == (0, 9)


def test_complex_or_non_numeric_matrices_are_rejected():
    with pytest.raises(gm.InputError, match="real"):
        as_csc(sp.csc_matrix(np.eye(3) * (1 + 2j)))
    with pytest.raises(gm.InputError, match="numbers"):
        as_csc(np.array([["a", "b"], ["c", "d"]]))
    with pytest.raises(gm.InputError):
        as_csc(sp.csc_matrix(np.eye(2)).astype(np.complex64))
