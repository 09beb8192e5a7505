"""Approximate minimum degree (AMD) fill-reducing ordering.

The quotient-graph minimum degree algorithm of Amestoy, Davis & Duff (1996),
following the structure of SuiteSparse AMD's ``amd_2`` routine: elements and
supervariables share one integer workspace ``iw``; each step picks the
supervariable of least *approximate external degree*, turns it into an
element, absorbs the elements it covers, updates approximate degrees of its
neighbours, merges indistinguishable variables (found by hashing) and
mass-eliminates variables left with nothing but the new element. Rows whose
degree exceeds ``dense_threshold * sqrt(n)`` are set aside and ordered last.
The pivot sequence is finally postordered along the assembly tree, so that
nodes of a subtree are contiguous (good for supernodes, same fill).

The data layout and step order deliberately follow SuiteSparse AMD (AMD
2.x/3.x, ``amd_2.c`` and ``amd_postorder.c``, BSD-3-Clause, (c) T. A. Davis,
P. R. Amestoy, I. S. Duff), so that, given the same initial lists, the pivot
sequence is the same; the tests check this against libamd itself.

References
----------
P. R. Amestoy, T. A. Davis and I. S. Duff, "An approximate minimum degree
ordering algorithm", SIAM J. Matrix Anal. Appl. 17(4):886-905, 1996.

P. R. Amestoy, T. A. Davis and I. S. Duff, "Algorithm 837: AMD, an
approximate minimum degree ordering algorithm", ACM Trans. Math. Softw.
30(3):381-388, 2004.

Notation used in the comments: ``Le`` is the pattern (set of supervariables)
of element ``e``; ``me`` is the current pivot, and ``Lme`` the pattern of the
element it becomes. ``flip(x) = -x - 2`` encodes "a pointer to x" in arrays
whose non-negative values mean something else, keeping -1 (EMPTY) free.
"""

import math

import numpy as np

from ._jit import jit
from ._status import (
    INCONSISTENT,
    INDEX_OUT_OF_RANGE,
    NOT_SYMMETRIC,
    OK,
    UNSORTED,
    WORKSPACE_TOO_SMALL,
)

EMPTY = -1

_INT64_MAX = 9223372036854775807

# Numba wraps negative signed indices around (an extra add and select per
# array access). In the elimination loop every index is known to be
# non-negative, so indices there are cast to unsigned, which skips the
# wraparound: about 25% faster on 2-D grids. Only used in that loop.
_idx = np.uintp


@jit(inline="always")
def _flip(i):
    """Encode/decode a pointer stored as a value < -1 (an involution)."""
    return -i - 2


@jit
def _reset_flags(w, n):
    """Restart the flag counter of ``w`` (rare: only when it nears overflow).

    ``w[x] >= wflg`` marks "seen in the current pass", so raising ``wflg``
    clears all marks at once. Only when ``wflg`` would overflow are the live
    (nonzero) entries rewritten to 1; zero keeps meaning "absorbed element".
    Returns the new flag value, 2.
    """
    for x in range(n):
        if w[x] != 0:
            w[x] = 1
    return 2


@jit
def _garbage_collect(n, iw, pe, length, pme1, pfree):
    """Compact the live objects of ``iw`` to its front; return ``(pme1, pfree)``.

    Every live object (a principal variable's list or an unabsorbed element)
    has ``pe[j] >= 0`` and ``length[j] >= 1``. Its first entry is moved into
    ``pe[j]`` and replaced by ``flip(j)``, which is the only kind of negative
    value ``iw`` ever holds, so one left-to-right sweep finds every object
    start. The partially built element in ``iw[pme1:pfree]`` is moved last.
    """
    for j in range(n):
        pn = pe[j]
        if pn >= 0:
            pe[j] = iw[pn]
            iw[pn] = _flip(j)
    psrc = 0
    pdst = 0
    while psrc < pme1:
        j = _flip(iw[psrc])
        psrc += 1
        if j >= 0:
            iw[pdst] = pe[j]
            pe[j] = pdst
            pdst += 1
            for _ in range(length[j] - 1):
                iw[pdst] = iw[psrc]
                pdst += 1
                psrc += 1
    new_pme1 = pdst
    for psrc in range(pme1, pfree):
        iw[pdst] = iw[psrc]
        pdst += 1
    return new_pme1, pdst


