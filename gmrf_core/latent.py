"""The latent structure of a latent Gaussian model: Ã = [A X], Q̃ and H on fixed patterns.

The latent vector z = (x, β) stacks the latent field x (prior N(μ(θ), Q(θ)⁻¹),
optionally with hard constraints A_c x = e) and the fixed effects β (vague prior
N(0, τ_β⁻¹ I)), so that::

    Q̃ = blockdiag(Q(θ), τ_β I),   μ̃ = (μ(θ), 0),   η = Ã z + offset,   Ã = [A X].

Everything that is about the *structure* and not about a particular objective lives
here, once: validation of the model's pieces, the fixed pattern of Q̃ and of
H = Q̃ + Ãᵀ W Ã (one symbolic analysis of each, at set-up), assembling H on its
pattern, the positions of Q̃'s entries and of the pairs of each row of Ã in the
factor's storage (so that tr(Σ dQ̃) and diag(Ã Σ Ãᵀ) are gathers), the prior
log-determinant on the constraint surface and its gradient, and the θ-partials of
the prior terms at fixed (z, Σ) shared by the Laplace objective and the ELBO.
:mod:`gmrf_core.laplace` (Newton, objective, gradients) and
:mod:`gmrf_core.variational` use it.

Thread safety: a LatentStructure is read-only after set-up except for its pools of
work factors, which hand each call its own factor (see :class:`FactorPool`).
"""

import numbers
import weakref
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .constrained import ConstrainedFactor, as_constraints
from .errors import GMRFError, InputError, NotPositiveDefiniteError
from .kernels import _status
from .kernels import assemble as _kasm
from .kernels import symbolic as _ksym
from .linalg import FactorPool, _raise_for, analyze, as_csc
from .pattern import FixedPattern
from .rules import sparse as sparse_rules

__all__ = [
    "LatentStructure",
    "Theta",
    "PriorLogdet",
    "FactorPool",
    "prior_cotangent",
    "prior_partials",
]


def _is_real_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_)


def _append_diagonal(M, diagonal):
    """blockdiag(M, diag(diagonal)) for a canonical CSC matrix M, without a general
    block_diag (whose COO round trip costs more than the rest of the assembly); the
    diagonal's entries are stored even where they are zero."""
    n0, k = M.shape[0], diagonal.size
    index = np.int64 if M.nnz + k >= 2**31 - 1 else M.indices.dtype
    indptr = np.concatenate([M.indptr, M.indptr[-1] + np.arange(1, k + 1, dtype=index)])
    indices = np.concatenate([M.indices, np.arange(n0, n0 + k, dtype=index)])
    data = np.concatenate([M.data, diagonal])
    return sp.csc_matrix((data, indices, indptr), shape=(n0 + k, n0 + k))


@dataclass(frozen=True)
class Theta:
    """θ validated once and split: ``full`` = (``prior``, ``likelihood``)."""

    full: np.ndarray
    prior: np.ndarray
    likelihood: np.ndarray


class PriorLogdet:
    """log det(BᵀQ̃B) of the prior at one θ (B: basis of the constraint surface), and its
    gradient, each computed once.

    Analytic from the model where it provides one (decided at set-up), else from one
    factorization of Q̃ whose selected inverse also gives the gradient
    tr(Σ_Q dQ̃_k) (Σ_Q the constrained inverse of Q̃).
    """

    def __init__(self, structure, theta_prior, Q_tilde):
        self._item = None
        self._structure = structure
        self._theta_prior = theta_prior
        self._Q_tilde = Q_tilde
        self._grad = None
        self._constrained = None
        s = structure
        fixed = s.n_fixed * np.log(s.fixed_precision)
        if s._analytic_logdet is not None:
            self.value = float(s._analytic_logdet(theta_prior)) + fixed
        else:
            # one factorization of Q̃ per θ, held (not copied) until close() for the gradient
            self._item = s.prior_pool.acquire()
            try:
                self._item[0].data[:] = Q_tilde.data
                factor = FactorPool.factorize(
                    self._item, s.prior_symbolic, checked=s.checked_prior(Q_tilde)
                )
                self._constrained = ConstrainedFactor(factor, s.constraints)
                self.value = self._constrained.logdet()
            except BaseException:
                self.close()
                raise

    def close(self):
        """Give the factor of Q̃ back to the pool (the gradient is no longer available)."""
        if self._item is not None:
            self._structure.prior_pool.release(self._item)
            self._item = None

    @property
    def analytic(self):
        return self._structure._analytic_logdet is not None

    def cotangent(self):
        """Σ_Q = (BᵀQ̃B)⁻¹ in z's coordinates, on Q̃'s pattern: the cotangent of
        log det(BᵀQ̃B) in the values of Q̃ (factorized priors only; None when analytic)."""
        if self.analytic:
            return None
        if self._item is None:  # pragma: no cover - a misuse inside the library
            raise RuntimeError("PriorLogdet.cotangent after close(): the factor is gone.")
        s, cf = self._structure, self._constrained
        inverse = sparse_rules.inverse_at_positions(
            cf.selected_inverse(), cf.factor.symbolic.q_positions
        )
        if cf._lowrank:  # constraints: less their low-rank part (no zeros subtracted else)
            inverse -= cf.lowrank_pairs(s.q_pattern.indptr, s.q_pattern.indices)
        return inverse

    def analytic_grad(self):
        """∂ log det(BᵀQ̃B)/∂θ from the model (analytic priors only)."""
        grad = self._structure._analytic_logdet_grad(self._theta_prior)
        if grad is None:
            raise InputError("the prior gives an analytic log-determinant but no gradient.")
        return np.asarray(grad, dtype=float)

    def grad(self, dQ):
        """∂/∂θ_k log det(BᵀQ̃B) for the dQ̃_k value arrays ``dQ``."""
        if self._grad is None:
            if self.analytic:
                self._grad = self.analytic_grad()
            else:
                cotangent = self.cotangent()
                self._grad = np.array([float(cotangent @ d) for d in dQ])
        return self._grad


