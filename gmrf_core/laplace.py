"""Laplace-approximate marginal likelihood of latent Gaussian models, with exact gradients.

Model (the latent vector z = (x, β) stacks the latent field and the fixed effects)::

    x | θ ~ N(μ(θ), Q(θ)⁻¹)  (optionally with hard constraints A_c x = e)
    β     ~ N(0, τ_β⁻¹ I)     (vague; τ_β = ``fixed_precision``)
    η = A x + X β + offset,   y_i | η_i, θ ~ p(y_i | η_i, θ_lik)

For each θ the posterior mode z* is found by Newton's method on the fixed sparsity
pattern of H = Q̃ + Ãᵀ W Ã (Q̃ = blockdiag(Q, τ_β I), Ã = [A X], W = −∂²ℓ/∂η²),
with one symbolic analysis per model and a numeric refactorization per Newton step,
stretched by chord steps solved with the last factor (see :class:`LatentGaussianModel`).
The objective is the Laplace approximation of −log p(y | θ) with every constant
(Tierney & Kadane 1986; Rue, Martino & Chopin 2009)::

    f(θ) = −ℓ(η*) + ½ (z*−μ̃)ᵀ Q̃ (z*−μ̃) − ½ log det(BᵀQ̃B) + ½ log|H|
           [+ ½ log|A_c H⁻¹ A_cᵀ| − ½ log|A_c A_cᵀ| with constraints]  − log π(θ)

where B is an orthonormal basis of the constraint null space (B = I without
constraints), so the densities of the prior and of the Gaussian approximation
are both taken on the constraint surface (Rue & Held 2005, eq. 2.32).

The gradient is exact and reverse-mode (cost independent of the number of
hyperparameters): with Σ_c = H⁻¹ − V S⁻¹ Vᵀ (V = H⁻¹A_cᵀ, S = A_c V) the
covariance of the (constrained) Gaussian approximation,

* ½ tr(Σ_c ∂H/∂θ_k) from the selected inverse of H (the ∂Q/∂θ_k part through
  its entries on Q's pattern, the likelihood part through diag(Ã Σ_c Ãᵀ));
* ½ d log det(BᵀQ̃B)/dθ_k analytically from the model when available, else from
  the selected inverse of Q;
* the implicit dependence of z* on θ through one adjoint solve
  λ = Σ_c v,  v = ½ Ãᵀ (diag(Ã Σ_c Ãᵀ) ⊙ ∂W/∂η)  (the third derivative of ℓ),
  contributing −λᵀ ∂(∇_z g)/∂θ_k, g the negative log joint density.

:meth:`LatentGaussianModel.jvp` computes the same directional derivative in
forward mode: one tangent solve ż = −Σ_c ∂(∇_z g)/∂θ · v per direction.
"""

import functools
import threading
from dataclasses import dataclass

import numpy as np

from .bindings import blas
from .errors import ConvergenceError, InputError
from .latent import LatentStructure, prior_partials
from .rules import likelihood as likelihood_rules
from .rules import sparse as sparse_rules

__all__ = ["LatentGaussianModel", "LaplaceApproximation", "Mode"]

_EPS = np.finfo(float).eps
# guards a LaplaceApproximation's hand-back and refactorization of its factor (both rare)
_APPROXIMATION_LOCK = threading.RLock()
# Newton enters its final ("polish") step once the decrement is small and the step moves
# the linear predictor by at most _ETA_ENTER, and accepts the polished point when the next
# step would move η by at most _ETA_FINAL (log|H| depends on η to first order).
_ETA_ENTER = 1e-4
_ETA_FINAL = 1e-8
# Chord steps (solved with a factor of H at another point) are taken while each moves η by
# at most _PREDICT_MAX_ETA, contracts by _CHORD_RATIO or better, and is predicted to reach
# _ETA_CHORD in fewer steps than a factorization costs (see _chord_budget; at most
# _CHORD_STEPS per factor).
_PREDICT_MAX_ETA = 1.0
_CHORD_RATIO = 0.5
_CHORD_STEPS = 24
_ETA_CHORD = 1e-14
# the chord steps' target for an evaluation that also computes the gradient: its value is
# corrected to first order by the accepted point's Newton step (see LatentGaussianModel)
_ETA_CHORD_GRADIENT = 2e-9
# chord steps are accelerated by Anderson mixing of the last _ANDERSON_DEPTH steps
_ANDERSON_DEPTH = 3
# one chord step (a solve: 4 nnz(L) flops at memory speed, with O(n) likelihood and
# sparse-product work) costs about as much as _CHORD_STEP_FLOPS·nnz(L) flops of the
# factorization's dense kernels: measured with Poisson counts on the 2θ SPDE-type prior at
# 100² and 250² (factorization / chord step 4.3 and 6.3 against flops/nnz(L) of 115 and 245:
# 6.5 against 1.5 ms, 82 against 13 ms, the one-column solves of b0b157a/da145f8)
_CHORD_STEP_FLOPS = 40.0
_FACTORIZATION_STEPS = (4.0, 20.0)  # the cost of a factorization in chord steps, clipped
# after a Newton step that moves η by more than this, or a damped one, Newton refactorizes
# at once (the chord steps with its factor would be rejected)
_CHORD_AFTER = 1.0