@jit
def _postorder(n, parent, nv, fsize, order, child, sibling, stack):
    """Postorder the assembly tree by depth-first search (no recursion).

    Nodes are the elements (``nv[j] > 0``); ``parent[j]`` is EMPTY for roots.
    In each family the child with the largest front (``fsize``) is visited
    last, which keeps the stack of pending contribution blocks of a
    multifrontal factorization small (Liu 1986), as AMD does. Any postorder
    gives the same fill. ``order[e] = k`` on output for the k-th element;
    EMPTY for non-elements.
    """
    for j in range(n):
        child[j] = EMPTY
        sibling[j] = EMPTY
    # Build children lists; iterating downwards leaves them in increasing order.
    for j in range(n - 1, -1, -1):
        if nv[j] > 0 and parent[j] != EMPTY:
            sibling[j] = child[parent[j]]
            child[parent[j]] = j
    # Move the child with the largest front to the end of each list.
    for i in range(n):
        if nv[i] > 0 and child[i] != EMPTY:
            fprev = EMPTY
            maxfrsize = EMPTY
            bigfprev = EMPTY
            bigf = EMPTY
            f = child[i]
            while f != EMPTY:
                if fsize[f] >= maxfrsize:
                    maxfrsize = fsize[f]
                    bigfprev = fprev
                    bigf = f
                fprev = f
                f = sibling[f]
            fnext = sibling[bigf]
            if fnext != EMPTY:
                if bigfprev == EMPTY:
                    child[i] = fnext
                else:
                    sibling[bigfprev] = fnext
                sibling[bigf] = EMPTY
                sibling[fprev] = bigf
    for i in range(n):
        order[i] = EMPTY
    k = 0
    for root in range(n):
        if parent[root] != EMPTY or nv[root] <= 0:
            continue
        top = 0
        stack[0] = root
        while top >= 0:
            i = stack[top]
            if child[i] != EMPTY:
                # Push the children so that the first of the list is popped
                # first and the biggest (last) one is ordered last.
                f = child[i]
                while f != EMPTY:
                    top += 1
                    f = sibling[f]
                h = top
                f = child[i]
                while f != EMPTY:
                    stack[h] = f
                    h -= 1
                    f = sibling[f]
                child[i] = EMPTY  # children are on the stack: order i when seen again
            else:
                top -= 1
                order[i] = k
                k += 1
    return k


