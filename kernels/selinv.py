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
"""

import numpy as np

from ..bindings import blas
from ._jit import jit
from ._status import NOT_POSITIVE_DEFINITE, OK, OUTSIDE_PATTERN
from .cholesky import _blas_consts

_u = np.uintp  # unsigned subscripts: no wraparound checks in the hot loops

# Z_JJ updates wider than this go by column panels of this width (lower triangle only)
_PANEL = 64

# Supernodes of at most this many columns go the direct way (see _selected_inverse); wider
# ones through dpotri and dtrsm, whose call overhead is then small against their work
_DIRECT = 64

# Z_II of at most this many rows is gathered in full and multiplied by dgemm (twice
# dsymm's rate on small blocks), larger ones by dsymm on its lower triangle
_GEMM_BELOW = 160


@jit
def _workspace_sizes(nsuper, super_ptr, rows_ptr):
    """Sizes of the work arrays of :func:`_selected_inverse`: (max n_below², max of
    nsrow * nscol (n_below * nscol for supernodes wider than ``_DIRECT``), max nscol² over
    the supernodes of at most ``_DIRECT`` columns)."""
    big = 0
    rect = 0
    square = 0
    for s in range(nsuper):
        nscol = super_ptr[s + 1] - super_ptr[s]
        nsrow = rows_ptr[s + 1] - rows_ptr[s]
        nb = nsrow - nscol
        big = max(big, nb * nb)
        if nscol <= _DIRECT:
            rect = max(rect, nsrow * nscol)
            square = max(square, nscol * nscol)
        else:
            rect = max(rect, nb * nscol)
    return big, rect, square


@jit
def _gather_ancestors(
    psi, nscol, nb, super_ptr, rows_ptr, rows, lx_ptr, col_super, zx, relmap, zii, full
):
    """The lower triangle of Z_II (nb x nb, ld nb) into ``zii``, from the ancestors.

    The rows of I from a run of columns owned by ancestor t onward are a subset of t's
    (sorted) row list, shared by all of t's columns: their local indices are found once
    per run by a merge, then every column of the run is a monotone gather.
    """
    c = 0
    while c < nb:
        row_c = rows[_u(psi + nscol + c)]
        t = col_super[_u(row_c)]
        t1 = super_ptr[_u(t)]
        t2 = super_ptr[_u(t + 1)]
        tpsi = rows_ptr[_u(t)]
        tnrow = rows_ptr[_u(t + 1)] - tpsi
        tpsx = lx_ptr[_u(t)]
        q = row_c - t1
        for r in range(c, nb):
            target = rows[_u(psi + nscol + r)]
            while rows[_u(tpsi + q)] != target:
                q += 1
            relmap[_u(r)] = q
        while c < nb and rows[_u(psi + nscol + c)] < t2:
            base = tpsx + (rows[_u(psi + nscol + c)] - t1) * tnrow
            for r in range(c, nb):
                zii[_u(c * nb + r)] = zx[_u(base + relmap[_u(r)])]
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
    relmap,
    zii,
    mwork,
    tjj,
    order,
):
    """Fill ``zx`` with Z = (L Lᵀ)⁻¹ on the supernodes ``order`` (increasing; processed
    last to first), whose ancestors must be done. Returns ``(OK, -1)``, or
    ``(NOT_POSITIVE_DEFINITE, k)`` if LAPACK's dpotri met a zero pivot at column k of the
    factor (never for a valid factor).

    A supernode of at most ``_DIRECT`` columns (almost all of them) goes the direct way,
    four BLAS calls and no LAPACK: W = L_JJ⁻¹ by loops into Z's diagonal block and into
    the top of ``mwork``, −M = −L_IJ W below it (dgemm; ``mwork`` is nsrow x nscol with
    ld nsrow), Z_IJ = Z_II (−M) (dsymm), then in one product

        Z_JJ = [W; −M]ᵀ [W; Z_IJ] = WᵀW − Mᵀ Z_IJ      (dgemm into ``tjj``, ld nscol).

    Wider supernodes take Z_JJ from dpotri, M from dtrsm and update the lower triangle of
    Z_JJ by column panels of ``_PANEL``.

    Independent subtrees can run concurrently once their common ancestors are done,
    each call with its own ``relmap``, ``zii``, ``mwork`` and ``tjj``.
    """
    ints = np.empty(8, dtype=np.int32)
    dbls = np.empty(3, dtype=np.float64)
    chars = np.empty(4, dtype=np.int8)
    _blas_consts(ints, dbls, chars)
    for idx in range(order.size - 1, -1, -1):
        s = order[_u(idx)]
        k1 = super_ptr[_u(s)]
        nscol = super_ptr[_u(s + 1)] - k1
        psi = rows_ptr[_u(s)]
        nsrow = rows_ptr[_u(s + 1)] - psi
        nb = nsrow - nscol
        psx = lx_ptr[_u(s)]
        ints[_u(0)] = nscol
        ints[_u(1)] = nsrow
        ints[_u(2)] = nb
        if nscol <= _DIRECT and nb > 0:
            # W = L_JJ⁻¹, upper triangle zero, column by column (L w = e_j as axpys down
            # L's columns), into Z's diagonal block
            for k in range(nscol):
                tjj[_u(k)] = 1.0 / lx[_u(psx + k * nsrow + k)]
            for j in range(nscol):
                cj = psx + j * nsrow
                for i in range(j):
                    zx[_u(cj + i)] = 0.0
                zx[_u(cj + j)] = tjj[_u(j)]
                for i in range(j + 1, nscol):
                    zx[_u(cj + i)] = -lx[_u(cj + i)] * tjj[_u(j)]
                for k in range(j + 1, nscol):
                    ck = psx + k * nsrow
                    wk = zx[_u(cj + k)] * tjj[_u(k)]
                    zx[_u(cj + k)] = wk
                    for i in range(k + 1, nscol):
                        zx[_u(cj + i)] -= lx[_u(ck + i)] * wk
                for i in range(nscol):
                    mwork[_u(j * nsrow + i)] = zx[_u(cj + i)]
            # −M = −L_IJ W below it in mwork
            blas.dgemm(
                chars[1:].ctypes,  # N
                chars[1:].ctypes,  # N
                ints[2:].ctypes,
                ints[0:].ctypes,
                ints[0:].ctypes,
                dbls[2:].ctypes,  # -1
                lx[psx + nscol :].ctypes,
                ints[1:].ctypes,
                zx[psx:].ctypes,
                ints[1:].ctypes,
                dbls[1:].ctypes,  # 0
                mwork[nscol:].ctypes,
                ints[1:].ctypes,
            )
            full = nb <= _GEMM_BELOW
            _gather_ancestors(
                psi, nscol, nb, super_ptr, rows_ptr, rows, lx_ptr, col_super, zx, relmap, zii, full
            )
            # Z_IJ = Z_II (−M)
            if full:
                blas.dgemm(
                    chars[1:].ctypes,  # N
                    chars[1:].ctypes,  # N
                    ints[2:].ctypes,
                    ints[0:].ctypes,
                    ints[2:].ctypes,
                    dbls[0:].ctypes,  # 1
                    zii.ctypes,
                    ints[2:].ctypes,
                    mwork[nscol:].ctypes,
                    ints[1:].ctypes,
                    dbls[1:].ctypes,  # 0
                    zx[psx + nscol :].ctypes,
                    ints[1:].ctypes,
                )
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
            # Z_JJ = [W; −M]ᵀ [W; Z_IJ]
            blas.dgemm(
                chars[2:].ctypes,  # T
                chars[1:].ctypes,  # N
                ints[0:].ctypes,
                ints[0:].ctypes,
                ints[1:].ctypes,
                dbls[0:].ctypes,  # 1
                mwork.ctypes,
                ints[1:].ctypes,
                zx[psx:].ctypes,
                ints[1:].ctypes,
                dbls[1:].ctypes,  # 0
                tjj.ctypes,
                ints[0:].ctypes,
            )
            # its lower triangle, mirrored (the product is symmetric up to rounding)
            for j in range(nscol):
                for i in range(j, nscol):
                    v = tjj[_u(j * nscol + i)]
                    zx[_u(psx + j * nsrow + i)] = v
                    zx[_u(psx + i * nsrow + j)] = v
            continue
        # Z_JJ starts as (L_JJ L_JJᵀ)⁻¹
        for j in range(nscol):
            for i in range(j, nscol):
                zx[_u(psx + j * nsrow + i)] = lx[_u(psx + j * nsrow + i)]
        ints[_u(5)] = 0
        blas.dpotri(
            chars[0:].ctypes, ints[0:].ctypes, zx[psx:].ctypes, ints[1:].ctypes, ints[5:].ctypes
        )
        if ints[_u(5)] != 0:
            return NOT_POSITIVE_DEFINITE, k1 + ints[_u(5)] - 1
        if nb > 0:
            # M = L_IJ L_JJ⁻¹ into mwork (nb x nscol, ld nb)
            for j in range(nscol):
                for i in range(nb):
                    mwork[_u(j * nb + i)] = lx[_u(psx + j * nsrow + nscol + i)]
            blas.dtrsm(
                chars[3:].ctypes,  # side R
                chars[0:].ctypes,  # lower
                chars[1:].ctypes,  # no transpose
                chars[1:].ctypes,  # non-unit
                ints[2:].ctypes,
                ints[0:].ctypes,
                dbls[0:].ctypes,
                lx[psx:].ctypes,
                ints[1:].ctypes,
                mwork.ctypes,
                ints[2:].ctypes,
            )
            _gather_ancestors(
                psi, nscol, nb, super_ptr, rows_ptr, rows, lx_ptr, col_super, zx, relmap, zii, False
            )
            # Z_IJ = -Z_II M (dsymm with the lower triangle of Z_II)
            blas.dsymm(
                chars[0:].ctypes,  # side L
                chars[0:].ctypes,  # lower
                ints[2:].ctypes,
                ints[0:].ctypes,
                dbls[2:].ctypes,  # -1
                zii.ctypes,
                ints[2:].ctypes,
                mwork.ctypes,
                ints[2:].ctypes,
                dbls[1:].ctypes,  # 0
                zx[psx + nscol :].ctypes,
                ints[1:].ctypes,
            )
            # Z_JJ -= Z_IJᵀ M. The product is symmetric (−Mᵀ Z_II M) and only the lower
            # triangle is kept, so wide blocks go by column panels: about half the flops
            for j0 in range(0, nscol, _PANEL):
                ints[_u(3)] = nscol - j0  # rows j0.. of the panel
                ints[_u(4)] = min(_PANEL, nscol - j0)  # its width
                blas.dgemm(
                    chars[2:].ctypes,  # T
                    chars[1:].ctypes,  # N
                    ints[3:].ctypes,
                    ints[4:].ctypes,
                    ints[2:].ctypes,
                    dbls[2:].ctypes,  # -1
                    zx[psx + nscol + j0 * nsrow :].ctypes,
                    ints[1:].ctypes,
                    mwork[j0 * nb :].ctypes,
                    ints[2:].ctypes,
                    dbls[0:].ctypes,  # 1
                    zx[psx + j0 * nsrow + j0 :].ctypes,
                    ints[1:].ctypes,
                )
        # keep the diagonal block fully symmetric (dpotri fills the lower triangle only)
        for j in range(nscol):
            for i in range(j + 1, nscol):
                zx[_u(psx + i * nsrow + j)] = zx[_u(psx + j * nsrow + i)]
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
    for k in range(pos.size):
        out[_u(k)] = zx[_u(pos[_u(k)])]


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
