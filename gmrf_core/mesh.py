"""Triangle meshes in the plane and projection matrices from nodes to locations.

:class:`Mesh` holds node coordinates and triangles; :func:`mesh_from_points` builds a
quality mesh over (and beyond) a set of points with Shewchuk's Triangle;
:func:`check_mesh` validates any mesh-like object (shapes, indices, unused nodes,
degenerate, duplicate and overlapping triangles). :func:`projection_matrix` is the
barycentric (P1) interpolation matrix from mesh nodes to locations, found by a
vectorised uniform-grid point location; :func:`lattice_projection` the bilinear one
from the nodes of a regular lattice (node numbering of :mod:`gmrf_core.lattice`).
Both give the sparse ``A`` of the linear predictor ``η = A x + ...``.

References
----------
Shewchuk, J. R. (1996). Triangle: engineering a 2D quality mesh generator and
Delaunay triangulator. *Applied Computational Geometry*, LNCS 1148, 203–222.

Lindgren, F. and Rue, H. (2015). Bayesian spatial modelling with R-INLA.
*J. Stat. Softw.* 63(19).
"""

import hashlib
import math
import numbers
import weakref
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .errors import InputError
from .lattice import lattice_shape, lattice_spacing
from .validation import check_positive

__all__ = [
    "Mesh",
    "mesh_from_points",
    "check_mesh",
    "checked_copy",
    "projection_matrix",
    "lattice_projection",
]


@dataclass(frozen=True, eq=False)
class Mesh:
    """A triangle mesh in the plane.

    Attributes
    ----------
    points : numpy.ndarray, shape (N, 2)
        Node coordinates.
    triangles : numpy.ndarray, shape (T, 3), int64
        Node indices of each triangle (counter-clockwise from Triangle).
    input_nodes : numpy.ndarray of int64 or None
        For a mesh built by :func:`mesh_from_points`: the node of every input point
        (input points are mesh nodes, so ``points[input_nodes]`` are the inputs).
    """

    points: np.ndarray
    triangles: np.ndarray
    input_nodes: np.ndarray | None = None

    @property
    def n_nodes(self):
        """Number of nodes N."""
        return int(self.points.shape[0])

    @property
    def n_triangles(self):
        """Number of triangles T."""
        return int(self.triangles.shape[0])


