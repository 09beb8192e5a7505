"""Numeric supernodal Cholesky factorization, triangular solves and log-determinant.

Factor storage (shared with selected inversion): supernode s owns columns
``super_ptr[s] .. super_ptr[s+1]-1``; its sorted row indices are
``rows[rows_ptr[s]:rows_ptr[s+1]]`` (its own columns first); its values are a
dense column-major block of ``nsrow x nscol`` doubles at ``lx[lx_ptr[s]:]``
(leading dimension nsrow), of which the upper triangle of the diagonal block is
unused.

The factorization is left-looking (Ng & Peyton 1993; CHOLMOD's
``cholmod_super_numeric``): each supernode gathers the updates of the
descendants that touch it, computed as dense BLAS-3 products (one dgemm for up to
64 target columns, else dsyrk and dgemm) into a work buffer and scattered through
a relative map, then factorizes its diagonal block (dpotrf) and solves for the rows
below (dtrsm; plain column sweeps for supernodes of up to 64 columns, where they
beat OpenBLAS's dtrsm).
"""

import numpy as np

from ..bindings import blas
from ._jit import jit
from ._status import NOT_POSITIVE_DEFINITE, OK

# Subscripts in hot loops go through an unsigned cast so that Numba skips its
# negative-index wraparound check; only values known to be non-negative are cast.
_u = np.uintp

# Below this many multiply-adds an update is done with plain loops: calling BLAS on
# tiny blocks costs more than the arithmetic.
_SMALL_UPDATE = 64
_SMALL_BLOCK = 8
# Up to this many columns a supernode's rows below its diagonal block are solved with
# plain loops (:func:`_solve_below`) instead of dtrsm: OpenBLAS's dtrsm runs these narrow
# blocks at 6-19 GFLOP/s, the loops at 14-29 (measured on 12-64 columns, 60-400 rows).
_SMALL_TRSM = 64
# Up to this many target columns (ndrow1) a descendant's update is one dgemm of the whole
# ndrow2 x ndrow1 block, the strictly upper part of its top square computed and not used,
# instead of dsyrk for the top square and dgemm for the rows below: the flops a little up,
# one BLAS call instead of two and no dsyrk on narrow blocks (8-12 % faster factorizations
# of the SPDE-type lattice precisions at 100² and 250²).
_ONE_GEMM = 64


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
def _gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, ints, dbls, chars):
    """c ← alpha op(a) op(b) + beta c (dgemm). ``ta``, ``tb`` index ``chars`` (1 'N', 2 'T'),
    ``alpha``, ``beta`` index ``dbls`` (0: 1, 1: 0, 2: −1); the sizes go through
    ``ints[8:14]``."""
    ints[_u(8)] = m
    ints[_u(9)] = n
    ints[_u(10)] = k
    ints[_u(11)] = lda
    ints[_u(12)] = ldb
    ints[_u(13)] = ldc
    blas.dgemm(
        chars[ta:].ctypes,
        chars[tb:].ctypes,
        ints[8:].ctypes,
        ints[9:].ctypes,
        ints[10:].ctypes,
        dbls[alpha:].ctypes,
        a.ctypes,
        ints[11:].ctypes,
        b.ctypes,
        ints[12:].ctypes,
        dbls[beta:].ctypes,
        c.ctypes,
        ints[13:].ctypes,
    )


@jit
def _gemv(trans, m, n, alpha, a, lda, x, beta, y, ints, dbls, chars):
    """y ← alpha op(a) x + beta y (dgemv, unit strides; ints[6] = 1). ``trans`` indexes
    ``chars`` (1 'N', 2 'T'), ``alpha``, ``beta`` index ``dbls`` (0: 1, 1: 0, 2: −1); the
    sizes go through ``ints[8:11]``."""
    ints[_u(8)] = m
    ints[_u(9)] = n
    ints[_u(10)] = lda
    blas.dgemv(
        chars[trans:].ctypes,
        ints[8:].ctypes,
        ints[9:].ctypes,
        dbls[alpha:].ctypes,
        a.ctypes,
        ints[10:].ctypes,
        x.ctypes,
        ints[6:].ctypes,
        dbls[beta:].ctypes,
        y.ctypes,
        ints[6:].ctypes,
    )


