"""Symbolic analysis for the supernodal Cholesky factorization.

Given the full symmetric pattern of Q (CSC) and a fill-reducing permutation,
compute everything that depends only on the pattern. The permuted matrix
C = Q[perm][:, perm] is never formed: Q stores both triangles, so column perm[k]
of Q holds row and column k of C, read through ``pinv``.

1. a map from each entry (i, j) to its mirror (j, i), for the value checks;
2. the elimination tree and its postorder (Liu 1990), composed into the
   permutation so that supernodes are contiguous;
3. column counts of L (Gilbert, Ng & Peyton 1994, as in CSparse ``cs_counts``);
4. fundamental supernodes and relaxed amalgamation (the rules of CHOLMOD's
   ``cholmod_super_symbolic``: nrelax = 4, 16, 48 and zrelax = 0.8, 0.1, 0.05);
5. the row structure of every supernode and the offsets of its dense
   column-major block in the factor's value array;
6. a scatter map from Q's entries to their positions in the factor, so a
   numeric refactorization starts with a straight copy.

Kernels that can fail return a status pair (see :mod:`._status`); they never raise.
"""

import numpy as np

from ._jit import jit
from ._status import (
    BAD_POINTERS,
    INCONSISTENT,
    INDEX_OUT_OF_RANGE,
    NOT_FINITE,
    NOT_SYMMETRIC,
    OK,
    UNSORTED,
    VALUES_NOT_SYMMETRIC,
)

# Subscripts in the hot loops go through an unsigned cast: Numba then skips the
# negative-index wraparound check (measured 1.5-2x on these sweeps). Only values
# known to be non-negative are cast; -1 sentinels are tested before indexing.
_u = np.uintp


@jit
def _check_compressed(n_major, n_minor, indptr, indices):
    """Validate a compressed (CSC or CSR) structure in one O(nnz) pass, before any kernel
    indexes with it.

    ``indptr`` must have length ``n_major + 1`` (checked by the caller). Returns
    ``(BAD_POINTERS, j)`` if the pointers do not start at 0, decrease at j or overrun
    ``indices``, ``(INDEX_OUT_OF_RANGE, j)`` for an index outside ``[0, n_minor)`` in
    column j, else ``(UNSORTED, j)`` if column j is the first whose indices are not
    strictly increasing (unsorted or duplicated: the structure is usable once
    canonicalized), else ``(OK, -1)``.
    """
    if indptr[0] != 0:
        return BAD_POINTERS, 0
    end = indices.size
    unsorted = -1
    start = indptr[0]
    for j in range(n_major):
        stop = indptr[_u(j + 1)]
        if stop < start or stop > end:
            return BAD_POINTERS, j
        if stop > start:
            # a strictly increasing column needs only its ends checked against the range; the
            # branch-free comparison loop vectorizes (8x faster than testing every entry)
            increasing = True
            for p in range(start + 1, stop):
                if indices[_u(p)] <= indices[_u(p - 1)]:
                    increasing = False
            if increasing:
                if indices[_u(start)] < 0 or indices[_u(stop - 1)] >= n_minor:
                    return INDEX_OUT_OF_RANGE, j
            else:
                if unsorted < 0:
                    unsorted = j
                for p in range(start, stop):
                    i = indices[_u(p)]
                    if i < 0 or i >= n_minor:
                        return INDEX_OUT_OF_RANGE, j
        start = stop
    if unsorted >= 0:
        return UNSORTED, unsorted
    return OK, -1


@jit
def _equal(a, b):
    """True if the 1-D arrays a and b hold the same values (no temporaries, unlike
    ``np.array_equal``)."""
    if a.size != b.size:
        return False
    for p in range(a.size):
        if a[_u(p)] != b[_u(p)]:
            return False
    return True


