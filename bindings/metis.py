"""Nested-dissection ordering from METIS (through the ``pymetis`` wheel)."""

import numpy as np

__all__ = ["nested_dissection"]


def nested_dissection(indptr, indices, n):
    """Fill-reducing nested-dissection ordering of a symmetric pattern (METIS_NodeND).

    Parameters
    ----------
    indptr, indices : numpy.ndarray
        Full symmetric CSC pattern (the diagonal is removed here: METIS wants a graph).
    n : int
        Order of the matrix.

    Returns
    -------
    perm : numpy.ndarray of int64
        ``perm[k]`` is the original index eliminated k-th. pymetis returns
        ``(perm, iperm)`` in METIS's own naming, where METIS's *perm* is the
        ordering in this sense (``iperm`` is its inverse).
    """
    import pymetis

    cols = np.repeat(np.arange(n, dtype=np.int64), np.diff(indptr))
    off_diagonal = indices != cols
    kept = np.cumsum(np.concatenate(([0], off_diagonal.astype(np.int64))))
    xadj = kept[indptr].astype(np.int32)
    adjncy = indices[off_diagonal].astype(np.int32)
    if adjncy.size == 0:  # no edges: every ordering is fill-free
        return np.arange(n, dtype=np.int64)
    perm, _iperm = pymetis.nested_dissection(adjacency=pymetis.CSRAdjacency(xadj, adjncy))
    return np.asarray(perm, dtype=np.int64)