@jit
def _solve_below(lx, psx, nsrow, nscol):
    """X ← X L₁₁⁻ᵀ for the rows below a factorized diagonal block L₁₁ (lx[psx:], column
    major, leading dimension nsrow): column j of X is (x_j − Σ_{k<j} L₁₁[j, k] x_k) / L₁₁[j, j],
    four columns k per sweep over the rows (contiguous, vectorized)."""
    m = nsrow - nscol
    for j in range(nscol):
        cj = psx + j * nsrow + nscol
        k = 0
        while k + 4 <= j:
            c0 = psx + k * nsrow
            c1 = c0 + nsrow
            c2 = c1 + nsrow
            c3 = c2 + nsrow
            l0 = lx[_u(c0 + j)]
            l1 = lx[_u(c1 + j)]
            l2 = lx[_u(c2 + j)]
            l3 = lx[_u(c3 + j)]
            c0 += nscol
            c1 += nscol
            c2 += nscol
            c3 += nscol
            for i in range(m):
                lx[_u(cj + i)] = (
                    lx[_u(cj + i)]
                    - l0 * lx[_u(c0 + i)]
                    - l1 * lx[_u(c1 + i)]
                    - l2 * lx[_u(c2 + i)]
                    - l3 * lx[_u(c3 + i)]
                )
            k += 4
        while k < j:
            c0 = psx + k * nsrow
            l0 = lx[_u(c0 + j)]
            c0 += nscol
            for i in range(m):
                lx[_u(cj + i)] -= l0 * lx[_u(c0 + i)]
            k += 1
        djj = 1.0 / lx[_u(psx + j * nsrow + j)]
        for i in range(m):
            lx[_u(cj + i)] *= djj


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
    relrow,
    head,
    next_,
    lpos,
    cwork,
    order,
    owner,
    me,
    logsum,
):
    """Numeric supernodal Cholesky of the supernodes ``order`` (increasing); returns
    ``(OK, -1)``, or ``(NOT_POSITIVE_DEFINITE, k)`` with k the failing column (permuted).
    On success ``logsum[0]`` is Σ log L_jj over the columns of ``order``, summed in their
    order as each diagonal block is finished (still in cache: a separate pass over the
    diagonal misses the cache once per column).

    Parameters are raw arrays from the symbolic analysis; ``qdata`` are Q's values
    (in Q's own CSC order), copied into the factor through ``c_src``/``dest``.
    ``cwork`` must hold the largest update block. ``head`` (-1 before the first call)
    links each supernode to the descendants that still have to update it.

    Independent subtrees can be factorized concurrently, each call with its own
    ``relmap``, ``relrow`` and ``cwork``: a call for the supernodes of owner ``me``
    only links descendants into the lists of targets t with ``owner[t] == me``; links
    into other owners' supernodes (the ancestors of the subtrees) are left to
    :func:`_link_pending`, called before those ancestors are factorized.
    """
    ints = np.empty(16, dtype=np.int32)
    dbls = np.empty(3, dtype=np.float64)
    chars = np.empty(4, dtype=np.int8)
    _blas_consts(ints, dbls, chars)
    consts = (ints, dbls, chars)
    total = 0.0
    for idx in range(order.size):
        s = order[_u(idx)]
        k1 = super_ptr[_u(s)]
        k2 = super_ptr[_u(s + 1)]
        nscol = k2 - k1
        psi = rows_ptr[_u(s)]
        nsrow = rows_ptr[_u(s + 1)] - psi
        psx = lx_ptr[_u(s)]
        # assemble Q's columns into the (zeroed) block
        for p in range(psx, psx + nsrow * nscol):
            lx[_u(p)] = 0.0
        for q in range(c_ptr[_u(k1)], c_ptr[_u(k2)]):
            lx[_u(dest[_u(q)])] = qdata[_u(c_src[_u(q)])]
        for i in range(nsrow):
            relmap[_u(rows[_u(psi + i)])] = i
        # updates from descendants
        d = head[_u(s)]
        while d != -1:
            dnext = next_[_u(d)]
            pdi = rows_ptr[_u(d)]
            pdend = rows_ptr[_u(d + 1)]
            ndrow = pdend - pdi
            ndcol = super_ptr[_u(d + 1)] - super_ptr[_u(d)]
            pdx = lx_ptr[_u(d)]
            pdi1 = pdi + lpos[_u(d)]
            pdi2 = pdi1
            while pdi2 < pdend and rows[_u(pdi2)] < k2:
                pdi2 += 1
            ndrow1 = pdi2 - pdi1
            ndrow2 = pdend - pdi1
            ndrow3 = ndrow2 - ndrow1
            off = pdx + (pdi1 - pdi)
            # relative map (CHOLMOD's RelativeMap): row ii of the update goes to local row
            # relrow[ii] of s; computed once per (d, s) so the scatter reads it sequentially
            for ii in range(ndrow2):
                relrow[_u(ii)] = relmap[_u(rows[_u(pdi1 + ii)])]
            if ndrow1 * ndrow2 * ndcol <= _SMALL_UPDATE or ndcol < 2:
                # direct scatter: C[ii, jj] = sum_k L_d[ii, k] L_d[jj, k]
                for jj in range(ndrow1):
                    tcol = psx + relrow[_u(jj)] * nsrow
                    for ii in range(jj, ndrow2):
                        acc = 0.0
                        for k in range(ndcol):
                            acc += lx[_u(off + k * ndrow + ii)] * lx[_u(off + k * ndrow + jj)]
                        lx[_u(tcol + relrow[_u(ii)])] -= acc
            else:
                # C = L_d[pdi1:pdend, :] L_d[pdi1:pdi2, :]^T into cwork (ldc = ndrow2)
                if ndrow1 <= _ONE_GEMM:
                    a, c = lx[off:], cwork
                    _gemm(1, 2, ndrow2, ndrow1, ndcol, 0, a, ndrow, a, ndrow, 1, c, ndrow2, *consts)
                else:
                    ints[_u(0)] = ndrow1
                    ints[_u(1)] = ndcol
                    ints[_u(2)] = ndrow
                    ints[_u(3)] = ndrow2
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
                        # the rows below s's: C[ndrow1:] = L_d[pdi2:pdend, :] L_d[pdi1:pdi2, :]^T
                        a, b, c = lx[off + ndrow1 :], lx[off:], cwork[ndrow1:]
                        m3, n1, k = ndrow3, ndrow1, ndcol
                        _gemm(1, 2, m3, n1, k, 0, a, ndrow, b, ndrow, 1, c, ndrow2, *consts)
                for jj in range(ndrow1):
                    tcol = psx + relrow[_u(jj)] * nsrow
                    cbase = jj * ndrow2
                    for ii in range(jj, ndrow2):
                        lx[_u(tcol + relrow[_u(ii)])] -= cwork[_u(cbase + ii)]
            # d's next target
            lpos[_u(d)] = pdi2 - pdi
            if pdi2 < pdend:
                t = col_super[_u(rows[_u(pdi2)])]
                if owner[_u(t)] == me:
                    next_[_u(d)] = head[_u(t)]
                    head[_u(t)] = d
            d = dnext
        # factorize the diagonal block and solve for the rows below
        if nscol <= _SMALL_BLOCK and nsrow <= 4 * _SMALL_BLOCK:
            for j in range(nscol):
                cj = psx + j * nsrow
                djj = lx[_u(cj + j)]
                for k in range(j):
                    ljk = lx[_u(psx + k * nsrow + j)]
                    djj -= ljk * ljk
                if not djj > 0.0:
                    return NOT_POSITIVE_DEFINITE, k1 + j
                djj = np.sqrt(djj)
                lx[_u(cj + j)] = djj
                for i in range(j + 1, nsrow):
                    acc = lx[_u(cj + i)]
                    for k in range(j):
                        acc -= lx[_u(psx + k * nsrow + i)] * lx[_u(psx + k * nsrow + j)]
                    lx[_u(cj + i)] = acc / djj
        else:
            ints[_u(0)] = nscol
            ints[_u(1)] = nsrow
            ints[_u(5)] = 0
            blas.dpotrf(
                chars[0:].ctypes,
                ints[0:].ctypes,
                lx[psx:].ctypes,
                ints[1:].ctypes,
                ints[5:].ctypes,
            )
            if ints[_u(5)] != 0:
                return NOT_POSITIVE_DEFINITE, k1 + ints[_u(5)] - 1
            if nsrow > nscol and nscol <= _SMALL_TRSM:
                _solve_below(lx, psx, nsrow, nscol)
            elif nsrow > nscol:
                ints[_u(2)] = nsrow - nscol
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
        for j in range(nscol):
            total += np.log(lx[_u(psx + j * nsrow + j)])
        if nsrow > nscol:
            lpos[_u(s)] = nscol
            t = col_super[_u(rows[_u(psi + nscol)])]
            if owner[_u(t)] == me:
                next_[_u(s)] = head[_u(t)]
                head[_u(t)] = s
        else:
            lpos[_u(s)] = nsrow  # updates nobody
    logsum[_u(0)] = total
    return OK, -1