@jit
def _mirror_map(n, indptr, indices, mirror, cursor, diag_pos):
    """mirror[p] = position of entry (j, i) for the entry p = (i, j); a status pair.

    Requires sorted row indices. One sweep over the columns: entries (j, i) of
    column i are met in increasing j, so a cursor per column finds each mirror.
    The same sweep records ``diag_pos[j]``, the position of entry (j, j) or -1.
    A structurally non-symmetric pattern returns ``(NOT_SYMMETRIC, j)`` with j a
    column whose pattern differs from its row.
    """
    for i in range(n):
        cursor[_u(i)] = indptr[_u(i)]
        diag_pos[_u(i)] = -1
    for j in range(n):
        for p in range(indptr[_u(j)], indptr[_u(j + 1)]):
            i = indices[_u(p)]
            q = cursor[_u(i)]
            if q >= indptr[_u(i + 1)] or indices[_u(q)] != j:
                return NOT_SYMMETRIC, min(i, j)
            mirror[_u(p)] = q
            cursor[_u(i)] = q + 1
            if i == j:
                diag_pos[_u(j)] = p
    return OK, -1


@jit
def _check_values(n, indptr, indices, data, mirror, rtol, diag_pos):
    """Validate numeric values: finite and symmetric to a relative tolerance.

    Returns ``(OK, -1)``, ``(NOT_FINITE, j)`` for a non-finite entry in column j, or
    ``(VALUES_NOT_SYMMETRIC, j)`` for an asymmetric pair in column j. Asymmetry is measured against
    sqrt(|q_ii| |q_jj|), which is invariant under symmetric diagonal scaling.
    ``diag_pos[j]`` is the position of the diagonal entry of column j, or -1.
    """
    for j in range(n):
        for p in range(indptr[_u(j)], indptr[_u(j + 1)]):
            v = data[_u(p)]
            if not np.isfinite(v):
                return NOT_FINITE, j
    for j in range(n):
        for p in range(indptr[_u(j)], indptr[_u(j + 1)]):
            i = indices[_u(p)]
            if i <= j:
                continue
            a = data[_u(p)]
            b = data[_u(mirror[_u(p)])]
            if a != b:
                di = abs(data[_u(diag_pos[_u(i)])]) if diag_pos[_u(i)] >= 0 else 0.0
                dj = abs(data[_u(diag_pos[_u(j)])]) if diag_pos[_u(j)] >= 0 else 0.0
                scale = np.sqrt(di * dj)
                scale = max(scale, abs(a), abs(b)) if scale == 0.0 else scale
                if abs(a - b) > rtol * scale:
                    return VALUES_NOT_SYMMETRIC, j
    return OK, -1


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
def _supernodes(
    n,
    parent,
    colcount,
    nrelax0,
    nrelax1,
    nrelax2,
    zrelax0,
    zrelax1,
    zrelax2,
    super_ptr,
    nchild,
    fsuper,
    col_super,
    sparent,
    nscol,
    snz,
    merged,
    zeros,
):
    """Fundamental supernodes, then relaxed amalgamation; returns the number of supernodes.

    ``super_ptr`` (length >= n + 1) receives the first column of each supernode.
    Columns must be in postorder. Merging follows CHOLMOD's super_symbolic: a
    supernode merges into its parent when the parent follows it immediately and
    the merged block has few enough explicit zeros. The other arrays are work
    space: ``fsuper`` of length n + 1, the rest of length n (``zeros`` float64).
    """
    for j in range(n):
        nchild[_u(j)] = 0
    for j in range(n):
        if parent[_u(j)] != -1:
            nchild[_u(parent[_u(j)])] += 1
    # fundamental supernodes
    nf = 0
    for j in range(n):
        if (
            j > 0
            and parent[_u(j - 1)] == j
            and colcount[_u(j - 1)] == colcount[_u(j)] + 1
            and nchild[_u(j)] == 1
        ):
            continue
        fsuper[_u(nf)] = j
        nf += 1
    fsuper[_u(nf)] = n
    # supernode of each column, supernodal parent
    for s in range(nf):
        for j in range(fsuper[_u(s)], fsuper[_u(s + 1)]):
            col_super[_u(j)] = s
    for s in range(nf):
        last = fsuper[_u(s + 1)] - 1
        sparent[_u(s)] = col_super[_u(parent[_u(last)])] if parent[_u(last)] != -1 else -1
        nscol[_u(s)] = fsuper[_u(s + 1)] - fsuper[_u(s)]
        snz[_u(s)] = colcount[_u(fsuper[_u(s)])]
        zeros[_u(s)] = 0.0
        merged[_u(s)] = -1
    # relaxed amalgamation, exactly as cholmod_super_symbolic: from the last supernode
    # down, the current parent of s (its original parent, followed through merges with
    # path compression) merges into s when it is s + 1 and the zeros stay few enough
    for s in range(nf - 2, -1, -1):
        ss = sparent[_u(s)]
        if ss == -1:
            continue
        while merged[_u(ss)] != -1:
            ss = merged[_u(ss)]
        current = ss
        ss = sparent[_u(s)]
        while merged[_u(ss)] != -1:
            snext = merged[_u(ss)]
            merged[_u(ss)] = current
            ss = snext
        if current != s + 1:
            continue
        nscol0 = nscol[_u(s)]
        nscol1 = nscol[_u(s + 1)]
        ns = nscol0 + nscol1
        totzeros = zeros[_u(s + 1)]
        if ns <= nrelax0:
            merge = True
        else:
            lnz0 = float(snz[_u(s)])
            lnz1 = float(snz[_u(s + 1)])
            xnewzeros = float(nscol0) * (lnz1 + float(nscol0) - lnz0)
            if xnewzeros == 0.0:
                merge = True
            else:
                xns = float(ns)
                xtotsize = xns * (xns + 1.0) / 2.0 + xns * (lnz1 - float(nscol1))
                z = (totzeros + xnewzeros) / xtotsize
                totzeros += xnewzeros
                merge = (
                    (ns <= nrelax1 and z < zrelax0)
                    or (ns <= nrelax2 and z < zrelax1)
                    or z < zrelax2
                )
        if merge:
            zeros[_u(s)] = totzeros
            merged[_u(s + 1)] = s
            snz[_u(s)] = nscol0 + snz[_u(s + 1)]
            nscol[_u(s)] += nscol1
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
def _compose_postorder(n, parent, post, perm_in, ipost, perm, pinv, parent_post):
    """Relabel the elimination tree by its postorder ``post`` and compose the permutation.

    ``perm[k] = perm_in[post[k]]``, ``pinv`` its inverse, and ``parent_post`` the tree
    in the new labels; ``ipost`` is work space of length n.
    """
    for k in range(n):
        ipost[_u(post[_u(k)])] = k
    for k in range(n):
        old = post[_u(k)]
        p = parent[_u(old)]
        parent_post[_u(k)] = ipost[_u(p)] if p >= 0 else -1
        j = perm_in[_u(old)]
        perm[_u(k)] = j
        pinv[_u(j)] = k


