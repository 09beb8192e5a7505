"""Areal graphs from the GIS stack: SciPy adjacencies, libpysal weights, GeoDataFrames.

:func:`areal_graph` turns whatever describes "which areas are neighbours" into one
:class:`ArealGraph`: a symmetric 0/1 adjacency (CSR, zero diagonal) that
:class:`~gmrf_core.models.Besag` and :class:`~gmrf_core.models.BYM2` accept, the
identifiers of its nodes (in adjacency order) and its connected components.

Accepted inputs

- a SciPy sparse matrix or a NumPy array: binary, weighted or row-standardised
  (libpysal ``W.transform = "r"``) — only the *pattern* of the off-diagonal nonzeros
  is used (a neighbour relation, as R-INLA's ``inla.read.graph``); the diagonal is
  ignored; the pattern must be symmetric and the weights finite and non-negative.
  Node identifiers are 0..n-1.
- a libpysal ``W`` (``W.sparse`` in ``W.id_order``) or ``libpysal.graph.Graph``
  (``Graph.sparse`` in ``Graph.unique_ids``; isolates stored there as zero-weight
  self-loops become islands).
- a geopandas ``GeoDataFrame``: queen contiguity through
  ``libpysal.graph.Graph.build_contiguity(gdf, rook=False)`` (areas sharing at least a
  vertex are neighbours); node identifiers are the frame's index, or the values of
  ``ids`` (a column name) when given.
- a dict ``{id: [neighbour ids]}`` (libpysal's ``W.neighbors``).

Islands and several connected components (as R-INLA's ``besag``/``bym2`` with
``scale.model = TRUE`` and ``adjust.for.con.comp = TRUE``): every component of two or
more areas gets its own sum-to-zero constraint and its own Sørbye–Rue scaling;
an island (an area without neighbours) gets an iid N(0, 1/τ) effect and no
constraint. The models do this themselves
(:func:`gmrf_core.models.besag.besag_structure`); :class:`ArealGraph` reports the
components and islands so that a user sees what will happen.
"""

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .errors import InputError
from .models._structure import adjacency_matrix, graph_components

__all__ = ["ArealGraph", "areal_graph"]


@dataclass(frozen=True, eq=False)
class ArealGraph:
    """A validated areal neighbourhood graph.

    Attributes
    ----------
    adjacency : scipy.sparse.csr_matrix
        Symmetric 0/1 adjacency with zero diagonal (n × n).
    ids : numpy.ndarray
        Identifier of each node, in adjacency order (object or numeric dtype).
    components : list of numpy.ndarray
        Node indices of each connected component (islands included, as singletons).
    islands : numpy.ndarray
        Nodes without neighbours.
    """

    adjacency: sp.csr_matrix
    ids: np.ndarray
    components: list
    islands: np.ndarray

    @property
    def n(self):
        """Number of areas."""
        return self.adjacency.shape[0]

    @property
    def n_components(self):
        """Number of connected components (islands count as components)."""
        return len(self.components)

    def describe(self):
        """One line: areas, edges, components and islands, and how they are modelled."""
        edges = self.adjacency.nnz // 2
        connected = sum(1 for nodes in self.components if nodes.size > 1)
        return (
            f"{self.n} areas, {edges} neighbour pairs, {connected} connected component(s) of "
            f"2+ areas (one sum-to-zero constraint and one scaling each), "
            f"{self.islands.size} island(s) (iid effect, no constraint)"
        )


def _pattern(matrix, owner):
    """0/1 pattern of the off-diagonal nonzeros of a weights matrix."""
    matrix = sp.csr_matrix(matrix, dtype=float)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise InputError(f"{owner}: the weights matrix must be square, got shape {matrix.shape}.")
    matrix.sum_duplicates()
    if not np.all(np.isfinite(matrix.data)):
        raise InputError(f"{owner}: the weights matrix has NaN or infinite entries.")
    if np.any(matrix.data < 0):
        raise InputError(
            f"{owner}: the weights matrix has negative entries; give neighbour weights >= 0 "
            "(only which entries are nonzero is used)."
        )
    matrix.setdiag(0.0)
    matrix.eliminate_zeros()
    return sp.csr_matrix((np.ones(matrix.nnz), matrix.indices, matrix.indptr), shape=matrix.shape)


def _from_dict(neighbours, owner):
    ids = list(neighbours.keys())
    position = {key: i for i, key in enumerate(ids)}
    rows, cols = [], []
    for key, nbrs in neighbours.items():
        for other in nbrs:
            if other not in position:
                raise InputError(
                    f"{owner}: area {key!r} lists neighbour {other!r}, which is not a key of the "
                    "neighbour dict."
                )
            if other != key:
                rows.append(position[key])
                cols.append(position[other])
    n = len(ids)
    matrix = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
    return _pattern(matrix, owner), np.asarray(ids, dtype=object)


