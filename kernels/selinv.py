"""Supernodal selected inversion: the entries of Q⁻¹ on the pattern of L.

Takahashi, Fagan & Chen (1973) / Erisman & Tinney (1975) recursion in the
supernodal form of SelInv (Lin, Yang, Meza et al. 2011) and TMB: with
C = P Q Pᵀ = L Lᵀ and Z = C⁻¹, for each supernode with columns J and rows I
below them, processed from the last supernode to the first,

    M    = L_IJ L_JJ⁻¹
    Z_IJ = −Z_II M
    Z_JJ = (L_JJ L_JJᵀ)⁻¹ − Z_IJᵀ M

where Z_II is gathered from the (already computed) ancestors: the rows I form a
clique of the filled graph, so every entry of Z_II lies on L's pattern. Z is
stored exactly like L (same offsets, dense column-major blocks); the diagonal
blocks hold the full symmetric Z_JJ.

With W = L_JJ⁻¹ the last line is Z_JJ = WᵀW − Mᵀ Z_IJ = [W; −M]ᵀ [W; Z_IJ]: one
product of the two stacked blocks, so a supernode costs dgemm calls and a small
triangular inverse by loops, no dpotri and no dtrsm (whose rates on these block
shapes are a fraction of dgemm's; on the 2θ SPDE-type pattern at 250² the two took
40 % of the time). Flops, against the factorization's Σ (nscol³/3 + nb nscol² +
nb² nscol): the product with Z_II alone is 2 nb² nscol, so the selected inversion
does about twice the factorization's arithmetic (3.2 against 1.6 GFLOP at 250²).
"""

import numpy as np

from ..bindings import blas
from ._jit import jit
from ._status import NOT_POSITIVE_DEFINITE, OK, OUTSIDE_PATTERN
from .cholesky import _blas_consts, _gemm

_u = np.uintp  # unsigned subscripts: no wraparound checks in the hot loops

# L_JJ⁻¹ is formed by block rows of this many columns (the diagonal blocks by loops), and
# the products with it and Z_JJ's by column panels of this width (lower triangles only)
_BLOCK = 16

# wider supernodes: the products with W and Z_JJ's lower triangle by blocks of this many
# columns, each a _BLOCK-wide staircase on its diagonal block and one dgemm below it
_OUTER = 64

# a block of at most this many entries is read (L) and claimed (Z) as one descending stream
# before its supernode is worked on
_STREAM = 65536

# Z_II of at most this many rows is gathered in full and multiplied by dgemm (twice
# dsymm's rate on small blocks), larger ones by dsymm on its lower triangle
_GEMM_BELOW = 160


@jit
def _workspace_sizes(nsuper, super_ptr, rows_ptr):
    """Sizes of the work arrays of :func:`_selected_inverse` (Z_II, [W; −M], Z_JJ): the
    largest n_below², nsrow * nscol and nscol² over the supernodes with rows below."""
    big = 0
    rect = 0
    square = 0
    for s in range(nsuper):
        nscol = super_ptr[s + 1] - super_ptr[s]
        nsrow = rows_ptr[s + 1] - rows_ptr[s]
        nb = nsrow - nscol
        if nb > 0:
            big = max(big, nb * nb)
            rect = max(rect, nsrow * nscol)
            square = max(square, nscol * nscol)
    return big, rect, square


@jit
def _triangle_inverse(lx, pl, zx, pz, ld, n, recip):
    """The n x n lower triangle at ``lx[pl:]`` inverted into ``zx[pz:]`` (both leading
    dimension ``ld``), upper triangle set to zero: column j solves L w = e_j forward, each
    entry a dot product of row i of L with the entries above it (one store per entry; the
    column-wise axpys were ~35 % slower on the 5-16-column blocks that dominate).
    ``recip`` (at least n) receives 1 / L_kk."""
    for k in range(n):
        recip[_u(k)] = 1.0 / lx[_u(pl + k * ld + k)]
    for j in range(n):
        cj = pz + j * ld
        for i in range(j):
            zx[_u(cj + i)] = 0.0
        zx[_u(cj + j)] = recip[_u(j)]
        for i in range(j + 1, n):
            acc = 0.0
            for k in range(j, i):
                acc += lx[_u(pl + k * ld + i)] * zx[_u(cj + k)]
            zx[_u(cj + i)] = -acc * recip[_u(i)]