@jit
def _supernode_offsets(nsuper, super_ptr, nrows, rows_ptr, lx_ptr):
    """Prefix sums of the supernodes' row counts and block sizes; returns nnz(L)
    (stored entries: each diagonal block's strictly upper triangle is not counted)."""
    rows_ptr[0] = 0
    lx_ptr[0] = 0
    nnz = 0
    for s in range(nsuper):
        ncol = super_ptr[_u(s + 1)] - super_ptr[_u(s)]
        nrow = nrows[_u(s)]
        rows_ptr[_u(s + 1)] = rows_ptr[_u(s)] + nrow
        lx_ptr[_u(s + 1)] = lx_ptr[_u(s)] + nrow * ncol
        nnz += nrow * ncol - ncol * (ncol - 1) // 2
    return nnz


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


# -- kernels reading Q through the permutation: in column perm[k] of Q, the entries with
# pinv[row] < k are the strictly upper part of column k of C, the others its lower part.


@jit
def _etree_q(n, indptr, indices, perm, pinv, parent, ancestor):
    """Elimination tree of C = P Q Pᵀ (Liu's algorithm with path compression)."""
    for k in range(n):
        parent[_u(k)] = -1
        ancestor[_u(k)] = -1
        j = perm[_u(k)]
        for p in range(indptr[_u(j)], indptr[_u(j + 1)]):
            i = pinv[_u(indices[_u(p)])]
            while i != -1 and i < k:
                inext = ancestor[_u(i)]
                ancestor[_u(i)] = k
                if inext == -1:
                    parent[_u(i)] = k
                i = inext