class _Anderson:
    """Anderson acceleration (Anderson 1965; Walker & Ni 2011, type II) of the chord
    iteration z ← z + f(z), f(z) = −F⁻¹∇g(z) with one factor F, over its last
    _ANDERSON_DEPTH steps (at least 1), in F's inner product ⟨a, b⟩ = aᵀFb: the mixed step
    f_k − Σ_j γ_j (Δz_j + Δf_j) with γ minimizing ‖f_k − Σ_j γ_j Δf_j‖_F. The inner
    products need no solve, ⟨Δf_i, Δf_j⟩ = −Δf_iᵀ Δ∇g_j and ⟨Δf_i, f_k⟩ = −Δf_iᵀ ∇g_k; on
    the linearized problem F⁻¹H is self-adjoint in this product, so the mixing is a
    minimal-residual Krylov method preconditioned by F."""

    def __init__(self):
        self.depth = _ANDERSON_DEPTH
        self.last = None  # (z, f, ∇g) of the last step computed with F
        self.differences = []  # (Δz, Δf, Δ∇g), oldest first

    def record(self, z, f, grad):
        """Add the step f computed at z (gradient ``grad``) to the history."""
        if self.last is not None:
            z0, f0, grad0 = self.last
            self.differences.append((z - z0, f - f0, grad - grad0))
            del self.differences[: -self.depth]
        self.last = (z, f, grad)

    def mixed(self, f, grad):
        """The accelerated step from the step f at the last recorded point, or f itself
        when the history is empty or its Gram matrix is numerically singular."""
        k = len(self.differences)
        if not k:
            return f
        gram = np.empty((k, k))
        rhs = np.empty(k)
        for i, (_dz, df, _dgrad) in enumerate(self.differences):
            rhs[i] = -float(df @ grad)
            for j, (_dz_j, _df_j, dgrad) in enumerate(self.differences):
                gram[i, j] = -float(df @ dgrad)
        gram = 0.5 * (gram + gram.T)
        scale = np.sqrt(np.abs(np.diag(gram)))
        if not np.all(scale > 0.0) or not np.all(np.isfinite(gram)):
            return f
        gram /= np.outer(scale, scale)
        if np.linalg.cond(gram) > 1e10:
            return f
        gamma = np.linalg.solve(gram, rhs / scale) / scale
        step = f.copy()
        for g_j, (dz, df, _dgrad) in zip(gamma, self.differences):
            step -= g_j * (dz + df)
        return step


def _armijo(g_new, g, change, rounding):
    """The Armijo test of a step whose first-order change of g is ``change`` (< 0), with
    the rounding error of g as slack (near the mode the decrease is below what g can
    resolve)."""
    return bool(np.isfinite(g_new) and g_new <= g + 1e-4 * change + rounding)


@dataclass
class Mode:
    """The posterior mode z* at one θ, as Newton's method found it.

    Attributes
    ----------
    z, eta : numpy.ndarray
        z* = (x*, β*) and η* = Ã z* + offset (every observation).
    d1, d2 : numpy.ndarray
        ℓ'(η*) and ℓ''(η*) (per observation).
    constrained : ConstrainedFactor
        H = Q̃ + Ãᵀ W(η*) Ã with the prior's constraints (a pool factor: valid while
        the evaluation that owns it is open).
    neg_log_joint : float
        g(z*) = −ℓ(η*) + ½ (z*−μ̃)ᵀ Q̃ (z*−μ̃).
    log_likelihood : float
        ℓ(η*).
    iterations : int
    step, decrement : numpy.ndarray, float
        The Newton step δ from z* with H's factor at z* (not taken: z* is accepted where
        it is factorized) and its decrement −∇g·δ = δᵀHδ: what the first-order correction
        of the objective needs (see LatentGaussianModel).
    """

    z: np.ndarray
    eta: np.ndarray
    d1: np.ndarray
    d2: np.ndarray
    constrained: object
    neg_log_joint: float
    log_likelihood: float
    iterations: int
    step: np.ndarray
    decrement: float


