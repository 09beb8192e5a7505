"""Tests of the Besag (ICAR) and BYM2 models."""

import numpy as np
import pytest
import scipy.integrate
import scipy.linalg as sla
import scipy.sparse as sp

from gmrf_core.errors import InputError, NotSymmetricError
from gmrf_core.models import BYM2, Besag, PCBYM2Phi, PCPrecision, besag
from gmrf_core.models._structure import intrinsic_structure


def disconnected_graph():
    """Two components (a 3 × 3 grid and a path of 4) and two islands: 15 nodes."""
    from scipy.sparse import block_diag

    grid = np.zeros((9, 9))
    for i in range(3):
        for j in range(3):
            k = 3 * i + j
            if j < 2:
                grid[k, k + 1] = grid[k + 1, k] = 1
            if i < 2:
                grid[k, k + 3] = grid[k + 3, k] = 1
    path = np.eye(4, k=1) + np.eye(4, k=-1)
    adjacency = block_diag([grid, np.zeros((1, 1)), path, np.zeros((1, 1))]).toarray()
    return adjacency  # islands at nodes 9 and 14


def component_geometric_means(model, nodes_list):
    q = model.precision([0.0]).toarray()
    covariance = sla.pinvh(q)
    return [np.exp(np.mean(np.log(np.diag(covariance)[nodes]))) for nodes in nodes_list]


def test_textbook_definition(grid):
    adjacency = grid(3, 4)
    tau = 1.7
    model = Besag(adjacency, scale=False)
    w = adjacency.toarray()
    expected = tau * (np.diag(w.sum(axis=1)) - w)
    np.testing.assert_allclose(model.precision([np.log(tau)]).toarray(), expected, atol=1e-12)
    scaled = Besag(adjacency)
    np.testing.assert_allclose(
        scaled.precision([np.log(tau)]).toarray(), scaled.scale_factors[0] * expected, rtol=1e-12
    )


def test_neighbour_lists_equal_matrix(grid):
    adjacency = grid(2, 3)
    lists = [list(np.flatnonzero(row)) for row in adjacency.toarray()]
    np.testing.assert_allclose(
        Besag(lists).precision([0.2]).toarray(), Besag(adjacency).precision([0.2]).toarray()
    )
    np.testing.assert_allclose(
        Besag(adjacency.toarray()).precision([0.2]).toarray(),
        Besag(adjacency).precision([0.2]).toarray(),
    )


def test_protocol_connected(grid, check, rng):
    model = Besag(grid(4, 5))
    theta = [0.3]
    assert model.rank_deficiency == 1
    np.testing.assert_allclose(model.constraints[0], np.ones((1, 20)))
    check.precision_grad(model, theta)
    check.fixed_pattern(model, rng)
    check.null_space(model, theta)
    q = model.precision(theta).toarray()
    assert model.logdet(theta) == pytest.approx(check.pdet(q, 1), rel=1e-10)
    check.scalar_grad(model.logdet, model.logdet_grad, theta)
    assert component_geometric_means(model, [np.arange(20)])[0] == pytest.approx(1.0, rel=1e-9)


def test_disconnected_graph_with_islands(check, rng):
    adjacency = disconnected_graph()
    model = Besag(adjacency)
    components = [np.arange(9), np.arange(10, 14)]
    np.testing.assert_array_equal(model.islands, [9, 14])
    assert model.rank_deficiency == 2
    a, e = model.constraints
    assert a.shape == (2, 15) and np.all(e == 0)
    for row, nodes in zip(a, components):
        expected = np.zeros(15)
        expected[nodes] = 1
        np.testing.assert_allclose(row, expected)
    # islands: iid N(0, 1/τ)
    tau = 2.0
    q = model.precision([np.log(tau)]).toarray()
    assert q[9, 9] == pytest.approx(tau) and q[14, 14] == pytest.approx(tau)
    assert np.count_nonzero(q[9]) == 1 and np.count_nonzero(q[14]) == 1
    # each component scaled separately
    means = component_geometric_means(model, components)
    np.testing.assert_allclose(means, 1.0, rtol=1e-9)
    check.null_space(model, [0.1])
    check.precision_grad(model, [0.1])
    check.fixed_pattern(model, rng)
    assert model.logdet([0.4]) == pytest.approx(
        check.pdet(model.precision([0.4]).toarray(), 2), rel=1e-10
    )
    # unscaled: each component is the textbook D - W, islands 1
    unscaled = Besag(adjacency, scale=False).precision([0.0]).toarray()
    w = adjacency
    expected = np.diag(w.sum(axis=1)) - w
    expected[9, 9] = expected[14, 14] = 1.0
    np.testing.assert_allclose(unscaled, expected)