@jit
def _column_counts_q(
    n, indptr, indices, perm, pinv, parent, colcount, first, maxfirst, prevleaf, ancestor, c_ptr
):
    """Column counts of L for a postordered C (Gilbert, Ng & Peyton 1994; CSparse cs_counts),
    reading the lower part of column j of C from column perm[j] of Q.

    The same sweep fills ``c_ptr``, the column pointers of C's lower triangle.
    """
    for k in range(n):
        first[_u(k)] = -1
        maxfirst[_u(k)] = -1
        prevleaf[_u(k)] = -1
        ancestor[_u(k)] = k
    for k in range(n):
        j = k
        colcount[_u(j)] = 1 if first[_u(j)] == -1 else 0
        while j != -1 and first[_u(j)] == -1:
            first[_u(j)] = k
            j = parent[_u(j)]
    c_ptr[_u(0)] = 0
    for j in range(n):
        if parent[_u(j)] != -1:
            colcount[_u(parent[_u(j)])] -= 1
        col = perm[_u(j)]
        lower = 0
        for p in range(indptr[_u(col)], indptr[_u(col + 1)]):
            i = pinv[_u(indices[_u(p)])]
            if i >= j:
                lower += 1
            # cs_leaf(i, j): is j a leaf of the i-th row subtree?
            if i <= j or first[_u(j)] <= maxfirst[_u(i)]:
                continue
            maxfirst[_u(i)] = first[_u(j)]
            jprev = prevleaf[_u(i)]
            prevleaf[_u(i)] = j
            colcount[_u(j)] += 1
            if jprev != -1:
                q = jprev
                while q != ancestor[_u(q)]:
                    q = ancestor[_u(q)]
                s = jprev
                while s != q:
                    sparent = ancestor[_u(s)]
                    ancestor[_u(s)] = q
                    s = sparent
                colcount[_u(q)] -= 1
        c_ptr[_u(j + 1)] = c_ptr[_u(j)] + lower
        if parent[_u(j)] != -1:
            ancestor[_u(j)] = parent[_u(j)]
    for j in range(n):
        if parent[_u(j)] != -1:
            colcount[_u(parent[_u(j)])] += colcount[_u(j)]


@jit
def _supernode_rows_q(
    n,
    nsuper,
    super_ptr,
    indptr,
    indices,
    perm,
    pinv,
    col_super,
    sparent,
    rows_ptr,
    rows,
    flag,
    pos,
):
    """Sorted row structure of every supernode (CHOLMOD's super_symbolic).

    Row k belongs to supernode s iff s lies on the path of the supernodal tree
    from the supernode of some i < k with c_ik != 0 up to (not including) the
    supernode of k. Rows are appended in increasing k, so every list comes out
    sorted. Returns ``(OK, -1)``, or ``(INCONSISTENT, s)`` if the count of supernode s
    disagrees (never expected).
    """
    for s in range(nsuper):
        flag[_u(s)] = -1
        pos[_u(s)] = rows_ptr[_u(s)]
        for j in range(super_ptr[_u(s)], super_ptr[_u(s + 1)]):
            rows[_u(pos[_u(s)])] = j
            pos[_u(s)] += 1
    for k in range(n):
        sk = col_super[_u(k)]
        col = perm[_u(k)]
        for p in range(indptr[_u(col)], indptr[_u(col + 1)]):
            i = pinv[_u(indices[_u(p)])]
            if i >= k:
                continue
            s = col_super[_u(i)]
            while s != -1 and s != sk and flag[_u(s)] != k:
                if pos[_u(s)] >= rows_ptr[_u(s + 1)]:
                    return INCONSISTENT, s
                rows[_u(pos[_u(s)])] = k
                pos[_u(s)] += 1
                flag[_u(s)] = k
                s = sparent[_u(s)]
    for s in range(nsuper):
        if pos[_u(s)] != rows_ptr[_u(s + 1)]:
            return INCONSISTENT, s
    return OK, -1