@jit
def _relative_maps(nsuper, super_ptr, rows_ptr, rows, col_super, rel_ptr, rel):
    """The relative-index maps of :func:`_gather_ancestors`, which depend on the pattern
    only. With ``rel`` None, fills ``rel_ptr`` (nsuper + 1) and returns the total size;
    else fills ``rel`` (that size) and returns it.

    For supernode s with rows I below its columns (nb of them), each run of I's rows
    owned by one ancestor t, from row c of I on, contributes nb − c entries: the local
    indices in t's (sorted) row list of I's rows c..nb−1 (each found by a merge), stored
    from ``rel_ptr[s]`` on, run after run.
    """
    total = 0
    for s in range(nsuper):
        if rel is None:
            rel_ptr[_u(s)] = total
        nscol = super_ptr[_u(s + 1)] - super_ptr[_u(s)]
        psi = rows_ptr[_u(s)]
        nb = rows_ptr[_u(s + 1)] - psi - nscol
        c = 0
        while c < nb:
            row_c = rows[_u(psi + nscol + c)]
            t = col_super[_u(row_c)]
            t2 = super_ptr[_u(t + 1)]
            if rel is not None:
                tpsi = rows_ptr[_u(t)]
                q = row_c - super_ptr[_u(t)]
                for r in range(c, nb):
                    target = rows[_u(psi + nscol + r)]
                    while rows[_u(tpsi + q)] != target:
                        q += 1
                    rel[_u(total + r - c)] = q
            total += nb - c
            while c < nb and rows[_u(psi + nscol + c)] < t2:
                c += 1
    if rel is None:
        rel_ptr[_u(nsuper)] = total
    return total


@jit
def _gather_ancestors(
    psi, nscol, nb, super_ptr, rows_ptr, rows, lx_ptr, col_super, zx, rel, rp, zii, full
):
    """The lower triangle of Z_II (nb x nb, ld nb) into ``zii``, from the ancestors.

    The rows of I from a run of columns owned by ancestor t onward are a subset of t's
    (sorted) row list, shared by all of t's columns: their local indices, ``rel`` from
    ``rp`` on (:func:`_relative_maps`, one run after another), make every column of the
    run a monotone gather.
    """
    c = 0
    while c < nb:
        row_c = rows[_u(psi + nscol + c)]
        t = col_super[_u(row_c)]
        t1 = super_ptr[_u(t)]
        t2 = super_ptr[_u(t + 1)]
        tnrow = rows_ptr[_u(t + 1)] - rows_ptr[_u(t)]
        tpsx = lx_ptr[_u(t)]
        run = rp - c  # rel[run + r]: the local index of row r of I in t's rows
        rp += nb - c
        while c < nb and rows[_u(psi + nscol + c)] < t2:
            base = tpsx + (rows[_u(psi + nscol + c)] - t1) * tnrow
            for r in range(c, nb):
                zii[_u(c * nb + r)] = zx[_u(base + rel[_u(run + r)])]
            c += 1
    if full:
        for c in range(nb):
            for r in range(c + 1, nb):
                zii[_u(r * nb + c)] = zii[_u(c * nb + r)]