@jit
def _link_pending(order, owner, rows_ptr, rows, col_super, head, next_, lpos):
    """Link each supernode d of ``order`` whose next target t has another owner into t's
    list (the step :func:`_factorize` leaves out across independent subtrees)."""
    for idx in range(order.size):
        d = order[_u(idx)]
        p = rows_ptr[_u(d)] + lpos[_u(d)]
        if p < rows_ptr[_u(d + 1)]:
            t = col_super[_u(rows[_u(p)])]
            if owner[_u(t)] != owner[_u(d)]:
                next_[_u(d)] = head[_u(t)]
                head[_u(t)] = d


@jit
def _max_rows(nsuper, rows_ptr):
    best = 0
    for s in range(nsuper):
        best = max(best, rows_ptr[s + 1] - rows_ptr[s])
    return best


# With several right-hand sides a supernode's solve goes through BLAS (dtrsm/dgemm) once its
# block has this many entries (nsrow x nscol); below that the call overhead exceeds the
# arithmetic and plain loops are used.
_SOLVE_BLAS = 160

# One right-hand side: supernodes of up to this many columns take plain loops in storage
# order (:func:`_vector_forward`, :func:`_vector_backward`), wider ones dgemv on column
# panels (:func:`_diag_vector_solve`) and on the rows below, whose vectorized kernels win
# once the blocks are wide (a dense 2000 x 2000 factor, warm: loops 0.83 and 1.45 ms forward
# and backward, dgemv 0.57 and 0.50; the 100², 250² and 500² SPDE-type H, caches flushed:
# forward 3-5 %, backward 12-18 % faster with these widths than with loops throughout).
_LOOPS_FORWARD = 128
_LOOPS_BACKWARD = 64