@jit
def _lower_map_q(
    n,
    nsuper,
    super_ptr,
    rows_ptr,
    rows,
    lx_ptr,
    indptr,
    indices,
    perm,
    pinv,
    c_ptr,
    c_src,
    dest,
    relpos,
):
    """For the lower triangle of C, column by column: the source position in Q's values
    (c_src) and the destination in the factor's values (dest); c_ptr (from
    :func:`_column_counts_q`) delimits the columns."""
    for s in range(nsuper):
        k1 = super_ptr[_u(s)]
        nsrow = rows_ptr[_u(s + 1)] - rows_ptr[_u(s)]
        for p in range(rows_ptr[_u(s)], rows_ptr[_u(s + 1)]):
            relpos[_u(rows[_u(p)])] = p - rows_ptr[_u(s)]
        for j in range(k1, super_ptr[_u(s + 1)]):
            base = lx_ptr[_u(s)] + (j - k1) * nsrow
            q = c_ptr[_u(j)]
            col = perm[_u(j)]
            for p in range(indptr[_u(col)], indptr[_u(col + 1)]):
                i = pinv[_u(indices[_u(p)])]
                if i >= j:
                    c_src[_u(q)] = p
                    dest[_u(q)] = base + relpos[_u(i)]
                    q += 1


@jit
def _subtree_weights(nsuper, sparent, subtree, first):
    """Accumulate ``subtree[s]`` (in: own weights) over each subtree and set ``first[s]``
    (in: s) to the first supernode of s's subtree; supernodes are in postorder."""
    for s in range(nsuper):
        p = sparent[_u(s)]
        if p >= 0:
            subtree[_u(p)] += subtree[_u(s)]
            first[_u(p)] = min(first[_u(p)], first[_u(s)])


@jit
def _factorization_work(nsuper, super_ptr, rows_ptr, rows, col_super, work):
    """Multiply-adds of the left-looking factorization charged to the supernode where
    they happen: its own dense factorization (potrf + trsm) and every update it
    receives from a descendant (syrk + gemm), so a subtree's total is the work done
    while factorizing it."""
    for s in range(nsuper):
        nscol = float(super_ptr[_u(s + 1)] - super_ptr[_u(s)])
        nb = float(rows_ptr[_u(s + 1)] - rows_ptr[_u(s)]) - nscol
        work[_u(s)] = nscol * nscol * nscol / 3.0 + nb * nscol * nscol
    for d in range(nsuper):
        ndcol = super_ptr[_u(d + 1)] - super_ptr[_u(d)]
        p = rows_ptr[_u(d)] + ndcol
        pend = rows_ptr[_u(d + 1)]
        while p < pend:
            s = col_super[_u(rows[_u(p)])]
            s_end = super_ptr[_u(s + 1)]
            p2 = p
            while p2 < pend and rows[_u(p2)] < s_end:
                p2 += 1
            ndrow1 = float(p2 - p)
            ndrow2 = float(pend - p)
            work[_u(s)] += float(ndcol) * ndrow1 * (ndrow2 - 0.5 * ndrow1)
            p = p2
