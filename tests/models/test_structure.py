"""Tests of the shared model machinery: fixed patterns, graphs, intrinsic structures."""

import numpy as np
import pytest
import scipy.linalg as sla
import scipy.sparse as sp

from gmrf_core.errors import InputError
from gmrf_core.models import Besag, _structure
from gmrf_core.models._structure import (
    LinearPrecision,
    _band_selected_inverse,
    adjacency_matrix,
    graph_components,
    intrinsic_structure,
    laplacian,
    structure_log_pdet,
)


def test_linear_precision():
    rng = np.random.default_rng(0)
    terms = [sp.random(6, 6, density=0.3, random_state=k) for k in range(3)]
    terms = [t + t.T for t in terms]
    linear = LinearPrecision(terms, 6)
    c = rng.standard_normal(3)
    np.testing.assert_allclose(
        linear.matrix(c).toarray(), sum(ck * t.toarray() for ck, t in zip(c, terms))
    )
    jac = rng.standard_normal((3, 2))
    mats = linear.matrices(jac)
    for k in range(2):
        np.testing.assert_allclose(
            mats[k].toarray(), sum(jac[j, k] * terms[j].toarray() for j in range(3))
        )


@pytest.mark.parametrize("bandwidth", [0, 1, 3])
def test_band_selected_inverse(bandwidth):
    rng = np.random.default_rng(bandwidth)
    n = 30
    dense = np.zeros((n, n))
    for d in range(1, bandwidth + 1):
        values = rng.uniform(-1, 1, n - d)
        dense += np.diag(values, d) + np.diag(values, -d)
    dense += np.diag(2.0 * bandwidth + 1.0 + rng.uniform(0, 1, n))
    band = np.zeros((bandwidth + 1, n))
    for d in range(bandwidth + 1):
        band[d, : n - d] = np.diag(dense, -d)
    factor = sla.cholesky_banded(band, lower=True)
    selected = np.zeros_like(factor)
    assert _band_selected_inverse(np.ascontiguousarray(factor), selected) == 0
    inverse = np.linalg.inv(dense)
    for d in range(bandwidth + 1):
        np.testing.assert_allclose(
            selected[d, : n - d], np.diag(inverse, -d), rtol=1e-12, atol=1e-14
        )


def random_connected_laplacian(n, seed):
    rng = np.random.default_rng(seed)
    edges = {(i, int(rng.integers(0, i))) for i in range(1, n)}  # spanning tree
    while len(edges) < 2 * n:
        i, j = sorted(rng.integers(0, n, 2))
        if i != j:
            edges.add((int(j), int(i)))
    rows = np.array([e[0] for e in edges] + [e[1] for e in edges])
    cols = np.array([e[1] for e in edges] + [e[0] for e in edges])
    adjacency = sp.csr_matrix((np.ones(rows.size), (rows, cols)), shape=(n, n))
    return laplacian(adjacency)


@pytest.mark.parametrize("method", ["dense", "banded"])
def test_intrinsic_structure_against_pseudo_inverse(method):
    structure = random_connected_laplacian(60, 3)
    variances, log_pdet = intrinsic_structure(structure, np.ones((60, 1)), "t", method=method)
    dense = structure.toarray()
    np.testing.assert_allclose(variances, np.diag(sla.pinvh(dense)), rtol=1e-10)
    values = np.sort(sla.eigvalsh(dense))
    assert log_pdet == pytest.approx(np.sum(np.log(values[1:])), rel=1e-11)


def test_intrinsic_structure_two_dimensional_null_space():
    n = 40
    d = np.diff(np.eye(n), n=2, axis=0)
    structure = sp.csc_matrix(d.T @ d)
    null = np.column_stack([np.ones(n), np.arange(n)])
    reference = np.diag(sla.pinvh(d.T @ d))
    for kwargs in (
        dict(method="dense"),
        dict(method="banded"),
        dict(method="banded", grounded=[n - 2, n - 1]),
    ):
        variances, log_pdet = intrinsic_structure(structure, null, "t", **kwargs)
        np.testing.assert_allclose(variances, reference, rtol=1e-9)
        assert log_pdet == pytest.approx(np.log(n**2 * (n**2 - 1) / 12), rel=1e-11)


def test_intrinsic_structure_errors(monkeypatch):
    structure = random_connected_laplacian(40, 1)
    with pytest.raises(InputError, match="null-space"):
        intrinsic_structure(structure + sp.identity(40), np.ones((40, 1)), "t")
    monkeypatch.setattr(_structure, "DENSE_LIMIT", 10)
    monkeypatch.setattr(_structure, "BAND_WORK_LIMIT", 10.0)
    path = [[j for j in (i - 1, i + 1) if 0 <= j < 50] for i in range(50)]
    with pytest.raises(InputError, match="scale=False"):
        Besag(path)
    # without scaling only log|R|* is needed (sparse LU), which has no size limit
    assert Besag(path, scale=False).logdet([0.0]) == pytest.approx(np.log(50))
    with pytest.raises(InputError, match="positive semidefinite"):
        structure_log_pdet(-structure, np.ones((40, 1)), "t")


def test_structure_log_pdet_sparse_lu():
    for seed in range(3):
        structure = random_connected_laplacian(80, seed)
        values = np.sort(sla.eigvalsh(structure.toarray()))
        expected = np.sum(np.log(values[1:]))
        assert structure_log_pdet(structure, np.ones((80, 1)), "t") == pytest.approx(
            expected, rel=1e-11
        )
    n = 60
    d = np.diff(np.eye(n), n=2, axis=0)
    null = np.column_stack([np.ones(n), np.arange(n)])
    expected = np.log(n**2 * (n**2 - 1) / 12)
    for grounded in (None, [n - 2, n - 1]):
        value = structure_log_pdet(sp.csc_matrix(d.T @ d), null, "t", grounded=grounded)
        assert value == pytest.approx(expected, rel=1e-10)


def test_graph_helpers():
    adjacency = adjacency_matrix([[1], [0], [], [4], [3]], "t")
    components = graph_components(adjacency)
    assert [list(c) for c in components] == [[0, 1], [2], [3, 4]]
    np.testing.assert_allclose(laplacian(adjacency).toarray()[:2, :2], [[1, -1], [-1, 1]])