@jit
def _solve_consts(ints, dbls, chars):
    # chars: 'L', 'N', 'T', 'R'; dbls: 1.0, 0.0, -1.0; ints[6] = 1 (unit stride)
    _blas_consts(ints, dbls, chars)
    ints[6] = 1


@jit
def _contiguous_below(rows, psi, nscol, nsrow):
    """True if the rows below a supernode's diagonal block are consecutive (their part of
    the right-hand side is then one contiguous slice: no gather or scatter)."""
    return rows[_u(psi + nsrow - 1)] - rows[_u(psi + nscol)] == nsrow - nscol - 1


@jit
def _vector_forward(lx, psx, nsrow, nscol, v):
    """One right-hand side through a supernode (column-oriented forward substitution, Golub &
    Van Loan 2013, Alg. 3.1.3): for each column j in turn v_j ← v_j / L_jj, then
    v_i ← v_i − L_ij v_j for every row i > j of the block, the rows below the diagonal block
    included. On entry v[:nscol] holds the supernode's part of the right-hand side and
    v[nscol:nsrow] zeros; on exit v[:nscol] = L₁⁻¹ v[:nscol] and v[nscol:] = −L₂ v[:nscol].

    The block is read once, column after column at increasing addresses (the whole forward
    pass over L is then one ascending stream), and the update of a column is an axpy the
    compiler vectorizes. dgemv on these blocks (most 5–16 columns by 20–60 rows) reads them
    at half the rate: 250² SPDE-type H, forward pass 5.8 → 2.6 ms.
    """
    for j in range(nscol):
        cj = psx + j * nsrow
        vj = v[_u(j)] / lx[_u(cj + j)]
        v[_u(j)] = vj
        for i in range(j + 1, nsrow):
            v[_u(i)] -= lx[_u(cj + i)] * vj


