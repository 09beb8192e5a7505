"""Models built from other models: separable Kronecker products and block-diagonal stacks."""

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

from ..errors import InputError
from ..pattern import FixedPattern
from .base import LatentModel

__all__ = ["Kronecker", "Stack"]

# Largest dense constraint matrix (entries) a composite model will build (400 MB).
MAX_CONSTRAINT_ENTRIES = 50_000_000


def _check_model(model, owner, what):
    if not isinstance(model, LatentModel):
        raise InputError(
            f"{owner}: {what} must be a gmrf_core.models latent model, got {type(model).__name__}."
        )
    return model


def _reference_pattern(model):
    """A model's fixed pattern (no diagonal added), from its precision at theta0."""
    return FixedPattern.of(model.precision(model.theta0))


def _on_block_pattern(pattern, matrix, owner, label):
    """Values of a component's matrix on its fixed pattern (PatternError if it left it)."""
    return pattern.data_of(
        matrix,
        f"{owner}: component {label!r}",
        hint="Latent models must keep the sparsity pattern they have at theta0.",
    )


def _constraint_entries_ok(rows, n, owner):
    if rows * n > MAX_CONSTRAINT_ENTRIES:
        raise InputError(
            f"{owner}: the combined constraints would be a dense {rows} × {n} matrix "
            f"(more than {MAX_CONSTRAINT_ENTRIES:.0e} entries); the model is too large for "
            "dense constraints."
        )