def check_mesh(mesh, owner):
    """Return ``(points, triangles)`` of a mesh-like object as validated arrays.

    Parameters
    ----------
    mesh : Mesh or object with ``.points`` (N x 2) and ``.triangles`` (T x 3 int)
        The mesh.
    owner : str
        Name of the calling function or class, for the error messages.

    Returns
    -------
    points : numpy.ndarray, shape (N, 2), float64
    triangles : numpy.ndarray, shape (T, 3), int64

    Raises
    ------
    InputError
        Wrong shapes or dtypes, non-finite coordinates, indices out of range, nodes
        that belong to no triangle, (near) zero-area triangles, and triangles that are
        not a valid (non-overlapping) triangulation: see :func:`_check_no_overlap`.
    """
    if not hasattr(mesh, "points") or not hasattr(mesh, "triangles"):
        raise InputError(
            f"{owner}: mesh must have .points (N x 2) and .triangles (T x 3), got "
            f"{type(mesh).__name__}; build one with mesh_from_points."
        )
    try:
        points = np.asarray(mesh.points, dtype=float)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{owner}: mesh.points must be a numeric (N, 2) array.") from exc
    if points.ndim != 2 or points.shape[1] != 2 or points.shape[0] < 3:
        raise InputError(
            f"{owner}: mesh.points must have shape (N, 2) with N >= 3, got {points.shape}."
        )
    if not np.all(np.isfinite(points)):
        bad = np.flatnonzero(~np.all(np.isfinite(points), axis=1))
        raise InputError(f"{owner}: mesh.points has non-finite coordinates at rows {bad[:10]}.")
    triangles = np.asarray(mesh.triangles)
    if (
        triangles.ndim != 2
        or triangles.shape[1] != 3
        or triangles.shape[0] == 0
        or not np.issubdtype(triangles.dtype, np.integer)
    ):
        raise InputError(
            f"{owner}: mesh.triangles must be a non-empty integer (T, 3) array, got "
            f"shape {triangles.shape} dtype {triangles.dtype}."
        )
    triangles = triangles.astype(np.int64)
    n_nodes = points.shape[0]
    if triangles.min() < 0 or triangles.max() >= n_nodes:
        raise InputError(
            f"{owner}: mesh.triangles refers to nodes outside 0..{n_nodes - 1} "
            f"(min {triangles.min()}, max {triangles.max()})."
        )
    used = np.zeros(n_nodes, dtype=bool)
    used[triangles.ravel()] = True
    if not np.all(used):
        raise InputError(
            f"{owner}: mesh nodes {np.flatnonzero(~used)[:10]} belong to no triangle "
            "(their lumped mass would be 0); remove them."
        )
    doubled_area = doubled_areas(points, triangles)
    scale = float(np.ptp(points, axis=0).max()) ** 2
    degenerate = np.flatnonzero(np.abs(doubled_area) <= 1e-12 * scale)
    if degenerate.size:
        raise InputError(
            f"{owner}: mesh triangles {degenerate[:10]} have (near) zero area; "
            "remove degenerate triangles."
        )
    # the overlap test costs about one point location of N + T points: once per Mesh
    # object and content (a digest of its arrays, so a mutated mesh is checked again)
    digest = _digest(points, triangles)
    if not isinstance(mesh, Mesh) or _CHECKED_MESHES.get(mesh) != digest:
        _check_no_overlap(points, triangles, doubled_area, owner)
        if isinstance(mesh, Mesh):
            _CHECKED_MESHES[mesh] = digest
    return points, triangles


# Mesh objects that passed _check_no_overlap -> digest of (points, triangles) then
_CHECKED_MESHES = weakref.WeakKeyDictionary()


def _digest(points, triangles):
    return hashlib.blake2b(points.tobytes() + triangles.tobytes(), digest_size=16).digest()


def checked_copy(mesh, owner):
    """A validated copy of a mesh-like object, as a :class:`Mesh` already marked checked.

    Models keep such a copy (e.g. ``MaternSPDE.mesh``), so that projecting onto it later
    does not repeat the overlap test.

    Raises
    ------
    InputError
        As :func:`check_mesh`.
    """
    points, triangles = check_mesh(mesh, owner)
    input_nodes = getattr(mesh, "input_nodes", None)
    if input_nodes is not None:
        input_nodes = np.array(input_nodes, dtype=np.int64)
    copy = Mesh(points.copy(), triangles.copy(), input_nodes)
    _CHECKED_MESHES[copy] = _digest(copy.points, copy.triangles)
    return copy