@jit
def _vector_backward(lx, psx, nsrow, nscol, v):
    """One right-hand side through a supernode of Lᵀ (dot-product back substitution,
    Golub & Van Loan 2013, Alg. 3.1.2 on Lᵀ): for the columns j from last to first,
    v_j ← (v_j − Σ_{i>j} L_ij v_i) / L_jj over every row i of the block. On entry v[:nscol]
    holds the supernode's part of the right-hand side and v[nscol:nsrow] the solution's
    rows below (gathered); on exit v[:nscol] = L₁⁻ᵀ (v[:nscol] − L₂ᵀ v[nscol:]).

    Each column is read from its last row up, so the backward pass over L (supernodes and
    columns last to first) runs at descending addresses throughout: blocks read
    last-to-first but each upwards, as dgemv('T') does, stream at a fifth of the rate
    (250² SPDE-type H, a plain sum over the blocks in that order: 8.2 ms against 1.6 ms).
    The sum runs on four partial sums (strict IEEE order allows no vectorized reduction),
    those of the rows nearest the diagonal, solved last, added last.
    """
    for j in range(nscol - 1, -1, -1):
        cj = psx + j * nsrow
        i = nsrow - 1
        a0 = 0.0
        a1 = 0.0
        a2 = 0.0
        a3 = 0.0
        while i >= j + 4:
            a0 += lx[_u(cj + i)] * v[_u(i)]
            a1 += lx[_u(cj + i - 1)] * v[_u(i - 1)]
            a2 += lx[_u(cj + i - 2)] * v[_u(i - 2)]
            a3 += lx[_u(cj + i - 3)] * v[_u(i - 3)]
            i -= 4
        acc = v[_u(j)] - ((a0 + a1) + (a2 + a3))
        while i > j:
            acc -= lx[_u(cj + i)] * v[_u(i)]
            i -= 1
        v[_u(j)] = acc / lx[_u(cj + j)]


# Width of the column panels of a diagonal block in the one-right-hand-side solve: the
# small triangles by loops, the rest of each panel by dgemv (OpenBLAS's dtrsv reads L at
# under half dgemv's rate: 500² SPDE forward pass, 16 % of L's entries in diagonal
# triangles, 8 of 35 ms)
_PANEL = 32