class Kronecker(LatentModel):
    """Separable space–time model Q = Q_t(θ_t) ⊗ Q_s(θ_s).

    The latent vector is ordered time-major: x[t * n_s + s] (as ``numpy.kron``).
    θ = θ_t ++ θ_s with names prefixed by the labels (``"time.log_tau"``, ...).
    Gradients follow the product rule: dQ/dθ_t,k = (dQ_t/dθ_t,k) ⊗ Q_s and
    dQ/dθ_s,k = Q_t ⊗ (dQ_s/dθ_s,k), all on the fixed pattern of the Kronecker
    product of the two component patterns.

    Constraints (e.g. the type IV interaction of Knorr-Held 2000 for two intrinsic
    components): with A_t, A_s the component constraints the combined row space is
    row(A_t) ⊗ R^{n_s} + R^{n_t} ⊗ row(A_s), represented without redundancy by the
    rows A_t ⊗ I_s and E_t ⊗ A_s, E_t the rows of the identity at the time points
    not selected by a pivoted QR of A_t (k_t n_s + (n_t - k_t) k_s rows). The rank
    deficiency is n_t k_s + n_s k_t - k_t k_s. Components must have zero right-hand
    sides and no mean hyperparameters.

    Log-determinant (when both components have one): the nonzero eigenvalues of
    Q_t ⊗ Q_s are the products of nonzero eigenvalues, so
    log|Q|* = (n_s - k_s) log|Q_t|* + (n_t - k_t) log|Q_s|*.

    Note that the two precision scales multiply (Q = τ_t τ_s R_t ⊗ R_s), so only
    their product is identified: fix one (e.g. a component built with a prior
    pinning it) or expect a flat direction in θ.

    Parameters
    ----------
    time_model, space_model : LatentModel
        The two factors.
    labels : tuple of two str
        Prefixes of the hyperparameter names (default ``("time", "space")``).

    Raises
    ------
    InputError
        Components that are not latent models, have a θ-dependent mean or nonzero
        constraint right-hand sides; constraints too large to store densely.
    """

    def __init__(self, time_model, space_model, labels=("time", "space")):
        owner = "Kronecker"
        self.time_model = _check_model(time_model, owner, "time_model")
        self.space_model = _check_model(space_model, owner, "space_model")
        labels = tuple(str(label) for label in labels)
        if len(labels) != 2 or labels[0] == labels[1]:
            raise InputError(f"{owner}: labels must be two distinct strings, got {labels}.")
        self.labels = labels
        for model, label in zip((self.time_model, self.space_model), labels):
            if model.has_mean:
                raise InputError(
                    f"{owner}: the {label} component has a mean hyperparameter; a Kronecker "
                    "product model has mean zero. Put the mean in a separate Stack block."
                )
            if model.constraints is not None and np.any(np.asarray(model.constraints[1]) != 0):
                raise InputError(
                    f"{owner}: the {label} component has constraints A x = e with e != 0, "
                    "which have no Kronecker counterpart."
                )
        nt, ns = self.time_model.n, self.space_model.n
        self.n = nt * ns
        self.theta_names = tuple(
            f"{labels[0]}.{name}" for name in self.time_model.theta_names
        ) + tuple(f"{labels[1]}.{name}" for name in self.space_model.theta_names)
        self.theta0 = np.concatenate(
            [np.asarray(self.time_model.theta0, float), np.asarray(self.space_model.theta0, float)]
        )
        self._split = len(self.time_model.theta_names)
        self._build_pattern()
        self._build_constraints()
        kt, ks = self.time_model.rank_deficiency, self.space_model.rank_deficiency
        self.rank_deficiency = nt * ks + ns * kt - kt * ks
        self._constraints_span_null_space = all(
            (m.constraints is None and m.rank_deficiency == 0) or m._constraints_span_null_space
            for m in (self.time_model, self.space_model)
        )

    def _build_pattern(self):
        nt, ns = self.time_model.n, self.space_model.n
        self._t_pattern = _reference_pattern(self.time_model)
        self._s_pattern = _reference_pattern(self.space_model)
        self._t_indptr, self._t_indices = self._t_pattern.indptr, self._t_pattern.indices
        self._s_indptr, self._s_indices = self._s_pattern.indptr, self._s_pattern.indices
        t_cols = np.repeat(np.arange(nt), np.diff(self._t_indptr))
        s_cols = np.repeat(np.arange(ns), np.diff(self._s_indptr))
        t_pos = np.repeat(np.arange(self._t_indices.size), self._s_indices.size)
        s_pos = np.tile(np.arange(self._s_indices.size), self._t_indices.size)
        rows = self._t_indices[t_pos].astype(np.int64) * ns + self._s_indices[s_pos]
        cols = t_cols[t_pos].astype(np.int64) * ns + s_cols[s_pos]
        order = np.lexsort((rows, cols))
        self._t_pos = t_pos[order]
        self._s_pos = s_pos[order]
        index_dtype = np.int32 if rows.size < 2**31 - 1 else np.int64
        self._indices = rows[order].astype(index_dtype)
        counts = np.bincount(cols, minlength=self.n)
        self._indptr = np.concatenate([[0], np.cumsum(counts)]).astype(index_dtype)

    def _build_constraints(self):
        nt, ns = self.time_model.n, self.space_model.n
        at = None if self.time_model.constraints is None else self.time_model.constraints[0]
        as_ = None if self.space_model.constraints is None else self.space_model.constraints[0]
        blocks = []
        if at is not None:
            at = np.asarray(at, dtype=float).reshape(-1, nt)
            _constraint_entries_ok(at.shape[0] * ns, self.n, "Kronecker")
            blocks.append(np.kron(at, np.eye(ns)))
        if as_ is not None:
            as_ = np.asarray(as_, dtype=float).reshape(-1, ns)
            if at is None:
                complement = np.eye(nt)
            else:
                # time points whose identity rows complete row(A_t) to R^{n_t}
                _, _, pivots = sla.qr(at, pivoting=True, mode="economic")
                chosen = np.sort(pivots[: at.shape[0]])
                complement = np.delete(np.eye(nt), chosen, axis=0)
            _constraint_entries_ok(
                complement.shape[0] * as_.shape[0] + sum(b.shape[0] for b in blocks),
                self.n,
                "Kronecker",
            )
            blocks.append(np.kron(complement, as_))
        if blocks:
            matrix = np.vstack(blocks)
            self.constraints = (matrix, np.zeros(matrix.shape[0]))
        else:
            self.constraints = None

    def _split_theta(self, theta):
        theta = self.check_theta(theta)
        return theta, theta[: self._split], theta[self._split :]

    def _matrix(self, data):
        return sp.csc_matrix(
            (data, self._indices.copy(), self._indptr.copy()), shape=(self.n, self.n)
        )

    def _time_data(self, matrix):
        return _on_block_pattern(self._t_pattern, matrix, "Kronecker", self.labels[0])

    def _space_data(self, matrix):
        return _on_block_pattern(self._s_pattern, matrix, "Kronecker", self.labels[1])

    def _components(self, theta_t, theta_s):
        qt = self._time_data(self.time_model.precision(theta_t))
        qs = self._space_data(self.space_model.precision(theta_s))
        return qt, qs

    def precision(self, theta):
        """Q_t ⊗ Q_s on the fixed Kronecker pattern."""
        _, theta_t, theta_s = self._split_theta(theta)
        qt, qs = self._components(theta_t, theta_s)
        return self._matrix(qt[self._t_pos] * qs[self._s_pos])

    def precision_grad(self, theta):
        """[dQ_t/dθ_t,k ⊗ Q_s for k] + [Q_t ⊗ dQ_s/dθ_s,k for k]."""
        _, theta_t, theta_s = self._split_theta(theta)
        qt, qs = self._components(theta_t, theta_s)
        qt_data = qt[self._t_pos]
        qs_data = qs[self._s_pos]
        grads = []
        for dqt in self.time_model.precision_grad(theta_t):
            grads.append(self._matrix(self._time_data(dqt)[self._t_pos] * qs_data))
        for dqs in self.space_model.precision_grad(theta_s):
            grads.append(self._matrix(qt_data * self._space_data(dqs)[self._s_pos]))
        return grads

    def _ranks(self):
        return (
            self.time_model.n - self.time_model.rank_deficiency,
            self.space_model.n - self.space_model.rank_deficiency,
        )

    def logdet(self, theta):
        """(n_s - k_s) log|Q_t|* + (n_t - k_t) log|Q_s|*, or None if a factor has none."""
        _, theta_t, theta_s = self._split_theta(theta)
        lt = self.time_model.logdet(theta_t)
        ls = self.space_model.logdet(theta_s)
        if lt is None or ls is None:
            return None
        rt, rs = self._ranks()
        return rs * float(lt) + rt * float(ls)

    def logdet_grad(self, theta):
        """(n_s - k_s) ∇log|Q_t|* ++ (n_t - k_t) ∇log|Q_s|*, or None."""
        _, theta_t, theta_s = self._split_theta(theta)
        gt = self.time_model.logdet_grad(theta_t)
        gs = self.space_model.logdet_grad(theta_s)
        if gt is None or gs is None:
            return None
        rt, rs = self._ranks()
        return np.concatenate([rs * np.asarray(gt, float), rt * np.asarray(gs, float)])

    def log_prior(self, theta):
        """Sum of the components' log priors."""
        _, theta_t, theta_s = self._split_theta(theta)
        return float(self.time_model.log_prior(theta_t) + self.space_model.log_prior(theta_s))

    def log_prior_grad(self, theta):
        """Components' log-prior gradients, concatenated."""
        _, theta_t, theta_s = self._split_theta(theta)
        return np.concatenate(
            [
                np.asarray(self.time_model.log_prior_grad(theta_t), float),
                np.asarray(self.space_model.log_prior_grad(theta_s), float),
            ]
        )

    def to_natural(self, theta):
        """Components' natural hyperparameters, keys prefixed by the labels."""
        _, theta_t, theta_s = self._split_theta(theta)
        natural = {}
        for label, model, part in zip(
            self.labels, (self.time_model, self.space_model), (theta_t, theta_s)
        ):
            for key, value in model.to_natural(part).items():
                natural[f"{label}.{key}"] = value
        return natural