def test_only_islands_is_iid():
    model = Besag(sp.csr_matrix((4, 4)))
    assert model.constraints is None and model.rank_deficiency == 0
    np.testing.assert_allclose(model.precision([np.log(3.0)]).toarray(), 3.0 * np.eye(4))
    assert model.logdet([np.log(3.0)]) == pytest.approx(4 * np.log(3.0))


def test_lattice_scaling_against_dense_pseudo_inverse(grid):
    """A 30 × 35 lattice (fill-in in the grounded factor) against dense pinv and eigenvalues."""
    adjacency = grid(30, 35)
    n = adjacency.shape[0]
    model = Besag(adjacency)
    w = adjacency.toarray()
    structure = np.diag(w.sum(axis=1)) - w
    variances = np.diag(sla.pinvh(structure))
    log_pdet = np.sum(np.log(np.sort(sla.eigvalsh(structure))[1:]))
    assert model.scale_factors[0] == pytest.approx(np.exp(np.mean(np.log(variances))), rel=1e-10)
    expected_log_pdet = log_pdet + (n - 1) * np.log(model.scale_factors[0])
    assert model.structure_log_pdet == pytest.approx(expected_log_pdet, rel=1e-10)
    unscaled = Besag(adjacency, scale=False)
    assert unscaled.structure_log_pdet == pytest.approx(log_pdet, rel=1e-10)
    generic, generic_log_pdet = intrinsic_structure(structure, np.ones((n, 1)), "t")
    np.testing.assert_allclose(generic, variances, rtol=1e-10)
    assert generic_log_pdet == pytest.approx(log_pdet, rel=1e-10)


def test_many_components_and_islands_against_dense_pseudo_inverse(grid, rng):
    """Lattices, paths, pairs and islands in one graph, nodes shuffled: per-component pinv."""
    blocks = [grid(6, 8), np.zeros((1, 1)), grid(1, 12), grid(1, 2), grid(3, 3), np.zeros((1, 1))]
    blocks = [sp.csr_matrix(b) for b in blocks]
    adjacency = sp.csr_matrix(sp.block_diag(blocks))
    n = adjacency.shape[0]
    shuffle = rng.permutation(n)
    adjacency = sp.csr_matrix(adjacency[shuffle][:, shuffle])
    model = Besag(adjacency)
    w = adjacency.toarray()
    laplacian = np.diag(w.sum(axis=1)) - w
    assert model.rank_deficiency == 4 and model.islands.size == 2
    covariance = sla.pinvh(model.precision([0.0]).toarray())
    expected_log_pdet = 0.0
    for nodes, factor in zip(model.components, model.scale_factors):
        if nodes.size == 1:
            assert factor == 1.0 and covariance[nodes[0], nodes[0]] == pytest.approx(1.0)
            continue
        block = laplacian[np.ix_(nodes, nodes)]
        variances = np.diag(sla.pinvh(block))
        assert factor == pytest.approx(np.exp(np.mean(np.log(variances))), rel=1e-10)
        values = np.sort(sla.eigvalsh(factor * block))[1:]
        expected_log_pdet += np.sum(np.log(values))
        # scaled: geometric mean of the constrained marginal variances is 1
        local = np.diag(covariance)[nodes]
        assert np.exp(np.mean(np.log(local))) == pytest.approx(1.0, rel=1e-10)
    assert model.structure_log_pdet == pytest.approx(expected_log_pdet, rel=1e-10)
    bym2 = BYM2(adjacency)
    assert bym2.structure_log_pdet == pytest.approx(expected_log_pdet, rel=1e-10)


