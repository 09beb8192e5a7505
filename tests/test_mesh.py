"""Tests of gmrf_core.mesh: mesh building, point location and the projection matrices."""

import math

import numpy as np
import pytest
import scipy.sparse as sp

from gmrf_core.errors import InputError
from gmrf_core.mesh import Mesh, check_mesh, lattice_projection, mesh_from_points, projection_matrix

RNG_SEED = 20240611


@pytest.fixture(scope="module")
def small_mesh():
    rng = np.random.default_rng(RNG_SEED)
    return mesh_from_points(rng.uniform(0, 1, (12, 2)), max_area=0.02, extend=0.2)


# ------------------------------------------------------------------ mesh_from_points
def triangle_areas(mesh):
    e1 = mesh.points[mesh.triangles[:, 1]] - mesh.points[mesh.triangles[:, 0]]
    e2 = mesh.points[mesh.triangles[:, 2]] - mesh.points[mesh.triangles[:, 0]]
    return 0.5 * np.abs(e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0])


def _angles(points, triangles):
    p = points[triangles]
    out = []
    for k in range(3):
        a = p[:, (k + 1) % 3] - p[:, k]
        b = p[:, (k + 2) % 3] - p[:, k]
        cosine = np.einsum("ij,ij->i", a, b) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
        out.append(np.degrees(np.arccos(np.clip(cosine, -1, 1))))
    return np.column_stack(out)


def test_mesh_from_points_quality_and_coverage():
    rng = np.random.default_rng(RNG_SEED)
    points = rng.uniform([10.0, -5.0], [30.0, 5.0], (40, 2))
    points = np.vstack([points, points[:3]])  # duplicates are merged
    mesh = mesh_from_points(points, max_area=2.0, min_angle=25, extend=0.15)
    np.testing.assert_array_equal(mesh.points[mesh.input_nodes], points)
    assert mesh.input_nodes[-1] == mesh.input_nodes[2]
    areas = triangle_areas(mesh)
    assert areas.max() <= 2.0 * (1 + 1e-9)
    assert _angles(mesh.points, mesh.triangles).min() >= 25.0 - 1e-6
    # the margin: points pushed 0.9 * extend * D out of the data hull are still covered
    diameter = np.hypot(*np.ptp(points, axis=0))
    directions = rng.normal(size=(40, 2))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    pushed = points[:40] + 0.9 * 0.15 * diameter * directions
    projection_matrix(mesh, pushed)
    far = points[:1] + np.array([[1.3 * 0.15 * diameter + 20.0, 0.0]])
    with pytest.raises(InputError, match="outside"):
        projection_matrix(mesh, far)


def test_mesh_from_points_without_extension_and_default_area():
    points = np.array([[0.0, 0.0], [4.0, 0.0], [4.0, 3.0], [0.0, 3.0], [1.0, 1.0]])
    mesh = mesh_from_points(points, extend=0)
    hull_area = 12.0
    areas = triangle_areas(mesh)
    assert areas.sum() == pytest.approx(hull_area, rel=1e-12)
    assert areas.max() <= math.sqrt(3) / 4 * (5.0 / 25) ** 2 * (1 + 1e-9)
    np.testing.assert_array_equal(mesh.points[mesh.input_nodes], points)


@pytest.mark.parametrize(
    "points, kwargs, message",
    [
        ([[0.0, 0.0], [1.0, 1.0]], {}, "at least 3"),
        ([[0.0, 0.0], [1.0, 1.0], [0.0, 0.0], [1.0, 1.0]], {}, "at least 3"),
        ([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]], {}, "collinear"),
        ([[0.0, 0.0], [1.0, np.nan], [2.0, 0.0]], {}, "non-finite"),
        ([0.0, 1.0, 2.0], {}, "shape"),
        ([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]], {"min_angle": 40}, "min_angle"),
        ([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]], {"min_angle": 0}, "min_angle"),
        ([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]], {"extend": -0.1}, "extend"),
        ([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]], {"max_area": -1.0}, "max_area"),
    ],
)
def test_mesh_from_points_bad_input(points, kwargs, message):
    with pytest.raises(InputError, match=message):
        mesh_from_points(points, **kwargs)


