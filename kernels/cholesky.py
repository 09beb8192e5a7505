"""Numeric supernodal Cholesky factorization, triangular solves and log-determinant.

Factor storage (shared with selected inversion): supernode s owns columns
``super_ptr[s] .. super_ptr[s+1]-1``; its sorted row indices are
``rows[rows_ptr[s]:rows_ptr[s+1]]`` (its own columns first); its values are a
dense column-major block of ``nsrow x nscol`` doubles at ``lx[lx_ptr[s]:]``
(leading dimension nsrow), of which the upper triangle of the diagonal block is
unused.

The factorization is left-looking (Ng & Peyton 1993; CHOLMOD's
``cholmod_super_numeric``): each supernode gathers the updates of the
descendants that touch it, computed as dense BLAS-3 products (dsyrk/dgemm) into
a work buffer and scattered through a relative map, then factorizes its
diagonal block (dpotrf) and solves for the rows below (dtrsm).
"""

import numpy as np

from ..bindings import blas
from ._jit import jit

# Below this many multiply-adds an update is done with plain loops: calling BLAS on
# tiny blocks costs more than the arithmetic.
_SMALL_UPDATE = 64
_SMALL_BLOCK = 8


@jit
def _blas_consts(ints, dbls, chars):
    # chars: 'L', 'N', 'T', 'R'; dbls: 1.0, 0.0, -1.0
    chars[0] = 76
    chars[1] = 78
    chars[2] = 84
    chars[3] = 82
    dbls[0] = 1.0
    dbls[1] = 0.0
    dbls[2] = -1.0