def prior_cotangent(structure, Q_tilde, r, constrained, prior_logdet, adjoint=None, mean=True):
    """Cotangents (Q̄, μ̄) of the prior terms in the values of Q̃ (on its pattern) and in μ̃.

    The prior terms shared by the Laplace objective (at fixed z*, Σ_c its covariance)
    and by −ELBO (at fixed q, Σ_c q's covariance) are::

        F = ½ rᵀQ̃r + ½ tr(Σ_c Q̃) − ½ log det(BᵀQ̃B)      (r = z − μ̃)

    with, by the rules of :mod:`gmrf_core.rules.sparse` (quad, logdet; values by stored
    position), Q̄ = ½ r rᵀ + ½ Σ_c − ½ Σ_Q on Q̃'s pattern (Σ_Q = (BᵀQ̃B)⁻¹ in z's
    coordinates; left out for an analytic log-determinant, whose gradient the model
    gives) and μ̄ = −Q̃ r. With ``adjoint`` λ the implicit term −λᵀ ∂(∇_z g)/∂θ of the
    Laplace gradient is folded in: Q̄ −= sym(r λᵀ), μ̄ += Q̃ λ. Then
    ∂F/∂θ_k = Q̄ · dQ̃_k + μ̄ · dμ̃_k (plain dot products of stored values). With ``mean``
    False μ̄ is not computed (None): a prior whose mean does not depend on θ needs none.
    """
    qp = structure.q_pattern
    Q_bar = structure.covariance_on_prior_pattern(constrained)
    Q_bar *= 0.5
    r = np.ascontiguousarray(r, dtype=np.float64)
    # the outer products are added in place, in one pass over the pattern each
    _kasm._add_outer_on_pattern(qp.indptr, qp.indices, r, r, 0.5, Q_bar)
    cotangent = prior_logdet.cotangent()
    if cotangent is not None:
        cotangent *= 0.5
        Q_bar -= cotangent
    mu_bar = -(Q_tilde @ r) if mean else None
    if adjoint is not None:
        adjoint = np.ascontiguousarray(adjoint, dtype=np.float64)
        _kasm._add_outer_on_pattern(qp.indptr, qp.indices, r, adjoint, -1.0, Q_bar)
        if mean:
            mu_bar += Q_tilde @ adjoint
    return Q_bar, mu_bar


def prior_partials(structure, Q_tilde, r, constrained, dQ, dmu, prior_logdet, adjoint=None):
    """∂F/∂θ_k of the prior terms of :func:`prior_cotangent` for the prior's θ_k at fixed
    (z, Σ_c) (with the Laplace gradient's implicit term when ``adjoint`` is given): one
    O(nnz) dot product per hyperparameter. Where dμ̃/dθ vanishes (a mean that does not
    depend on θ, the usual case) μ̄ is not formed: two products with Q̃ fewer."""
    if not len(dQ):
        return np.zeros(0)
    mean = bool(np.any(dmu))
    Q_bar, mu_bar = prior_cotangent(
        structure, Q_tilde, r, constrained, prior_logdet, adjoint, mean=mean
    )
    partial = np.array([float(Q_bar @ d) for d in dQ])
    if mean:
        partial += dmu @ mu_bar
    if prior_logdet.analytic:
        partial -= 0.5 * prior_logdet.analytic_grad()
    return partial


