"""Predictions of η_new = A_new x + X_new β + offset, in independent blocks of rows.

Under the approximate posterior, a mixture over integration points θ_k (weights w_k) of
Gaussians z | θ_k, y ~ N(μ_k, Σ_k) (Rue, Martino & Chopin 2009, §3), a row ã of
Ã_new = [A_new, X_new] has the predictive distribution Σ_k w_k N(ãᵀμ_k + offset, ãᵀΣ_k ã).
At each point the mean comes from the mode (and the simplified-Laplace shift) and the
variances ãᵀΣ_k ã from the Cholesky factor of H_k (with the prior's constraints, Σ_k = Σ_c):

* a row whose pairs of columns lie on the factor's pattern: from the selected inverse
  (Takahashi recursion), ``quadratic_diag`` — a few gathers per row;
* any other row: ‖L⁻¹ P ã‖², a triangular solve with L, many rows at a time;
* minus the rank-k term of the constraints (kriging) and the grounding correction,
  :meth:`~gmrf_core.constrained.ConstrainedFactor.lowrank_diag`.

Which rows lie on the pattern is decided once, from the model's symbolic analysis of H
(every point's factor shares it). The work is split into tasks of
:func:`gmrf_core.parallel.map_model` on the model (which goes to each worker once, and is
already there after ``gm.inla`` on the same executor):

1. one task per integration point — or, with more workers than points, per point and
   chunk of rows — recomputes the point's Laplace approximation where it runs (Newton from
   that worker's last mode; the selected inverse when some row needs it) and returns the
   means and variances of its rows, computed in blocks of ``block_size`` rows. The factor
   never travels: at 300² a point's factor with its selected inverse pickles to 239 MiB,
   and sending it to two workers (pickle, digest, file, unpickle) cost more than
   recomputing it (measured: 0.25× of the serial time with the factors sent, against the
   Laplace approximation's 1–1.5 s per point);
2. the mixture over points (mean, sd, quantiles by the safeguarded Newton iteration of
   :func:`~gmrf_core.inference.marginals.mixture_quantiles`) is one more map over blocks
   of rows, with the weights as the model and each block's means and sds as its item.

The same blocks and the same functions run serially (``executor=None``), on a
``concurrent.futures`` executor or on a Dask client, so the results agree to rounding
whichever is used (the Laplace approximations are recomputed where they run: their
modes agree to the Newton iteration's rounding).
"""

import numpy as np
import scipy.sparse as sp

from ..errors import InputError
from ..parallel import is_dask_client, map_model
from .marginals import mixture_quantiles

__all__ = [
    "PointPredictor",
    "build_point",
    "design_rows",
    "rows_in_pattern",
    "predict_mixture",
    "DEFAULT_BLOCK_SIZE",
]

DEFAULT_BLOCK_SIZE = 2048
_LEVELS = (0.025, 0.5, 0.975)
# right-hand sides of one triangular solve: at most this many doubles of dense work space
_SOLVE_DOUBLES = 1 << 22


def design_rows(A_new, X_new, offset, n_latent, n_fixed):
    """Validated prediction rows: ``(Ã_new, offset)`` with Ã_new = [A_new, X_new] as a CSR
    matrix (k, n_latent + n_fixed), sorted indices, and offset of shape (k,).

    Parameters
    ----------
    A_new : sparse or dense (k, n_latent)
    X_new : array (k, n_fixed), optional (zeros when None; a vector when n_fixed = 1)
    offset : array (k,) or float, optional (zero when None)
    n_latent, n_fixed : int

    Raises
    ------
    InputError
        Wrong shapes, or entries that are not finite.
    """
    try:
        A_new = sp.csr_matrix(A_new, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"A_new must be a sparse or dense 2-d array of numbers ({exc}).") from exc
    if A_new.ndim != 2 or A_new.shape[1] != n_latent:
        raise InputError(f"A_new must have {n_latent} columns; got {A_new.shape}.")
    k = A_new.shape[0]
    if X_new is None:
        X_new = np.zeros((k, n_fixed))
    X_new = np.asarray(X_new, dtype=float)
    if X_new.ndim == 1 and n_fixed == 1:
        X_new = X_new[:, None]
    if X_new.shape != (k, n_fixed):
        raise InputError(f"X_new must have shape ({k}, {n_fixed}); got {X_new.shape}.")
    offset = np.asarray(0.0 if offset is None else offset, dtype=float)
    try:
        offset = np.broadcast_to(offset, (k,))
    except ValueError as exc:
        raise InputError(
            f"offset must be a number or have shape ({k},); got {offset.shape}."
        ) from exc
    if not (
        np.all(np.isfinite(A_new.data))
        and np.all(np.isfinite(X_new))
        and np.all(np.isfinite(offset))
    ):
        raise InputError("A_new, X_new and offset must be finite.")
    rows = sp.csr_matrix(sp.hstack([A_new, sp.csr_matrix(X_new)], format="csr"))
    rows.sum_duplicates()
    rows.sort_indices()
    return rows, np.ascontiguousarray(offset)


