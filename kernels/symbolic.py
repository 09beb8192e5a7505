"""Symbolic analysis for the supernodal Cholesky factorization.

Given the full symmetric pattern of Q (CSC) and a fill-reducing permutation,
compute everything that depends only on the pattern:

1. the permuted lower and upper patterns of C = Q[perm][:, perm];
2. the elimination tree and its postorder (Liu 1990), composed into the
   permutation so that supernodes are contiguous;
3. column counts of L (Gilbert, Ng & Peyton 1994, as in CSparse ``cs_counts``);
4. fundamental supernodes and relaxed amalgamation (the rules of CHOLMOD's
   ``cholmod_super_symbolic``: nrelax = 4, 16, 48 and zrelax = 0.8, 0.1, 0.05);
5. the row structure of every supernode and the offsets of its dense
   column-major block in the factor's value array;
6. a scatter map from Q's entries to their positions in the factor, so a
   numeric refactorization starts with a straight copy.

Kernels return status codes; they never raise.
"""

import numpy as np

from ._jit import jit

# status codes
OK = 0
ERR_STRUCTURE = -1  # internal inconsistency (should never happen)


@jit
def _mirror_map(n, indptr, indices, mirror, cursor):
    """mirror[p] = position of entry (j, i) for the entry p = (i, j); status 0 or -(1 + col).

    Requires sorted row indices. One sweep over the columns: entries (j, i) of
    column i are met in increasing j, so a cursor per column finds each mirror.
    A structurally non-symmetric pattern returns ``-(1 + j)`` with j a column
    whose pattern differs from its row.
    """
    for i in range(n):
        cursor[i] = indptr[i]
    for j in range(n):
        for p in range(indptr[j], indptr[j + 1]):
            i = indices[p]
            q = cursor[i]
            if q >= indptr[i + 1] or indices[q] != j:
                return -(1 + min(i, j))
            mirror[p] = q
            cursor[i] = q + 1
    return 0


@jit
def _check_values(n, indptr, indices, data, mirror, rtol, diag_pos):
    """Validate numeric values: finite and symmetric to a relative tolerance.

    Returns 0, or ``1 + j`` for a non-finite entry in column j, or ``-(1 + j)`` for
    an asymmetric pair in column j. Asymmetry is measured against
    sqrt(|q_ii| |q_jj|), which is invariant under symmetric diagonal scaling.
    ``diag_pos[j]`` is the position of the diagonal entry of column j, or -1.
    """
    for j in range(n):
        for p in range(indptr[j], indptr[j + 1]):
            v = data[p]
            if not np.isfinite(v):
                return 1 + j
    for j in range(n):
        for p in range(indptr[j], indptr[j + 1]):
            i = indices[p]
            if i <= j:
                continue
            a = data[p]
            b = data[mirror[p]]
            if a != b:
                di = abs(data[diag_pos[i]]) if diag_pos[i] >= 0 else 0.0
                dj = abs(data[diag_pos[j]]) if diag_pos[j] >= 0 else 0.0
                scale = np.sqrt(di * dj)
                scale = max(scale, abs(a), abs(b)) if scale == 0.0 else scale
                if abs(a - b) > rtol * scale:
                    return -(1 + j)
    return 0


@jit
def _diagonal_positions(n, indptr, indices, diag_pos):
    for j in range(n):
        diag_pos[j] = -1
        for p in range(indptr[j], indptr[j + 1]):
            if indices[p] == j:
                diag_pos[j] = p
                break


