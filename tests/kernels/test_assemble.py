"""The assembly kernels that read values onto a fixed pattern, against NumPy references."""

import numpy as np
import pytest
import scipy.sparse as sp

from gmrf_core.kernels import assemble as kasm
from gmrf_core.pattern import FixedPattern

N = 30


@pytest.fixture
def rng():
    return np.random.default_rng(5)


def _pattern_and_values(rng, n=N, density=0.2):
    """A random symmetric pattern (diagonal included) and symmetric values on it."""
    a = sp.random(n, n, density=density, random_state=np.random.RandomState(1))
    q = sp.csc_matrix(a + a.T + sp.identity(n))
    pattern = FixedPattern([q], n)
    values = pattern.data_of(q)
    return pattern, values


def _reference_asymmetry(values, transpose):
    return float(np.max(np.abs(values - values[transpose]))), float(np.max(np.abs(values)))


@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
def test_same_structure_compares_every_entry(index_dtype):
    indptr = np.array([0, 2, 3, 5], dtype=index_dtype)
    indices = np.array([0, 2, 1, 0, 2], dtype=index_dtype)
    known = (np.array([0, 2, 3, 5], dtype=np.int32), np.array([0, 2, 1, 0, 2], dtype=np.int32))
    assert kasm._same_structure(indptr, indices, *known)
    # a longer index array (scipy allows a tail after indptr[-1]) with the same first entries
    assert kasm._same_structure(indptr, np.r_[indices, 7].astype(index_dtype), *known)
    for p in range(indices.size):  # each index compared, the last one too
        changed = indices.copy()
        changed[p] += 1
        assert not kasm._same_structure(indptr, changed, *known)
    for p in range(indptr.size):
        changed = indptr.copy()
        changed[p] += 1
        assert not kasm._same_structure(changed, indices, *known)
    assert not kasm._same_structure(indptr[:-1], indices, *known)
    assert not kasm._same_structure(indptr, indices[:-1], *known)


def test_checked_copy_copies_and_measures_the_asymmetry(rng):
    pattern, values = _pattern_and_values(rng)
    transpose = pattern.transpose_positions
    noisy = values + 1e-3 * rng.standard_normal(values.size)  # not symmetric
    for data in (values, noisy, -noisy):
        out = np.full(data.size, np.nan)
        code, worst, scale = kasm._checked_copy(np.r_[data, 99.0], transpose, out)  # a tail
        assert code == kasm.OK
        np.testing.assert_array_equal(out, data)
        assert (worst, scale) == _reference_asymmetry(data, transpose)
    assert kasm._checked_copy(values, transpose, np.empty(values.size))[1] == 0.0


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_checked_copy_reports_a_value_that_is_not_finite(rng, bad):
    pattern, values = _pattern_and_values(rng)
    for p in (0, values.size // 2, values.size - 1):
        data = values.copy()
        data[p] = bad
        code, _worst, _scale = kasm._checked_copy(
            data, pattern.transpose_positions, np.empty(data.size)
        )
        assert code == kasm.NOT_FINITE


def test_checked_scatter_places_a_sub_pattern(rng):
    pattern, values = _pattern_and_values(rng)
    transpose = pattern.transpose_positions
    # the sub-pattern: the diagonal and a symmetric part of the off-diagonal entries
    full = pattern.matrix(values)
    keep = sp.csc_matrix(sp.triu(full, 1).multiply(full > np.median(full.data)))
    sub = sp.csc_matrix(sp.diags(full.diagonal()) + keep + keep.T)
    positions = pattern._positions(sub)
    assert 0 < sub.nnz < pattern.nnz and positions is not None
    reference = pattern.data_of(sub)
    out = np.full(pattern.nnz, np.nan)
    code, worst, scale = kasm._checked_scatter(sub.data, positions, transpose, out)
    assert code == kasm.OK
    np.testing.assert_array_equal(out, reference)
    assert (worst, scale) == _reference_asymmetry(reference, transpose) == (0.0, scale)
    # one placed entry changed: its pair is measured; an entry whose transpose is not placed
    skew = sub.copy()
    columns = np.repeat(np.arange(N), np.diff(sub.indptr))
    skew.data[np.flatnonzero(sub.indices != columns)[0]] += 0.25
    one_sided = sp.csc_matrix(sp.diags(full.diagonal()) + keep)
    for matrix in (skew, one_sided):
        positions = pattern._positions(matrix)
        code, worst, scale = kasm._checked_scatter(matrix.data, positions, transpose, out)
        assert code == kasm.OK
        assert (worst, scale) == _reference_asymmetry(pattern.data_of(matrix), transpose)
        assert worst > 0.0
    data = sub.data.copy()
    data[-1] = np.nan
    assert (
        kasm._checked_scatter(data, pattern._positions(sub), transpose, out)[0] == kasm.NOT_FINITE
    )