@jit
def _factorize(
    n,
    nsuper,
    super_ptr,
    rows_ptr,
    rows,
    lx_ptr,
    col_super,
    c_ptr,
    c_src,
    dest,
    qdata,
    lx,
    relmap,
    head,
    next_,
    lpos,
    cwork,
):
    """Numeric supernodal Cholesky; returns -1 on success or the failing column (permuted).

    Parameters are raw arrays from the symbolic analysis; ``qdata`` are Q's values
    (in Q's own CSC order), copied into the factor through ``c_src``/``dest``.
    ``cwork`` must hold the largest update block.
    """
    ints = np.empty(8, dtype=np.int32)
    dbls = np.empty(3, dtype=np.float64)
    chars = np.empty(4, dtype=np.int8)
    _blas_consts(ints, dbls, chars)
    for s in range(nsuper):
        head[s] = -1
    for s in range(nsuper):
        k1 = super_ptr[s]
        k2 = super_ptr[s + 1]
        nscol = k2 - k1
        psi = rows_ptr[s]
        nsrow = rows_ptr[s + 1] - psi
        psx = lx_ptr[s]
        # assemble Q's columns into the (zeroed) block
        for p in range(psx, psx + nsrow * nscol):
            lx[p] = 0.0
        for q in range(c_ptr[k1], c_ptr[k2]):
            lx[dest[q]] = qdata[c_src[q]]
        for i in range(nsrow):
            relmap[rows[psi + i]] = i
        # updates from descendants
        d = head[s]
        while d != -1:
            dnext = next_[d]
            pdi = rows_ptr[d]
            pdend = rows_ptr[d + 1]
            ndrow = pdend - pdi
            ndcol = super_ptr[d + 1] - super_ptr[d]
            pdx = lx_ptr[d]
            pdi1 = pdi + lpos[d]
            pdi2 = pdi1
            while pdi2 < pdend and rows[pdi2] < k2:
                pdi2 += 1
            ndrow1 = pdi2 - pdi1
            ndrow2 = pdend - pdi1
            ndrow3 = ndrow2 - ndrow1
            off = pdx + (pdi1 - pdi)
            if ndrow1 * ndrow2 * ndcol <= _SMALL_UPDATE or ndcol < 2:
                # direct scatter: C[ii, jj] = sum_k L_d[ii, k] L_d[jj, k]
                for jj in range(ndrow1):
                    tcol = psx + (rows[pdi1 + jj] - k1) * nsrow
                    for ii in range(jj, ndrow2):
                        acc = 0.0
                        for k in range(ndcol):
                            acc += lx[off + k * ndrow + ii] * lx[off + k * ndrow + jj]
                        lx[tcol + relmap[rows[pdi1 + ii]]] -= acc
            else:
                # C = L_d[pdi1:pdend, :] L_d[pdi1:pdi2, :]^T into cwork (ldc = ndrow2)
                ints[0] = ndrow1
                ints[1] = ndcol
                ints[2] = ndrow
                ints[3] = ndrow2
                ints[4] = ndrow3
                blas.dsyrk(
                    chars[0:].ctypes,
                    chars[1:].ctypes,
                    ints[0:].ctypes,
                    ints[1:].ctypes,
                    dbls[0:].ctypes,
                    lx[off:].ctypes,
                    ints[2:].ctypes,
                    dbls[1:].ctypes,
                    cwork.ctypes,
                    ints[3:].ctypes,
                )
                if ndrow3 > 0:
                    blas.dgemm(
                        chars[1:].ctypes,
                        chars[2:].ctypes,
                        ints[4:].ctypes,
                        ints[0:].ctypes,
                        ints[1:].ctypes,
                        dbls[0:].ctypes,
                        lx[off + ndrow1 :].ctypes,
                        ints[2:].ctypes,
                        lx[off:].ctypes,
                        ints[2:].ctypes,
                        dbls[1:].ctypes,
                        cwork[ndrow1:].ctypes,
                        ints[3:].ctypes,
                    )
                for jj in range(ndrow1):
                    tcol = psx + (rows[pdi1 + jj] - k1) * nsrow
                    cbase = jj * ndrow2
                    for ii in range(jj, ndrow2):
                        lx[tcol + relmap[rows[pdi1 + ii]]] -= cwork[cbase + ii]
            # d's next target
            lpos[d] = pdi2 - pdi
            if pdi2 < pdend:
                t = col_super[rows[pdi2]]
                next_[d] = head[t]
                head[t] = d
            d = dnext
        # factorize the diagonal block and solve for the rows below
        if nscol <= _SMALL_BLOCK and nsrow <= 4 * _SMALL_BLOCK:
            for j in range(nscol):
                cj = psx + j * nsrow
                djj = lx[cj + j]
                for k in range(j):
                    ljk = lx[psx + k * nsrow + j]
                    djj -= ljk * ljk
                if not djj > 0.0:
                    return k1 + j
                djj = np.sqrt(djj)
                lx[cj + j] = djj
                for i in range(j + 1, nsrow):
                    acc = lx[cj + i]
                    for k in range(j):
                        acc -= lx[psx + k * nsrow + i] * lx[psx + k * nsrow + j]
                    lx[cj + i] = acc / djj
        else:
            ints[0] = nscol
            ints[1] = nsrow
            ints[5] = 0
            blas.dpotrf(
                chars[0:].ctypes,
                ints[0:].ctypes,
                lx[psx:].ctypes,
                ints[1:].ctypes,
                ints[5:].ctypes,
            )
            if ints[5] != 0:
                return k1 + ints[5] - 1
            if nsrow > nscol:
                ints[2] = nsrow - nscol
                blas.dtrsm(
                    chars[3:].ctypes,
                    chars[0:].ctypes,
                    chars[2:].ctypes,
                    chars[1:].ctypes,
                    ints[2:].ctypes,
                    ints[0:].ctypes,
                    dbls[0:].ctypes,
                    lx[psx:].ctypes,
                    ints[1:].ctypes,
                    lx[psx + nscol :].ctypes,
                    ints[1:].ctypes,
                )
        if nsrow > nscol:
            lpos[s] = nscol
            t = col_super[rows[psi + nscol]]
            next_[s] = head[t]
            head[t] = s
    return -1


@jit
def _diag_logsum(nsuper, super_ptr, rows_ptr, lx_ptr, lx):
    """Σ log L_jj (half the log-determinant of Q)."""
    total = 0.0
    for s in range(nsuper):
        nscol = super_ptr[s + 1] - super_ptr[s]
        nsrow = rows_ptr[s + 1] - rows_ptr[s]
        for j in range(nscol):
            total += np.log(lx[lx_ptr[s] + j * nsrow + j])
    return total


@jit
def _max_rows(nsuper, rows_ptr):
    best = 0
    for s in range(nsuper):
        best = max(best, rows_ptr[s + 1] - rows_ptr[s])
    return best