# ------------------------------------------------------------------ projections
def test_projection_matrix_rows_and_linear_reproduction(small_mesh):
    rng = np.random.default_rng(RNG_SEED)
    # random points of random triangles, the nodes themselves (boundary nodes
    # included) and midpoints of all edges (boundary edges included)
    tri = small_mesh.triangles
    corners = small_mesh.points[tri[rng.integers(0, tri.shape[0], 300)]]
    weights = rng.dirichlet(np.ones(3), 300)
    inside = np.einsum("ik,ikj->ij", weights, corners)
    midpoints = 0.5 * (small_mesh.points[tri[:, 0]] + small_mesh.points[tri[:, 1]])
    locations = np.vstack([inside, small_mesh.points, midpoints])
    a = projection_matrix(small_mesh, locations)
    assert a.shape == (locations.shape[0], small_mesh.n_nodes)
    assert isinstance(a, sp.csr_matrix)
    np.testing.assert_array_equal(np.diff(a.indptr), 3)
    np.testing.assert_allclose(np.asarray(a.sum(axis=1)).ravel(), 1.0, rtol=0, atol=1e-14)
    assert a.data.min() >= -1e-10
    for coefficients in ([2.0, -3.0, 0.5], [0.0, 1.0, 0.0], [-1.0, 0.0, 7.0]):

        def linear(xy, c=coefficients):
            return c[0] + c[1] * xy[:, 0] + c[2] * xy[:, 1]

        np.testing.assert_allclose(
            a @ linear(small_mesh.points), linear(locations), rtol=0, atol=1e-12
        )


def test_projection_matrix_names_points_outside(small_mesh):
    locations = np.array([[0.5, 0.5], [50.0, 50.0], [0.4, 0.6], [-30.0, 0.5]])
    with pytest.raises(InputError, match=r"2 location\(s\).*1: \(50, 50\).*3: \(-30, 0.5\)"):
        projection_matrix(small_mesh, locations)


@pytest.mark.parametrize(
    "locations, message",
    [([[0.5, np.nan]], "non-finite"), ([[0.5, np.inf]], "non-finite"), ([0.5, 0.5], "shape")],
)
def test_projection_matrix_bad_locations(small_mesh, locations, message):
    with pytest.raises(InputError, match=message):
        projection_matrix(small_mesh, locations)


def test_projection_matrix_empty_locations(small_mesh):
    a = projection_matrix(small_mesh, np.zeros((0, 2)))
    assert a.shape == (0, small_mesh.n_nodes)


def test_lattice_projection_bilinear_exact():
    shape, spacing = (6, 4), (0.5, 2.0)
    rng = np.random.default_rng(RNG_SEED)
    extent = np.array([5 * 0.5, 3 * 2.0])
    locations = np.vstack(
        [rng.uniform(0, 1, (200, 2)) * extent, [[0.0, 0.0], extent, [extent[0], 0.0], [1.0, 6.0]]]
    )
    a = lattice_projection(shape, locations, spacing=spacing)
    assert a.shape == (locations.shape[0], 24)
    np.testing.assert_array_equal(np.diff(a.indptr), 4)
    np.testing.assert_allclose(np.asarray(a.sum(axis=1)).ravel(), 1.0, rtol=0, atol=1e-14)
    nodes_x0 = np.repeat(np.arange(6) * 0.5, 4)
    nodes_x1 = np.tile(np.arange(4) * 2.0, 6)

    def bilinear(x0, x1):
        return 1.5 - 2.0 * x0 + 0.25 * x1 + 0.75 * x0 * x1

    np.testing.assert_allclose(
        a @ bilinear(nodes_x0, nodes_x1),
        bilinear(locations[:, 0], locations[:, 1]),
        rtol=0,
        atol=1e-12,
    )
    # a node location picks exactly that node
    node = lattice_projection(shape, [[1.5, 4.0]], spacing=spacing)
    assert node.toarray()[0, 3 * 4 + 2] == pytest.approx(1.0)


@pytest.mark.parametrize(
    "shape, locations, message",
    [
        ((4, 4), [[3.5, 1.0]], "outside"),
        ((4, 4), [[1.0, -0.1]], "outside"),
        ((4, 4), [[np.nan, 1.0]], "non-finite"),
        ((1, 4), [[0.0, 1.0]], "shape"),
        ((4,), [[0.0, 1.0]], "shape"),
    ],
)
def test_lattice_projection_bad_input(shape, locations, message):
    with pytest.raises(InputError, match=message):
        lattice_projection(shape, locations)


def test_overlapping_triangles_rejected_before_projection():
    """Point location in overlapping triangles would pick one of them silently."""
    folded = Mesh(
        points=np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]),
        triangles=np.array([[0, 1, 2], [0, 1, 3]]),
    )
    with pytest.raises(InputError, match="projection_matrix: mesh triangles .* same side"):
        projection_matrix(folded, [[0.2, 0.2]])


