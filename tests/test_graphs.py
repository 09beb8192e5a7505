"""Tests of gmrf_core.graphs: areal graphs from SciPy, libpysal and geopandas."""

import numpy as np
import pytest
import scipy.sparse as sp

from gmrf_core.errors import InputError, NotSymmetricError
from gmrf_core.graphs import ArealGraph, areal_graph

libpysal = pytest.importorskip("libpysal")
gpd = pytest.importorskip("geopandas")
shapely = pytest.importorskip("shapely")


def squares(rows, cols, skip=()):
    """A GeoDataFrame of unit squares on a rows × cols grid, minus the cells in ``skip``."""
    cells, names = [], []
    for i in range(rows):
        for j in range(cols):
            if (i, j) in skip:
                continue
            cells.append(shapely.box(j, i, j + 1, i + 1))
            names.append(f"c{i}{j}")
    return gpd.GeoDataFrame({"cell": names}, geometry=cells)


def queen_reference(frame):
    """Queen contiguity by brute force: two squares touch iff their closures intersect."""
    geoms = list(frame.geometry)
    n = len(geoms)
    dense = np.zeros((n, n))
    for a in range(n):
        for b in range(n):
            if a != b and geoms[a].intersects(geoms[b]):
                dense[a, b] = 1.0
    return dense


def test_binary_matrix_is_its_own_pattern():
    adjacency = np.array([[0, 1, 0], [1, 0, 1], [0, 1, 0]], dtype=float)
    graph = areal_graph(sp.csr_matrix(adjacency))
    assert isinstance(graph, ArealGraph)
    np.testing.assert_array_equal(graph.adjacency.toarray(), adjacency)
    np.testing.assert_array_equal(graph.ids, [0, 1, 2])
    assert graph.n == 3 and graph.n_components == 1 and graph.islands.size == 0


def test_weighted_and_row_standardised_give_the_pattern():
    adjacency = np.array([[0, 1, 1, 0], [1, 0, 1, 0], [1, 1, 0, 1], [0, 0, 1, 0]], dtype=float)
    values = np.array([[0, 2.5, 0.1, 0], [2.5, 0, 7, 0], [0.1, 7, 0, 3], [0, 0, 3, 0]])
    weighted = adjacency * values
    row_standardised = adjacency / adjacency.sum(axis=1, keepdims=True)  # not symmetric values
    for matrix in (weighted, sp.csr_matrix(row_standardised), row_standardised + 4 * np.eye(4)):
        graph = areal_graph(matrix)
        np.testing.assert_array_equal(graph.adjacency.toarray(), adjacency)


def test_matrix_errors():
    with pytest.raises(InputError, match="square"):
        areal_graph(np.ones((2, 3)))
    with pytest.raises(InputError, match="negative"):
        areal_graph(np.array([[0, -1.0], [-1.0, 0]]))
    with pytest.raises(InputError, match="NaN"):
        areal_graph(np.array([[0, np.nan], [np.nan, 0]]))
    with pytest.raises(NotSymmetricError):
        areal_graph(np.array([[0, 1.0], [0, 0]]))
    with pytest.raises(InputError, match="2 area identifiers for a graph of 3"):
        areal_graph(np.eye(3, k=1) + np.eye(3, k=-1), ids=["a", "b"])
    with pytest.raises(InputError, match="not unique"):
        areal_graph(np.eye(2, k=1) + np.eye(2, k=-1), ids=["a", "a"])
    with pytest.raises(InputError, match="graph must be"):
        areal_graph("not a graph")


def test_libpysal_w_and_graph_keep_their_ids_and_islands():
    neighbours = {"a": ["b"], "b": ["a", "c"], "c": ["b"], "d": []}
    w = libpysal.weights.W(neighbours, silence_warnings=True)
    expected = np.zeros((4, 4))
    expected[0, 1] = expected[1, 0] = expected[1, 2] = expected[2, 1] = 1
    for source in (w, libpysal.graph.Graph.from_W(w), neighbours):
        graph = areal_graph(source)
        np.testing.assert_array_equal(graph.adjacency.toarray(), expected)
        assert list(graph.ids) == ["a", "b", "c", "d"]
        np.testing.assert_array_equal(graph.islands, [3])
        assert graph.n_components == 2
    w.transform = "r"  # row-standardised weights: same pattern
    np.testing.assert_array_equal(areal_graph(w).adjacency.toarray(), expected)


def test_dict_with_unknown_neighbour():
    with pytest.raises(InputError, match="'z'"):
        areal_graph({"a": ["z"]})


def test_geodataframe_queen_contiguity_matches_brute_force():
    # a 3 × 4 grid with a hole: diagonal neighbours count (queen), the hole breaks edges
    frame = squares(3, 4, skip={(1, 1)})
    graph = areal_graph(frame, ids="cell")
    np.testing.assert_array_equal(graph.adjacency.toarray(), queen_reference(frame))
    assert list(graph.ids) == list(frame["cell"])
    # corner-touching squares are queen (not rook) neighbours
    position = {name: i for i, name in enumerate(frame["cell"])}
    assert graph.adjacency[position["c00"], position["c10"]] == 1  # shares an edge
    assert graph.adjacency[position["c01"], position["c12"]] == 1  # corners only: queen, not rook
    # default ids: the frame's index
    shuffled = frame.set_index(np.arange(100, 100 + len(frame))[::-1])
    np.testing.assert_array_equal(areal_graph(shuffled).ids, shuffled.index.to_numpy())


def test_geodataframe_islands_and_components():
    # two separate blocks of squares and one isolated square
    cells = [shapely.box(0, 0, 1, 1), shapely.box(1, 0, 2, 1), shapely.box(5, 5, 6, 6)]
    cells += [shapely.box(10, 0, 11, 1), shapely.box(10, 1, 11, 2)]
    frame = gpd.GeoDataFrame({"id": list("abcde")}, geometry=cells)
    graph = areal_graph(frame, ids="id")
    np.testing.assert_array_equal(graph.islands, [2])
    assert graph.n_components == 3
    assert [c.tolist() for c in graph.components] == [[0, 1], [2], [3, 4]]
    assert "2 connected component(s)" in graph.describe()
    assert "1 island(s)" in graph.describe()
    with pytest.raises(InputError, match="no column 'nope'"):
        areal_graph(frame, ids="nope")