def _check_no_overlap(points, triangles, doubled_area, owner):
    """Raise InputError unless the triangles' interiors are pairwise disjoint.

    Five tests, each naming the triangles or nodes involved: (1) with every triangle
    oriented counter-clockwise, no directed edge occurs twice: two triangles on the
    same side of a shared edge overlap near it (duplicate triangles are the special
    case with the same three nodes; an edge of three or more triangles always has two
    on one side); (2) the angles around a node sum to 2π if the node is interior and
    to at most 2π on the boundary (more means its triangles wrap around it twice);
    (3) no node lies strictly inside a triangle (barycentric coordinates all > 1e-9)
    or on an edge of a triangle it is not a corner of (a hanging node: not conforming);
    (4) the centroid of every triangle lies strictly inside that triangle only;
    (5) no boundary edge (an edge of one triangle) properly crosses an edge of any
    triangle. After (1) and (2) the triangles are locally non-overlapping, and two
    overlapping pieces of mesh either nest (a node inside: 3), coincide (4), or have
    crossing boundaries (5). (3)–(5) use the grid of :func:`projection_matrix`.
    """
    n_nodes = points.shape[0]
    oriented = triangles.copy()
    clockwise = doubled_area < 0
    oriented[clockwise] = oriented[clockwise][:, ::-1]
    tails = oriented.ravel()
    heads = np.roll(oriented, -1, axis=1).ravel()
    key = tails * n_nodes + heads
    order = np.argsort(key)
    same = np.flatnonzero(key[order][1:] == key[order][:-1])
    if same.size:
        pair = np.sort(order[[same[0], same[0] + 1]] // 3)
        nodes = np.sort(triangles[pair], axis=1)
        if np.array_equal(nodes[0], nodes[1]):
            raise InputError(
                f"{owner}: mesh triangles {pair.tolist()} have the same nodes "
                f"{nodes[0].tolist()}; remove duplicate triangles."
            )
        raise InputError(
            f"{owner}: mesh triangles {pair.tolist()} lie on the same side of their shared "
            f"edge ({int(tails[order[same[0]]])}, {int(heads[order[same[0]]])}), so they "
            "overlap; the triangles must form a valid (non-overlapping) triangulation."
        )
    undirected = np.minimum(tails, heads) * n_nodes + np.maximum(tails, heads)
    edge_keys, edge_count = np.unique(undirected, return_counts=True)
    boundary = edge_keys[edge_count == 1]
    boundary_edges = np.column_stack([boundary // n_nodes, boundary % n_nodes])
    _check_angle_sums(points, oriented, boundary_edges, owner)
    grid = _TriangleGrid(points, triangles)
    strict = 1e-9
    queries = np.vstack([points, points[triangles].mean(axis=1)])
    pairs = _candidate_pairs(points, triangles, queries, grid=grid)
    for rows, pair_row, pair_triangle, bary in pairs:
        query = rows[pair_row]
        ordered = np.sort(bary, axis=1)
        # a node inside any triangle, or a centroid inside a triangle other than its own
        inside = ordered[:, 0] > strict
        # a node on an edge of a triangle it is not a corner of (a hanging node)
        hanging = (query < n_nodes) & (np.abs(ordered[:, 0]) <= strict) & (ordered[:, 1] > strict)
        bad = np.flatnonzero((inside | hanging) & (pair_triangle != query - n_nodes))
        if not bad.size:
            continue
        first = bad[0]
        query, triangle = int(query[first]), int(pair_triangle[first])
        if hanging[first]:
            raise InputError(
                f"{owner}: mesh node {query} lies on an edge of triangle {triangle} "
                f"{triangles[triangle].tolist()} without being one of its corners (a hanging "
                "node); the triangles must form a conforming triangulation, where triangles "
                "meet at whole edges or at corners: split that triangle at the node."
            )
        if query < n_nodes:
            raise InputError(
                f"{owner}: mesh node {query} lies inside triangle {triangle} "
                f"{triangles[triangle].tolist()}, of which it is not a corner, so triangles "
                "overlap; the triangles must form a valid (non-overlapping) triangulation."
            )
        raise InputError(
            f"{owner}: mesh triangles {[query - n_nodes, triangle]} overlap (the centroid "
            f"of {query - n_nodes} lies inside {triangle}); the triangles must form a valid "
            "(non-overlapping) triangulation."
        )
    scale = float(np.ptp(points, axis=0).max()) ** 2
    crossing = _first_crossing(points, triangles, boundary_edges, grid, 1e-12 * scale)
    if crossing is not None:
        edge, triangle = crossing
        raise InputError(
            f"{owner}: the boundary edge {boundary_edges[edge].tolist()} of the mesh crosses "
            f"an edge of triangle {triangle} {triangles[triangle].tolist()}, so triangles "
            "overlap; the triangles must form a valid (non-overlapping) triangulation."
        )


def _check_angle_sums(points, oriented, boundary_edges, owner):
    """Angles around interior nodes sum to 2π, around boundary nodes to at most 2π."""
    n_nodes = points.shape[0]
    corners = points[oriented]  # (T, 3, 2), counter-clockwise
    angles = np.empty(oriented.shape)
    for k in range(3):
        e1 = corners[:, (k + 1) % 3] - corners[:, k]
        e2 = corners[:, (k + 2) % 3] - corners[:, k]
        cross = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
        angles[:, k] = np.arctan2(np.abs(cross), np.einsum("ij,ij->i", e1, e2))
    total = np.bincount(oriented.ravel(), weights=angles.ravel(), minlength=n_nodes)
    on_boundary = np.zeros(n_nodes, dtype=bool)
    on_boundary[boundary_edges.ravel()] = True
    tolerance = 1e-8
    wrong = np.flatnonzero(
        np.where(on_boundary, total > 2 * np.pi + tolerance, np.abs(total - 2 * np.pi) > tolerance)
    )
    if wrong.size:
        node = int(wrong[0])
        raise InputError(
            f"{owner}: the angles of the triangles around mesh node {node} sum to "
            f"{total[node] / np.pi:.6g}π ({'boundary' if on_boundary[node] else 'interior'} "
            "node; a valid triangulation has 2π inside, at most 2π on the boundary), so "
            "its triangles overlap; the triangles must form a valid (non-overlapping) "
            "triangulation."
        )


def doubled_areas(points, triangles):
    """Signed doubled area of every triangle (positive when counter-clockwise)."""
    p0, p1, p2 = (points[triangles[:, k]] for k in range(3))
    e1, e2 = p1 - p0, p2 - p0
    return e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]


def _check_locations(locations, owner, name="locations"):
    try:
        locations = np.asarray(locations, dtype=float)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{owner}: {name} must be a numeric (k, 2) array.") from exc
    if locations.ndim != 2 or locations.shape[1] != 2:
        raise InputError(f"{owner}: {name} must have shape (k, 2), got {locations.shape}.")
    finite = np.all(np.isfinite(locations), axis=1)
    if not np.all(finite):
        bad = np.flatnonzero(~finite)
        raise InputError(
            f"{owner}: {name} has non-finite coordinates at rows {bad[:10].tolist()}"
            f"{' ...' if bad.size > 10 else ''}; remove or fix them."
        )
    return locations


def _outside_error(owner, locations, bad, where):
    shown = ", ".join(f"{int(i)}: ({locations[i, 0]:.6g}, {locations[i, 1]:.6g})" for i in bad[:5])
    more = f" (and {bad.size - 5} more)" if bad.size > 5 else ""
    return InputError(
        f"{owner}: {bad.size} location(s) lie outside {where}: rows {shown}{more}. "
        "Enlarge the domain or drop these observations."
    )


def mesh_from_points(points, max_area=None, min_angle=25, extend=0.1):
    """Quality triangle mesh over (and beyond) the convex hull of a set of points.

    The domain is the convex hull of the points grown outward by ``extend`` times
    their diameter D (the diagonal of their bounding box), which moves the
    Neumann boundary away from the data as R-INLA's ``inla.mesh.2d`` does. The
    (distinct) input points are mesh nodes; Shewchuk's Triangle (switches
    ``p q<min_angle> a<max_area>``) adds Steiner points until no angle is below
    ``min_angle`` and no triangle is larger than ``max_area``.

    Parameters
    ----------
    points : array_like, shape (k, 2)
        Point locations (at least 3 distinct, not all collinear). Points very close
        together force very small triangles.
    max_area : float, optional
        Largest triangle area. Default: that of an equilateral triangle with edge
        D/25.
    min_angle : float, optional
        Smallest triangle angle in degrees, in (0, 33] (Triangle's guarantee ends
        near 33.8°). Default 25.
    extend : float, optional
        Margin beyond the convex hull, as a fraction of D (>= 0; default 0.1). The
        grown hull is the Minkowski sum of the hull with a regular 16-gon inscribed
        in the circle of radius ``extend*D``.

    Returns
    -------
    Mesh
        ``points`` (N, 2), ``triangles`` (T, 3) and ``input_nodes`` (node of every
        input point).

    Raises
    ------
    InputError
        Non-finite or too few points, collinear points, or a bad option value.

    References
    ----------
    Shewchuk, J. R. (1996). Triangle: engineering a 2D quality mesh generator and
    Delaunay triangulator. *Applied Computational Geometry*, LNCS 1148, 203–222.
    Lindgren, F. and Rue, H. (2015). Bayesian spatial modelling with R-INLA.
    *J. Stat. Softw.* 63(19).
    """
    import triangle
    from scipy.spatial import ConvexHull, QhullError

    owner = "mesh_from_points"
    points = _check_locations(points, owner, "points")
    unique, inverse = np.unique(points, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    if unique.shape[0] < 3:
        raise InputError(f"{owner}: need at least 3 distinct points, got {unique.shape[0]}.")
    min_angle = check_positive(min_angle, "min_angle", owner)
    if min_angle > 33.0:
        raise InputError(f"{owner}: min_angle must be <= 33 degrees, got {min_angle}.")
    if isinstance(extend, bool) or not isinstance(extend, numbers.Real):
        raise InputError(f"{owner}: extend must be a number >= 0, got {extend!r}.")
    extend = float(extend)
    if not math.isfinite(extend) or extend < 0:
        raise InputError(f"{owner}: extend must be a finite number >= 0, got {extend!r}.")

    lower, upper = unique.min(axis=0), unique.max(axis=0)
    diameter = float(np.hypot(*(upper - lower)))
    centre = 0.5 * (lower + upper)
    # Triangle works on coordinates of order one; areas are rescaled accordingly
    scaled = (unique - centre) / diameter
    if max_area is None:
        area = math.sqrt(3.0) / 4.0 / 25.0**2
    else:
        area = check_positive(max_area, "max_area", owner) / diameter**2
    try:
        hull = ConvexHull(scaled)
    except QhullError as exc:
        raise InputError(f"{owner}: the points are collinear; a 2-D mesh needs spread.") from exc
    if hull.volume <= 1e-10:
        raise InputError(f"{owner}: the points are (nearly) collinear; a 2-D mesh needs spread.")
    if extend > 0:
        angles = 2.0 * np.pi * np.arange(16) / 16
        disc = extend * np.column_stack([np.cos(angles), np.sin(angles)])
        grown = (scaled[hull.vertices][:, None, :] + disc[None, :, :]).reshape(-1, 2)
        boundary = grown[ConvexHull(grown).vertices]  # counter-clockwise
        vertices = np.vstack([scaled, boundary])
        ring = unique.shape[0] + np.arange(boundary.shape[0])
    else:
        vertices = scaled
        ring = hull.vertices
    segments = np.column_stack([ring, np.roll(ring, -1)])
    options = (
        f"pq{np.format_float_positional(min_angle, trim='-')}"
        f"a{np.format_float_positional(area, trim='-')}"
    )
    result = triangle.triangulate({"vertices": vertices, "segments": segments}, options)
    nodes = result["vertices"] * diameter + centre
    # Triangle keeps the input vertices first and in order; restore them bit-exactly
    if not np.allclose(nodes[: unique.shape[0]], unique, rtol=0, atol=1e-9 * diameter):
        raise InputError(  # pragma: no cover - would be a Triangle bug
            f"{owner}: Triangle did not keep the input points as the first mesh nodes."
        )
    nodes[: unique.shape[0]] = unique
    triangles = np.asarray(result["triangles"], dtype=np.int64)
    return Mesh(nodes, triangles, inverse.astype(np.int64))


def _barycentric(points, triangles, which, locations):
    """Barycentric coordinates (k, 3) of ``locations`` in triangles ``which``."""
    a = points[triangles[which, 0]]
    e1 = points[triangles[which, 1]] - a
    e2 = points[triangles[which, 2]] - a
    r = locations - a
    det = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    l1 = (r[:, 0] * e2[:, 1] - r[:, 1] * e2[:, 0]) / det
    l2 = (e1[:, 0] * r[:, 1] - e1[:, 1] * r[:, 0]) / det
    return np.column_stack([1.0 - l1 - l2, l1, l2])


class _TriangleGrid:
    """Uniform grid over the mesh's bounding box, each cell listing triangles (about T cells).

    Each triangle is listed in every cell its (slightly padded) bounding box overlaps. A
    point inside a triangle lies in that triangle's bounding box, so the point's cell
    lists the triangle; a segment inside or across a triangle overlaps its bounding box,
    so one of the cells of the segment's box lists it: no candidate is missed.
    """

    def __init__(self, points, triangles):
        n_triangles = triangles.shape[0]
        self.low = points.min(axis=0)
        self.extent = points.max(axis=0) - self.low
        ratio = self.extent[0] / self.extent[1]
        nx = int(min(max(1, round(math.sqrt(n_triangles * ratio))), n_triangles))
        self.ny = int(max(1, round(n_triangles / nx)))
        self.cells = np.array([nx, self.ny])
        self.size = self.extent / self.cells
        self.pad = 1e-9 * self.extent
        corners = points[triangles]  # (T, 3, 2)
        owner, cell = self.box_cells(corners.min(axis=1), corners.max(axis=1))
        order = np.argsort(cell, kind="stable")
        self.cell_triangles = owner[order]
        self.cell_start = np.zeros(nx * self.ny + 1, dtype=np.int64)
        np.cumsum(np.bincount(cell, minlength=nx * self.ny), out=self.cell_start[1:])

    def cell_of(self, xy):
        """Flat index of the cell of every point (clipped to the grid)."""
        index = np.clip(np.floor((xy - self.low) / self.size).astype(np.int64), 0, self.cells - 1)
        return index[:, 0] * self.ny + index[:, 1]

    def box_cells(self, lower, upper):
        """``(box, cell)`` for every cell that each padded box [lower, upper] overlaps."""
        first = np.clip(
            np.floor((lower - self.pad - self.low) / self.size).astype(np.int64), 0, self.cells - 1
        )
        last = np.clip(
            np.floor((upper + self.pad - self.low) / self.size).astype(np.int64), 0, self.cells - 1
        )
        width = last - first + 1
        count = width[:, 0] * width[:, 1]
        owner = np.repeat(np.arange(lower.shape[0]), count)
        local = np.arange(owner.size) - np.repeat(np.cumsum(count) - count, count)
        cx = first[owner, 0] + local % width[owner, 0]
        cy = first[owner, 1] + local // width[owner, 0]
        return owner, cx * self.ny + cy

    def triangles_of(self, cells):
        """``(query, triangle)``: every triangle listed in the cell of each query."""
        begin = self.cell_start[cells]
        number = self.cell_start[cells + 1] - begin
        query = np.repeat(np.arange(cells.size), number)
        slot = np.arange(query.size) - np.repeat(np.cumsum(number) - number, number)
        return query, self.cell_triangles[begin[query] + slot]


def _candidate_pairs(points, triangles, locations, grid=None):
    """(location, triangle) candidate pairs from a :class:`_TriangleGrid`, in chunks.

    Yields
    ------
    rows : numpy.ndarray
        Indices of the locations of this chunk.
    pair_row, pair_triangle : numpy.ndarray
        For every candidate pair, its location (index into ``rows``) and triangle.
    bary : numpy.ndarray, shape (pairs, 3)
        Barycentric coordinates of the location in the triangle (all >= 0 inside).
    """
    grid = _TriangleGrid(points, triangles) if grid is None else grid
    inside_box = np.all(
        (locations >= grid.low - grid.pad) & (locations <= grid.low + grid.extent + grid.pad),
        axis=1,
    )
    candidates = np.flatnonzero(inside_box)
    location_cell = grid.cell_of(locations[candidates])
    chunk = 1 << 16
    for start in range(0, candidates.size, chunk):
        rows = candidates[start : start + chunk]
        pair_row, pair_triangle = grid.triangles_of(location_cell[start : start + chunk])
        bary = _barycentric(points, triangles, pair_triangle, locations[rows[pair_row]])
        yield rows, pair_row, pair_triangle, bary


def _orientation(a, b, c):
    """Twice the signed area of (a, b, c), row-wise (> 0: counter-clockwise)."""
    return (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])


def _first_crossing(points, triangles, edges, grid, tolerance):
    """``(edge, triangle)`` of the first edge that properly crosses an edge of a triangle.

    Proper: the two segments intersect at one point interior to both (every orientation
    sign beyond ``tolerance``), so edges that share a node or touch never count.
    """
    p, q = points[edges[:, 0]], points[edges[:, 1]]
    chunk = 1 << 14
    for start in range(0, edges.shape[0], chunk):
        stop = min(start + chunk, edges.shape[0])
        owner, cell = grid.box_cells(
            np.minimum(p[start:stop], q[start:stop]), np.maximum(p[start:stop], q[start:stop])
        )
        query, triangle = grid.triangles_of(cell)
        edge = start + owner[query]
        if not edge.size:
            continue
        key = np.unique(edge * triangles.shape[0] + triangle)
        edge, triangle = key // triangles.shape[0], key % triangles.shape[0]
        a, b = p[edge], q[edge]
        for k in range(3):
            c = points[triangles[triangle, k]]
            d = points[triangles[triangle, (k + 1) % 3]]
            signs = [_orientation(a, b, c), _orientation(a, b, d)]
            signs += [_orientation(c, d, a), _orientation(c, d, b)]
            clear = np.all([np.abs(sign) > tolerance for sign in signs], axis=0)
            crossing = clear & (signs[0] * signs[1] < 0) & (signs[2] * signs[3] < 0)
            if np.any(crossing):
                first = np.flatnonzero(crossing)[0]
                return int(edge[first]), int(triangle[first])
    return None


def _locate(points, triangles, locations, tolerance=1e-10):
    """Containing triangle of every location (-1 if none), by :func:`_candidate_pairs`.

    Among the candidates the triangle with the largest smallest barycentric
    coordinate wins; it is accepted if that coordinate is >= -``tolerance`` (points
    on the boundary). Exact for any valid triangulation.
    """
    which = np.full(locations.shape[0], -1, dtype=np.int64)
    for rows, pair_row, pair_triangle, bary in _candidate_pairs(points, triangles, locations):
        score = bary.min(axis=1)
        # best candidate per location: sort by (row, -score) and take each row's first
        best = np.lexsort((-score, pair_row))
        head = best[np.r_[True, pair_row[best][1:] != pair_row[best][:-1]]] if best.size else best
        accept = head[score[head] >= -tolerance]
        which[rows[pair_row[accept]]] = pair_triangle[accept]
    return which


def projection_matrix(mesh, locations):
    """Barycentric (linear) interpolation matrix A from mesh nodes to locations.

    Row i holds the three barycentric coordinates of location i in its containing
    triangle, so ``A @ x`` is the P1 interpolant of the nodal values x: rows sum to
    one and linear functions are reproduced exactly. The containing triangle is
    found by a vectorised uniform-grid search (about T cells, each listing the
    triangles whose bounding box overlaps it); locations on the mesh boundary are
    accepted with a tolerance of 1e-10 on the barycentric coordinates.

    Parameters
    ----------
    mesh : Mesh or object with ``.points`` and ``.triangles``
        The mesh (e.g. ``MaternSPDE.mesh``).
    locations : array_like, shape (k, 2)
        Observation locations, finite, inside the mesh.

    Returns
    -------
    scipy.sparse.csr_matrix
        Shape (k, N), exactly 3 stored entries per row (sorted columns; an entry is
        an explicit zero where a location lies on an edge or a node).

    Raises
    ------
    InputError
        Malformed mesh, non-finite locations, or locations outside the mesh (the
        message names them).
    """
    owner = "projection_matrix"
    points, triangles = check_mesh(mesh, owner)
    locations = _check_locations(locations, owner)
    n_locations = locations.shape[0]
    which = _locate(points, triangles, locations)
    outside = np.flatnonzero(which < 0)
    if outside.size:
        raise _outside_error(owner, locations, outside, "the mesh")
    weights = _barycentric(points, triangles, which, locations)
    columns = triangles[which]
    order = np.argsort(columns, axis=1)
    columns = np.take_along_axis(columns, order, axis=1)
    weights = np.take_along_axis(weights, order, axis=1)
    indptr = np.arange(0, 3 * n_locations + 1, 3, dtype=np.int64)
    return sp.csr_matrix(
        (weights.ravel(), columns.ravel(), indptr), shape=(n_locations, points.shape[0])
    )


def lattice_projection(shape, locations, spacing=1.0):
    """Bilinear interpolation matrix from the nodes of a :class:`Matern2D` lattice.

    Node ``(i, j)`` (unknown ``i*n + j``) sits at ``(i*h0, j*h1)``; a location
    ``(x0, x1)`` in the cell with lower corner ``(i, j)`` and fractional position
    ``(u, v)`` gets weights ``(1−u)(1−v), (1−u)v, u(1−v), uv`` on nodes
    ``(i, j), (i, j+1), (i+1, j), (i+1, j+1)``. Rows sum to one and functions
    ``a + b x0 + c x1 + d x0 x1`` are reproduced exactly.

    Parameters
    ----------
    shape : (int, int)
        Lattice shape ``(m, n)``, both >= 2.
    locations : array_like, shape (k, 2)
        Finite locations inside ``[0, (m−1) h0] x [0, (n−1) h1]`` (a relative
        tolerance of 1e-12 of the extent is allowed at the edges).
    spacing : float or (float, float), optional
        Node spacing (default 1).

    Returns
    -------
    scipy.sparse.csr_matrix
        Shape (k, m*n), exactly 4 stored entries per row (sorted columns; explicit
        zeros where a location lies on a cell edge).

    Raises
    ------
    InputError
        Bad shape or spacing, non-finite locations, or locations outside the
        lattice (named in the message).
    """
    owner = "lattice_projection"
    m, n = lattice_shape(shape, owner)
    h = np.array(lattice_spacing(spacing, owner))
    locations = _check_locations(locations, owner)
    extent = np.array([m - 1, n - 1]) * h
    scaled = locations / h
    tolerance = 1e-12 * np.array([m - 1, n - 1])
    outside = np.flatnonzero(
        np.any((scaled < -tolerance) | (scaled > np.array([m - 1, n - 1]) + tolerance), axis=1)
    )
    if outside.size:
        where = f"the lattice [0, {extent[0]:.6g}] x [0, {extent[1]:.6g}]"
        raise _outside_error(owner, locations, outside, where)
    scaled = np.clip(scaled, 0.0, np.array([m - 1, n - 1], dtype=float))
    corner = np.minimum(np.floor(scaled).astype(np.int64), np.array([m - 2, n - 2]))
    u, v = (scaled - corner).T
    i, j = corner.T
    base = i * n + j
    columns = np.column_stack([base, base + 1, base + n, base + n + 1])
    weights = np.column_stack([(1 - u) * (1 - v), (1 - u) * v, u * (1 - v), u * v])
    k = locations.shape[0]
    indptr = np.arange(0, 4 * k + 1, 4, dtype=np.int64)
    return sp.csr_matrix((weights.ravel(), columns.ravel(), indptr), shape=(k, m * n))