@jit
def _amd(
    n,
    indptr,
    indices,
    perm,
    iw,
    pe,
    length,
    nv,
    nxt,
    last,
    head,
    hhead,
    elen,
    degree,
    w,
    info,
    dense_threshold,
    aggressive,
):
    """Approximate minimum degree ordering of a symmetric pattern (kernel).

    Parameters
    ----------
    n : int
        Order of the matrix.
    indptr, indices : int64 arrays
        Full symmetric pattern in CSC (both triangles, rows sorted, no
        duplicates); diagonal entries are skipped.
    perm : int64 array (n,)
        Output: ``perm[k]`` is the original index of the k-th pivot.
    iw : int64 array
        Workspace holding the quotient graph; needs ``len(iw) >= nnz_off + n``
        (``nnz_off`` = number of off-diagonal entries), and about
        ``1.2 * nnz_off + n`` to keep garbage collections rare.
    pe, length, nv, nxt, last, head, hhead, elen, degree, w : int64 arrays (n,)
        Workspace (contents undefined on output).
    info : int64 array (2,)
        Output statistics: ``info[0]`` number of garbage collections of
        ``iw``, ``info[1]`` number of dense rows ordered last.
    dense_threshold : float
        Rows with more than ``max(16, dense_threshold * sqrt(n))``
        off-diagonal entries are ordered last; negative: only rows with more
        than ``n - 2`` entries.
    aggressive : int
        Nonzero: absorb every element whose pattern is covered by the new
        element's (aggressive absorption), not just the ones adjacent to the
        pivot.

    Returns
    -------
    (code, where) : (int, int)
        A status pair (:mod:`._status`): ``(OK, -1)``, ``(WORKSPACE_TOO_SMALL, -1)``
        (iw has fewer than n free slots after loading the pattern),
        ``(INDEX_OUT_OF_RANGE, j)`` or ``(UNSORTED, j)`` for a bad column j (the
        validating wrapper in :mod:`gmrf_core.ordering` rejects both first), or
        ``(INCONSISTENT, -1)`` (unreachable for a valid symmetric pattern).

    Notes
    -----
    Meaning of the arrays during elimination (as in SuiteSparse ``amd_2``):

    - ``pe[i]``: start of object i in ``iw``; ``flip(j)`` once i was merged
      into supervariable j or element i absorbed into element j; EMPTY for a
      dense variable or an element with an empty pattern (a tree root).
    - variable i: ``iw[pe[i] : pe[i] + elen[i]]`` are the elements containing
      i, ``iw[pe[i] + elen[i] : pe[i] + length[i]]`` its remaining neighbour
      supervariables (entries already covered by an element are pruned).
    - element e: ``iw[pe[e] : pe[e] + length[e]]`` is Le; ``elen[e] =
      flip(size of its front)``; ``degree[e] = |Le|`` in variables.
    - ``nv[i]``: number of variables in supervariable i (0 when not
      principal; negated while i is in Lme).
    - ``degree[i]``: upper bound on the external degree of variable i.
    - ``head``/``nxt``/``last``: degree lists; ``hhead``/``nxt`` (and the
      key in ``last``) hash buckets during supervariable detection.
    - ``w``: 0 for absorbed elements; ``w[e] - wflg = |Le \\ Lme|`` during
      the degree update; marks during supervariable detection.
    """
    iwlen = iw.shape[0]
    info[0] = 0
    info[1] = 0
    if n == 0:
        return OK, -1

    # ------------------------------------------------------------------
    # Load the off-diagonal pattern: variable j's list is its row of A.
    # ------------------------------------------------------------------
    pfree = 0
    for j in range(n):
        pe[j] = pfree
        for p in range(indptr[j], indptr[j + 1]):
            i = indices[p]
            if i < 0 or i >= n:
                return INDEX_OUT_OF_RANGE, j
            if i != j:
                if pfree >= iwlen:
                    return WORKSPACE_TOO_SMALL, -1
                iw[pfree] = i
                pfree += 1
        length[j] = pfree - pe[j]
        if length[j] > n - 1:
            return UNSORTED, j  # duplicates: degrees must index head[0:n]
    # Elbow room of n guarantees one garbage collection always makes enough
    # space for a new element (its pattern has fewer than n entries).
    if iwlen - pfree < n:
        return WORKSPACE_TOO_SMALL, -1

    # "dense" rows: postponing them avoids O(n^2) work on their long lists.
    if dense_threshold < 0.0:
        dense = n - 2
    else:
        dense_f = dense_threshold * math.sqrt(n)
        dense = n if dense_f >= n else int(dense_f)
    dense = max(16, dense)
    dense = min(n, dense)

    for i in range(n):
        last[i] = EMPTY
        head[i] = EMPTY
        hhead[i] = EMPTY
        nxt[i] = EMPTY
        nv[i] = 1
        w[i] = 1
        elen[i] = 0
        degree[i] = length[i]

    wbig = _INT64_MAX - n  # wflg + n must not overflow
    wflg = 2  # every w[i] is 1 < wflg
    mindeg = 0
    nel = 0  # number of variables eliminated so far
    lemax = 0  # largest |Le| seen; w must be bumped by this much to clear it

    # ------------------------------------------------------------------
    # Degree lists; empty rows are eliminated at once, dense rows set aside.
    # ------------------------------------------------------------------
    for i in range(n):
        deg = degree[i]
        if deg == 0:
            # An isolated variable: an element with an empty pattern (a root).
            elen[i] = _flip(1)
            nel += 1
            pe[i] = EMPTY
            w[i] = 0
        elif deg > dense:
            # Not principal, no parent: ignored by every scan (nv == 0) and
            # placed last in the final order.
            nv[i] = 0
            elen[i] = EMPTY
            nel += 1
            pe[i] = EMPTY
            info[1] += 1
        else:
            inext = head[deg]
            if inext != EMPTY:
                last[inext] = i
            nxt[i] = inext
            head[deg] = i

    while nel < n:
        # --------------------------------------------------------------
        # Pivot: a supervariable of least approximate degree.
        # --------------------------------------------------------------
        deg = mindeg
        me = EMPTY
        while deg < n:
            me = head[_idx(deg)]
            if me != EMPTY:
                break
            deg += 1
        mindeg = deg
        if me == EMPTY:
            return INCONSISTENT, -1  # unreachable for a symmetric pattern
        inext = nxt[_idx(me)]
        if inext != EMPTY:
            last[_idx(inext)] = EMPTY
        head[_idx(deg)] = inext

        elenme = elen[_idx(me)]
        nvpiv = nv[_idx(me)]
        nel += nvpiv

        # --------------------------------------------------------------
        # Construct the new element Lme: the union of the patterns of the
        # elements adjacent to me and of me's own variable list. Variables
        # entering Lme are flagged by a negative nv and leave their degree
        # lists (their degrees are about to change).
        # --------------------------------------------------------------
        nv[_idx(me)] = -nvpiv
        degme = 0
        if elenme == 0:
            # No adjacent elements: Lme is a subset of me's list, so it can be
            # written over that list in place.
            pme1 = pe[_idx(me)]
            pme2 = pme1 - 1
            for p in range(pme1, pme1 + length[_idx(me)]):
                i = iw[_idx(p)]
                nvi = nv[_idx(i)]
                if nvi > 0:
                    degme += nvi
                    nv[_idx(i)] = -nvi
                    pme2 += 1
                    iw[_idx(pme2)] = i
                    # leave the degree list (its degree is about to change)
                    ilast = last[_idx(i)]
                    inext = nxt[_idx(i)]
                    if inext != EMPTY:
                        last[_idx(inext)] = ilast
                    if ilast != EMPTY:
                        nxt[_idx(ilast)] = inext
                    else:
                        head[_idx(degree[_idx(i)])] = inext
        else:
            # Build Lme in the free space at the end of iw, absorbing each
            # element of me's list into me as it is scanned.
            p = pe[_idx(me)]
            pme1 = pfree
            slenme = length[_idx(me)] - elenme
            length_me = length[_idx(me)]
            for knt1 in range(1, elenme + 2):
                if knt1 > elenme:
                    e = me  # finally me's own variable list
                    pj = p
                    ln = slenme
                else:
                    e = iw[_idx(p)]
                    p += 1
                    pj = pe[_idx(e)]
                    ln = length[_idx(e)]
                for knt2 in range(1, ln + 1):
                    i = iw[_idx(pj)]
                    pj += 1
                    nvi = nv[_idx(i)]
                    if nvi <= 0:
                        continue  # already in Lme, or not principal
                    if pfree >= iwlen:
                        # Out of space: shrink the lists being read to their
                        # unread parts (fully read elements are already
                        # marked absorbed) and compact.
                        pe[_idx(me)] = p
                        length[_idx(me)] = length_me - knt1
                        if length[_idx(me)] == 0:
                            pe[_idx(me)] = EMPTY
                        pe[_idx(e)] = pj
                        length[_idx(e)] = ln - knt2
                        if length[_idx(e)] == 0:
                            pe[_idx(e)] = EMPTY
                        pme1, pfree = _garbage_collect(n, iw, pe, length, pme1, pfree)
                        info[_idx(0)] += 1
                        if pfree >= iwlen:
                            return WORKSPACE_TOO_SMALL, -1
                        pj = pe[_idx(e)]
                        p = pe[_idx(me)]
                    degme += nvi
                    nv[_idx(i)] = -nvi
                    iw[_idx(pfree)] = i
                    pfree += 1
                    # leave the degree list (its degree is about to change)
                    ilast = last[_idx(i)]
                    inext = nxt[_idx(i)]
                    if inext != EMPTY:
                        last[_idx(inext)] = ilast
                    if ilast != EMPTY:
                        nxt[_idx(ilast)] = inext
                    else:
                        head[_idx(degree[_idx(i)])] = inext
                if e != me:
                    # e's pattern is inside Lme: e is absorbed, me is its parent.
                    pe[_idx(e)] = _flip(me)
                    w[_idx(e)] = 0
            pme2 = pfree - 1

        degree[_idx(me)] = degme
        pe[_idx(me)] = pme1
        length[_idx(me)] = pme2 - pme1 + 1
        elen[_idx(me)] = _flip(nvpiv + degme)  # front size, kept for the postorder

        if wflg >= wbig:
            wflg = _reset_flags(w, n)

        # --------------------------------------------------------------
        # Scan 1: w[e] - wflg = |Le \ Lme| for every element e adjacent to a
        # variable of Lme. Starting from |Le| = degree[e], subtract the size
        # of every variable of Lme met in Le (each i in Lme lists the
        # elements that contain it).
        # --------------------------------------------------------------
        for pme in range(pme1, pme2 + 1):
            i = iw[_idx(pme)]
            eln = elen[_idx(i)]
            if eln > 0:
                nvi = -nv[_idx(i)]
                wnvi = wflg - nvi
                for p in range(pe[_idx(i)], pe[_idx(i)] + eln):
                    e = iw[_idx(p)]
                    we = w[_idx(e)]
                    if we >= wflg:
                        we -= nvi  # seen before in this scan
                    elif we != 0:
                        we = degree[_idx(e)] + wnvi  # first time: |Le| - nv[i]
                    w[_idx(e)] = we

        # --------------------------------------------------------------
        # Scan 2: approximate external degree of each i in Lme,
        #   d(i) <= |Lme \ i| + sum_e |Le \ Lme| + sum_(j in i's vars) nv[j],
        # the bound of Amestoy, Davis & Duff (1996, eq. 4); prune absorbed
        # elements and variables now covered by Lme from i's lists, put me
        # first in i's element list, and hash i's lists for supervariable
        # detection.
        # --------------------------------------------------------------
        for pme in range(pme1, pme2 + 1):
            i = iw[_idx(pme)]
            p1 = pe[_idx(i)]
            p2 = p1 + elen[_idx(i)] - 1
            pn = p1
            hsh = 0
            deg = 0
            for p in range(p1, p2 + 1):
                e = iw[_idx(p)]
                we = w[_idx(e)]
                if we != 0:
                    dext = we - wflg
                    if dext > 0 or not aggressive:
                        deg += dext
                        iw[_idx(pn)] = e
                        pn += 1
                        hsh += e
                    else:
                        # Le is inside Lme (aggressive absorption): e's
                        # information is redundant, absorb it into me.
                        pe[_idx(e)] = _flip(me)
                        w[_idx(e)] = 0
            elen[_idx(i)] = pn - p1 + 1  # elements kept, plus me (added below)

            p3 = pn
            p4 = p1 + length[_idx(i)]
            for p in range(p2 + 1, p4):
                j = iw[_idx(p)]
                nvj = nv[_idx(j)]
                if nvj > 0:
                    # j is principal and not in Lme (those have nv < 0)
                    deg += nvj
                    iw[_idx(pn)] = j
                    pn += 1
                    hsh += j

            if elen[_idx(i)] == 1 and p3 == pn:
                # Mass elimination: i is adjacent to nothing but me, so it
                # would be the next pivot anyway with no extra fill; merge it
                # into the pivot block.
                pe[_idx(i)] = _flip(me)
                nvi = -nv[_idx(i)]
                degme -= nvi
                nvpiv += nvi
                nel += nvi
                nv[_idx(i)] = 0
                elen[_idx(i)] = EMPTY
            else:
                # Degree without |Lme| yet (added when the lists are rebuilt).
                degree[_idx(i)] = min(degree[_idx(i)], deg)
                # Put me at the front of the element list: the first element
                # moves to the end of the element part, whose first variable
                # moves to the end of the list. Room exists since i's list lost
                # at least one entry (me itself, or an element absorbed in me).
                iw[_idx(pn)] = iw[_idx(p3)]
                iw[_idx(p3)] = iw[_idx(p1)]
                iw[_idx(p1)] = me
                length[_idx(i)] = pn - p1 + 1
                hsh = hsh % n
                nxt[_idx(i)] = hhead[_idx(hsh)]
                hhead[_idx(hsh)] = i
                last[_idx(i)] = hsh  # remember the bucket

        degree[_idx(me)] = degme

        # Clear w: every w[e] - wflg <= lemax, so this skips all marks.
        lemax = max(lemax, degme)
        wflg += lemax
        if wflg >= wbig:
            wflg = _reset_flags(w, n)

        # --------------------------------------------------------------
        # Supervariable detection: variables of Lme with identical element
        # and variable lists are indistinguishable; only candidates that share
        # a hash bucket are compared (me is first in every list; skip it).
        # --------------------------------------------------------------
        for pme in range(pme1, pme2 + 1):
            i = iw[_idx(pme)]
            if nv[_idx(i)] >= 0:
                continue  # mass-eliminated, or absorbed into another supervariable
            hsh = last[_idx(i)]
            i = hhead[_idx(hsh)]
            hhead[_idx(hsh)] = EMPTY  # each bucket is examined once
            while i != EMPTY and nxt[_idx(i)] != EMPTY:
                ln = length[_idx(i)]
                eln = elen[_idx(i)]
                for p in range(pe[_idx(i)] + 1, pe[_idx(i)] + ln):
                    w[_idx(iw[_idx(p)])] = wflg
                jlast = i
                j = nxt[_idx(i)]
                while j != EMPTY:
                    ok = length[_idx(j)] == ln and elen[_idx(j)] == eln
                    if ok:
                        for p in range(pe[_idx(j)] + 1, pe[_idx(j)] + ln):
                            if w[_idx(iw[_idx(p)])] != wflg:
                                ok = False
                                break
                    if ok:
                        # j is indistinguishable from i: absorb it.
                        pe[_idx(j)] = _flip(i)
                        nv[_idx(i)] += nv[_idx(j)]  # both negative (both in Lme)
                        nv[_idx(j)] = 0
                        elen[_idx(j)] = EMPTY
                        j = nxt[_idx(j)]
                        nxt[_idx(jlast)] = j
                    else:
                        jlast = j
                        j = nxt[_idx(j)]
                wflg += 1
                i = nxt[_idx(i)]

        # --------------------------------------------------------------
        # Finish the degrees (add |Lme| minus i itself, capped by the number
        # of variables left), put the variables back in the degree lists and
        # drop the non-principal ones from Lme.
        # --------------------------------------------------------------
        p = pme1
        nleft = n - nel
        for pme in range(pme1, pme2 + 1):
            i = iw[_idx(pme)]
            nvi = -nv[_idx(i)]
            if nvi > 0:
                nv[_idx(i)] = nvi
                deg = degree[_idx(i)] + degme - nvi
                deg = min(deg, nleft - nvi)
                inext = head[_idx(deg)]
                if inext != EMPTY:
                    last[_idx(inext)] = i
                nxt[_idx(i)] = inext
                last[_idx(i)] = EMPTY
                head[_idx(deg)] = i
                mindeg = min(mindeg, deg)
                degree[_idx(i)] = deg
                iw[_idx(p)] = i
                p += 1

        nv[_idx(me)] = nvpiv
        length[_idx(me)] = p - pme1
        if length[_idx(me)] == 0:
            # Nothing left outside the pivot block: a root of the assembly tree.
            pe[_idx(me)] = EMPTY
            w[_idx(me)] = 0
        if elenme != 0:
            # Lme was built at the end of iw: release what the pruning freed.
            pfree = p

    # ------------------------------------------------------------------
    # Assembly tree: parent of j is flip(pe[j]); elen[e] = front size.
    # ------------------------------------------------------------------
    for i in range(n):
        pe[i] = _flip(pe[i])
        elen[i] = _flip(elen[i])

    # Non-principal variables point to the variable or element that absorbed
    # them; make each point straight at its element (path compression).
    for i in range(n):
        if nv[i] != 0:
            continue
        j = pe[i]
        if j == EMPTY:
            continue  # dense variable: no parent
        while nv[j] == 0:
            j = pe[j]
        e = j
        j = i
        while nv[j] == 0:
            jnext = pe[j]
            pe[j] = e
            j = jnext

    # head, nxt, last are free again: child, sibling and stack lists.
    _postorder(n, pe, nv, elen, w, head, nxt, last)

    # ------------------------------------------------------------------
    # Pivot order: elements in postorder, each preceded by the variables
    # merged into it; dense variables last.
    # ------------------------------------------------------------------
    for k in range(n):
        head[k] = EMPTY
        nxt[k] = EMPTY
    for e in range(n):
        k = w[e]
        if k != EMPTY:
            head[k] = e
    nel = 0
    for k in range(n):
        e = head[k]
        if e == EMPTY:
            break
        nxt[e] = nel
        nel += nv[e]
    for i in range(n):
        if nv[i] == 0:
            e = pe[i]
            if e != EMPTY:
                # i takes the first slot of e's block; e moves one down
                nxt[i] = nxt[e]
                nxt[e] += 1
            else:
                nxt[i] = nel
                nel += 1
    for i in range(n):
        perm[nxt[i]] = i
    return OK, -1