@jit
def _permuted_lower(n, indptr, indices, pinv, c_ptr, c_rows, c_src, work):
    """Lower triangle of C = P Q Pᵀ in CSC (rows unsorted), with source positions in Q.

    ``c_src[q]`` is the index in Q's data of the entry stored at position q of C.
    """
    for j in range(n + 1):
        c_ptr[j] = 0
    for j in range(n):
        pj = pinv[j]
        for p in range(indptr[j], indptr[j + 1]):
            pi = pinv[indices[p]]
            if pi >= pj:
                c_ptr[pj + 1] += 1
    for j in range(n):
        c_ptr[j + 1] += c_ptr[j]
    for j in range(n):
        work[j] = c_ptr[j]
    for j in range(n):
        pj = pinv[j]
        for p in range(indptr[j], indptr[j + 1]):
            pi = pinv[indices[p]]
            if pi >= pj:
                q = work[pj]
                work[pj] += 1
                c_rows[q] = pi
                c_src[q] = p


@jit
def _permuted_upper(n, indptr, indices, pinv, u_ptr, u_rows, work):
    """Strictly upper triangle of C = P Q Pᵀ in CSC (rows unsorted)."""
    for j in range(n + 1):
        u_ptr[j] = 0
    for j in range(n):
        pj = pinv[j]
        for p in range(indptr[j], indptr[j + 1]):
            pi = pinv[indices[p]]
            if pi < pj:
                u_ptr[pj + 1] += 1
    for j in range(n):
        u_ptr[j + 1] += u_ptr[j]
    for j in range(n):
        work[j] = u_ptr[j]
    for j in range(n):
        pj = pinv[j]
        for p in range(indptr[j], indptr[j + 1]):
            pi = pinv[indices[p]]
            if pi < pj:
                q = work[pj]
                work[pj] += 1
                u_rows[q] = pi


@jit
def _etree(n, u_ptr, u_rows, parent, ancestor):
    """Elimination tree from the strictly upper pattern (Liu's algorithm, path compression)."""
    for k in range(n):
        parent[k] = -1
        ancestor[k] = -1
        for p in range(u_ptr[k], u_ptr[k + 1]):
            i = u_rows[p]
            while i != -1 and i < k:
                inext = ancestor[i]
                ancestor[i] = k
                if inext == -1:
                    parent[i] = k
                i = inext


@jit
def _postorder(n, parent, post, head, next_, stack):
    """Depth-first postorder of a forest given by ``parent`` (children visited in order)."""
    for j in range(n):
        head[j] = -1
    for j in range(n - 1, -1, -1):
        if parent[j] != -1:
            next_[j] = head[parent[j]]
            head[parent[j]] = j
    k = 0
    for root in range(n):
        if parent[root] != -1:
            continue
        top = 0
        stack[0] = root
        while top >= 0:
            p = stack[top]
            child = head[p]
            if child == -1:
                top -= 1
                post[k] = p
                k += 1
            else:
                head[p] = next_[child]
                top += 1
                stack[top] = child
    return k


@jit
def _column_counts(n, c_ptr, c_rows, parent, colcount, first, maxfirst, prevleaf, ancestor):
    """Column counts of L for a postordered C (Gilbert, Ng & Peyton 1994; CSparse cs_counts).

    ``c_ptr``/``c_rows``: lower triangle of C by columns (row i >= j in column j).
    The columns are already in postorder, so post[k] = k.
    """
    for k in range(n):
        first[k] = -1
        maxfirst[k] = -1
        prevleaf[k] = -1
        ancestor[k] = k
    for k in range(n):
        j = k
        colcount[j] = 1 if first[j] == -1 else 0
        while j != -1 and first[j] == -1:
            first[j] = k
            j = parent[j]
    for j in range(n):
        if parent[j] != -1:
            colcount[parent[j]] -= 1
        for p in range(c_ptr[j], c_ptr[j + 1]):
            i = c_rows[p]
            # cs_leaf(i, j): is j a leaf of the i-th row subtree?
            if i <= j or first[j] <= maxfirst[i]:
                continue
            maxfirst[i] = first[j]
            jprev = prevleaf[i]
            prevleaf[i] = j
            colcount[j] += 1
            if jprev != -1:
                q = jprev
                while q != ancestor[q]:
                    q = ancestor[q]
                s = jprev
                while s != q:
                    sparent = ancestor[s]
                    ancestor[s] = q
                    s = sparent
                colcount[q] -= 1
        if parent[j] != -1:
            ancestor[j] = parent[j]
    for j in range(n):
        if parent[j] != -1:
            colcount[parent[j]] += colcount[j]