@jit
def _forward_solve(nsuper, super_ptr, rows_ptr, rows, lx_ptr, lx, x, work):
    """Solve L y = b in place; x has shape (n, k), C-contiguous, rows in factor order.

    Per supernode: a dense triangular solve on its own rows, then the update of
    the rows below is accumulated in ``work`` (nsrow x k) column by column of L
    (contiguous reads) and scattered once per row.
    """
    k = x.shape[1]
    for s in range(nsuper):
        k1 = super_ptr[s]
        nscol = super_ptr[s + 1] - k1
        psi = rows_ptr[s]
        nsrow = rows_ptr[s + 1] - psi
        psx = lx_ptr[s]
        for j in range(nscol):
            cj = psx + j * nsrow
            inv = 1.0 / lx[cj + j]
            row_j = k1 + j
            for r in range(k):
                x[row_j, r] *= inv
            for i in range(j + 1, nscol):
                lij = lx[cj + i]
                for r in range(k):
                    x[k1 + i, r] -= lij * x[row_j, r]
        if nsrow == nscol:
            continue
        for i in range(nscol, nsrow):
            for r in range(k):
                work[i, r] = 0.0
        for j in range(nscol):
            cj = psx + j * nsrow
            if k == 1:  # contiguous over i: vectorizes
                xj = x[k1 + j, 0]
                for i in range(nscol, nsrow):
                    work[i, 0] += lx[cj + i] * xj
            else:  # contiguous over the right-hand sides
                for i in range(nscol, nsrow):
                    lij = lx[cj + i]
                    for r in range(k):
                        work[i, r] += lij * x[k1 + j, r]
        for i in range(nscol, nsrow):
            ri = rows[psi + i]
            for r in range(k):
                x[ri, r] -= work[i, r]


@jit
def _backward_solve(nsuper, super_ptr, rows_ptr, rows, lx_ptr, lx, x, work):
    """Solve Lᵀ z = y in place; x has shape (n, k), C-contiguous, rows in factor order.

    Per supernode (last to first): gather the solution at the rows below into
    ``work`` once, subtract L_belowᵀ x_below with contiguous dot products, then a
    dense triangular solve on the supernode's own rows.
    """
    k = x.shape[1]
    for s in range(nsuper - 1, -1, -1):
        k1 = super_ptr[s]
        nscol = super_ptr[s + 1] - k1
        psi = rows_ptr[s]
        nsrow = rows_ptr[s + 1] - psi
        psx = lx_ptr[s]
        if nsrow > nscol:
            for i in range(nscol, nsrow):
                ri = rows[psi + i]
                for r in range(k):
                    work[i, r] = x[ri, r]
            for j in range(nscol):
                cj = psx + j * nsrow
                if k == 1:
                    acc = 0.0
                    for i in range(nscol, nsrow):
                        acc += lx[cj + i] * work[i, 0]
                    x[k1 + j, 0] -= acc
                else:
                    for i in range(nscol, nsrow):
                        lij = lx[cj + i]
                        for r in range(k):
                            x[k1 + j, r] -= lij * work[i, r]
        for j in range(nscol - 1, -1, -1):
            cj = psx + j * nsrow
            row_j = k1 + j
            for i in range(j + 1, nscol):
                lij = lx[cj + i]
                for r in range(k):
                    x[row_j, r] -= lij * x[k1 + i, r]
            inv = 1.0 / lx[cj + j]
            for r in range(k):
                x[row_j, r] *= inv


@jit
def _permute_rows(src, perm, out):
    """out[i, :] = src[perm[i], :]."""
    for i in range(perm.size):
        for r in range(src.shape[1]):
            out[i, r] = src[perm[i], r]


@jit
def _unpermute_rows(src, perm, out):
    """out[perm[i], :] = src[i, :]."""
    for i in range(perm.size):
        for r in range(src.shape[1]):
            out[perm[i], r] = src[i, r]


@jit
def _factor_to_csc(n, nsuper, super_ptr, rows_ptr, rows, lx_ptr, lx, l_ptr, l_rows, l_data):
    """Expand the supernodal factor to a CSC lower-triangular matrix (factor ordering)."""
    pos = 0
    l_ptr[0] = 0
    for s in range(nsuper):
        k1 = super_ptr[s]
        nscol = super_ptr[s + 1] - k1
        psi = rows_ptr[s]
        nsrow = rows_ptr[s + 1] - psi
        for j in range(nscol):
            for i in range(j, nsrow):
                l_rows[pos] = rows[psi + i]
                l_data[pos] = lx[lx_ptr[s] + j * nsrow + i]
                pos += 1
            l_ptr[k1 + j + 1] = pos