def test_malformed_sparse_adjacency_is_an_input_error():
    good = sp.csr_matrix(np.array([[0.0, 1.0], [1.0, 0.0]]))
    out_of_range = good.copy()
    out_of_range.indices = np.array([1, 7], dtype=out_of_range.indices.dtype)
    negative = good.copy()
    negative.indices = np.array([1, -1], dtype=negative.indices.dtype)
    not_monotone = sp.csr_matrix(np.array([[0.0, 1.0, 1.0], [1.0, 0.0, 0.0], [1.0, 0.0, 0.0]]))
    not_monotone.indptr = np.array([0, 2, 1, 4], dtype=not_monotone.indptr.dtype)
    for bad in (out_of_range, negative, not_monotone):
        with pytest.raises(InputError, match="adjacency"):
            Besag(bad)
        with pytest.raises(InputError, match="adjacency"):
            BYM2(bad)


def test_bad_graphs():
    with pytest.raises(NotSymmetricError):
        Besag(sp.csr_matrix(np.array([[0, 1, 0], [0, 0, 1], [0, 1, 0]])))
    with pytest.raises(NotSymmetricError):
        Besag([[1], [2], [1]])
    with pytest.raises(InputError, match="square"):
        Besag(np.zeros((2, 3)))
    with pytest.raises(InputError, match="0 and 1"):
        Besag(np.array([[0, 2.0], [2.0, 0]]))
    with pytest.raises(InputError, match="self-loop"):
        Besag(np.array([[1.0, 1.0], [1.0, 0]]))
    with pytest.raises(InputError, match="outside"):
        Besag([[1], [5]])
    with pytest.raises(InputError, match="more than once"):
        Besag([[1, 1], [0]])
    with pytest.raises(InputError, match="integer"):
        Besag([[1.0], [0]])
    with pytest.raises(InputError, match="NaN"):
        Besag(np.array([[0, np.nan], [np.nan, 0]]))
    with pytest.raises(InputError):
        Besag(42)
    with pytest.raises(InputError, match="at least one node"):
        Besag([])


# -- BYM2 ----------------------------------------------------------------------------------


def bym2_reference(model, theta):
    """Dense joint precision of (b, u) from b | u ~ N(√(φ/τ) u, (1-φ)/τ I), u ~ N(0, R*⁻)."""
    tau, phi = np.exp(theta[0]), 1 / (1 + np.exp(-theta[1]))
    n = model.n_areas
    r = model.structure.toarray()
    # joint density exp(-τ/(2(1-φ)) |b - √(φ/τ) u|² - ½ uᵀR*u): the quadratic form's matrix
    lift = np.hstack([np.eye(n), -np.sqrt(phi / tau) * np.eye(n)])
    return tau / (1 - phi) * lift.T @ lift + sla.block_diag(np.zeros((n, n)), r)


@pytest.mark.parametrize("graph", ["grid", "disconnected"])
def test_bym2_definition_and_protocol(graph, grid, check, rng):
    adjacency = grid(3, 4) if graph == "grid" else disconnected_graph()
    model = BYM2(adjacency)
    n = model.n_areas
    assert model.n == 2 * n
    besag_model = Besag(adjacency)
    np.testing.assert_allclose(model.structure.toarray(), besag_model.structure.toarray())
    for theta in ([0.3, -0.4], [-1.2, 2.0], [0.0, -6.0]):
        q = model.precision(theta).toarray()
        np.testing.assert_allclose(q, bym2_reference(model, theta), rtol=1e-12, atol=1e-12)
        check.precision_grad(model, theta)
        # null space (√(φ/τ) w, w) for w constant on a component; constraints act on u only
        k = model.rank_deficiency
        assert check.pdet(q, k) == pytest.approx(model.logdet(theta), rel=1e-10)
        basis = check.constraint_basis(model)
        assert np.linalg.slogdet(basis.T @ q @ basis)[1] == pytest.approx(
            model.constrained_logdet(theta), rel=1e-10
        )
        check.scalar_grad(model.logdet, model.logdet_grad, theta)
        check.scalar_grad(model.constrained_logdet, model.constrained_logdet_grad, theta)
    check.fixed_pattern(model, rng)
    a, _ = model.constraints
    np.testing.assert_allclose(a[:, :n], 0.0)
    np.testing.assert_allclose(a[:, n:], besag_model.constraints[0])