@jit
def _selected_inverse(
    nsuper,
    super_ptr,
    rows_ptr,
    rows,
    lx_ptr,
    col_super,
    lx,
    zx,
    rel_ptr,
    rel,
    zii,
    mwork,
    tjj,
    order,
):
    """Fill ``zx`` with Z = (L Lᵀ)⁻¹ on the supernodes ``order`` (increasing; processed
    last to first), whose ancestors must be done. Returns ``(OK, -1)``, or
    ``(NOT_POSITIVE_DEFINITE, k)`` if LAPACK's dpotri met a zero pivot at column k of the
    factor (never for a valid factor).

    A supernode with rows below goes without LAPACK, by dgemm (all but the smallest
    products) and loops:

    - W = L_JJ⁻¹ into Z's diagonal block and the top of ``mwork`` (nsrow x nscol, ld
      nsrow): by block rows of ``_BLOCK``, W_ii = L_ii⁻¹ by loops and
      W_i,<i = −W_ii (L_i,<i W_<i,<i);
    - −M = −L_IJ W below it in ``mwork`` (W being lower triangular: by blocks of
      ``_OUTER`` columns, the rows of W below a block in one dgemm and its own triangle in
      ``_BLOCK``-wide panels);
    - Z_IJ = Z_II (−M), Z_II gathered from the ancestors through the pattern's
      relative-index maps ``rel_ptr``, ``rel`` (:func:`_relative_maps`);
    - Z_JJ = [W; −M]ᵀ [W; Z_IJ] = WᵀW − Mᵀ Z_IJ, its lower triangle into ``tjj`` (ld
      nscol; by the same blocks: ``_BLOCK``-wide panels on a block's diagonal, one dgemm
      below it), then mirrored into Z.

    A block of at most ``_STREAM`` entries is first read (L) and written (Z) from its end
    down, one touch per cache line: the supernodes are taken last to first, so the
    pass over both arrays becomes a descending stream instead of a jump back per block.

    A supernode without rows below (a root) takes Z_JJ = (L_JJ L_JJᵀ)⁻¹ from dpotri.

    Independent subtrees can run concurrently once their common ancestors are done,
    each call with its own ``zii``, ``mwork`` and ``tjj`` (the maps are only read).
    """
    ints = np.empty(16, dtype=np.int32)
    dbls = np.empty(3, dtype=np.float64)
    chars = np.empty(4, dtype=np.int8)
    _blas_consts(ints, dbls, chars)
    blas_ = (ints, dbls, chars)
    for idx in range(order.size - 1, -1, -1):
        s = order[_u(idx)]
        k1 = super_ptr[_u(s)]
        nscol = super_ptr[_u(s + 1)] - k1
        psi = rows_ptr[_u(s)]
        nsrow = rows_ptr[_u(s + 1)] - psi
        nb = nsrow - nscol
        psx = lx_ptr[_u(s)]
        size = nsrow * nscol
        if size <= _STREAM:
            # the blocks are taken last to first: reading L's block and claiming Z's from
            # their ends down (a line apart) makes the pass one descending stream, which the
            # prefetchers follow; the work below then finds both in cache
            touched = 0.0
            for q in range(size - 1, -1, -8):
                touched += lx[_u(psx + q)]
            for q in range(size - 1, -1, -8):
                zx[_u(psx + q)] = 0.0  # every entry is written below
            tjj[_u(0)] = touched  # keeps the reads
        ints[_u(0)] = nscol
        ints[_u(1)] = nsrow
        ints[_u(2)] = nb
        if nb == 0:
            for j in range(nscol):
                for i in range(j, nscol):
                    zx[_u(psx + j * nsrow + i)] = lx[_u(psx + j * nsrow + i)]
            ints[_u(5)] = 0
            blas.dpotri(
                chars[0:].ctypes,
                ints[0:].ctypes,
                zx[psx:].ctypes,
                ints[1:].ctypes,
                ints[5:].ctypes,
            )
            if ints[_u(5)] != 0:
                return NOT_POSITIVE_DEFINITE, k1 + ints[_u(5)] - 1
            # fully symmetric (dpotri fills the lower triangle only)
            for j in range(nscol):
                for i in range(j + 1, nscol):
                    zx[_u(psx + i * nsrow + j)] = zx[_u(psx + j * nsrow + i)]
            continue
        # W = L_JJ⁻¹ in Z's diagonal block, by block rows
        for i0 in range(0, nscol, _BLOCK):
            b = min(_BLOCK, nscol - i0)
            _triangle_inverse(lx, psx + i0 * nsrow + i0, zx, psx + i0 * nsrow + i0, nsrow, b, tjj)
            for j in range(i0, i0 + b):
                for i in range(i0):
                    zx[_u(psx + j * nsrow + i)] = 0.0
            if i0 > 0:
                # T = L_i,<i W_<i,<i into tjj (ld the block's rows), then W_i,<i = −W_ii T
                _gemm(1, 1, b, i0, i0, 0, lx[psx + i0 :], nsrow, zx[psx:], nsrow, 1, tjj, b, *blas_)
                wii = zx[psx + i0 * nsrow + i0 :]
                _gemm(1, 1, b, i0, b, 2, wii, nsrow, tjj, b, 1, zx[psx + i0 :], nsrow, *blas_)
        for j in range(nscol):
            for i in range(nscol):
                mwork[_u(j * nsrow + i)] = zx[_u(psx + j * nsrow + i)]
        # −M = −L_IJ W: columns j0.. of W vanish above row j0. By blocks of _OUTER columns
        # a0..a1: the rows of W below the block in one dgemm, then the block's own
        # triangle in _BLOCK-wide panels
        for a0 in range(0, nscol, _OUTER):
            a1 = min(a0 + _OUTER, nscol)
            wo = a1 - a0
            beta = 1  # dbls[1] = 0: the first product into the panel overwrites it
            if a1 < nscol:
                l_ij = lx[psx + a1 * nsrow + nscol :]
                w_j = zx[psx + a0 * nsrow + a1 :]
                m_j = mwork[a0 * nsrow + nscol :]
                _gemm(1, 1, nb, wo, nscol - a1, 2, l_ij, nsrow, w_j, nsrow, 1, m_j, nsrow, *blas_)
                beta = 0
            for j0 in range(a0, a1, _BLOCK):
                w = min(_BLOCK, a1 - j0)
                l_ij = lx[psx + j0 * nsrow + nscol :]
                w_j = zx[psx + j0 * nsrow + j0 :]
                m_j = mwork[j0 * nsrow + nscol :]
                _gemm(1, 1, nb, w, a1 - j0, 2, l_ij, nsrow, w_j, nsrow, beta, m_j, nsrow, *blas_)
        full = nb <= _GEMM_BELOW
        _gather_ancestors(
            psi,
            nscol,
            nb,
            super_ptr,
            rows_ptr,
            rows,
            lx_ptr,
            col_super,
            zx,
            rel,
            rel_ptr[_u(s)],
            zii,
            full,
        )
        # Z_IJ = Z_II (−M)
        if full:
            z_ij = zx[psx + nscol :]
            _gemm(1, 1, nb, nscol, nb, 0, zii, nb, mwork[nscol:], nsrow, 1, z_ij, nsrow, *blas_)
        else:
            blas.dsymm(
                chars[0:].ctypes,  # side L
                chars[0:].ctypes,  # lower
                ints[2:].ctypes,
                ints[0:].ctypes,
                dbls[0:].ctypes,  # 1
                zii.ctypes,
                ints[2:].ctypes,
                mwork[nscol:].ctypes,
                ints[1:].ctypes,
                dbls[1:].ctypes,  # 0
                zx[psx + nscol :].ctypes,
                ints[1:].ctypes,
            )
        # Z_JJ = [W; −M]ᵀ [W; Z_IJ]: columns j0.. need rows j0.. only. By blocks of _OUTER
        # columns a0..a1: the block's lower triangle in _BLOCK-wide panels, then the rows
        # below it in one dgemm
        for a0 in range(0, nscol, _OUTER):
            a1 = min(a0 + _OUTER, nscol)
            for j0 in range(a0, a1, _BLOCK):
                w = min(_BLOCK, a1 - j0)
                k = nsrow - j0
                top = mwork[j0 * nsrow + j0 :]
                w_j = zx[psx + j0 * nsrow + j0 :]
                t_j = tjj[j0 * nscol + j0 :]
                _gemm(2, 1, a1 - j0, w, k, 0, top, nsrow, w_j, nsrow, 1, t_j, nscol, *blas_)
            if a1 < nscol:
                wo = a1 - a0
                k = nsrow - a0
                top = mwork[a1 * nsrow + a0 :]
                w_j = zx[psx + a0 * nsrow + a0 :]
                t_j = tjj[a0 * nscol + a1 :]
                _gemm(2, 1, nscol - a1, wo, k, 0, top, nsrow, w_j, nsrow, 1, t_j, nscol, *blas_)
        # its lower triangle, mirrored (the product is symmetric up to rounding)
        for j in range(nscol):
            for i in range(j, nscol):
                v = tjj[_u(j * nscol + i)]
                zx[_u(psx + j * nsrow + i)] = v
                zx[_u(psx + i * nsrow + j)] = v
    return OK, -1