@jit
def _supernodes(
    n, parent, colcount, nrelax0, nrelax1, nrelax2, zrelax0, zrelax1, zrelax2, super_ptr
):
    """Fundamental supernodes, then relaxed amalgamation; returns the number of supernodes.

    ``super_ptr`` (length >= n + 1) receives the first column of each supernode.
    Columns must be in postorder. Merging follows CHOLMOD's super_symbolic: a
    supernode merges into its parent when the parent follows it immediately and
    the merged block has few enough explicit zeros.
    """
    nchild = np.zeros(n, dtype=np.int64)
    for j in range(n):
        if parent[j] != -1:
            nchild[parent[j]] += 1
    # fundamental supernodes
    fsuper = np.empty(n + 1, dtype=np.int64)
    nf = 0
    for j in range(n):
        if j > 0 and parent[j - 1] == j and colcount[j - 1] == colcount[j] + 1 and nchild[j] == 1:
            continue
        fsuper[nf] = j
        nf += 1
    fsuper[nf] = n
    # supernode of each column, supernodal parent
    col_super = np.empty(n, dtype=np.int64)
    for s in range(nf):
        for j in range(fsuper[s], fsuper[s + 1]):
            col_super[j] = s
    sparent = np.empty(nf, dtype=np.int64)
    nscol = np.empty(nf, dtype=np.int64)
    snz = np.empty(nf, dtype=np.int64)
    zeros = np.zeros(nf, dtype=np.float64)
    merged = np.full(nf, -1, dtype=np.int64)
    for s in range(nf):
        last = fsuper[s + 1] - 1
        sparent[s] = col_super[parent[last]] if parent[last] != -1 else -1
        nscol[s] = fsuper[s + 1] - fsuper[s]
        snz[s] = colcount[fsuper[s]]
    for j in range(nf - 2, -1, -1):
        p = sparent[j]
        if p != j + 1:
            continue
        nscol0 = nscol[j]
        nscol1 = nscol[p]
        ns = nscol0 + nscol1
        lnz0 = snz[j]
        lnz1 = snz[p]
        totzeros = zeros[j] + zeros[p]
        xnewzeros = float(nscol0) * float(nscol1 + lnz1 - lnz0)
        merge = False
        if xnewzeros == 0.0:
            merge = True
        else:
            xtotzeros = totzeros + xnewzeros
            xns = float(ns)
            denom = xns * (xns + 1.0) / 2.0 + xns * float(lnz1 - nscol1)
            z = xtotzeros / denom
            merge = (
                ns <= nrelax0
                or (ns <= nrelax1 and z < zrelax0)
                or (ns <= nrelax2 and z < zrelax1)
                or z < zrelax2
            )
        if merge:
            zeros[j] = totzeros + xnewzeros
            nscol[j] = ns
            snz[j] = nscol0 + lnz1
            sparent[j] = sparent[p]
            merged[p] = j
    ns_out = 0
    for s in range(nf):
        if merged[s] == -1:
            super_ptr[ns_out] = fsuper[s]
            ns_out += 1
    super_ptr[ns_out] = n
    return ns_out


@jit
def _supernode_structure_counts(n, nsuper, super_ptr, parent, colcount, col_super, sparent, nrows):
    """Supernode of each column, supernodal parents and row counts of each supernode.

    The row count of a (relaxed) supernode is its width plus the column count of
    its last column minus one: the last column's structure below the supernode is
    the union of the structures of all its columns below the supernode.
    """
    for s in range(nsuper):
        for j in range(super_ptr[s], super_ptr[s + 1]):
            col_super[j] = s
    for s in range(nsuper):
        last = super_ptr[s + 1] - 1
        sparent[s] = col_super[parent[last]] if parent[last] != -1 else -1
        nrows[s] = (super_ptr[s + 1] - super_ptr[s]) + colcount[last] - 1