def test_check_mesh_accepts_valid_triangulations_in_either_orientation(small_mesh):
    points, triangles = check_mesh(small_mesh, "test")
    np.testing.assert_array_equal(triangles, small_mesh.triangles)
    # clockwise copies of some triangles are the same triangulation
    flipped = small_mesh.triangles.copy()
    flipped[::2] = flipped[::2, ::-1]
    check_mesh(Mesh(small_mesh.points, flipped), "test")
    # a mesh with a hole (the square ring of 8 triangles around the unit square) is valid
    outer = [[-1.0, -1.0], [2.0, -1.0], [2.0, 2.0], [-1.0, 2.0]]
    inner = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]
    ring = [[k, (k + 1) % 4, 4 + k] for k in range(4)]
    ring += [[(k + 1) % 4, 4 + (k + 1) % 4, 4 + k] for k in range(4)]
    check_mesh(Mesh(np.array(outer + inner), np.array(ring)), "test")


def test_overlap_check_runs_again_when_a_checked_mesh_is_mutated(small_mesh):
    mesh = Mesh(small_mesh.points.copy(), small_mesh.triangles.copy())
    projection_matrix(mesh, mesh.points[:3])  # checked and remembered
    mesh.triangles[1] = mesh.triangles[0]  # the arrays of a frozen Mesh stay mutable
    with pytest.raises(InputError, match="same nodes"):
        projection_matrix(mesh, mesh.points[:3])


def test_checked_copy_is_not_checked_again(small_mesh, monkeypatch):
    import gmrf_core.mesh as mesh_module

    calls = []
    original = mesh_module._check_no_overlap
    monkeypatch.setattr(
        mesh_module, "_check_no_overlap", lambda *args: calls.append(1) or original(*args)
    )
    plain = Mesh(small_mesh.points.copy(), small_mesh.triangles.copy())
    copy = mesh_module.checked_copy(plain, "test")
    assert len(calls) == 1
    projection_matrix(copy, copy.points[:3])
    projection_matrix(copy, copy.points[3:6])
    assert len(calls) == 1
    # a copy: changing the original does not change the checked mesh
    plain.points[:] *= 2.0  # still a valid mesh
    assert not np.array_equal(plain.points[0], copy.points[0])
    projection_matrix(plain, 2.0 * copy.points[:3])  # the mutated original is checked again
    assert len(calls) == 2


def _wrapped_fan():
    """Seven triangles around node 0 whose angles sum to 4π: the fan covers the disc twice."""
    angles = 4.0 * np.pi * np.arange(7) / 7
    ring = np.column_stack([np.cos(angles), np.sin(angles)])
    triangles = [[0, 1 + k, 1 + (k + 1) % 7] for k in range(7)]
    return Mesh(np.vstack([[0.0, 0.0], ring]), np.array(triangles))


def _crossing_slivers():
    """Two thin triangles crossing near one end: no node and no centroid inside the other."""
    points = np.array([[0, 0], [10, 0], [0, 0.5], [8, -1], [8.3, -1], [8.15, 3.0]])
    return Mesh(points, np.array([[0, 1, 2], [3, 4, 5]]))


@pytest.mark.parametrize(
    "mesh, message",
    [
        (_wrapped_fan(), r"around mesh node 0 sum to 4π \(interior node"),
        (_crossing_slivers(), r"boundary edge \[\d, \d\] of the mesh crosses an edge of triangle"),
    ],
)
def test_overlaps_without_a_node_inside_are_found(mesh, message):
    with pytest.raises(InputError, match=message):
        check_mesh(mesh, "test")


def test_valid_meshes_pass_every_overlap_test():
    """Quality meshes from Triangle, with and without a margin, and a fan of exactly 2π."""
    rng = np.random.default_rng(RNG_SEED)
    for extend in (0.0, 0.3):
        check_mesh(mesh_from_points(rng.uniform(0, 1, (60, 2)), max_area=0.005, extend=extend), "t")
    angles = 2.0 * np.pi * np.arange(7) / 7
    ring = np.column_stack([np.cos(angles), np.sin(angles)])
    fan = [[0, 1 + k, 1 + (k + 1) % 7] for k in range(7)]
    check_mesh(Mesh(np.vstack([[0.0, 0.0], ring]), np.array(fan)), "t")


def test_hanging_node_is_rejected():
    """A node on the middle of an edge of a neighbouring triangle: not conforming."""
    points = np.array([[0.0, 0.0], [2.0, 0.0], [1.0, 1.0], [1.0, 0.0], [1.0, -1.0]])
    # triangle 0 spans the whole bottom edge (0, 1); node 3 splits it for triangles 1, 2
    triangles = np.array([[0, 1, 2], [0, 4, 3], [3, 4, 1]])
    with pytest.raises(InputError, match="node 3 lies on an edge of triangle 0.*hanging"):
        check_mesh(Mesh(points, triangles), "test")
    # splitting triangle 0 at node 3 makes it conforming
    conforming = np.array([[0, 3, 2], [3, 1, 2], [0, 4, 3], [3, 4, 1]])
    check_mesh(Mesh(points, conforming), "test")
