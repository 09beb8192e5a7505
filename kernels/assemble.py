"""Assembly of H = Q + Aᵀ W A on a fixed sparsity pattern (the Laplace Hessian).

The pattern of H (the union of Q's and AᵀA's) is fixed per model; these kernels
precompute where each entry of Q and each product a_ik a_il lands in H's value
array, so every Newton step assembles H with two straight loops.
"""

from ._jit import jit


@jit
def _find(indptr, indices, row, col):
    """Position of (row, col) in a CSC pattern with sorted rows, or -1."""
    lo = indptr[col]
    hi = indptr[col + 1] - 1
    while lo <= hi:
        mid = (lo + hi) // 2
        v = indices[mid]
        if v == row:
            return mid
        if v < row:
            lo = mid + 1
        else:
            hi = mid - 1
    return -1


@jit
def _subpattern_positions(n, sub_indptr, sub_indices, indptr, indices, pos):
    """pos[p] = position in (indptr, indices) of entry p of a sub-pattern; -1 or the column
    of the first entry that is missing."""
    for j in range(n):
        for p in range(sub_indptr[j], sub_indptr[j + 1]):
            q = _find(indptr, indices, sub_indices[p], j)
            if q < 0:
                return j
            pos[p] = q
    return -1


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
    of (k, l) in H's CSC pattern, the row i and the product a_ik a_il. Returns -1, or the
    row whose pair is missing from the pattern."""
    t = 0
    for i in range(a_ptr.size - 1):
        for u in range(a_ptr[i], a_ptr[i + 1]):
            for v in range(a_ptr[i], a_ptr[i + 1]):
                q = _find(indptr, indices, a_cols[u], a_cols[v])
                if q < 0:
                    return i
                trip_pos[t] = q
                trip_obs[t] = i
                trip_val[t] = a_data[u] * a_data[v]
                t += 1
    return -1


@jit
def _assemble(h_data, q_pos, q_data, trip_pos, trip_obs, trip_val, weights):
    """h_data = Q (through q_pos) + Σ_i w_i a_i a_iᵀ (through the product positions)."""
    for p in range(h_data.size):
        h_data[p] = 0.0
    for p in range(q_pos.size):
        h_data[q_pos[p]] += q_data[p]
    for t in range(trip_pos.size):
        h_data[trip_pos[t]] += weights[trip_obs[t]] * trip_val[t]


@jit
def _row_quadratic(trip_obs, trip_val, values, out):
    """out[i] = Σ_{(k,l) in row i} a_ik a_il values_t (e.g. diag(A Σ Aᵀ) from Σ's entries)."""
    for i in range(out.size):
        out[i] = 0.0
    for t in range(trip_obs.size):
        out[trip_obs[t]] += trip_val[t] * values[t]
