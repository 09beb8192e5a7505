"""Assembly of H = Q + Aᵀ W A on a fixed sparsity pattern (the Laplace Hessian).

The pattern of H (the union of Q's and AᵀA's) is fixed per model; these kernels
precompute where each entry of Q and each product a_ik a_il lands in H's value
array, so every Newton step assembles H with two straight loops.
"""

import numpy as np

from ._jit import jit
from ._status import NOT_FINITE, OK, OUTSIDE_PATTERN

_u = np.uintp  # unsigned subscripts: no wraparound checks in the hot loops


@jit
def _find(indptr, indices, row, col):
    """Position of (row, col) in a CSC pattern with sorted rows, or -1."""
    lo = indptr[_u(col)]
    hi = indptr[_u(col + 1)] - 1
    while lo <= hi:
        mid = (lo + hi) // 2
        v = indices[_u(mid)]
        if v == row:
            return mid
        if v < row:
            lo = mid + 1
        else:
            hi = mid - 1
    return -1


@jit
def _subpattern_positions(n, sub_indptr, sub_indices, indptr, indices, pos):
    """pos[p] = position in (indptr, indices) of entry p of a sub-pattern; ``(OK, -1)`` or
    ``(OUTSIDE_PATTERN, j)`` with j the column of the first entry that is missing."""
    for j in range(n):
        for p in range(sub_indptr[_u(j)], sub_indptr[_u(j + 1)]):
            q = _find(indptr, indices, sub_indices[_u(p)], j)
            if q < 0:
                return OUTSIDE_PATTERN, j
            pos[_u(p)] = q
    return OK, -1


@jit
def _product_count(a_ptr):
    total = 0
    for i in range(a_ptr.size - 1):
        m = a_ptr[i + 1] - a_ptr[i]
        total += m * m
    return total


@jit
def _product_positions(a_ptr, a_cols, a_data, indptr, indices, trip_pos, trip_obs, trip_val):
    """For every row i of a CSR matrix A and every pair (k, l) of its columns, the position
    of (k, l) in H's CSC pattern, the row i and the product a_ik a_il. Returns ``(OK, -1)``,
    or ``(OUTSIDE_PATTERN, i)`` with i the row whose pair is missing from the pattern."""
    t = 0
    for i in range(a_ptr.size - 1):
        for u in range(a_ptr[_u(i)], a_ptr[_u(i + 1)]):
            for v in range(a_ptr[_u(i)], a_ptr[_u(i + 1)]):
                q = _find(indptr, indices, a_cols[_u(u)], a_cols[_u(v)])
                if q < 0:
                    return OUTSIDE_PATTERN, i
                trip_pos[_u(t)] = q
                trip_obs[_u(t)] = i
                trip_val[_u(t)] = a_data[_u(u)] * a_data[_u(v)]
                t += 1
    return OK, -1


@jit
def _assemble(h_data, q_pos, q_data, trip_pos, trip_obs, trip_val, weights):
    """h_data = Q (through q_pos) + Σ_i w_i a_i a_iᵀ (through the product positions)."""
    for p in range(h_data.size):
        h_data[_u(p)] = 0.0
    for p in range(q_pos.size):
        h_data[_u(q_pos[_u(p)])] += q_data[_u(p)]
    for t in range(trip_pos.size):
        h_data[_u(trip_pos[_u(t)])] += weights[_u(trip_obs[_u(t)])] * trip_val[_u(t)]


@jit
def _row_quadratic(trip_obs, trip_val, values, out):
    """out[i] = Σ_{(k,l) in row i} a_ik a_il values_t (e.g. diag(A Σ Aᵀ) from Σ's entries)."""
    for i in range(out.size):
        out[_u(i)] = 0.0
    for t in range(trip_obs.size):
        out[_u(trip_obs[_u(t)])] += trip_val[_u(t)] * values[_u(t)]


@jit
def _asymmetry(data, transpose_positions):
    """(max_p |data[p] - data[t[p]]|, max_p |data[p]|) with t the transpose positions of a
    symmetric pattern: one pass, no temporaries."""
    worst = 0.0
    scale = 0.0
    for p in range(data.size):
        v = data[_u(p)]
        d = abs(v - data[_u(transpose_positions[_u(p)])])
        if d > worst:
            worst = d
        if abs(v) > scale:
            scale = abs(v)
    return worst, scale


@jit
def _same_structure(indptr, indices, known_indptr, known_indices):
    """True if ``indptr`` equals ``known_indptr`` and ``indices`` starts with
    ``known_indices``: every entry compared, without a branch per entry (the loops
    vectorise; equality is the case expected)."""
    if indptr.size != known_indptr.size or indices.size < known_indices.size:
        return False
    differ = False
    for p in range(indptr.size):
        differ |= indptr[_u(p)] != known_indptr[_u(p)]
    for p in range(known_indices.size):
        differ |= indices[_u(p)] != known_indices[_u(p)]
    return not differ


@jit
def _checked_copy(data, transpose_positions, out):
    """out = data[:out.size] on a symmetric pattern, checked in the same pass: returns
    ``(code, worst, scale)``, code ``OK`` or ``NOT_FINITE`` (a NaN or inf; out then
    incomplete), worst = max |data[p] − data[t[p]]| over the pairs (p, t[p]), t the
    transpose positions, and scale = max |data[p]| (as :func:`_asymmetry`)."""
    worst = 0.0
    scale = 0.0
    for p in range(out.size):
        v = data[_u(p)]
        if not np.isfinite(v):
            return NOT_FINITE, worst, scale
        out[_u(p)] = v
        d = abs(v - data[_u(transpose_positions[_u(p)])])
        if d > worst:
            worst = d
        if abs(v) > scale:
            scale = abs(v)
    return OK, worst, scale


@jit
def _checked_scatter(data, positions, transpose_positions, out):
    """out = 0, then out[positions[q]] = data[q] (a sub-pattern's values placed on a
    symmetric pattern, positions distinct), checked: ``(code, worst, scale)`` as
    :func:`_checked_copy`, over the placed entries and their transposes only (every other
    pair is 0 = 0)."""
    for p in range(out.size):
        out[_u(p)] = 0.0
    scale = 0.0
    for q in range(positions.size):
        v = data[_u(q)]
        if not np.isfinite(v):
            return NOT_FINITE, 0.0, scale
        out[_u(positions[_u(q)])] = v
        if abs(v) > scale:
            scale = abs(v)
    worst = 0.0
    for q in range(positions.size):
        p = positions[_u(q)]
        d = abs(out[_u(p)] - out[_u(transpose_positions[_u(p)])])
        if d > worst:
            worst = d
    return OK, worst, scale


@jit
def _add_outer_on_pattern(indptr, indices, u, v, scale, out):
    """out[p] += scale ½(u_i v_j + u_j v_i) at every stored entry p = (i, j) of a CSC
    pattern (one pass over the pattern, no column index array)."""
    half = 0.5 * scale
    for j in range(indptr.size - 1):
        uj = u[_u(j)]
        vj = v[_u(j)]
        for p in range(indptr[_u(j)], indptr[_u(j + 1)]):
            i = indices[_u(p)]
            out[_u(p)] += half * (u[_u(i)] * vj + uj * v[_u(i)])