@jit
def _check_pattern(n, indptr, indices, cursor):
    """Check a CSC pattern: indices in range, sorted, unique, symmetric.

    Returns a status pair (:mod:`._status`): ``(OK, -1)``, or
    ``(INDEX_OUT_OF_RANGE, j)``, ``(UNSORTED, j)`` or ``(NOT_SYMMETRIC, j)`` with j
    the first offending column. One sweep: with sorted columns, the
    entries (j, i) of column i are met in increasing j, so one cursor per
    column finds each mirror entry in turn; every entry matched and none
    left over means the pattern equals its transpose.
    """
    for i in range(n):
        cursor[i] = indptr[i]
    for j in range(n):
        prev = -1
        for p in range(indptr[j], indptr[j + 1]):
            i = indices[p]
            if i < 0 or i >= n:
                return INDEX_OUT_OF_RANGE, j
            if i <= prev:
                return UNSORTED, j
            prev = i
            q = cursor[i]
            if q >= indptr[i + 1] or indices[q] != j:
                # Column i is not checked yet: report a malformed column i
                # rather than a misleading asymmetry.
                prev_i = -1
                for r in range(indptr[i], indptr[i + 1]):
                    if indices[r] < 0 or indices[r] >= n:
                        return INDEX_OUT_OF_RANGE, i
                    if indices[r] <= prev_i:
                        return UNSORTED, i
                    prev_i = indices[r]
                return NOT_SYMMETRIC, min(i, j)
            cursor[i] = q + 1
    return OK, -1


def _workspace(n, iwlen):
    """Allocate the kernel's workspace: ``iw`` and ten size-n arrays."""
    iw = np.empty(iwlen, dtype=np.int64)
    n_arrays = [np.empty(n, dtype=np.int64) for _ in range(10)]
    return iw, n_arrays
