"""Tests of the shared model machinery: fixed patterns, graphs, intrinsic structures."""

import numpy as np
import pytest
import scipy.linalg as sla
import scipy.sparse as sp

from gmrf_core.errors import InputError
from gmrf_core.models._structure import (
    LinearPrecision,
    adjacency_matrix,
    graph_components,
    graph_scaling,
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


@pytest.mark.parametrize("seed", [3, 4])
def test_intrinsic_structure_against_pseudo_inverse(seed):
    structure = random_connected_laplacian(60, seed)
    variances, log_pdet = intrinsic_structure(structure, np.ones((60, 1)), "t")
    dense = structure.toarray()
    np.testing.assert_allclose(variances, np.diag(sla.pinvh(dense)), rtol=1e-10)
    values = np.sort(sla.eigvalsh(dense))
    assert log_pdet == pytest.approx(np.sum(np.log(values[1:])), rel=1e-11)
    # any grounded node gives the same numbers
    again, log_again = intrinsic_structure(structure, np.ones((60, 1)), "t", grounded=[17])
    np.testing.assert_allclose(again, variances, rtol=1e-10)
    assert log_again == pytest.approx(log_pdet, rel=1e-12)


def test_intrinsic_structure_two_dimensional_null_space():
    n = 40
    d = np.diff(np.eye(n), n=2, axis=0)
    structure = sp.csc_matrix(d.T @ d)
    null = np.column_stack([np.ones(n), np.arange(n)])
    reference = np.diag(sla.pinvh(d.T @ d))
    for grounded in (None, [n - 2, n - 1], [0, 1], [3, 30]):
        variances, log_pdet = intrinsic_structure(structure, null, "t", grounded=grounded)
        np.testing.assert_allclose(variances, reference, rtol=1e-9)
        assert log_pdet == pytest.approx(np.log(n**2 * (n**2 - 1) / 12), rel=1e-11)


def test_smallest_structures():
    """Two nodes (a 1 × 1 grounded matrix) and an RW2 on three nodes."""
    structure = sp.csc_matrix(np.array([[1.0, -1.0], [-1.0, 1.0]]))
    variances, log_pdet = intrinsic_structure(structure, np.ones((2, 1)), "t")
    np.testing.assert_allclose(variances, np.diag(sla.pinvh(structure.toarray())), rtol=1e-14)
    assert log_pdet == pytest.approx(np.log(2.0), rel=1e-14)
    d = np.diff(np.eye(3), n=2, axis=0)
    null = np.column_stack([np.ones(3), np.arange(3)])
    variances, log_pdet = intrinsic_structure(sp.csc_matrix(d.T @ d), null, "t")
    np.testing.assert_allclose(variances, np.diag(sla.pinvh(d.T @ d)), rtol=1e-12)
    assert log_pdet == pytest.approx(np.log(6.0), rel=1e-12)


def test_intrinsic_structure_errors():
    structure = random_connected_laplacian(40, 1)
    with pytest.raises(InputError, match="null-space"):
        intrinsic_structure(structure + sp.identity(40), np.ones((40, 1)), "t")
    with pytest.raises(InputError, match="positive semidefinite"):
        structure_log_pdet(-structure, np.ones((40, 1)), "t")
    # a second null direction not declared: the grounded matrix is singular
    two = sp.csc_matrix(sp.block_diag([structure, structure]))
    with pytest.raises(InputError, match="positive semidefinite"):
        intrinsic_structure(two, np.ones((80, 1)), "t")
    with pytest.raises(InputError, match="dimension"):
        intrinsic_structure(sp.csc_matrix((3, 3)), np.eye(3), "t")


def test_structure_log_pdet():
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


def test_graph_scaling_several_components_against_pseudo_inverse():
    """One factorization for all components: per-component pinv and eigenvalue references."""
    pair = sp.csc_matrix(np.array([[1.0, -1.0], [-1.0, 1.0]]))
    blocks = [random_connected_laplacian(30, 0), pair, random_connected_laplacian(45, 1)]
    full = sp.csc_matrix(sp.block_diag(blocks + [sp.csc_matrix((1, 1))]))  # and an island
    offsets = np.cumsum([0] + [b.shape[0] for b in blocks])
    components = [np.arange(offsets[i], offsets[i + 1]) for i in range(len(blocks))]
    factors, log_pdet = graph_scaling(full, components, "t", True)
    expected_log_pdet = 0.0
    for block, factor in zip(blocks, factors):
        dense = block.toarray()
        variances = np.diag(sla.pinvh(dense))
        assert factor == pytest.approx(np.exp(np.mean(np.log(variances))), rel=1e-11)
        values = np.sort(sla.eigvalsh(factor * dense))
        expected_log_pdet += np.sum(np.log(values[1:]))
    assert log_pdet == pytest.approx(expected_log_pdet, rel=1e-11)
    unscaled_factors, unscaled = graph_scaling(full, components, "t", False)
    np.testing.assert_array_equal(unscaled_factors, 1.0)
    reference = sum(np.sum(np.log(np.sort(sla.eigvalsh(b.toarray()))[1:])) for b in blocks)
    assert unscaled == pytest.approx(reference, rel=1e-11)
    assert graph_scaling(full, [], "t", True)[1] == 0.0


def test_graph_helpers():
    adjacency = adjacency_matrix([[1], [0], [], [4], [3]], "t")
    components = graph_components(adjacency)
    assert [list(c) for c in components] == [[0, 1], [2], [3, 4]]
    np.testing.assert_allclose(laplacian(adjacency).toarray()[:2, :2], [[1, -1], [-1, 1]])