class _Evaluation:
    """Everything one objective evaluation computes at θ, computed once; holds the work
    factors it borrowed from the model's pools until :meth:`close`."""

    def __init__(self, model, theta, z0, linearization=None, target=_ETA_CHORD):
        s = model.structure
        self.theta = s.split_theta(theta)
        self.Q_tilde = s.prior_precision(self.theta.prior)
        self.mu = s.prior_mean(self.theta.prior)
        self._held = None  # (pool, item) of H's work factor
        self.prior_logdet = None
        self.sensitivities = None  # (diag(Ã Σ_c Ãᵀ), v), for the derivatives
        self.dQ = self.dmu = None  # dQ̃/dθ_k values and dμ̃/dθ_k, for the derivatives
        try:
            preferred = None if linearization is None else linearization[1]
            item = s.hessian_pool.acquire(preferred)
            self._held = (s.hessian_pool, item)
            chord = None
            if (
                z0 is not None
                and item is preferred
                and item[1] is not None
                and item[1].factorizations == linearization[2]
            ):
                # the factor of H at the last mode is still there, unchanged: Newton starts
                # with chord steps on it before it refactorizes (see LatentGaussianModel)
                chord = linearization[0]
            self.item = item
            self.mode = None
            # a warm start never makes an evaluation fail: on failure Newton starts again
            # from the last mode (without the chord steps), then from the prior mean
            starts = [(z0, chord)] + ([(z0, None)] if chord is not None else [])
            starts += [(None, None)] if z0 is not None else []
            for k, (z_start, operator) in enumerate(starts):
                try:
                    self.mode = model._newton(
                        self.theta.likelihood,
                        self.Q_tilde,
                        self.mu,
                        z_start,
                        item,
                        operator,
                        target,
                    )
                    break
                except ConvergenceError:
                    if k == len(starts) - 1:
                        raise
            self.prior_logdet = s.prior_logdet(self.theta.prior, self.Q_tilde)
            self.eta = self.mode.eta  # η and r at the mode the derivatives are taken at
            self.r = self.mode.z - self.mu
            self.value = (
                self.mode.neg_log_joint
                + 0.5 * self.mode.constrained.logdet()
                - 0.5 * self.prior_logdet.value
                - model.log_prior(self.theta)
            )
        except BaseException:
            self.close()
            raise

    def take_step(self, model):
        """Take the derivatives at z* + δ instead of the factorized z*, δ its factor's
        Newton step (not taken by Newton): the mode to second order. H's factor and its
        selected inverse stay those at z*, and the value moves to z* + δ to first order:
        g(z* + δ) = g(z*) − ½ δᵀHδ + O(δ³) and ½ log det(BᵀHB) changes by v·δ + O(δ²)
        (v = ∇_z ½ log det(BᵀHB) of :meth:`LatentGaussianModel._sensitivities`), so the
        value's error is second order in the error of z*, and the derivatives' only
        first-order error is that of H's weights W(η) (none for a Gaussian likelihood)."""
        step = self.mode.step
        self.r = self.r + step
        self.eta = self.eta + model.A_full @ step
        self.sensitivities = model._sensitivities(self)
        self.value += float(self.sensitivities[1] @ step) - 0.5 * self.mode.decrement

    def detach(self):
        """Hand H's work factor over (pool, item) to a new owner, who releases it."""
        held, self._held = self._held, None
        return held

    def close(self):
        """Give the borrowed work factors back to the model's pools."""
        if self._held is not None:
            pool, item = self._held
            self._held = None
            pool.release(item)
        if self.prior_logdet is not None:
            self.prior_logdet.close()


class LaplaceApproximation:
    """The Gaussian approximation N(z*, Σ_c) of p(z | y, θ) at one θ.

    Attributes
    ----------
    theta : numpy.ndarray
        Hyperparameters (internal scale) it was computed at.
    mode : numpy.ndarray
        Posterior mode z* = (x*, β*) of the latent field and fixed effects.
    latent, fixed_effects : numpy.ndarray
        The two parts of ``mode``.
    linear_predictor : numpy.ndarray
        η* = A x* + X β* + offset (every observation, missing ones too).
    objective : float
        The Laplace objective at θ (as :meth:`LatentGaussianModel.objective`).
    constrained : ConstrainedFactor
        H = Q̃ + Ãᵀ W Ã at the mode with the prior's constraints (its own factor, not
        shared with later calls of the model): Σ_c solves, variances, draws, the
        log-determinant on the constraint surface.
    factor : Factor
        Its Cholesky factor (of H, or of H with unobserved constrained directions
        grounded, see :class:`~gmrf_core.latent.LatentStructure`).
    newton_iterations : int

    Notes
    -----
    Memory: an approximation that :func:`~gmrf_core.fit` returns has handed its factor
    back to the model for the standard errors' evaluations, so that a fit holds one
    factor of H at a time; ``constrained`` (and everything that needs it) then
    refactorizes H at the mode on first use, from the same θ and η*: the same matrix,
    so the same factor, bit for bit. The marginal variances are kept.
    """

    def __init__(self, model, theta, mode, objective, constrained, owned=None):
        self._model = model
        self._owned = owned  # (pool, item) whose factor this approximation uses, if any
        self.theta = np.array(theta, dtype=float)
        self.mode = mode.z.copy()
        self.latent = self.mode[: model.n_latent]
        self.fixed_effects = self.mode[model.n_latent :]
        self.linear_predictor = mode.eta.copy()
        self.objective = float(objective)
        self._constrained = constrained
        self._weights = -np.asarray(mode.d2, dtype=float)  # W(η*), to refactorize H
        self.newton_iterations = mode.iterations
        self._variance = None

    @property
    def constrained(self):
        with _APPROXIMATION_LOCK:
            if self._constrained is None:
                self._refactorize()
            return self._constrained

    @property
    def factor(self):
        return self.constrained.factor

    def _refactorize(self):
        """H at the mode again, into a work factor of the model's pool that this
        approximation then owns (call under the lock)."""
        s = self._model.structure
        theta = s.split_theta(self.theta)
        pool = s.hessian_pool
        item = pool.acquire()
        try:
            self._constrained = s.factorize(item, s.prior_precision(theta.prior), self._weights)
        except BaseException:
            pool.release(item)
            raise
        self._owned = (pool, item)

    def _release(self):
        """Give a pool factor back to its model (the marginal variances, if computed, are
        kept; a later use refactorizes H at the mode)."""
        with _APPROXIMATION_LOCK:
            if self._owned is not None:
                pool, item = self._owned
                self._owned = None
                self._constrained = None
                pool.release(item)

    def marginal_variance(self):
        """Marginal variances of z = (x, β) under the approximation (selected inversion)."""
        if self._variance is None:
            self._variance = self.constrained.marginal_variance()
        return self._variance.copy()

    def marginal_sd(self):
        """Square roots of :meth:`marginal_variance`."""
        return np.sqrt(np.maximum(self.marginal_variance(), 0.0))

    def linear_predictor_variance(self):
        """Variances diag(Ã Σ_c Ãᵀ) of η = A x + X β + offset, for every observation
        (missing ones too)."""
        return self.constrained.marginal_variance(self._model.A_full)

    def sample(self, size=None, rng=None):
        """Draws of z from N(z*, Σ_c), the constraints honoured.

        Returns
        -------
        numpy.ndarray
            Shape (n_total,) for ``size=None``, else (size, n_total).
        """
        return self.constrained.sample(size=size, rng=rng, mean=self.mode)