def test_bym2_marginal_covariance_of_b(grid, check):
    """Under the constraints, Cov(b) = ((1-φ) I + φ R*⁻)/τ (R*⁻: generalised inverse)."""
    for adjacency in (grid(3, 3), disconnected_graph()):
        model = BYM2(adjacency)
        n = model.n_areas
        theta = np.array([0.7, 0.9])
        tau, phi = model.to_natural(theta)["tau"], model.to_natural(theta)["phi"]
        covariance = check.constrained_covariance(model, theta)
        r_inverse = sla.pinvh(model.structure.toarray())
        expected = ((1 - phi) * np.eye(n) + phi * r_inverse) / tau
        np.testing.assert_allclose(covariance[:n, :n], expected, atol=1e-10)
        np.testing.assert_allclose(covariance[n:, n:], r_inverse, atol=1e-10)


def test_bym2_pc_prior(grid, check):
    model = BYM2(
        grid(3, 4), prior={"log_tau": PCPrecision(1, 0.01), "logit_phi": PCBYM2Phi(0.5, 2 / 3)}
    )
    prior = model.priors[1]
    assert prior.is_bound
    for theta in ([0.0, 0.0], [1.0, -3.0], [-0.5, 4.0]):
        check.scalar_grad(model.log_prior, model.log_prior_grad, theta)
    # P(φ < u) = α with u = 0.5: logit u = 0
    density = lambda t: np.exp(prior.log_density(t))  # noqa: E731
    below = scipy.integrate.quad(density, -80, 0, limit=200)[0]
    assert below == pytest.approx(2 / 3, rel=1e-7)
    # eigenvalues of R* (islands give 1)
    values = BYM2(disconnected_graph()).structure_eigenvalues()
    assert values.size == 15 and np.sum(np.abs(values) < 1e-10) == 2


def test_bym2_pc_prior_component_limit(grid, monkeypatch):
    monkeypatch.setattr(besag, "EIGEN_LIMIT", 5)
    with pytest.raises(InputError, match="limited to 5 nodes"):
        BYM2(grid(2, 3), prior={"logit_phi": PCBYM2Phi()})
    BYM2(grid(2, 3))  # without the PC prior no eigenvalues are needed


def test_bym2_bad_input(grid):
    with pytest.raises(InputError, match="phi0"):
        BYM2(grid(2, 2), phi0=1.0)
    with pytest.raises(InputError, match="logit_phi"):
        BYM2(grid(2, 2), prior={"logit_phi": PCPrecision(1, 0.01)})
    with pytest.raises(InputError, match="not identifiable"):
        BYM2(sp.csr_matrix((3, 3)), prior={"logit_phi": PCBYM2Phi()})
    with pytest.raises(InputError, match="BYM2 mixing"):
        Besag(grid(2, 2), prior={"log_tau": PCBYM2Phi()})
    with pytest.raises(InputError, match="expects 2"):
        BYM2(grid(2, 2)).precision([0.0])
    with pytest.raises(InputError, match="too large"):
        BYM2(grid(2, 2)).precision([0.0, 800.0])
    with pytest.raises(NotSymmetricError):
        BYM2([[1], []])


def test_too_many_components_for_dense_constraints(monkeypatch):
    """k components need a dense k × n constraint matrix: a clear error above the limit."""
    from gmrf_core.models import composite

    pairs = sp.csr_matrix(sp.block_diag([np.array([[0.0, 1.0], [1.0, 0.0]])] * 20))
    model = Besag(pairs)  # 20 components of two nodes: exact values, one factorization
    assert model.rank_deficiency == 20
    np.testing.assert_allclose(model.scale_factors, 0.25)  # pinv of [[1,-1],[-1,1]] is 1/4
    assert model.structure_log_pdet == pytest.approx(20 * np.log(2 * 0.25))
    monkeypatch.setattr(composite, "MAX_CONSTRAINT_ENTRIES", 100)
    with pytest.raises(InputError, match="too large"):
        Besag(pairs)