class Stack(LatentModel):
    """Independent blocks: Q = blockdiag(Q_1, ..., Q_m).

    The latent vector is (x_1, ..., x_m) with x_b the latent vector of block b.
    Fixed effects are not a block: give them to
    :class:`~gmrf_core.LatentGaussianModel` as ``X=`` (vague N(0, 1/κ) prior, κ =
    its ``fixed_precision``). An empty stack (no blocks, n = 0) is the prior of a
    model whose latent vector is its fixed effects alone:
    ``LatentGaussianModel(Stack([]), likelihood, A=sp.csr_matrix((m, 0)), X=X)``.

    θ = θ_1 ++ ... ++ θ_m, names prefixed with the block labels (``"rw1.log_tau"``).
    Means, constraints (block diagonal, right-hand sides concatenated), rank
    deficiencies, log-determinants (None if a block has none), constrained
    log-determinants and log priors combine block by block.

    Parameters
    ----------
    models : sequence of LatentModel
        The blocks (may be empty: a prior of size 0).
    labels : sequence of str, optional
        Name prefixes of the blocks; default the lower-case class names, numbered
        when repeated (``"iid"``, ``"iid_2"``).

    Attributes
    ----------
    blocks : tuple of LatentModel
    labels : tuple of str
    slices : tuple of slice
        Positions of each block in the latent vector.
    theta_slices : tuple of slice
        Positions of each block's hyperparameters in θ.

    Raises
    ------
    InputError
        A block that is not a latent model, duplicate labels or labels of the wrong
        number.
    PatternError
        A block whose precision (or derivative) leaves its own fixed pattern.
    """

    def __init__(self, models, labels=None):
        owner = "Stack"
        if isinstance(models, LatentModel):
            models = [models]
        try:
            models = tuple(models)
        except TypeError as exc:
            raise InputError(f"{owner}: models must be a sequence of latent models.") from exc
        for index, model in enumerate(models):
            _check_model(model, owner, f"models[{index}]")
        self.blocks = models
        self.labels = self._make_labels(models, labels)
        self.n = sum(m.n for m in models)
        slices, theta_slices, names = [], [], []
        start = theta_start = 0
        for label, model in zip(self.labels, models):
            slices.append(slice(start, start + model.n))
            p = len(model.theta_names)
            theta_slices.append(slice(theta_start, theta_start + p))
            names.extend(f"{label}.{name}" for name in model.theta_names)
            start += model.n
            theta_start += p
        self.slices = tuple(slices)
        self.theta_slices = tuple(theta_slices)
        self.theta_names = tuple(names)
        self.theta0 = (
            np.concatenate([np.asarray(m.theta0, float).reshape(-1) for m in models])
            if models
            else np.zeros(0)
        )
        self.has_mean = any(m.has_mean for m in models)
        self.rank_deficiency = sum(m.rank_deficiency for m in models)
        self._constraints_span_null_space = all(
            (m.constraints is None and m.rank_deficiency == 0) or m._constraints_span_null_space
            for m in models
        )
        self._build_pattern()
        self._build_constraints()

    @staticmethod
    def _make_labels(models, labels):
        if labels is None:
            labels, seen = [], {}
            for model in models:
                base = type(model).__name__.lower()
                seen[base] = seen.get(base, 0) + 1
                labels.append(base if seen[base] == 1 else f"{base}_{seen[base]}")
            # a numbered label could collide with a given base name; make them unique
            if len(set(labels)) != len(labels):
                labels = [f"block{i}" for i in range(len(models))]
        labels = tuple(str(label) for label in labels)
        if len(labels) != len(models):
            raise InputError(f"Stack: {len(labels)} labels for {len(models)} models.")
        if len(set(labels)) != len(labels):
            raise InputError(f"Stack: labels must be distinct, got {labels}.")
        return labels

    def _build_pattern(self):
        indptr_parts, index_parts = [np.zeros(1, dtype=np.int64)], []
        self._data_slices = []
        self._block_patterns = []
        nnz = 0
        for block, where in zip(self.blocks, self.slices):
            pattern = _reference_pattern(block)
            self._block_patterns.append(pattern)
            indptr_parts.append(pattern.indptr[1:].astype(np.int64) + nnz)
            index_parts.append(pattern.indices.astype(np.int64) + where.start)
            self._data_slices.append(slice(nnz, nnz + pattern.nnz))
            nnz += pattern.nnz
        index_parts.append(np.zeros(0, dtype=np.int64))
        index_dtype = np.int32 if nnz < 2**31 - 1 else np.int64
        self._indptr = np.concatenate(indptr_parts).astype(index_dtype)
        self._indices = np.concatenate(index_parts).astype(index_dtype)
        self._nnz = nnz

    def _build_constraints(self):
        rows = [
            (block, where)
            for block, where in zip(self.blocks, self.slices)
            if block.constraints is not None
        ]
        if not rows:
            self.constraints = None
            return
        k = sum(np.asarray(block.constraints[0]).reshape(-1, block.n).shape[0] for block, _ in rows)
        _constraint_entries_ok(k, self.n, "Stack")
        matrix = np.zeros((k, self.n))
        rhs = np.zeros(k)
        row = 0
        for block, where in rows:
            a, e = block.constraints
            a = np.asarray(a, dtype=float).reshape(-1, block.n)
            matrix[row : row + a.shape[0], where] = a
            rhs[row : row + a.shape[0]] = np.asarray(e, dtype=float).reshape(-1)
            row += a.shape[0]
        self.constraints = (matrix, rhs)

    def _parts(self, theta):
        theta = self.check_theta(theta)
        return theta, [theta[s] for s in self.theta_slices]

    def _matrix(self, data):
        return sp.csc_matrix(
            (data, self._indices.copy(), self._indptr.copy()), shape=(self.n, self.n)
        )

    def _block_data(self, index, matrix):
        return _on_block_pattern(self._block_patterns[index], matrix, "Stack", self.labels[index])

    def precision(self, theta):
        """blockdiag(Q_1(θ_1), ..., Q_m(θ_m)) on the fixed pattern."""
        _, parts = self._parts(theta)
        data = np.zeros(self._nnz)
        for index, (block, part) in enumerate(zip(self.blocks, parts)):
            data[self._data_slices[index]] = self._block_data(index, block.precision(part))
        return self._matrix(data)

    def precision_grad(self, theta):
        """dQ/dθ_k: the block's derivative in its place, zeros elsewhere (same pattern)."""
        _, parts = self._parts(theta)
        grads = []
        for index, (block, part) in enumerate(zip(self.blocks, parts)):
            for dq in block.precision_grad(part):
                data = np.zeros(self._nnz)
                data[self._data_slices[index]] = self._block_data(index, dq)
                grads.append(self._matrix(data))
        return grads

    def mean(self, theta):
        """(μ_1(θ_1), ..., μ_m(θ_m))."""
        _, parts = self._parts(theta)
        mean = np.zeros(self.n)
        for block, part, where in zip(self.blocks, parts, self.slices):
            mean[where] = block.mean(part)
        return mean

    def mean_grad(self, theta):
        """Block-diagonal dμ/dθ, shape (len(θ), n)."""
        theta, parts = self._parts(theta)
        grad = np.zeros((theta.size, self.n))
        for block, part, where, theta_where in zip(
            self.blocks, parts, self.slices, self.theta_slices
        ):
            grad[theta_where, where] = np.asarray(block.mean_grad(part), float).reshape(
                part.size, block.n
            )
        return grad

    def _sum_blocks(self, method, parts, extra):
        total = extra
        for block, part in zip(self.blocks, parts):
            value = getattr(block, method)(part)
            if value is None:
                return None
            total += float(value)
        return total

    def _concat_blocks(self, method, parts):
        pieces = []
        for block, part in zip(self.blocks, parts):
            value = getattr(block, method)(part)
            if value is None:
                return None
            pieces.append(np.asarray(value, float).reshape(part.size))
        return np.concatenate(pieces) if pieces else np.zeros(0)

    def logdet(self, theta):
        """Σ_b log|Q_b|*, or None if a block has no analytic log-determinant."""
        _, parts = self._parts(theta)
        return self._sum_blocks("logdet", parts, 0.0)

    def logdet_grad(self, theta):
        """Blocks' log-determinant gradients, concatenated (None if one is missing)."""
        _, parts = self._parts(theta)
        return self._concat_blocks("logdet_grad", parts)

    def constrained_logdet(self, theta):
        """Σ_b constrained log-determinant of block b, or None."""
        _, parts = self._parts(theta)
        return self._sum_blocks("constrained_logdet", parts, 0.0)

    def constrained_logdet_grad(self, theta):
        """Blocks' constrained log-determinant gradients, concatenated, or None."""
        _, parts = self._parts(theta)
        return self._concat_blocks("constrained_logdet_grad", parts)

    def log_prior(self, theta):
        """Σ_b log prior of block b."""
        _, parts = self._parts(theta)
        return float(sum(block.log_prior(part) for block, part in zip(self.blocks, parts)))

    def log_prior_grad(self, theta):
        """Blocks' log-prior gradients, concatenated."""
        _, parts = self._parts(theta)
        return self._concat_blocks("log_prior_grad", parts)

    def to_natural(self, theta):
        """Blocks' natural hyperparameters, keys prefixed by the labels."""
        _, parts = self._parts(theta)
        natural = {}
        for label, block, part in zip(self.labels, self.blocks, parts):
            for key, value in block.to_natural(part).items():
                natural[f"{label}.{key}"] = value
        return natural