@jit
def _supernode_rows(
    n,
    nsuper,
    super_ptr,
    c_ptr,
    c_rows,
    col_super,
    sparent,
    rows_ptr,
    rows,
    mark,
    child_head,
    child_next,
):
    """Row structure of every supernode (sorted), by union over C's columns and children.

    rows_ptr must already hold the offsets from the row counts. Returns 0 or
    ERR_STRUCTURE if a count disagrees with the union (never expected).
    """
    for s in range(nsuper):
        child_head[s] = -1
    for s in range(nsuper - 1, -1, -1):
        p = sparent[s]
        if p != -1:
            child_next[s] = child_head[p]
            child_head[p] = s
    for i in range(n):
        mark[i] = -1
    for s in range(nsuper):
        k1 = super_ptr[s]
        k2 = super_ptr[s + 1]
        pos = rows_ptr[s]
        for j in range(k1, k2):
            rows[pos] = j
            mark[j] = s
            pos += 1
        for j in range(k1, k2):
            for p in range(c_ptr[j], c_ptr[j + 1]):
                i = c_rows[p]
                if i >= k2 and mark[i] != s:
                    mark[i] = s
                    if pos >= rows_ptr[s + 1]:
                        return ERR_STRUCTURE
                    rows[pos] = i
                    pos += 1
        c = child_head[s]
        while c != -1:
            for p in range(rows_ptr[c], rows_ptr[c + 1]):
                i = rows[p]
                if i >= k2 and mark[i] != s:
                    mark[i] = s
                    if pos >= rows_ptr[s + 1]:
                        return ERR_STRUCTURE
                    rows[pos] = i
                    pos += 1
            c = child_next[c]
        if pos != rows_ptr[s + 1]:
            return ERR_STRUCTURE
        # rows below the diagonal block are sorted by insertion sort on short lists,
        # by a counting pass otherwise (kept simple: np.sort on the slice)
        rows[rows_ptr[s] + (k2 - k1) : rows_ptr[s + 1]].sort()
    return OK


@jit
def _scatter_map(n, nsuper, super_ptr, rows_ptr, rows, lx_ptr, c_ptr, c_rows, relpos, dest):
    """dest[q] = position in the factor values of the entry q of C's lower triangle."""
    for s in range(nsuper):
        k1 = super_ptr[s]
        nsrow = rows_ptr[s + 1] - rows_ptr[s]
        for p in range(rows_ptr[s], rows_ptr[s + 1]):
            relpos[rows[p]] = p - rows_ptr[s]
        for j in range(k1, super_ptr[s + 1]):
            base = lx_ptr[s] + (j - k1) * nsrow
            for p in range(c_ptr[j], c_ptr[j + 1]):
                dest[p] = base + relpos[c_rows[p]]


@jit
def _update_workspace_size(nsuper, super_ptr, rows_ptr, rows, col_super):
    """Largest dense update block ndrow2 x ndrow1 any supernode sends to an ancestor."""
    best = 0
    for d in range(nsuper):
        k2 = super_ptr[d + 1]
        p = rows_ptr[d] + (k2 - super_ptr[d])
        pend = rows_ptr[d + 1]
        while p < pend:
            s = col_super[rows[p]]
            s_end = super_ptr[s + 1]
            p2 = p
            while p2 < pend and rows[p2] < s_end:
                p2 += 1
            size = (p2 - p) * (pend - p)
            if size > best:
                best = size
            p = p2
    return best


@jit
def _flop_count(nsuper, super_ptr, rows_ptr):
    """Floating-point operations of the numeric factorization (the usual Σ c_j² count)."""
    flops = 0.0
    for s in range(nsuper):
        nscol = super_ptr[s + 1] - super_ptr[s]
        nsrow = rows_ptr[s + 1] - rows_ptr[s]
        for k in range(nscol):
            c = float(nsrow - k)
            flops += c * c
    return flops