def _libpysal_kind(graph):
    module = type(graph).__module__ or ""
    if not module.startswith("libpysal"):
        return None
    name = type(graph).__name__
    if name == "Graph":
        return "graph"
    if hasattr(graph, "id_order") and hasattr(graph, "sparse"):
        return "W"
    return None


def _is_geodataframe(graph):
    return type(graph).__name__ == "GeoDataFrame" and hasattr(graph, "geometry")


def _ids_array(values):
    values = np.asarray(values)
    return values.astype(object) if values.dtype.kind not in "iuf" else values


def areal_graph(graph, ids=None, owner="areal_graph"):
    """An :class:`ArealGraph` from a SciPy/NumPy matrix, libpysal W/Graph, GeoDataFrame or dict.

    Parameters
    ----------
    graph : scipy.sparse matrix, numpy.ndarray, libpysal.weights.W,
            libpysal.graph.Graph, geopandas.GeoDataFrame, dict or ArealGraph
        The neighbourhood structure (see the module docstring).
    ids : str or array_like, optional
        Node identifiers: for a GeoDataFrame the name of a column (default: the frame's
        index); for a matrix an array of n identifiers (default 0..n-1). Ignored for W,
        Graph and dict, which carry their own.
    owner : str
        Name used in error messages (e.g. the formula term).

    Returns
    -------
    ArealGraph

    Raises
    ------
    InputError
        An unsupported type, a non-square or non-finite matrix, negative weights,
        identifiers of the wrong length or repeated, a GeoDataFrame without the ``ids``
        column, libpysal missing for a GeoDataFrame.
    NotSymmetricError
        A neighbour relation listed in one direction only.
    """
    if isinstance(graph, ArealGraph):
        return graph
    node_ids = None
    if sp.issparse(graph) or isinstance(graph, np.ndarray):
        matrix = _pattern(graph, owner)
        if ids is not None:
            node_ids = _ids_array(ids)
    elif _is_geodataframe(graph):
        try:
            from libpysal.graph import Graph
        except ImportError as exc:  # pragma: no cover - optional extra
            raise InputError(
                f"{owner}: a GeoDataFrame graph needs libpysal (pip install 'gmrf_core[frame]')."
            ) from exc
        if graph.shape[0] < 1:
            raise InputError(f"{owner}: the GeoDataFrame has no rows.")
        if isinstance(ids, str):
            if ids not in graph.columns:
                raise InputError(
                    f"{owner}: the GeoDataFrame has no column {ids!r} for the area identifiers; "
                    f"columns are {list(graph.columns)}."
                )
            node_ids = _ids_array(graph[ids].to_numpy())
        elif ids is not None:
            node_ids = _ids_array(ids)
        else:
            node_ids = _ids_array(graph.index.to_numpy())
        frame = graph.reset_index(drop=True)
        contiguity = Graph.build_contiguity(frame, rook=False)
        # Graph.sparse follows unique_ids (here the positions 0..n-1); put it in row order
        order = np.asarray(contiguity.unique_ids, dtype=np.int64)
        matrix = _pattern(contiguity.sparse, owner)
        inverse = np.empty_like(order)
        inverse[order] = np.arange(order.size)
        matrix = sp.csr_matrix(matrix[inverse][:, inverse])
    elif isinstance(graph, dict):
        matrix, node_ids = _from_dict(graph, owner)
    else:
        kind = _libpysal_kind(graph)
        if kind == "graph":
            matrix = _pattern(graph.sparse, owner)
            node_ids = _ids_array(np.asarray(graph.unique_ids))
        elif kind == "W":
            matrix = _pattern(graph.sparse, owner)
            node_ids = _ids_array(np.asarray(graph.id_order))
        else:
            raise InputError(
                f"{owner}: graph must be a scipy.sparse adjacency or weights matrix, a numpy "
                "array, a libpysal W or Graph, a geopandas GeoDataFrame or a dict of neighbour "
                f"lists; got {type(graph).__name__}."
            )
    n = matrix.shape[0]
    if n < 1:
        raise InputError(f"{owner}: the graph has no nodes.")
    if node_ids is None:
        node_ids = np.arange(n)
    if node_ids.ndim != 1 or node_ids.size != n:
        raise InputError(
            f"{owner}: {node_ids.size} area identifiers for a graph of {n} areas; give one per "
            "area, in the graph's order."
        )
    if len(set(node_ids.tolist())) != n:
        raise InputError(f"{owner}: the area identifiers are not unique.")
    adjacency = adjacency_matrix(matrix, owner)
    components = graph_components(adjacency)
    islands = np.asarray([int(c[0]) for c in components if c.size == 1], dtype=np.int64)
    return ArealGraph(adjacency, node_ids, components, islands)