@jit
def _diag_vector_solve(lx, psx, nsrow, nscol, xs, trans, ints, dbls, chars):
    """xs ← L₁⁻¹ xs (``trans`` = 1) or L₁⁻ᵀ xs (``trans`` = 2) for one right-hand side, in
    panels of ``_PANEL`` columns."""
    if trans == 1:
        for p0 in range(0, nscol, _PANEL):
            p1 = min(p0 + _PANEL, nscol)
            for j in range(p0, p1):
                cj = psx + j * nsrow
                xj = xs[_u(j), _u(0)] / lx[_u(cj + j)]
                xs[_u(j), _u(0)] = xj
                for i in range(j + 1, p1):
                    xs[_u(i), _u(0)] -= lx[_u(cj + i)] * xj
            if p1 < nscol:
                a = lx[psx + p0 * nsrow + p1 :]
                _gemv(1, nscol - p1, p1 - p0, 2, a, nsrow, xs[p0:], 0, xs[p1:], ints, dbls, chars)
    else:
        last = ((nscol - 1) // _PANEL) * _PANEL
        for p0 in range(last, -1, -_PANEL):
            p1 = min(p0 + _PANEL, nscol)
            if p1 < nscol:
                a = lx[psx + p0 * nsrow + p1 :]
                _gemv(2, nscol - p1, p1 - p0, 2, a, nsrow, xs[p1:], 0, xs[p0:], ints, dbls, chars)
            for j in range(p1 - 1, p0 - 1, -1):
                cj = psx + j * nsrow
                acc = xs[_u(j), _u(0)]
                for i in range(j + 1, p1):
                    acc -= lx[_u(cj + i)] * xs[_u(i), _u(0)]
                xs[_u(j), _u(0)] = acc / lx[_u(cj + j)]


@jit
def _diag_block_solve(lx, psx, xs, k, trans, ints, dbls, chars):
    """xs ← L₁⁻¹ xs (``trans`` = 1) or L₁⁻ᵀ xs (``trans`` = 2) for the diagonal block at
    ``lx[psx:]`` (ints[0] = nscol, ints[1] = nsrow, ints[3] = k); xs row-major (nscol, k),
    so for k > 1 the dtrsm acts on xsᵀ from the right with the other transposition."""
    if k == 1:
        _diag_vector_solve(lx, psx, ints[_u(1)], ints[_u(0)], xs, trans, ints, dbls, chars)
    else:
        blas.dtrsm(
            chars[3:].ctypes,
            chars[0:].ctypes,
            chars[3 - trans :].ctypes,
            chars[1:].ctypes,
            ints[3:].ctypes,
            ints[0:].ctypes,
            dbls[0:].ctypes,
            lx[psx:].ctypes,
            ints[1:].ctypes,
            xs.ctypes,
            ints[3:].ctypes,
        )


@jit
def _panel_product(lx, pl, src, dst, k, transposed, alpha, beta, ints, dbls, chars):
    """dst ← alpha L₂ src + beta dst, or with L₂ᵀ when ``transposed``, for the block L₂ of
    the rows below a diagonal block (ints[2] x ints[0] at ``lx[pl:]``, leading dimension
    ints[1]); ``alpha``, ``beta`` index ``dbls``; src and dst row-major with k columns (for
    k > 1 the dgemm works on their transposes: dstᵀ ← alpha srcᵀ L₂ᵀ + beta dstᵀ, or
    srcᵀ L₂)."""
    if k == 1:
        trans = 2 if transposed else 1
        m, n, ld = ints[_u(2)], ints[_u(0)], ints[_u(1)]
        _gemv(trans, m, n, alpha, lx[pl:], ld, src, beta, dst, ints, dbls, chars)
    else:
        n = ints[_u(0 if transposed else 2)]
        inner = ints[_u(2 if transposed else 0)]
        a = lx[pl:]
        tb = 1 if transposed else 2
        _gemm(1, tb, k, n, inner, alpha, src, k, a, ints[_u(1)], beta, dst, k, ints, dbls, chars)


@jit
def _scatter_below(x, out, work, base, sign, rows, psi, nscol, nb, owner, col_super, me):
    """x[row_i] += sign · work[base + i] for the rows below a supernode (i < nb), or into
    ``out`` for the rows of supernodes with another owner (see :func:`_forward_solve`)."""
    k = x.shape[_u(1)]
    for i in range(nb):
        ri = rows[_u(psi + nscol + i)]
        target = x if me < 0 or owner[_u(col_super[_u(ri)])] == me else out
        for r in range(k):
            target[_u(ri), _u(r)] += sign * work[_u(base + i), _u(r)]


@jit
def _forward_solve(
    super_ptr, rows_ptr, rows, lx_ptr, lx, x, work, order, owner, col_super, me, out
):
    """Solve L y = b in place for the supernodes ``order`` (increasing); x has shape
    (n, k), C-contiguous, rows in factor order; ``work`` C-contiguous with at least nsrow
    rows and k columns.

    One right-hand side, supernodes of up to ``_LOOPS_FORWARD`` columns: the right-hand
    side's part is copied into ``work`` and solved by :func:`_vector_forward`, which leaves
    −L₂ x_s below it, added into the rows below. Otherwise x_s ← L₁⁻¹ x_s
    (:func:`_diag_vector_solve`, or dtrsm for k > 1), then x_below −= L₂ x_s (dgemv/dgemm),
    written straight into x where the rows below are consecutive and otherwise computed
    into ``work`` and scattered; small supernodes with k > 1 use plain loops.

    Independent subtrees can be solved concurrently (``me`` ≥ 0, each call with its own
    ``work``): the updates of a call to rows of supernodes t with ``owner[t] != me``
    (the subtrees' common ancestors) go to ``out`` instead of x, which may be x itself
    for one of the calls; the caller adds the others before solving the ancestors.
    With ``me`` < 0 every update goes to x.
    """
    k = x.shape[_u(1)]
    v = work.reshape(work.size)  # k == 1: work's one column, contiguous
    ints = np.empty(16, dtype=np.int32)
    dbls = np.empty(3, dtype=np.float64)
    chars = np.empty(4, dtype=np.int8)
    _solve_consts(ints, dbls, chars)
    for idx in range(order.size):
        s = order[_u(idx)]
        k1 = super_ptr[_u(s)]
        nscol = super_ptr[_u(s + 1)] - k1
        psi = rows_ptr[_u(s)]
        nsrow = rows_ptr[_u(s + 1)] - psi
        nb = nsrow - nscol
        psx = lx_ptr[_u(s)]
        if k == 1 and nscol <= _LOOPS_FORWARD:
            for i in range(nscol):
                v[_u(i)] = x[_u(k1 + i), _u(0)]
            for i in range(nscol, nsrow):
                v[_u(i)] = 0.0
            _vector_forward(lx, psx, nsrow, nscol, v)
            for i in range(nscol):
                x[_u(k1 + i), _u(0)] = v[_u(i)]
            _scatter_below(x, out, work, nscol, 1.0, rows, psi, nscol, nb, owner, col_super, me)
            continue
        if nsrow * nscol < _SOLVE_BLAS:
            for j in range(nscol):
                cj = psx + j * nsrow
                inv = 1.0 / lx[_u(cj + j)]
                row_j = k1 + j
                for r in range(k):
                    x[_u(row_j), _u(r)] *= inv
                for i in range(j + 1, nscol):
                    lij = lx[_u(cj + i)]
                    for r in range(k):
                        x[_u(k1 + i), _u(r)] -= lij * x[_u(row_j), _u(r)]
            if nb == 0:
                continue
            for i in range(nb):
                for r in range(k):
                    work[_u(i), _u(r)] = 0.0
            for j in range(nscol):
                cj = psx + j * nsrow + nscol
                for i in range(nb):
                    lij = lx[_u(cj + i)]
                    for r in range(k):
                        work[_u(i), _u(r)] += lij * x[_u(k1 + j), _u(r)]
        else:
            ints[_u(0)] = nscol
            ints[_u(1)] = nsrow
            ints[_u(2)] = nb
            ints[_u(3)] = k
            _diag_block_solve(lx, psx, x[k1:], k, 1, ints, dbls, chars)
            if nb == 0:
                continue
            r0 = rows[_u(psi + nscol)]
            direct = _contiguous_below(rows, psi, nscol, nsrow) and (
                me < 0 or owner[_u(col_super[_u(rows[_u(psi + nsrow - 1)])])] == me
            )
            # y = alpha L₂ x_s + beta y: into x (-1, 1) or into work (1, 0)
            alpha = 2 if direct else 0
            beta = 0 if direct else 1
            target = x[r0:] if direct else work
            _panel_product(
                lx, psx + nscol, x[k1:], target, k, False, alpha, beta, ints, dbls, chars
            )
            if direct:
                continue
        _scatter_below(x, out, work, 0, -1.0, rows, psi, nscol, nb, owner, col_super, me)


@jit
def _backward_solve(super_ptr, rows_ptr, rows, lx_ptr, lx, x, work, order):
    """Solve Lᵀ z = y in place for the supernodes ``order`` (taken last to first); x has
    shape (n, k), C-contiguous, rows in factor order; ``work`` C-contiguous with at least
    nsrow rows and k columns.

    One right-hand side, supernodes of up to ``_LOOPS_BACKWARD`` columns: its part of x and
    the rows below (gathered) are copied into ``work`` and solved by
    :func:`_vector_backward`. Otherwise x_s −= L₂ᵀ x_below (dgemv/dgemm, reading x_below in
    place where its rows are consecutive, else gathered into ``work`` first), then
    x_s ← L₁⁻ᵀ x_s (:func:`_diag_vector_solve`, or dtrsm); small supernodes with k > 1 use
    plain loops. A call only writes its own supernodes' rows and reads those of their
    ancestors, so independent subtrees can be solved concurrently (each call with its own
    ``work``) once the ancestors are done.
    """
    k = x.shape[_u(1)]
    v = work.reshape(work.size)  # k == 1: work's one column, contiguous
    ints = np.empty(16, dtype=np.int32)
    dbls = np.empty(3, dtype=np.float64)
    chars = np.empty(4, dtype=np.int8)
    _solve_consts(ints, dbls, chars)
    for idx in range(order.size - 1, -1, -1):
        s = order[_u(idx)]
        k1 = super_ptr[_u(s)]
        nscol = super_ptr[_u(s + 1)] - k1
        psi = rows_ptr[_u(s)]
        nsrow = rows_ptr[_u(s + 1)] - psi
        nb = nsrow - nscol
        psx = lx_ptr[_u(s)]
        if k == 1 and nscol <= _LOOPS_BACKWARD:
            for i in range(nscol):
                v[_u(i)] = x[_u(k1 + i), _u(0)]
            for i in range(nscol, nsrow):
                v[_u(i)] = x[_u(rows[_u(psi + i)]), _u(0)]
            _vector_backward(lx, psx, nsrow, nscol, v)
            for i in range(nscol):
                x[_u(k1 + i), _u(0)] = v[_u(i)]
            continue
        if nsrow * nscol < _SOLVE_BLAS:
            if nb > 0:
                for i in range(nb):
                    ri = rows[_u(psi + nscol + i)]
                    for r in range(k):
                        work[_u(i), _u(r)] = x[_u(ri), _u(r)]
                for j in range(nscol):
                    cj = psx + j * nsrow + nscol
                    for i in range(nb):
                        lij = lx[_u(cj + i)]
                        for r in range(k):
                            x[_u(k1 + j), _u(r)] -= lij * work[_u(i), _u(r)]
            for j in range(nscol - 1, -1, -1):
                cj = psx + j * nsrow
                row_j = k1 + j
                for i in range(j + 1, nscol):
                    lij = lx[_u(cj + i)]
                    for r in range(k):
                        x[_u(row_j), _u(r)] -= lij * x[_u(k1 + i), _u(r)]
                inv = 1.0 / lx[_u(cj + j)]
                for r in range(k):
                    x[_u(row_j), _u(r)] *= inv
            continue
        ints[_u(0)] = nscol
        ints[_u(1)] = nsrow
        ints[_u(2)] = nb
        ints[_u(3)] = k
        if nb > 0:
            if _contiguous_below(rows, psi, nscol, nsrow):
                source = x[rows[_u(psi + nscol)] :]
            else:
                for i in range(nb):
                    ri = rows[_u(psi + nscol + i)]
                    for r in range(k):
                        work[_u(i), _u(r)] = x[_u(ri), _u(r)]
                source = work
            _panel_product(lx, psx + nscol, source, x[k1:], k, True, 2, 0, ints, dbls, chars)
        _diag_block_solve(lx, psx, x[k1:], k, 2, ints, dbls, chars)


@jit
def _permute_rows(src, perm, out):
    """out[i, :] = src[perm[i], :] (src and out C-contiguous; one column as a vector: 2.6x
    faster than the loop over the rows' one entry, 27 against 71 µs at n = 62,501)."""
    k = src.shape[_u(1)]
    if k == 1:
        src1 = src.reshape(src.size)
        out1 = out.reshape(out.size)
        for i in range(perm.size):
            out1[_u(i)] = src1[_u(perm[_u(i)])]
        return
    for i in range(perm.size):
        for r in range(k):
            out[_u(i), _u(r)] = src[_u(perm[_u(i)]), _u(r)]


@jit
def _unpermute_rows(src, perm, out):
    """out[perm[i], :] = src[i, :] (src and out C-contiguous; one column as a vector)."""
    k = src.shape[_u(1)]
    if k == 1:
        src1 = src.reshape(src.size)
        out1 = out.reshape(out.size)
        for i in range(perm.size):
            out1[_u(perm[_u(i)])] = src1[_u(i)]
        return
    for i in range(perm.size):
        for r in range(k):
            out[_u(perm[_u(i)]), _u(r)] = src[_u(i), _u(r)]


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
