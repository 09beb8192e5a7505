"""Gaussian variational inference with natural gradients for latent GMRF models.

For a :class:`~gmrf_core.LatentGaussianModel` (latent vector z = (x, β), prior
N(μ̃, Q̃⁻¹) with Q̃ = blockdiag(Q(θ), τ_β I), linear predictor η = Ã z + offset,
Ã = [A X], optional hard constraints A_c z = e) the posterior p(z | y, θ) is
approximated by a Gaussian q(z) = N(m, Σ) on the constraint surface, chosen to
maximise the evidence lower bound (ELBO)::

    L(θ, q) = E_q[log p(y | z, θ)] − KL(q ‖ p(z | θ))  ≤  log p(y | θ).

**Family.** q has the sparse precision of the Laplace Hessian, parameterised by
one *site* per observation (Opper & Archambeau 2009 show that the optimal
Gaussian has exactly this form)::

    Λ = Q̃_b + Ãᵀ diag(λ) Ã,     Λ m = b_b + Ãᵀ γ     (λ ≥ 0 site precisions, γ site
                                                       linear terms)

where (Q̃_b, b_b) is the *base* part, equal to the prior's (Q̃(θ), Q̃(θ) μ̃(θ))
whenever q was built at θ by :func:`initial_q` or natural-gradient steps at a fixed
θ (a step at a new θ mixes the old base into the new prior, see below). Λ lives on
the model's fixed pattern, so every q is factorised with the model's single
symbolic analysis (:meth:`~gmrf_core.LatentGaussianModel.factorize_precision`).
With constraints q is N(Λ⁻¹(Λm), Λ⁻¹) conditioned on A_c z = e (Rue & Held 2005,
sec. 2.3.3): Σ_c = Λ⁻¹ − V S⁻¹ Vᵀ (V = Λ⁻¹A_cᵀ, S = A_c V) and
m = z₀ + Σ_c (b − Λ z₀) for any feasible z₀.

**ELBO with every constant.** With B an orthonormal basis of the constraint null
space (B = I without constraints), d = n_total − #constraints and r = m − μ̃, the
prior density on the surface is the one of the Laplace objective
(:mod:`gmrf_core.laplace`), so::

    KL(q ‖ p) = ½ [tr(Q̃ Σ_c) + rᵀ Q̃ r − d + log det(BᵀΛB) − log det(BᵀQ̃B)],
    log det(BᵀΛB) = log|Λ| + log|A_c Λ⁻¹ A_cᵀ| − log|A_c A_cᵀ|

(Rue & Held 2005, eq. 2.32; the d/2·log 2π of entropy and prior cancel).
tr(Q̃ Σ_c) and the predictor variances v_i = (Ã Σ_c Ãᵀ)_ii come from the selected
inverse of Λ (entries on Q̃'s pattern and on the pairs of each row of Ã), with the
rank-k kriging correction; E_q[log p(y | z)] = Σ_i E[ℓ_i(η_i)], η_i ~ N(m_η,i, v_i),
by Gauss–Hermite quadrature (missing observations contribute 0). For Gaussian
observations with the exact posterior the ELBO equals log p(y | θ) = −objective(θ).

**Natural-gradient step** (conjugate-computation VI, Khan & Lin 2017, eq. 8–10;
Salimbeni et al. 2018). The natural gradient of L in q's natural parameters
(Λ, Λm) is the gradient in its mean parameters; for observation i, with
s_i = ã_iᵀ z ~ N(ã_iᵀm, v_i), ∂E[ℓ_i]/∂E[s_i²] = ½E[ℓ_i''] and
∂E[ℓ_i]/∂E[s_i] = E[ℓ_i'] − E[ℓ_i''] ã_iᵀm, so a step of size ρ ∈ (0, 1] is::

    λ_i ← (1 − ρ) λ_i + ρ (−E[ℓ_i''])
    γ_i ← (1 − ρ) γ_i + ρ (E[ℓ_i'] − E[ℓ_i''] · (E[η_i] − offset_i))
    (Q̃_b, b_b) ← (1 − ρ)(Q̃_b, b_b) + ρ (Q̃(θ), Q̃(θ) μ̃(θ))

followed by one factorisation of the new Λ and one solve for m. The offset enters
because the sites act on s = η − offset (Λm = Q̃μ̃ + Ãᵀγ). At a fixed θ the base part
is unchanged; for Gaussian observations a step with ρ = 1 gives the exact posterior
from any q (the targets do not depend on q). The expectations are one-dimensional
Gauss–Hermite sums of the likelihood's ``eta_derivatives``.

**Hyperparameters.** At fixed q (fixed m, Σ_c) the ELBO depends on θ through the
prior and the likelihood's own hyperparameters::

    ∂L/∂θ_k = −½ [tr(Σ_c ∂Q̃_k) + rᵀ ∂Q̃_k r − 2 rᵀ Q̃ ∂μ̃_k − ∂ log det(BᵀQ̃B)/∂θ_k]
              (prior θ_k: selected inversion, no dense matrices)
    ∂L/∂θ_j = Σ_i E[∂ℓ_i/∂θ_j]   (likelihood θ_j: Gauss–Hermite of theta_derivatives)

:func:`fit_variational` minimises the profile −L(θ, q*(θ)) − log π(θ) with scipy's
L-BFGS-B; q*(θ) comes from natural-gradient steps warm-started from the previous q
(the interleaving of NaturalGradient and a gradient optimizer in GPflow), and by the
envelope theorem the profile's gradient is ∂L/∂θ at fixed q*(θ).

**Modules.** :mod:`~gmrf_core.variational.q` (the Gaussian q in site form, its
assembly), :mod:`~gmrf_core.variational.elbo` (expectations, the ELBO and its
θ-gradient), :mod:`~gmrf_core.variational.steps` (natural-gradient steps and the
ascent loop at fixed θ) and :mod:`~gmrf_core.variational.fit` (θ by L-BFGS-B through
the driver shared with :func:`gmrf_core.fit`). The plain-gradient baseline that
natural gradients are compared with lives in ``bench/plain_gradient.py``.

References
----------
Khan, M. E. & Lin, W. (2017). Conjugate-computation variational inference:
converting variational inference in non-conjugate models to inferences in conjugate
models. AISTATS.
Salimbeni, H., Eleftheriadis, S. & Hensman, J. (2018). Natural gradients in practice:
non-conjugate variational inference in Gaussian process models. AISTATS.
Opper, M. & Archambeau, C. (2009). The variational Gaussian approximation revisited.
Neural Computation 21(3).
Rue, H. & Held, L. (2005). Gaussian Markov Random Fields. Chapman & Hall.
"""

from .elbo import DEFAULT_QUADRATURE, elbo, elbo_and_grad_theta, elbo_grad_theta
from .fit import VariationalFitResult, fit_variational
from .q import VariationalGaussian, initial_q
from .steps import AscentMethod, NaturalGradient, QOptimizeResult, natural_gradient_step, optimize_q

__all__ = [
    "VariationalGaussian",
    "QOptimizeResult",
    "VariationalFitResult",
    "AscentMethod",
    "NaturalGradient",
    "initial_q",
    "natural_gradient_step",
    "elbo",
    "elbo_grad_theta",
    "elbo_and_grad_theta",
    "optimize_q",
    "fit_variational",
    "DEFAULT_QUADRATURE",
]