@jit
def _diagonal(nsuper, super_ptr, rows_ptr, lx_ptr, zx, perm, out):
    """out[perm[k]] = Z_kk: the diagonal of Q⁻¹ in the original ordering."""
    for s in range(nsuper):
        k1 = super_ptr[_u(s)]
        nsrow = rows_ptr[_u(s + 1)] - rows_ptr[_u(s)]
        for j in range(super_ptr[_u(s + 1)] - k1):
            out[_u(perm[_u(k1 + j)])] = zx[_u(lx_ptr[_u(s)] + j * nsrow + j)]


@jit
def _locate(n, super_ptr, rows_ptr, rows, lx_ptr, col_super, pinv, row_idx, col_idx, pos):
    """pos[k] = position in the factor storage of Q-ordering entry (row_idx[k], col_idx[k]).

    Returns ``(OK, -1)``, or ``(OUTSIDE_PATTERN, k)`` for the first entry k outside L's
    pattern.
    """
    for k in range(row_idx.size):
        a = pinv[_u(row_idx[_u(k)])]
        b = pinv[_u(col_idx[_u(k)])]
        r = max(a, b)
        c = min(a, b)
        t = col_super[_u(c)]
        t1 = super_ptr[_u(t)]
        nsrow = rows_ptr[_u(t + 1)] - rows_ptr[_u(t)]
        nscol = super_ptr[_u(t + 1)] - t1
        if r < super_ptr[_u(t + 1)]:
            local = r - t1
        else:
            # binary search among the rows below the diagonal block
            lo = rows_ptr[_u(t)] + nscol
            hi = rows_ptr[_u(t + 1)] - 1
            local = -1
            while lo <= hi:
                mid = (lo + hi) // 2
                v = rows[_u(mid)]
                if v == r:
                    local = mid - rows_ptr[_u(t)]
                    break
                if v < r:
                    lo = mid + 1
                else:
                    hi = mid - 1
            if local < 0:
                return OUTSIDE_PATTERN, k
        pos[_u(k)] = lx_ptr[_u(t)] + (c - t1) * nsrow + local
    return OK, -1