class LatentStructure:
    """Ã = [A X], the fixed patterns of Q̃ and H, and everything computed from them.

    Parameters
    ----------
    prior : gmrf_core.models.LatentModel
    likelihood : gmrf_core.likelihoods.Likelihood
    A : sparse matrix (m, n), optional
        Projection of the latent field onto the observations (identity when None).
    X : array (m, p), optional
        Design matrix of the fixed effects β.
    offset : array (m,) or scalar, optional
    fixed_precision : float
        τ_β of the N(0, τ_β⁻¹) prior of each fixed effect.
    ordering : str
        Fill-reducing ordering of H (see :func:`gmrf_core.analyze`).
    threads : int
        Threads of the factorizations and selected inversions.

    Raises
    ------
    InputError
        Pieces that are not a latent model / likelihood, shapes that do not match,
        NaN/inf entries, bad constraints, an intrinsic prior without an analytic
        log-determinant.
    """

    def __init__(
        self,
        prior,
        likelihood,
        A=None,
        X=None,
        offset=None,
        *,
        fixed_precision=1e-3,
        ordering="auto",
        threads=1,
    ):
        for attr in ("n", "theta0", "precision", "precision_grad"):
            if not hasattr(prior, attr):
                raise InputError(f"prior must be a latent model (missing .{attr}); got {prior!r}.")
        for attr in ("n", "theta0", "log_density", "eta_derivatives", "theta_derivatives"):
            if not hasattr(likelihood, attr):
                raise InputError(f"likelihood must be a Likelihood (missing .{attr}).")
        self.prior = prior
        self.likelihood = likelihood
        n, m = int(prior.n), int(likelihood.n)
        if A is None:
            if m != n:
                raise InputError(
                    f"without a projection A the likelihood needs one observation per latent "
                    f"variable ({n}); it has {m}. Pass A of shape ({m}, {n})."
                )
            A = sp.eye(n, format="csr")
        else:
            A = sp.csr_matrix(A, dtype=np.float64)
            if A.shape != (m, n):
                raise InputError(f"A must have shape ({m}, {n}); got {A.shape}.")
            if not np.all(np.isfinite(A.data)):
                raise InputError("A has NaN or infinite entries.")
        if X is None:
            X = np.zeros((m, 0))
        else:
            X = np.asarray(X.toarray() if sp.issparse(X) else X, dtype=np.float64)
            if X.ndim == 1:
                X = X[:, None]
            if X.ndim != 2 or X.shape[0] != m:
                raise InputError(f"X must have shape ({m}, p); got {X.shape}.")
            if not np.all(np.isfinite(X)):
                raise InputError("X has NaN or infinite entries.")
        if offset is None:
            offset = np.zeros(m)
        offset = np.asarray(offset, dtype=np.float64)
        if offset.ndim == 0:
            offset = np.full(m, float(offset))
        if offset.shape != (m,) or not np.all(np.isfinite(offset)):
            raise InputError(f"offset must be a finite array of shape ({m},).")
        if not (np.isfinite(fixed_precision) and fixed_precision > 0):
            raise InputError(f"fixed_precision must be positive; got {fixed_precision}.")
        self.n_latent = n
        self.n_fixed = X.shape[1]
        self.n_total = n + self.n_fixed
        self.n_obs = m
        self.A = A
        self.X = X
        self.offset = offset
        self.fixed_precision = float(fixed_precision)
        self.n_theta_prior = len(prior.theta0)
        self.n_theta_lik = len(likelihood.theta0)
        self.theta_names = tuple(prior.theta_names) + tuple(likelihood.theta_names)
        self.theta0 = np.concatenate(
            [np.asarray(prior.theta0, float), np.asarray(likelihood.theta0, float)]
        )
        # missing observations contribute nothing: their rows are dropped from Ã_obs
        self.observed = np.asarray(getattr(likelihood, "observed", np.ones(m, bool)), bool)
        self.A_full = sp.csr_matrix(sp.hstack([A, sp.csr_matrix(X)]))
        self.A_full.sort_indices()
        a_obs = sp.csr_matrix(sp.diags_array(self.observed.astype(float)) @ self.A_full)
        a_obs.eliminate_zeros()
        a_obs.sort_indices()
        self.A_obs = a_obs
        self._setup_transposes()
        constraints = as_constraints(getattr(prior, "constraints", None), n)
        self.constraints = None if constraints is None else constraints.padded(self.n_total)
        self._setup_prior_logdet()
        self._setup_patterns(ordering, threads)
        self._setup_grounding()

    # rebuilt on load by _setup_pattern_maps (faster than shipping them)
    _DERIVED = ("_q_mirror", "_q_diag", "_q_pos")
    # views of Ã's arrays as transposed matrices, remade on load by _setup_transposes
    _TRANSPOSES = ("A_full_T", "A_obs_T")

    def __getstate__(self):
        # which Q̃ arrays were checked is about this process's objects, not the model's value
        state = dict(self.__dict__)
        state.pop("_checked", None)
        for key in self._DERIVED + self._TRANSPOSES:
            state.pop(key, None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._checked = weakref.WeakValueDictionary()
        self._setup_pattern_maps()
        self._setup_transposes()

    # -- set-up ------------------------------------------------------------------------
    def _setup_transposes(self):
        """Ã_fullᵀ and Ã_obsᵀ, which the Newton steps and the sensitivities multiply by, made
        once (views of Ã's arrays): a new matrix object per ``.T`` costs as much as the
        product itself at 10⁴ observations."""
        self.A_full_T = self.A_full.T
        self.A_obs_T = self.A_obs.T

    def _setup_prior_logdet(self):
        """Decide once whether the prior's log-determinant is analytic."""
        prior = self.prior
        logdet = getattr(prior, "constrained_logdet", None)
        logdet_grad = getattr(prior, "constrained_logdet_grad", None)
        if logdet is None and self.constraints is None:
            logdet, logdet_grad = (
                getattr(prior, "logdet", None),
                getattr(prior, "logdet_grad", None),
            )
        # availability is a property of the model, not of θ: asked once, at θ0
        theta0 = np.asarray(prior.theta0, float)
        if logdet is not None and logdet(theta0) is None:
            logdet = logdet_grad = None
        self._analytic_logdet = logdet
        self._analytic_logdet_grad = logdet_grad
        if logdet is None and getattr(prior, "rank_deficiency", 0):
            raise InputError(
                "an intrinsic prior must provide its (constrained) log-determinant analytically."
            )

    def _prior_blocks(self, theta_prior):
        Q = as_csc(self.prior.precision(theta_prior), "prior.precision(theta)")
        if Q.shape != (self.n_latent, self.n_latent):
            raise InputError(
                f"prior.precision returned shape {Q.shape}, expected n = {self.n_latent}."
            )
        if self.n_fixed:
            Q = _append_diagonal(Q, np.full(self.n_fixed, self.fixed_precision))
        return Q

    def _setup_patterns(self, ordering, threads):
        Q_tilde = self._prior_blocks(self.theta0[: self.n_theta_prior])
        self.q_pattern = FixedPattern.of(Q_tilde)
        qp = self.q_pattern
        self._checked = weakref.WeakValueDictionary()
        # the prior's own pattern: Q̃'s first n_latent columns (the fixed block comes last)
        self._prior_pattern = (
            qp.indptr[: self.n_latent + 1],
            qp.indices[: qp.indptr[self.n_latent]],
        )
        # whether the prior hands Q and dQ/dθ as value arrays (``precision_values``,
        # ``precision_grad_values``) on it: the pattern is compared once, here
        pattern = getattr(self.prior, "precision_pattern", None)
        on_pattern = pattern is not None and all(
            np.array_equal(a, b) for a, b in zip(pattern(), self._prior_pattern)
        )
        self._values_on_pattern = on_pattern and hasattr(self.prior, "precision_values")
        share = getattr(self.prior, "share_pattern", None)
        if on_pattern and share is not None:  # one copy of the prior's pattern (300²: 4.4 MiB)
            share(*self._prior_pattern)
        self._grad_values_on_pattern = on_pattern and hasattr(self.prior, "precision_grad_values")
        # H's pattern covers every row of Ã, missing ones too, so that predictive variances
        # at unobserved locations are available from the selected inverse
        a_all = self.A_full
        a_ones = sp.csr_matrix((np.ones(a_all.nnz), a_all.indices, a_all.indptr), shape=a_all.shape)
        self.h_pattern = FixedPattern([Q_tilde, sp.csc_matrix(a_ones.T @ a_ones)], self.n_total)
        hp = self.h_pattern
        H0 = hp.matrix(np.zeros(hp.nnz))
        self.symbolic = analyze(H0, ordering=ordering, threads=threads)
        # one copy of H's index arrays: the analysis keeps read-only ones equal to the
        # pattern's (at 300² 5.1 MiB of row indices once instead of twice)
        for name in ("indptr", "indices"):
            own, kept = getattr(hp, name), getattr(self.symbolic, f"_{name}")
            if own.dtype == kept.dtype and np.array_equal(own, kept):
                setattr(hp, name, kept)
        self.hessian_pool = FactorPool(self.symbolic, (hp.indptr, hp.indices, hp.shape))
        self._setup_pattern_maps()
        self._setup_positions()
        # Q̃ itself is analysed once, here, when its log-determinant must be factorized
        self.prior_symbolic = None
        self.prior_pool = None
        if self._analytic_logdet is None:
            self.prior_symbolic = analyze(Q_tilde, threads=threads)
            self.prior_pool = FactorPool(self.prior_symbolic, (qp.indptr, qp.indices, qp.shape))

    def _setup_pattern_maps(self):
        """Maps of Q̃'s pattern onto itself and into H's, cheaper to rebuild (one O(nnz) sweep
        each: 2 + 3 ms at 300², 31 + 50 ms at 1000²) than to ship (9 + 9 and 93 + 93 ms at
        0.5 GB/s): not pickled, made again on load, equal to the originals."""
        qp, hp = self.q_pattern, self.h_pattern
        # mirror positions of Q̃'s pattern, for checking its values once per θ (None: the
        # pattern is not symmetric, and the factorizations' own checks report it)
        self._q_mirror = np.empty(qp.nnz, dtype=np.int64)
        self._q_diag = np.empty(self.n_total, dtype=np.int64)
        code, _column = _ksym._mirror_map(
            self.n_total,
            qp.indptr,
            qp.indices,
            self._q_mirror,
            np.empty(self.n_total + 1, dtype=np.int64),
            self._q_diag,
        )
        if code != _status.OK:
            self._q_mirror = self._q_diag = None
        self._q_pos = np.empty(qp.nnz, dtype=np.int64)
        code, _column = _kasm._subpattern_positions(
            self.n_total, qp.indptr, qp.indices, hp.indptr, hp.indices, self._q_pos
        )
        if code != _kasm.OK:  # pragma: no cover - H's pattern contains Q̃'s by construction
            raise RuntimeError("internal: Q̃'s pattern is not inside H's.")

    def _setup_positions(self):
        """The products a_ik a_il of Ã's rows, their positions in H's pattern and the factor
        storage positions (pickled: at 10⁶ latent variables their set-up costs more than
        their bytes)."""
        hp = self.h_pattern
        h_ptr, h_idx = hp.indptr.astype(np.int64), hp.indices.astype(np.int64)
        a = self.A_obs
        count = int(_kasm._product_count(a.indptr.astype(np.int64)))
        self._trip_pos = np.empty(count, dtype=np.int64)
        self._trip_obs = np.empty(count, dtype=np.int64)
        self._trip_val = np.empty(count)
        code, _row = _kasm._product_positions(
            a.indptr.astype(np.int64),
            a.indices.astype(np.int64),
            a.data,
            h_ptr,
            h_idx,
            self._trip_pos,
            self._trip_obs,
            self._trip_val,
        )
        if code != _kasm.OK:  # pragma: no cover - H's pattern contains ÃᵀÃ's by construction
            raise RuntimeError("internal: ÃᵀÃ's pattern is not inside H's.")
        # positions in the factor storage of Q̃'s entries and of the products a_ik a_il, so
        # that tr(Σ dQ̃) and diag(Ã Σ Ãᵀ) are gathers from a selected inverse: those of H's
        # entries picked at their positions in H's pattern
        on_h = self.symbolic._storage_positions()
        self._q_store = on_h[self._q_pos]
        self._trip_store = on_h[self._trip_pos]

    def _setup_grounding(self):
        """Constraint rows that no observation touches: their null-space direction of an
        intrinsic prior is unobserved, so H is singular there; ground one variable each.

        H' = H + Σ_j δ_j e_{s_j} e_{s_j}ᵀ is positive definite and, by the exact rank-g
        correction of :class:`~gmrf_core.constrained.ConstrainedFactor`, gives the same
        Gaussian on the constraint surface as H (Σ_c, log det(BᵀHB), solves).
        """
        self._ground = None
        if self.constraints is None:
            return
        touched = np.zeros(self.n_total, bool)
        touched[self.A_obs.indices] = True
        rows = []
        for a in self.constraints.A:
            support = np.flatnonzero(a)
            if support.size and not np.any(touched[support]):
                rows.append(int(support[np.argmax(np.abs(a[support]))]))
        if not rows:
            return
        rows = np.unique(rows)
        hp = self.h_pattern
        # position of each grounded diagonal entry in H's values (the pattern has the diagonal)
        pos = np.array(
            [
                hp.indptr[j] + np.searchsorted(hp.indices[hp.indptr[j] : hp.indptr[j + 1]], j)
                for j in rows
            ]
        )
        self._ground = (rows, pos.astype(np.int64))

    # -- θ -------------------------------------------------------------------------------
    def split_theta(self, theta):
        """Validate θ once and split it -> :class:`Theta` (full, prior, likelihood)."""
        if isinstance(theta, Theta):
            return theta
        if np.iscomplexobj(theta):
            raise InputError(f"theta must be real; got {theta!r}.")
        # NumPy would parse strings ("0.2") and unwrap object arrays: only numbers are θ
        raw = np.asarray(theta)
        if raw.dtype.kind not in "biuf" and not (
            raw.dtype.kind == "O" and all(_is_real_number(v) for v in raw.reshape(-1))
        ):
            raise InputError(f"theta must be a vector of real numbers; got {theta!r}.")
        try:
            values = np.asarray(theta, dtype=float).reshape(-1)
        except (TypeError, ValueError) as exc:
            raise InputError(f"theta must be a vector of numbers; got {theta!r}.") from exc
        if values.size != len(self.theta0):
            raise InputError(
                f"theta must have {len(self.theta0)} entries {self.theta_names}; got {values.size}."
            )
        if not np.all(np.isfinite(values)):
            raise InputError(f"theta must be finite; got {values}.")
        values = values.copy()
        return Theta(values, values[: self.n_theta_prior], values[self.n_theta_prior :])

    # -- the prior on z ------------------------------------------------------------------
    def prior_precision(self, theta_prior):
        """Q̃ = blockdiag(Q(θ), τ_β I) on its fixed pattern (CSC)."""
        if self._values_on_pattern:
            # the prior's values on Q̃'s own pattern (checked at set-up): the fixed effects'
            # diagonal appended, no matrix converted or mapped onto the pattern
            data = self._with_fixed_block(
                self.prior.precision_values(theta_prior),
                self.fixed_precision,
                "prior.precision_values(theta)",
            )
        else:
            data = self.q_pattern.data_of(
                self._prior_blocks(theta_prior),
                "prior.precision(theta)",
                "The prior's pattern must not change with theta.",
            )
        return self._checked_matrix(data)

    def _with_fixed_block(self, values, diagonal, name):
        """Values on Q̃'s pattern: ``values`` on the prior's own pattern (one per entry of
        its ``precision_pattern()``), then ``diagonal`` for the fixed effects' block.

        Raises
        ------
        InputError
            ``values`` is not one value per entry of the prior's pattern.
        """
        values = np.asarray(values, dtype=float)
        k = self._prior_pattern[1].size
        if values.shape != (k,):
            raise InputError(
                f"{name} has shape {values.shape}; expected ({k},), one value per entry of "
                "precision_pattern()."
            )
        data = np.empty(self.q_pattern.nnz)
        data[:k] = values
        data[k:] = diagonal
        return data

    def _checked_matrix(self, data):
        """Q̃ on its pattern with the values ``data``, checked once (finite, symmetric to the
        factorizations' tolerance), here: the factorizations of H assembled from it, and of
        Q̃ itself, then take the values as they are (:meth:`checked_prior`). The values are
        made read-only, so that what was checked cannot change."""
        Q_tilde = self.q_pattern.matrix(data)
        if self._q_mirror is not None:
            rtol = self.symbolic.symmetry_rtol
            code, column = _ksym._check_values(
                self.n_total,
                self.q_pattern.indptr,
                self.q_pattern.indices,
                data,
                self._q_mirror,
                rtol,
                self._q_diag,
            )
            _raise_for(code, column, name="prior.precision(theta)", rtol=rtol)
            data.flags.writeable = Q_tilde.data.flags.writeable = False  # (scipy keeps a view)
            self._checked[id(Q_tilde.data)] = Q_tilde.data
        return Q_tilde

    def checked_prior(self, Q_tilde):
        """True if ``Q_tilde`` is a Q̃ from :meth:`prior_precision` (its values checked and
        read-only since)."""
        data = Q_tilde.data
        return self._checked.get(id(data)) is data and not data.flags.writeable

    def prior_precision_grad(self, theta_prior):
        """dQ̃/dθ_k as value arrays on the pattern of :meth:`prior_precision`."""
        grads = []
        if not self.n_theta_prior:
            return grads
        if self._grad_values_on_pattern:
            # the prior's values on Q̃'s own pattern: the fixed effects' zero diagonal
            # appended, no matrices assembled
            return [
                self._with_fixed_block(values, 0.0, f"prior.precision_grad_values(theta)[{k}]")
                for k, values in enumerate(self.prior.precision_grad_values(theta_prior))
            ]
        for k, dQ in enumerate(self.prior.precision_grad(theta_prior)):
            dQ = as_csc(dQ, f"precision_grad[{k}]")
            if self.n_fixed:
                if np.array_equal(dQ.indptr, self._prior_pattern[0]) and np.array_equal(
                    dQ.indices, self._prior_pattern[1]
                ):
                    # on the prior's own pattern: Q̃'s values are dQ's and the zero diagonal
                    # of the fixed effects, appended without assembling a matrix
                    grads.append(np.concatenate([dQ.data, np.zeros(self.n_fixed)]))
                    continue
                dQ = _append_diagonal(dQ, np.zeros(self.n_fixed))
            grads.append(self.q_pattern.data_of(dQ, f"precision_grad[{k}]"))
        return grads

    def prior_mean(self, theta_prior):
        """μ̃ = (μ(θ), 0) of z = (x, β)."""
        mu = np.zeros(self.n_total)
        mu[: self.n_latent] = self.prior.mean(theta_prior)
        return mu

    def prior_mean_grad(self, theta_prior):
        """dμ̃/dθ_k, shape (n_theta_prior, n_total)."""
        grad = np.zeros((self.n_theta_prior, self.n_total))
        if self.n_theta_prior:
            grad[:, : self.n_latent] = self.prior.mean_grad(theta_prior)
        return grad

    def prior_logdet(self, theta_prior, Q_tilde):
        """:class:`PriorLogdet` of log det(BᵀQ̃B) at θ (value now, gradient on demand)."""
        return PriorLogdet(self, theta_prior, Q_tilde)

    def log_prior(self, theta):
        """log π(θ) from the prior's and the likelihood's hyperparameter priors (0 if none)."""
        theta = self.split_theta(theta)
        value = 0.0
        if self.n_theta_prior:
            value += float(self.prior.log_prior(theta.prior))
        if self.n_theta_lik:
            value += float(self.likelihood.log_prior(theta.likelihood))
        return value

    def log_prior_grad(self, theta):
        """Gradient of :meth:`log_prior`."""
        theta = self.split_theta(theta)
        parts = []
        if self.n_theta_prior:
            parts.append(np.asarray(self.prior.log_prior_grad(theta.prior), dtype=float))
        if self.n_theta_lik:
            parts.append(np.asarray(self.likelihood.log_prior_grad(theta.likelihood), dtype=float))
        return np.concatenate(parts) if parts else np.zeros(0)

    # -- starting values -------------------------------------------------------------------
    def start_from_data(self):
        """θ0 with the prior's part chosen from the data where the prior can -> θ.

        The prior's hook ``start_from_data(field)`` (e.g.
        :meth:`gmrf_core.models.Matern2D.start_from_data`) gets, per latent node, the
        working response of the likelihood at a constant linear predictor
        η = offset + c (c fitted by a few scalar Newton steps),
        u = c + ∂ℓ/∂η / (−∂²ℓ/∂η²) — the first step of iteratively reweighted least
        squares, x plus independent noise — less its least-squares fit on X. O(n)
        work. Without a hook, with an A other than the identity, or when anything
        fails or the hook returns None, :attr:`theta0` is returned unchanged: this never
        makes a fit fail.
        """
        theta0 = self.theta0.copy()
        hook = getattr(self.prior, "start_from_data", None)
        if hook is None or self.n_obs != self.n_latent:
            return theta0
        A, n = self.A, self.n_latent
        # one entry per row, in its own column (the row pointers too: n entries at columns
        # 0, ..., n-1 may sit in other rows), equal to one
        identity = np.array_equal(A.indptr, np.arange(n + 1)) and np.array_equal(
            A.indices, np.arange(n)
        )
        if not (identity and np.all(A.data == 1.0)):
            return theta0
        k = self.n_theta_prior
        theta_lik = theta0[k:]
        observed = self.observed
        try:
            with np.errstate(all="ignore"):
                c = 0.0
                for _ in range(30):
                    d1, d2, _d3 = self.likelihood.eta_derivatives(self.offset + c, theta_lik)
                    step = d1[observed].sum() / -d2[observed].sum()
                    if not np.isfinite(step):
                        return theta0
                    c += float(np.clip(step, -5.0, 5.0))
                    if abs(step) < 1e-10:
                        break
                d1, d2, _d3 = self.likelihood.eta_derivatives(self.offset + c, theta_lik)
                u = np.full(self.n_latent, np.nan)
                u[observed] = c + d1[observed] / -d2[observed]
                if self.n_fixed:
                    X = self.X[observed]
                    coef = np.linalg.lstsq(X, u[observed], rcond=None)[0]
                    u[observed] -= X @ coef
                theta = hook(u)
        except (GMRFError, ArithmeticError, ValueError, np.linalg.LinAlgError):
            return theta0
        if theta is None:
            return theta0
        theta = np.asarray(theta, dtype=float).reshape(-1)
        if theta.shape != (k,) or not np.all(np.isfinite(theta)):
            return theta0
        theta0[:k] = theta
        return theta0

    # -- z -------------------------------------------------------------------------------
    def linear_predictor(self, z):
        """η = A x + X β + offset for z = (x, β) (every observation, missing ones too)."""
        return self.A_full @ z + self.offset

    def feasible(self, z):
        """Orthogonal projection of z onto the constraint surface A_c z = e."""
        return z if self.constraints is None else self.constraints.feasible(z)

    # -- H = Q̃ + Ãᵀ diag(w) Ã ------------------------------------------------------------
    def factorize(self, item, Q_tilde, weights):
        """Assemble Q̃ + Ãᵀ diag(weights) Ã into a pool item and factorize it ->
        :class:`~gmrf_core.constrained.ConstrainedFactor` with the prior's constraints.

        ``item`` comes from ``hessian_pool.borrow()``; ``weights`` has one entry per
        observation (ignored where missing). Unobserved constraint directions are
        grounded (see :meth:`_setup_grounding`); the result is exact on the surface.

        Raises
        ------
        NotPositiveDefiniteError
            H is not positive definite (e.g. an unconstrained, unobserved direction of
            an intrinsic prior, or negative weights).
        """
        matrix = item[0]
        _kasm._assemble(
            matrix.data,
            self._q_pos,
            Q_tilde.data,
            self._trip_pos,
            self._trip_obs,
            self._trip_val,
            weights,
        )
        # H's values are checked where they come from: Q̃ once per θ, the weights here (the
        # products a_ik a_il were checked at set-up, and H is symmetric when Q̃ is)
        checked = self.checked_prior(Q_tilde) and bool(np.all(np.isfinite(weights)))
        ground = None
        if self._ground is not None:
            rows, pos = self._ground
            delta = np.maximum(matrix.data[pos], np.finfo(float).tiny)
            matrix.data[pos] += delta
            ground = (rows, delta)
        try:
            factor = FactorPool.factorize(item, self.symbolic, checked=checked)
        except NotPositiveDefiniteError as exc:
            raise NotPositiveDefiniteError(
                f"the Laplace Hessian H = Q + Aᵀ W A is not positive definite ({exc}). For an "
                "intrinsic prior every direction of its null space must be observed or "
                "constrained.",
                exc.column,
            ) from exc
        return ConstrainedFactor(factor, self.constraints, ground=ground)

    def predictor_variance(self, constrained):
        """diag(Ã Σ_c Ãᵀ) for the observed rows (0 where missing), Σ_c of a
        ConstrainedFactor of a matrix on H's pattern (gathers from its selected inverse)."""
        self._check_own(constrained)
        selinv = constrained.selected_inverse()
        out = sparse_rules.quadratic_diag_at_positions(
            selinv, self._trip_store, self._trip_obs, self._trip_val, self.n_obs
        )
        return out - constrained.lowrank_diag(self.A_obs)

    def covariance_on_prior_pattern(self, constrained):
        """Σ_c at the stored entries of Q̃'s pattern (gathers from the selected inverse at
        positions found at set-up, less the low-rank part of the constraints)."""
        self._check_own(constrained)
        values = sparse_rules.inverse_at_positions(constrained.selected_inverse(), self._q_store)
        if constrained._lowrank:
            values -= constrained.lowrank_pairs(self.q_pattern.indptr, self.q_pattern.indices)
        return values

    def prior_traces(self, constrained, dQ):
        """tr(Σ_c dQ̃_k) for each value array dQ̃_k on Q̃'s pattern."""
        if not len(dQ):
            return np.zeros(0)
        sigma_q = self.covariance_on_prior_pattern(constrained)
        return np.array([float(sigma_q @ d) for d in dQ])

    def _check_own(self, constrained):
        if constrained.factor.symbolic is not self.symbolic:
            raise InputError(
                "the factor was not made on this model's pattern of H; use the model's own "
                "factorizations."
            )