def rows_in_pattern(analysis, A):
    """Per row of A: whether every pair of its columns lies on the pattern of L (so that the
    selected inverse holds every entry of Σ its variance needs).

    Parameters
    ----------
    analysis : Symbolic or Factor
        The symbolic analysis of H (or a factor of it): only the pattern is used.
    A : sparse matrix (k, n)
    """
    s = getattr(analysis, "symbolic", analysis)
    n = s.n
    A = sp.csr_matrix(A)
    # (supernode, row) of every stored entry of L, sorted: supernode j holds the rows
    # rows[rows_ptr[j]:rows_ptr[j + 1]] (sorted) of each of its columns, in factor order
    super_of = np.repeat(np.arange(s.nsuper, dtype=np.int64), np.diff(s.rows_ptr))
    keys = super_of * n + np.asarray(s.rows, dtype=np.int64)
    pinv = np.asarray(s.pinv, dtype=np.int64)
    counts = np.diff(A.indptr).astype(np.int64)
    rows = np.repeat(np.arange(A.shape[0]), counts * counts)
    ptr = np.zeros(A.shape[0] + 1, dtype=np.int64)
    np.cumsum(counts * counts, out=ptr[1:])
    within = np.arange(ptr[-1]) - ptr[rows]
    r = counts[rows]
    start = A.indptr[rows]
    a = pinv[A.indices[start + within // r]]
    b = pinv[A.indices[start + within % r]]
    # entry (max, min) of L lies in the supernode of column min
    column = np.minimum(a, b)
    key = np.asarray(s.col_super, dtype=np.int64)[column] * n + np.maximum(a, b)
    pos = np.minimum(np.searchsorted(keys, key), max(keys.size - 1, 0))
    found = keys[pos] == key
    inside = np.ones(A.shape[0], dtype=bool)
    np.logical_and.at(inside, rows, found)
    return inside


class PointPredictor:
    """What one integration point contributes to a prediction: z ~ N(mean, Σ_c).

    Parameters
    ----------
    mean : numpy.ndarray, shape (n_total,)
        The point's mean of z = (x, β) (mode plus the simplified-Laplace shift).
    constrained : ConstrainedFactor
        The factor of H at the point with the prior's constraints; not modified here. Its
        selected inverse, once computed (:func:`build_point` does it when some row needs
        it), travels with it: no worker computes it again.
    """

    def __init__(self, mean, constrained):
        self.mean = np.ascontiguousarray(mean, dtype=float)
        self.constrained = constrained

    @property
    def pattern_token(self):
        """Identifies the factor's symbolic analysis (pattern, ordering, storage)."""
        return self.constrained.factor.symbolic.pattern_token

    def moments(self, rows, inside):
        """Means ãᵀ mean and variances ãᵀ Σ_c ã of the rows (offset not added).

        Parameters
        ----------
        rows : scipy.sparse.csr_matrix (b, n_total)
        inside : bool array (b,)
            Rows whose pairs of columns lie on the factor's pattern (selected inverse);
            the others are solved with L.
        """
        constrained = self.constrained
        factor = constrained.factor
        mean = np.asarray(rows @ self.mean, dtype=float)
        var = np.empty(rows.shape[0])
        if inside.any():
            var[inside] = constrained.selected_inverse().quadratic_diag(rows[inside])
        outside = np.flatnonzero(~inside)
        width = max(1, min(256, _SOLVE_DOUBLES // max(factor.n, 1)))
        for start in range(0, outside.size, width):
            chosen = outside[start : start + width]
            w = factor.solve_L(rows[chosen].T.toarray())
            var[chosen] = np.einsum("ij,ij->j", w, w)
        var -= constrained.lowrank_diag(rows)
        return mean, np.maximum(var, 0.0)


def _mixture_task(weights, block):
    """The mixture over points for one block: ``(mean, sd, quantiles (3, b))``."""
    means, sds = block
    mean = weights @ means
    sd = np.sqrt(np.maximum(weights @ (sds**2 + means**2) - mean**2, 0.0))
    quantiles = np.vstack([mixture_quantiles(p, weights, means, sds) for p in _LEVELS])
    return mean, sd, quantiles


def _check_block_size(block_size):
    if (
        isinstance(block_size, bool)
        or not isinstance(block_size, (int, np.integer))
        or block_size < 1
    ):
        raise InputError(f"block_size must be a positive integer; got {block_size!r}.")
    return int(block_size)


def build_point(model, theta, shift, selected_inverse):
    """The :class:`PointPredictor` of one integration point, where the model is.

    The Laplace approximation at θ_k (a Newton solve, warm-started from the model's last
    mode), its mean shifted by the simplified-Laplace correction, and the selected inverse
    when some prediction row needs it.
    """
    from .points import constrained_of

    approximation = model.laplace(np.asarray(theta, dtype=float))
    point = PointPredictor(
        np.asarray(approximation.mode, dtype=float) + shift,
        constrained_of(model, approximation),
    )
    if selected_inverse:
        point.constrained.selected_inverse()
    return point


def _point_task(model, item):
    """One integration point on a chunk of rows (a task on the model): the point's
    predictor built here, then the chunk's means and variances in blocks of rows."""
    theta, shift, selected_inverse, rows, inside, block_size = item
    point = build_point(model, theta, shift, selected_inverse)
    means = np.empty(rows.shape[0])
    variances = np.empty(rows.shape[0])
    for start in range(0, rows.shape[0], block_size):
        stop = min(start + block_size, rows.shape[0])
        means[start:stop], variances[start:stop] = point.moments(
            rows[start:stop], inside[start:stop]
        )
    return means, variances


def _worker_count(executor):
    """Workers of an executor (1 serially)."""
    if executor is None:
        return 1
    if is_dask_client(executor):
        return max(1, len(executor.scheduler_info().get("workers", {})))
    return max(1, int(getattr(executor, "_max_workers", 1) or 1))


def predict_mixture(
    model,
    points,
    shifts,
    weights,
    rows,
    offset,
    *,
    executor=None,
    block_size=DEFAULT_BLOCK_SIZE,
    progress=False,
    stats=None,
):
    """Mixture predictive summaries of Ã_new z + offset over points, in blocks of rows.

    Parameters
    ----------
    model : LatentGaussianModel
        The model of the result (with the priors it was run with); sent to each worker
        once (already there after ``gm.inla(model, executor=...)`` on the same executor).
    points : array (K, d)
        Integration points θ_k (internal scale).
    shifts : array (K, n_total)
        Simplified-Laplace mean corrections at the points (zeros for Gaussian marginals).
    weights : array (K,)
        Mixture weights (sum 1).
    rows, offset
        From :func:`design_rows`.
    executor : None, concurrent.futures.Executor or dask.distributed.Client
        Where the tasks run (:func:`gmrf_core.parallel.map_model`).
    block_size : int
        Rows per block: the unit of the mixture's tasks and of the work inside a point's
        task.
    progress : bool or callable
        Passed to the maps.
    stats : dict, optional
        Filled with ``blocks``, ``points``, ``chunks`` (row chunks per point),
        ``point_tasks``, ``task_bytes`` and ``mixture_task_bytes`` (mean bytes a task of
        either stage sends; 0 serially), ``points_wall`` and ``mixture_wall`` (seconds).

    Returns
    -------
    tuple
        ``(mean, sd, quantiles)``: arrays (k,), (k,) and (3, k) for the levels 0.025,
        0.5, 0.975.
    """
    block_size = _check_block_size(block_size)
    weights = np.asarray(weights, dtype=float)
    points = np.atleast_2d(np.asarray(points, dtype=float))
    if len(points) != weights.size or len(shifts) != weights.size:
        raise InputError(
            f"{len(points)} point(s) and {len(shifts)} shift(s) given for {weights.size} weight(s)."
        )
    k = rows.shape[0]
    if k == 0:
        return np.zeros(0), np.zeros(0), np.zeros((len(_LEVELS), 0))
    inside = rows_in_pattern(model.symbolic, rows)
    need_inverse = bool(inside.any())
    # each task builds its point's factor where it runs (shipping a factor and its selected
    # inverse costs more than recomputing them): one task per point, or, with more workers
    # than points, per point and chunk of rows
    n_blocks = -(-k // block_size)
    chunks = min(n_blocks, max(1, -(-_worker_count(executor) // weights.size)))
    per_chunk = -(-n_blocks // chunks) * block_size
    bounds = [(s, min(s + per_chunk, k)) for s in range(0, k, per_chunk)]
    items, where = [], []
    for j in range(weights.size):
        for lo, hi in bounds:
            items.append(
                (points[j], shifts[j], need_inverse, rows[lo:hi], inside[lo:hi], block_size)
            )
            where.append((j, lo, hi))
    step = {}
    out = map_model(
        _point_task,
        model,
        items,
        executor=executor,
        progress=progress,
        label="prediction point",
        stats=step,
        scatter_items=True,
    )
    means = np.empty((weights.size, k))
    variances = np.empty((weights.size, k))
    for (j, lo, hi), (mean, var) in zip(where, out):
        means[j, lo:hi] = mean
        variances[j, lo:hi] = var
    means += offset
    sds = np.sqrt(variances)
    starts = range(0, k, block_size)
    mixture = {}
    out = map_model(
        _mixture_task,
        weights,
        [(means[:, s : s + block_size], sds[:, s : s + block_size]) for s in starts],
        executor=executor,
        progress=progress,
        label="prediction mixture block",
        stats=mixture,
    )
    mean = np.concatenate([o[0] for o in out])
    sd = np.concatenate([o[1] for o in out])
    quantiles = np.hstack([o[2] for o in out])
    if stats is not None:
        stats.update(
            blocks=n_blocks,
            points=weights.size,
            chunks=len(bounds),
            point_tasks=len(items),
            task_bytes=step.get("task_bytes", 0.0),
            item_bytes=step.get("item_bytes", 0),
            model_bytes=step.get("model_bytes", 0),
            mixture_task_bytes=mixture.get("task_bytes", 0.0),
            points_wall=step["wall"],
            mixture_wall=mixture["wall"],
        )
    return mean, sd, quantiles