def _model_threads(method):
    """Run a public evaluation of the model with every OpenBLAS of the process (NumPy's
    included) limited to the model's ``threads``: the Newton glue's dot products on
    vectors of 10⁴ entries and more would otherwise be split over NumPy's default
    threads, and on a loaded machine wait milliseconds for them. The factorizations'
    own limits (one thread per independent subtree) nest inside it: the smallest open
    limit applies."""

    @functools.wraps(method)
    def limited(self, *args, **kwargs):
        with blas.blas_threads(self.structure.symbolic.threads):
            return method(self, *args, **kwargs)

    return limited


class LatentGaussianModel:
    """Latent Gaussian model: a GMRF prior, a likelihood and a linear predictor.

    Parameters
    ----------
    prior : gmrf_core.models.LatentModel
        Latent field x (n variables) with hyperparameters ``prior.theta_names``.
    likelihood : gmrf_core.likelihoods.Likelihood
        Observation model of the m observations (NaN = missing).
    A : sparse matrix (m, n), optional
        Projection of the latent field onto the observations; identity when None
        (then m must equal n).
    X : array (m, p), optional
        Design matrix of fixed effects β, carried in the latent vector.
    offset : array (m,), optional
    fixed_precision : float
        Precision τ_β of the vague N(0, τ_β⁻¹) prior on each fixed effect
        (default 1e-3, R-INLA's default for fixed effects).
    ordering : str
        Fill-reducing ordering of H (see :func:`gmrf_core.analyze`).
    newton_tol : float
        Newton's decrement test: a point is accepted only where H is factorized, when
        λ²/2 = −½ ∇gᵀΔ ≤ ``newton_tol · max(1, |g|)`` and the Newton step Δ from it moves
        η by at most 1e-8 (or is below what z can resolve in floating point), and only
        when the point was itself reached by a full step in the region of convergence (a
        Newton or chord step that moved η by at most 1e-4; see Notes). Anything
        else is iterated, and :class:`ConvergenceError` raised after ``max_newton``
        iterations or when the line search finds no decrease: Newton never returns a
        point that is not the mode.
    max_newton : int
        Steps (Newton and chord) before :class:`ConvergenceError`.
    threads : int
        Threads for factorizations and selected inversions (subtree parallelism and
        BLAS threads, see :func:`gmrf_core.analyze`).

    Attributes
    ----------
    structure : gmrf_core.latent.LatentStructure
        Ã = [A X], the fixed patterns of Q̃ and H, their symbolic analyses.

    Notes
    -----
    θ is the prior's hyperparameters followed by the likelihood's
    (:attr:`theta_names`, :attr:`theta0`). Log-priors of θ enter the objective
    only where the prior or likelihood was given one.

    Newton's method and its accuracy: log|H| depends on the mode to first order,
    d(½ log|H|)/dη_i = −½ Var(η_i) ℓ‴(η_i), so the objective is only as exact as η*:
    with Δη the error of the mode,

        |Δ(½ log|H|)| ≲ ½ Σ_i |ℓ‴_i| Var(η_i) |Δη_i| ≤ ½ Σ_i |ℓ‴_i / W_i| |Δη_i|

    (Var(η_i) ≤ 1/W_i since H ⪰ W_i a_i a_iᵀ), while −ℓ + ½ rᵀQ̃r is exact to second
    order. The accepted point is the one whose H is factorized and whose Newton step
    moves η by at most 1e-8 (so |Δ(½ log|H|)| ≤ ½·10⁻⁸ Σ_i |ℓ‴_i / W_i|, ½·10⁻⁸ per
    observation for Poisson counts; in practice that step is near rounding, 1e-12 and
    below). Factorizations are saved by chord (simplified Newton) steps
    z ← z − Σ_c,F ∇g(z), solved with the factor F of H at another point (a solve
    instead of a factorization): at a new θ with the factor at the last mode (still in
    the pool, unchanged; the first such step is the first-order prediction
    z*(θ_old) + (dz*/dθ) Δθ of the implicit function theorem), and after every full
    (undamped) Newton step that moved η by at most 1, with that step's factor. A chord
    step is kept when it lowers g (Armijo; F is positive definite, so the step is a
    descent direction), moves η by at most 1, contracts by at least ½ against the
    previous step and is predicted, from that ratio, to bring the error in η to 1e-14
    in fewer steps than a factorization costs: the factorization itself, counted in
    chord steps from the symbolic analysis (flops / (40 nnz(L)), between 4 and 20:
    4 at a 100² lattice, 6 at 250²), plus its own Newton step and the chord steps that
    would follow it (see :meth:`_chord_budget`); else H is refactorized where the chord
    steps stopped. From the second chord step with one factor on, the step taken is
    Anderson's mixture of the last three (:class:`_Anderson`, a minimal-residual Krylov
    acceleration preconditioned by F; the plain step where it is not a descent
    direction), the contraction ratio then being that of the chord steps' own sizes: on
    the SPDE-type prior with Poisson counts about 0.01 per step instead of 0.03, one
    chord step fewer per evaluation. The choice only decides how the mode is reached,
    never where Newton stops. Once the chord steps have converged (to 1e-14 in η) the
    next factorization lands at the mode and is accepted at once: along an optimizer's
    path one factorization of H per evaluation once the steps in θ are small, two or
    three early on.

    :meth:`value_and_grad` (and the fit's evaluations) stop the chord steps at 2e-9 in
    η instead of 1e-14 (on the 2θ SPDE-type prior with Poisson counts: about three
    chord steps fewer per evaluation, 5.9 solves instead of 8.5 at a 100² lattice and
    6.0 instead of 8.8 at 250², and at 100² one factorization of H instead of two; the
    accepted point's Newton step must still move η by at most 1e-8, which 2e-9 leaves
    room for: 5e-9 and 1e-8 saved no more solves and sometimes cost a second
    factorization, and 3e-9 let a gradient's dependence on the warm start exceed 1e-10
    relative) and make the error this leaves second order: the accepted z* is
    factorized and its Newton step δ (moving η by about 1e-11, at most 1e-8) is known,
    so the derivatives are taken at z* + δ (the mode to second order) and the value is
    moved there to first order, g − ½ δᵀHδ + v·δ with v = ∇_z ½ log det(BᵀHB), which
    the gradient computes anyway (see :meth:`_Evaluation.take_step`). The value then
    differs from :meth:`objective`'s by O(|δ|²) (measured along a moving θ at 100² and
    250²: at most 7e-15 and 1.3e-14 relative). The gradient keeps one first-order error,
    that of H's weights W(η) at z* instead of z* + δ in ½ tr(Σ ∂H/∂θ) (none for a
    Gaussian likelihood; measured against chord steps run to 1e-14, largest difference
    over largest component: 6e-10 at 100², 9e-11 at 250²):
    harmless to an optimizer, but central differences of gradients with steps of 1e-4
    would magnify it, so :meth:`gradient` (the Hessian of the standard errors),
    :meth:`objective`, :meth:`jvp` and :meth:`laplace` run the chord steps to 1e-14.

    Threads: one model may be used from several threads at once (``objective``,
    ``value_and_grad``, ``jvp``, ``laplace``, same or different θ). Each call
    borrows its own work factors from the model's pools (one per concurrent
    call, reused by later calls), so calls never share mutable state; the only
    state kept between calls is the last mode, the warm start of Newton, which does
    not change results beyond Newton's tolerance.
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
        newton_tol=1e-12,
        max_newton=50,
        threads=1,
    ):
        self.structure = LatentStructure(
            prior,
            likelihood,
            A,
            X,
            offset,
            fixed_precision=fixed_precision,
            ordering=ordering,
            threads=threads,
        )
        if not (np.isfinite(newton_tol) and newton_tol > 0):
            raise InputError(f"newton_tol must be positive; got {newton_tol}.")
        self.newton_tol = float(newton_tol)
        self.max_newton = int(max_newton)
        self._last_mode = None
        # (ConstrainedFactor of H at the last mode, its pool item, the factor's count of
        # factorizations then): the operator of Newton's first chord steps at the next θ
        self._last_linearization = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_last_linearization"] = None  # work factors are not part of a model's value
        return state

    # the structure's names, kept on the model
    prior = property(lambda self: self.structure.prior)
    likelihood = property(lambda self: self.structure.likelihood)
    A = property(lambda self: self.structure.A)
    X = property(lambda self: self.structure.X)
    offset = property(lambda self: self.structure.offset)
    A_full = property(lambda self: self.structure.A_full)
    n_latent = property(lambda self: self.structure.n_latent)
    n_fixed = property(lambda self: self.structure.n_fixed)
    n_total = property(lambda self: self.structure.n_total)
    n_obs = property(lambda self: self.structure.n_obs)
    n_theta_prior = property(lambda self: self.structure.n_theta_prior)
    n_theta_lik = property(lambda self: self.structure.n_theta_lik)
    theta_names = property(lambda self: self.structure.theta_names)
    theta0 = property(lambda self: self.structure.theta0)
    fixed_precision = property(lambda self: self.structure.fixed_precision)
    symbolic = property(lambda self: self.structure.symbolic)

    def start_from_data(self):
        """Starting values θ0 chosen from the data where the prior supports it (a cheap
        moment-based range and σ for the Matérn models on a lattice), else
        :attr:`theta0`; see :meth:`gmrf_core.latent.LatentStructure.start_from_data`.
        :func:`gmrf_core.fit` starts from it when no θ0 is given."""
        return self.structure.start_from_data()

    def log_prior(self, theta):
        """log π(θ) from the prior's and the likelihood's hyperparameter priors (0 if none)."""
        return self.structure.log_prior(theta)

    def log_prior_grad(self, theta):
        """Gradient of :meth:`log_prior`."""
        return self.structure.log_prior_grad(theta)

    # -- the inner problem ----------------------------------------------------------------
    def _neg_log_joint(self, z, Q_tilde, mu, theta_lik):
        """g(z) = −ℓ(η) + ½ rᵀQ̃r, a bound on its rounding error, and (z, η, Q̃r): the
        products Newton's gradient at z reuses."""
        r = z - mu
        eta = self.structure.linear_predictor(z)
        ll = self.likelihood.log_density(eta, theta_lik)
        q_r = Q_tilde @ r
        quad = 0.5 * float(r @ q_r)
        return -ll + quad, ll, 64.0 * _EPS * (abs(ll) + quad + 1.0), (z, eta, q_r)

    def _newton(self, theta_lik, Q_tilde, mu, z0, item, chord=None, target=_ETA_CHORD):
        """Newton's method for z* = argmin g on the constraint surface -> :class:`Mode`.

        Damped Newton with an Armijo backtracking line search, whose factorizations are
        stretched by chord steps (simplified Newton: the step solved with a factor of H at
        another point, ``chord`` at the start: the last mode's, still in the pool) until
        they are predicted to have brought the error in η to ``target``; the convergence
        test is described in the class docstring.
        """
        s = self.structure
        lik = self.likelihood
        z = s.feasible(np.array(mu if z0 is None else z0, dtype=float))
        g, ll, rounding, at = self._neg_log_joint(z, Q_tilde, mu, theta_lik)
        if not np.isfinite(g) and z0 is not None:
            z = s.feasible(mu.copy())
            g, ll, rounding, at = self._neg_log_joint(z, Q_tilde, mu, theta_lik)
            chord = None
        operator = chord  # the factor the next step is solved with (None: refactorize)
        fresh = False  # the operator is H at z
        polished = False  # z was reached by a full step in the region of convergence
        previous = None  # η move of the last full step taken with this operator
        chord_steps = 0  # chord steps with the present operator, at most _CHORD_STEPS
        steps = 0  # steps taken (Newton and chord), against max_newton
        decrement = np.inf
        anderson = _Anderson()
        while True:
            if at[0] is z:  # η and Q̃r from g's evaluation at this very z
                eta, q_r = at[1], at[2]
            else:
                eta, q_r = s.linear_predictor(z), Q_tilde @ (z - mu)
            d1, d2, _d3 = lik.eta_derivatives(eta, theta_lik)
            grad = -(s.A_full_T @ d1) + q_r
            if operator is None:
                weights = -d2
                if np.any(weights < 0) or not np.all(np.isfinite(weights)):
                    raise ConvergenceError(
                        "the likelihood's curvature −∂²ℓ/∂η² is negative or not finite at "
                        f"Newton iteration {steps + 1}; the Laplace approximation needs a "
                        "log-concave likelihood in η."
                    )
                operator = s.factorize(item, Q_tilde, weights)
                fresh, previous, chord_steps = True, None, 0
                anderson = _Anderson()
            step = -operator.solve(grad)
            decrement = -float(grad @ step)
            if not (np.isfinite(decrement) and np.all(np.isfinite(step))):
                if not fresh:
                    operator = None
                    continue
                raise ConvergenceError(
                    f"Newton's step is not finite at iteration {steps + 1}; check the data and "
                    "the hyperparameters."
                )
            anderson.record(z, step, grad)
            eta_move = float(np.max(np.abs(s.A_obs @ step), initial=0.0))
            small = decrement / 2.0 <= self.newton_tol * max(1.0, abs(g))
            # below what z can resolve: nothing more to gain from another step
            at_rounding = np.max(np.abs(step), initial=0.0) <= 64.0 * _EPS * (
                1.0 + np.max(np.abs(z), initial=0.0)
            )
            if fresh:
                if polished and (at_rounding or (small and eta_move <= _ETA_FINAL)):
                    return Mode(z, eta, d1, d2, operator, g, ll, steps + 1, step, decrement)
                if steps >= self.max_newton:
                    raise ConvergenceError(
                        f"Newton's method did not converge in {self.max_newton} iterations "
                        f"(last decrement λ²/2 = {decrement / 2.0:.3e}, tolerance "
                        f"{self.newton_tol:g}·max(1, |g|)). Try other hyperparameters, a "
                        "larger max_newton, or check the data."
                    )
                steps += 1
                fresh = False
                if at_rounding or (small and eta_move <= _ETA_ENTER):
                    # ½ log|H| depends on z to first order, so the objective is only as
                    # accurate as the mode itself: a full step in the quadratic region
                    # squares the error; chord steps or the next factorization check it
                    z = s.feasible(z + step)
                    g, ll, rounding, at = self._neg_log_joint(z, Q_tilde, mu, theta_lik)
                    polished, previous = True, eta_move
                    if at_rounding or eta_move <= target:
                        operator = None
                    continue
                t, z_new, g_new, ll_new, rounding_new, at = self._line_search(
                    z, g, rounding, grad, step, Q_tilde, mu, theta_lik
                )
                if t is None:
                    raise ConvergenceError(
                        f"Newton's line search failed at iteration {steps} (decrement "
                        f"{decrement:.3e}): the objective could not be decreased along the "
                        "Newton direction, and the point is not the mode. Check the "
                        "hyperparameters and the data."
                    )
                z = s.feasible(z_new)  # removes rounding drift off the constraint
                g, ll, rounding = g_new, ll_new, rounding_new
                polished = False
                if t < 1.0 or eta_move > _CHORD_AFTER:
                    operator = None  # far from the mode: H changes too much for chord steps
                else:
                    previous = eta_move
                continue
            # a chord step: kept while it contracts fast enough to beat a factorization
            chord_steps += 1
            ratio = None if previous is None else eta_move / max(previous, _EPS)
            if (
                not eta_move <= _PREDICT_MAX_ETA
                or (ratio is not None and ratio > _CHORD_RATIO)
                or chord_steps > _CHORD_STEPS
                or steps >= self.max_newton
            ):
                operator = None
                continue
            mixed = anderson.mixed(step, grad)
            change = float(grad @ mixed)
            if not change < 0.0:  # not a descent direction: the plain chord step
                mixed, change = step, -decrement
            z_new = s.feasible(z + mixed)
            g_new, ll_new, rounding_new, at_new = self._neg_log_joint(z_new, Q_tilde, mu, theta_lik)
            if not _armijo(g_new, g, change, rounding):
                operator = None
                continue
            at = at_new
            z, g, ll, rounding = z_new, g_new, ll_new, rounding_new
            steps += 1
            polished, previous = eta_move <= _ETA_ENTER, eta_move
            # the error left in η after this step, ≈ the next step (linear convergence)
            left = eta_move if ratio is None else eta_move * ratio
            if at_rounding or left <= target:
                operator = None  # converged: H at the mode is next
            elif ratio is not None and ratio > 0.0:
                if np.log(target / left) / np.log(ratio) > self._chord_budget(left, target):
                    operator = None  # too slow: a factorization is cheaper

    def _chord_budget(self, left, target=_ETA_CHORD):
        """The chord steps worth taking, from an error ``left`` in η, instead of a
        factorization of H now.

        A factorization now costs itself, its own Newton step (a solve and an evaluation
        of g, as a chord step) and the chord steps after it: its Newton step leaves an
        error of about left², from which chord steps with its factor contract by about
        ``left`` each (the factor is that far from H at the mode), so about
        log(ε)/log(left) − 1 of them (ε = ``target``, counted between 1 and 4). The
        factorization itself is priced at flops / (40 nnz(L)) chord steps, between 4 and
        20, from the symbolic analysis, so that the choice does not depend on timings
        (Poisson counts on the 2θ SPDE-type prior, measured against estimated: 100² 4.3
        vs 4 (the floor), 250² 6.3 vs 6.1).
        """
        symbolic = self.symbolic
        factorization = symbolic.flops / (_CHORD_STEP_FLOPS * max(symbolic.nnz, 1))
        low, high = _FACTORIZATION_STEPS
        factorization = min(max(factorization, low), high)
        after = np.log(target) / np.log(min(left, 0.5)) - 1.0
        return factorization + 1.0 + min(max(after, 1.0), 4.0)

    def _line_search(self, z, g, rounding, grad, step, Q_tilde, mu, theta_lik):
        """Armijo backtracking along ``step`` -> (t, z_new, g_new, ℓ_new, rounding_new,
        the products at z_new), t None when 60 halvings find no decrease."""
        t = 1.0
        slope = float(grad @ step)
        for _ in range(60):
            z_new = z + t * step
            g_new, ll_new, rounding_new, at = self._neg_log_joint(z_new, Q_tilde, mu, theta_lik)
            if _armijo(g_new, g, t * slope, rounding):
                return t, z_new, g_new, ll_new, rounding_new, at
            t *= 0.5
        return None, None, None, None, None, None

    # -- evaluations -------------------------------------------------------------------------
    def _evaluate(self, theta, target=_ETA_CHORD):
        """An open :class:`_Evaluation` at θ, warm-started from the last mode, its chord
        steps run to ``target`` in η (looser where the value is corrected, see
        :meth:`_value_and_grad`)."""
        evaluation = _Evaluation(
            self, theta, self._last_mode, self._last_linearization, target=target
        )
        self._last_mode = evaluation.mode.z.copy()
        constrained = evaluation.mode.constrained
        self._last_linearization = (
            constrained.shallow(),  # not the selected inverse: its storage is the factor's
            evaluation.item,
            constrained.factor.factorizations,
        )
        return evaluation

    def _sensitivities(self, ev):
        """The reverse-mode pieces at the mode -> (w̄, v, the likelihood's pullback).

        ½ log det(BᵀHB), H = Q̃ + Ãᵀ diag(w) Ã, has the weight cotangent
        w̄ = ½ diag(Ã Σ_c Ãᵀ) (:func:`~gmrf_core.rules.sparse.weighted_logdet_vjp` with
        ȳ = ½, gathered by stored position); the weights w = −ℓ''(η) pull it back to
        η̄ = −ℓ''' ⊙ w̄ (:func:`~gmrf_core.rules.likelihood.likelihood_vjp`), so
        v = Ãᵀ η̄ = ∇_z ½ log det(BᵀHB) at fixed θ.
        """
        mode = ev.mode
        s = self.structure
        w_bar = 0.5 * s.predictor_variance(mode.constrained)
        _out, pullback = likelihood_rules.likelihood_vjp(
            ev.eta, ev.theta.likelihood, likelihood=self.likelihood, value=False
        )
        eta_bar, _theta_bar = pullback((None, None, w_bar))
        return w_bar, s.A_obs_T @ eta_bar, pullback

    def _likelihood_partials(self, ev, adjoint=None):
        """∂f/∂θ_j for the likelihood's θ_j: −∂ℓ/∂θ_j + w̄·∂w/∂θ_j at fixed z, and with the
        ``adjoint`` λ the implicit term −λᵀ ∂(∇_z g)/∂θ_j = (Ãλ)·∂s/∂θ_j (∇_z g =
        −Ãᵀ s + Q̃ r): one pullback of :func:`~gmrf_core.rules.likelihood.likelihood_vjp`
        with the cotangents (ℓ̄, s̄, w̄) = (−1, Ãλ, w̄)."""
        w_bar, _v, pullback = ev.sensitivities
        s_bar = None if adjoint is None else self.A_full @ adjoint
        return pullback((-1.0, s_bar, w_bar))[1]

    def _gradient(self, ev, adjoint=None):
        """∂f/∂θ at fixed z (adjoint None), or the total gradient with the implicit
        dependence of z* through ``adjoint`` λ = Σ_c v."""
        s = self.structure
        grad = np.zeros(len(self.theta0))
        k = self.n_theta_prior
        if k:
            ev.dQ = s.prior_precision_grad(ev.theta.prior)
            ev.dmu = s.prior_mean_grad(ev.theta.prior)
            grad[:k] = prior_partials(
                s, ev.Q_tilde, ev.r, ev.mode.constrained, ev.dQ, ev.dmu, ev.prior_logdet, adjoint
            )
        if self.n_theta_lik:
            grad[k:] = self._likelihood_partials(ev, adjoint)
        grad -= self.log_prior_grad(ev.theta)
        return grad

    def _value_and_grad(self, ev):
        ev.take_step(self)
        # the mode's implicit dependence on θ: λ = Σ_c v, the b-cotangent of the solve
        # z* = Σ_c b (:func:`~gmrf_core.rules.sparse.solve_vjp`)
        adjoint = sparse_rules.inverse_apply(ev.mode.constrained, ev.sensitivities[1])
        return ev.value, self._gradient(ev, adjoint)

    def _approximation(self, ev, *, copy=True):
        constrained = ev.mode.constrained
        owned = None
        if copy:
            constrained = constrained.copy()
        else:
            owned = ev.detach()
        return LaplaceApproximation(self, ev.theta.full, ev.mode, ev.value, constrained, owned)

    # -- public API ----------------------------------------------------------------------
    @_model_threads
    def objective(self, theta):
        """Laplace approximation of −log p(y | θ) (every constant), minus log π(θ) if set."""
        ev = self._evaluate(theta)
        try:
            return ev.value
        finally:
            ev.close()

    @_model_threads
    def laplace(self, theta):
        """The Gaussian approximation at θ -> :class:`LaplaceApproximation`."""
        ev = self._evaluate(theta)
        try:
            return self._approximation(ev)
        finally:
            ev.close()

    @_model_threads
    def value_and_grad(self, theta):
        """Objective and its exact gradient (reverse mode).

        Cost: the objective, one selected inversion of H (and of Q when its
        log-determinant is not analytic), one adjoint solve, and O(nnz) work per
        hyperparameter. Works with ``scipy.optimize.minimize(..., jac=True)``.
        """
        ev = self._evaluate(theta, _ETA_CHORD_GRADIENT)
        try:
            return self._value_and_grad(ev)
        finally:
            ev.close()

    @_model_threads
    def _value_grad_approximation(self, theta):
        """(value, gradient, LaplaceApproximation) from one evaluation; the approximation
        owns H's work factor (no copy)."""
        ev = self._evaluate(theta, _ETA_CHORD_GRADIENT)
        try:
            value, grad = self._value_and_grad(ev)
            return value, grad, self._approximation(ev, copy=False)
        finally:
            ev.close()

    @_model_threads
    def gradient(self, theta):
        """Exact gradient of :meth:`objective` (see :meth:`value_and_grad`), from a mode
        converged as far as :meth:`objective`'s (chord steps to 1e-14 in η, not 1e-10): the
        gradient for differences, such as the central-difference Hessian of the standard
        errors, whose steps of 1e-4 would magnify the first-order error that a mode
        converged to 1e-10 leaves in a gradient (see Notes of the class)."""
        ev = self._evaluate(theta)
        try:
            return self._value_and_grad(ev)[1]
        finally:
            ev.close()

    @_model_threads
    def jvp(self, theta, theta_dot):
        """Forward-mode directional derivative ⟨∇f(θ), θ̇⟩ (one tangent solve with H)."""
        theta_dot = np.asarray(theta_dot, dtype=float).reshape(-1)
        if theta_dot.shape != self.theta0.shape or not np.all(np.isfinite(theta_dot)):
            raise InputError(f"theta_dot must be a finite vector of length {self.theta0.size}.")
        ev = self._evaluate(theta)
        try:
            ev.take_step(self)
            v = ev.sensitivities[1]
            partial = self._gradient(ev)
            # the tangent ḃ = Σ_k θ̇_k ∂(∇_z g)/∂θ_k of ∇_z g = −Ãᵀ s + Q̃ (z − μ̃):
            # (Σ θ̇_k dQ̃_k) r − Q̃ (Σ θ̇_k dμ̃_k) for the prior, −Ãᵀ ṡ for the likelihood
            # (:func:`~gmrf_core.rules.likelihood.likelihood_jvp`)
            k = self.n_theta_prior
            tangent = np.zeros(self.n_total)
            if k:
                s = self.structure
                dQ_dot = sum(t * d for t, d in zip(theta_dot[:k], ev.dQ))
                tangent += s.q_pattern.matrix(dQ_dot) @ ev.r - ev.Q_tilde @ (theta_dot[:k] @ ev.dmu)
            if self.n_theta_lik:
                _out, (_ll_dot, s_dot, _w_dot) = likelihood_rules.likelihood_jvp(
                    ev.eta,
                    ev.theta.likelihood,
                    None,
                    theta_dot[k:],
                    likelihood=self.likelihood,
                )
                tangent -= self.structure.A_full_T @ s_dot
            # the mode's tangent ż = −Σ_c ḃ: the b-part of the solve's JVP
            # (:func:`~gmrf_core.rules.sparse.solve_jvp`) with the tangent −ḃ
            z_dot = -sparse_rules.inverse_apply(ev.mode.constrained, tangent)
            return ev.value, float(partial @ theta_dot + v @ z_dot)
        finally:
            ev.close()

    def __repr__(self):
        return (
            f"LatentGaussianModel(prior={self.prior!r}, "
            f"likelihood={type(self.likelihood).__name__}, "
            f"n_latent={self.n_latent}, n_fixed={self.n_fixed}, n_obs={self.n_obs})"
        )