@jit
def _gather_dot(zx, pos, values):
    """Σ_k values[k] zx[pos[k]]."""
    total = 0.0
    for k in range(pos.size):
        total += values[_u(k)] * zx[_u(pos[_u(k)])]
    return total


@jit
def _gather(zx, pos, out):
    """out[k] = zx[pos[k]]."""
    for k in range(pos.size):
        out[_u(k)] = zx[_u(pos[_u(k)])]


@jit
def _gather_sorted(zx, pos, order, out):
    """out[order[k]] = zx[pos[k]]: with ``pos`` increasing, one ascending pass over ``zx``
    (which is far larger than ``out``: its scattered reads cost more than scattered writes
    into ``out``)."""
    for k in range(pos.size):
        out[_u(order[_u(k)])] = zx[_u(pos[_u(k)])]


@jit
def _quadratic_diag(a_ptr, a_cols, a_data, pos_ptr, pos, zx, out):
    """out[r] = Σ_kl a_rk a_rl Z_kl for each row r of a CSR matrix A (positions precomputed).

    ``pos[pos_ptr[r] + u * m + v]`` is the position of Z at (col u, col v) of row r,
    with m the number of nonzeros in row r.
    """
    for r in range(out.size):
        start = a_ptr[_u(r)]
        m = a_ptr[_u(r + 1)] - start
        base = pos_ptr[_u(r)]
        acc = 0.0
        for u in range(m):
            au = a_data[_u(start + u)]
            for v in range(m):
                acc += au * a_data[_u(start + v)] * zx[_u(pos[_u(base + u * m + v)])]
        out[_u(r)] = acc
