"""Fill-reducing orderings (gmrf_core.ordering): the choice, user permutations, validation."""

import ast
import pathlib

import numpy as np
import pytest

import gmrf_core as gm
from gmrf_core import ordering
from gmrf_core.bindings import metis
from tests.test_linalg import grid_laplacian, spde_like


def _pattern(Q):
    Q = gm.linalg.as_csc(Q)
    return Q.indptr, Q.indices, Q.shape[0]


def _fill(Q, perm):
    """nnz(L) of the dense Cholesky factor of Q[perm][:, perm] (an independent count)."""
    dense = Q.toarray()[np.ix_(perm, perm)]
    return int(np.count_nonzero(np.abs(np.linalg.cholesky(dense)) > 1e-14))


def _is_permutation(perm, n):
    return perm.dtype == np.int64 and np.array_equal(np.sort(perm), np.arange(n))


@pytest.mark.parametrize("method", ["amd", "nd", "natural", "auto"])
def test_every_method_gives_a_permutation_that_reduces_fill(method):
    Q = spde_like(12, kappa=0.3)
    indptr, indices, n = _pattern(Q)
    perm = ordering.fill_reducing_ordering(indptr, indices, n, method)
    assert _is_permutation(perm, n)
    if method != "natural":
        assert _fill(Q, perm) < 0.8 * _fill(Q, np.arange(n))


def test_auto_is_amd_below_the_threshold_and_nd_above(monkeypatch):
    Q = grid_laplacian(9)
    indptr, indices, n = _pattern(Q)
    amd = ordering.amd_order(indptr, indices, n)
    nd = metis.nested_dissection(indptr, indices, n)
    assert np.array_equal(ordering.fill_reducing_ordering(indptr, indices, n, "auto"), amd)
    assert np.array_equal(ordering.fill_reducing_ordering(indptr, indices, n, "AMD"), amd)
    monkeypatch.setattr(ordering, "AUTO_ND_THRESHOLD", n - 1)
    assert np.array_equal(ordering.fill_reducing_ordering(indptr, indices, n, "auto"), nd)


def test_user_permutations_are_checked():
    indptr, indices, n = _pattern(grid_laplacian(3))
    perm = np.random.default_rng(0).permutation(n).astype(np.int32)
    out = ordering.fill_reducing_ordering(indptr, indices, n, perm)
    assert np.array_equal(out, perm) and out.dtype == np.int64
    for bad, match in [
        ("colamd", "one of"),
        (np.arange(n - 1), "length"),
        (np.arange(n) * 1.0, "integer"),
        (np.zeros((n, 1), dtype=int), "length"),
        (np.r_[np.arange(n - 1), n + 3], "outside"),
        (np.r_[np.arange(n - 1), -1], "outside"),
        (np.r_[np.arange(n - 1), 0], "repeats"),
    ]:
        with pytest.raises(gm.InputError, match=match):
            ordering.fill_reducing_ordering(indptr, indices, n, bad)


def test_int32_patterns_reach_amd_without_a_copy():
    indptr, indices, n = _pattern(spde_like(8))
    assert indices.dtype == np.int32
    assert ordering._as_index_array(indices, "indices") is indices
    assert ordering._as_index_array(indptr, "indptr") is indptr
    wide = ordering.amd_order(indptr.astype(np.int64), indices.astype(np.int64), n)
    assert np.array_equal(ordering.amd_order(indptr, indices, n), wide)
    # other integer types are converted, not rejected
    assert np.array_equal(
        ordering.amd_order(indptr.astype(np.uint32), indices.astype(np.int16), n), wide
    )


def test_analyze_uses_the_chosen_ordering():
    Q = grid_laplacian(7)
    indptr, indices, n = _pattern(Q)
    perm = ordering.amd_order(indptr, indices, n)
    # the analysis composes the ordering with a postorder: the fill is the same
    symbolic = gm.analyze(Q, ordering="amd")
    assert _fill(Q, symbolic.perm) == _fill(Q, perm)
    assert gm.linalg.ORDERINGS is ordering.ORDERINGS


def test_no_kernel_imports_the_python_layer():
    """Kernels take arrays and return statuses: none imports gmrf_core's errors or API."""
    root = pathlib.Path(gm.__file__).resolve().parent.parent / "kernels"
    if not root.is_dir():  # an installed (non-editable) layout
        root = pathlib.Path(gm.__file__).resolve().parent / "kernels"
    sources = sorted(root.glob("*.py"))
    assert sources
    for source in sources:
        tree = ast.parse(source.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                module = node.module or ""
                assert not (node.level >= 2 and module != "bindings"), (source.name, module)
                assert "errors" not in module and not module.startswith("gmrf_core"), (
                    source.name,
                    module,
                )
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    assert not alias.name.startswith("gmrf_core"), (source.name, alias.name)
            elif isinstance(node, ast.Assert):
                raise AssertionError(f"{source.name} asserts (removed by python -O)")
