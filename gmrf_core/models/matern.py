"""Matérn fields through the SPDE approach: α = 2 in two dimensions, on a lattice or a mesh.

Meshes and projection matrices live in :mod:`gmrf_core.mesh`, the lattice assembly in
:mod:`gmrf_core.lattice` and the PC prior :class:`~gmrf_core.priors.PCMaternPrior` in
:mod:`gmrf_core.priors`.

A Gaussian field x with Matérn covariance of smoothness ν = α − d/2 = 1 solves
``(κ² − Δ) x = W/√τ`` with W Gaussian white noise (Whittle 1954; Lindgren, Rue &
Lindström 2011). A finite element (or finite volume) discretisation with lumped mass
matrix C (diagonal) and stiffness matrix G gives the sparse precision

    K = κ² C + G,    Q(κ, τ) = τ K C⁻¹ K = τ (κ⁴ C + 2κ² G + G C⁻¹ G)

(Lindgren et al. 2011, section 2.3 and appendix C.5). Its marginal variance away from
the boundary tends to the continuous value

    σ² = Γ(ν) / (Γ(ν + d/2) (4π)^(d/2) κ^(2ν) τ) = 1 / (4π κ² τ)   (ν = 1, d = 2),

and its practical range (correlation ≈ 0.14) is ρ = sqrt(8ν)/κ = sqrt(8)/κ.

Parameterisation
----------------
Both models use θ = (log ρ, log σ) on the internal scale:

    κ = sqrt(8) / ρ,    τ = 1 / (4π κ² σ²),

so ``Q = a C + b G + e G C⁻¹ G`` with ``a = τκ⁴``, ``b = 2τκ²``, ``e = τ`` and, since
log τ = const + 2θ₀ − 2θ₁,

    ∂Q/∂θ₀ = 2τ (G C⁻¹ G − κ⁴ C),    ∂Q/∂θ₁ = −2 Q

(the G term cancels in ∂/∂θ₀). The union of the patterns of C, G and G C⁻¹ G (the
pattern of G C⁻¹ G: nodes at most two edges apart) is fixed across θ; explicit zeros
are kept.

Boundary
--------
Both models use the natural (zero-flux Neumann) boundary condition, which roughly
doubles the variance at a straight boundary; extend the domain beyond the data
(``mesh_from_points(..., extend=...)``, or pad the lattice) by about one range.

References
----------
Lindgren, F., Rue, H. and Lindström, J. (2011). An explicit link between Gaussian
fields and Gaussian Markov random fields: the stochastic partial differential
equation approach. *JRSS B* 73(4), 423–498.

Fuglstad, G.-A., Simpson, D., Lindgren, F. and Rue, H. (2019). Constructing priors that
penalize the complexity of Gaussian random fields. *JASA* 114(525), 445–452.
"""

import math

import numpy as np
import scipy.sparse as sp

from ..errors import InputError
from ..lattice import lattice_shape, lattice_spacing, spde_lattice_parts
from ..mesh import checked_copy, doubled_areas
from ..priors import PCMaternPrior
from ..validation import check_positive
from ._spde_logdet import SPDELogdet
from .base import LatentModel

__all__ = ["Matern2D", "MaternSPDE"]

_LOG_SQRT8 = 0.5 * math.log(8.0)
_LOG_4PI = math.log(4.0 * math.pi)
# exp() of a log coefficient outside this window overflows or underflows (Q singular)
_LOG_COEFFICIENT_LIMIT = 650.0
# Largest accepted ratio μ_max/μ_min = 1 + λ_max(G)/(κ² c) of the lattice Matérn2D, i.e.
# cond(Q) <= 1e12. Past it the smallest eigenvalues of the assembled Q are lost to
# rounding (error ≈ 0.1 ε cond(Q) in log|Q|, measured), so Q's factorization and the exact
# log-determinant disagree and Q may not even be positive definite in floating point.
_LATTICE_RATIO_LIMIT = 1e6


# ------------------------------------------------------------------------ shared model
class _MaternBase(LatentModel):
    """Q(θ) = a C + b G + e G C⁻¹ G from three data arrays on one fixed CSC pattern."""

    theta_names = ("log_range", "log_sigma")

    def _set_matrices(self, indptr, indices, mass, stiffness, stiffness_squared, diameter, prior):
        if prior is not None and not isinstance(prior, PCMaternPrior):
            raise InputError(
                f"{type(self).__name__}: prior must be None or a PCMaternPrior, got {prior!r}."
            )
        self.prior = prior
        self._indptr = indptr
        self._indices = indices
        self._mass = mass
        self._stiffness = stiffness
        self._stiffness_squared = stiffness_squared
        self.diameter = float(diameter)
        self.theta0 = np.array([math.log(self.diameter / 5.0), 0.0])

    def _csc(self, data):
        return sp.csc_matrix(
            (data, self._indices.copy(), self._indptr.copy()), shape=(self.n, self.n)
        )

    # -- parameter maps ----------------------------------------------------------
    def _log_kappa_tau(self, theta):
        theta = self.check_theta(theta)
        log_kappa = _LOG_SQRT8 - theta[0]
        log_tau = -_LOG_4PI - 2.0 * log_kappa - 2.0 * theta[1]
        worst = max(abs(log_tau + 4.0 * log_kappa), abs(log_tau + 2.0 * log_kappa), abs(log_tau))
        if worst > _LOG_COEFFICIENT_LIMIT:
            raise InputError(
                f"{type(self).__name__}: theta = {theta} (range "
                f"{math.exp(min(theta[0], 700)):.3g}, sigma {math.exp(min(theta[1], 700)):.3g}) "
                "puts the coefficients of Q outside "
                "floating-point range; use hyperparameters of sensible magnitude."
            )
        return log_kappa, log_tau

    def kappa_tau(self, theta):
        """Return (κ, τ) of Q = τ K C⁻¹ K for θ = (log range, log sigma).

        κ = sqrt(8)/ρ and τ = 1/(4π κ² σ²) (Lindgren et al. 2011, section 2.1).
        """
        log_kappa, log_tau = self._log_kappa_tau(theta)
        return math.exp(log_kappa), math.exp(log_tau)

    def to_natural(self, theta):
        """Natural scale: practical range ρ = exp(θ₀), marginal standard deviation σ = exp(θ₁)."""
        practical_range, sigma = self.range_sigma(theta)
        return {"range": practical_range, "sigma": sigma}

    def range_sigma(self, theta):
        """Return (practical range ρ, marginal standard deviation σ) = exp(θ)."""
        theta = self.check_theta(theta)
        return math.exp(theta[0]), math.exp(theta[1])

    @staticmethod
    def theta_from(practical_range, sigma):
        """Internal-scale θ = (log ρ, log σ) for a practical range and standard deviation."""
        practical_range = check_positive(practical_range, "practical_range", "theta_from")
        sigma = check_positive(sigma, "sigma", "theta_from")
        return np.array([math.log(practical_range), math.log(sigma)])

    # -- protocol -------------------------------------------------------------------
    def precision(self, theta):
        """Q(θ) = τ(κ⁴ C + 2κ² G + G C⁻¹ G), CSC on the model's fixed pattern.

        Parameters
        ----------
        theta : array_like, shape (2,)
            (log practical range, log marginal standard deviation).

        Returns
        -------
        scipy.sparse.csc_matrix
            Symmetric positive definite, sorted indices, explicit zeros kept.

        Raises
        ------
        InputError
            If θ is not two finite numbers or gives coefficients that overflow.
        """
        return self._csc(self.precision_values(theta))

    def precision_values(self, theta):
        """The value array of :meth:`precision` on the pattern :meth:`precision_pattern`
        (no matrix built, no index arrays copied)."""
        log_kappa, log_tau = self._log_kappa_tau(theta)
        tau = math.exp(log_tau)
        kappa2 = math.exp(2.0 * log_kappa)
        data = (tau * kappa2 * kappa2) * self._mass
        data += (2.0 * tau * kappa2) * self._stiffness
        data += tau * self._stiffness_squared
        return data

    def precision_grad(self, theta):
        """[∂Q/∂θ₀, ∂Q/∂θ₁] = [2τ(G C⁻¹ G − κ⁴ C), −2Q], each CSC on Q's pattern.

        Exact: κ = sqrt(8) e^(−θ₀) and τ = e^(2θ₀ − 2θ₁) / (32π), so
        τκ⁴ ∝ e^(−2θ₀−2θ₁), τκ² ∝ e^(−2θ₁) and τ ∝ e^(2θ₀−2θ₁) (chain rule through κ, τ).

        Raises
        ------
        InputError
            As :meth:`precision`.
        """
        return [self._csc(data) for data in self.precision_grad_values(theta)]

    def precision_grad_values(self, theta):
        """The value arrays of :meth:`precision_grad` on the pattern
        :meth:`precision_pattern` (no matrices built, no index arrays copied)."""
        log_kappa, log_tau = self._log_kappa_tau(theta)
        tau = math.exp(log_tau)
        kappa2 = math.exp(2.0 * log_kappa)
        d_range = (2.0 * tau) * self._stiffness_squared
        d_range -= (2.0 * tau * kappa2 * kappa2) * self._mass
        d_sigma = (-2.0 * tau * kappa2 * kappa2) * self._mass
        d_sigma -= (4.0 * tau * kappa2) * self._stiffness
        d_sigma -= (2.0 * tau) * self._stiffness_squared
        return [d_range, d_sigma]

    def precision_pattern(self):
        """(indptr, indices) of the CSC pattern every :meth:`precision` and
        :meth:`precision_grad` matrix is stored on (read-only views)."""
        indptr, indices = self._indptr.view(), self._indices.view()
        indptr.flags.writeable = indices.flags.writeable = False
        return indptr, indices

    def share_pattern(self, indptr, indices):
        """Keep ``indptr`` and ``indices`` (e.g. views of a model's own copy of this
        pattern) in place of this model's equal arrays, so that one copy is held and
        shipped. Arrays that differ from the pattern are ignored."""
        for name, given in (("_indptr", indptr), ("_indices", indices)):
            own = getattr(self, name)
            if given.dtype == own.dtype and np.array_equal(given, own):
                setattr(self, name, given)

    def log_prior(self, theta):
        """Log PC prior density of θ (0 when no prior was given)."""
        theta = self.check_theta(theta)
        return 0.0 if self.prior is None else self.prior.log_density(theta)

    def log_prior_grad(self, theta):
        """Gradient of :meth:`log_prior` in θ."""
        theta = self.check_theta(theta)
        return np.zeros(2) if self.prior is None else self.prior.log_density_grad(theta)

    @property
    def mass_matrix(self):
        """Lumped mass matrix C (diagonal), stored on the model's pattern."""
        return self._csc(self._mass.copy())

    @property
    def stiffness_matrix(self):
        """Stiffness matrix G, stored on the model's pattern."""
        return self._csc(self._stiffness.copy())


# --------------------------------------------------------------------------- lattice
class Matern2D(_MaternBase):
    """SPDE (α = 2) Matérn field on a regular ``m x n`` lattice.

    Q(θ) = τ(κ⁴ C + 2κ² G + G C⁻¹ G) with the cell-centred finite-volume
    discretisation of −Δ (the same as lumped P1 elements on right triangles):
    ``C = h0*h1 I`` and G the 5-point graph Laplacian of the lattice with weights
    ``h1/h0`` along axis 0 and ``h0/h1`` along axis 1 (zero-flux Neumann boundary).
    With this scaling the variance away from the boundary tends to
    σ² = 1/(4π κ² τ) as κh → 0 (about 4 % above it for a range of 10 spacings).
    Q has the 13-point pattern of G²: 13 nonzeros per column at least two nodes from
    the boundary. θ = (log practical range, log marginal sd); see the module
    docstring for κ(θ), τ(θ) and the derivatives.

    Node ``(i, j)`` is unknown ``i*n + j`` and sits at ``(i*h0, j*h1)``; use
    :func:`lattice_projection` for observations between the nodes.

    Parameters
    ----------
    shape : (int, int)
        Lattice shape ``(m, n)``, both >= 2.
    spacing : float or (float, float), optional
        Node spacing ``h`` or ``(h0, h1)`` (default 1).
    prior : PCMaternPrior, optional
        PC prior on (range, sigma); None (default) means no prior (log_prior = 0).

    Attributes
    ----------
    shape : (int, int)
    spacing : (float, float)
    n : int
        ``m * n``.
    theta0 : numpy.ndarray
        ``(log(D/5), 0)``: range a fifth of the lattice diagonal D, σ = 1 (the range
        is capped at half of :attr:`max_range` on lattices wider than about 5000
        spacings).
    max_range : float
        Longest accepted practical range (cond(Q) <= 10¹², see Raises).

    Raises
    ------
    InputError
        Bad shape, spacing or prior; and from every method taking θ, a range so long
        that Q is numerically singular: the ratio ``1 + λ_max(G)/(κ² h0 h1)`` of the
        extreme eigenvalues of ``K = κ² C + G`` must not exceed 10⁶ (cond(Q) <= 10¹²),
        which for square cells is a practical range of at most about 1000 spacings
        (:attr:`max_range` gives the exact bound). Within it, the factorization of
        Q agrees with :meth:`logdet` to about 10⁻⁵.

    References
    ----------
    Lindgren, Rue and Lindström (2011), JRSS B 73(4), 423–498, section 2.3 and
    appendix C.
    """

    def __init__(self, shape, spacing=1.0, prior=None):
        owner = "Matern2D"
        m, n = lattice_shape(shape, owner)
        self.shape = (m, n)
        self.spacing = lattice_spacing(spacing, owner)
        self.n = m * n
        coefficients = [(1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)]
        indptr, indices, (mass, stiffness, squared) = spde_lattice_parts(
            m, n, self.spacing, coefficients
        )
        diameter = math.hypot((m - 1) * self.spacing[0], (n - 1) * self.spacing[1])
        self._set_matrices(indptr, indices, mass, stiffness, squared, diameter, prior)
        self._stiffness_eigenvalues = self._eigen_factors()
        self._log_cell = math.log(self.spacing[0] * self.spacing[1])
        largest = float(self._stiffness_eigenvalues.max())
        # μ_max/μ_min = 1 + λ_max/(κ² c) = limit  <=>  ρ = sqrt(8) / κ with this κ
        self.max_range = math.sqrt(
            8.0 * (_LATTICE_RATIO_LIMIT - 1.0) * math.exp(self._log_cell) / largest
        )
        self._log_largest_eigenvalue = math.log(largest)
        self.theta0[0] = min(self.theta0[0], math.log(0.5 * self.max_range))

    def __getstate__(self):
        # G's eigenvalues are rebuilt on load (0.1 ms at 300², the same arithmetic, bit for
        # bit); C, G and G C⁻¹ G travel: rebuilding them costs more (37 ms) than their bytes
        state = dict(self.__dict__)
        state.pop("_stiffness_eigenvalues", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._stiffness_eigenvalues = self._eigen_factors()

    def start_from_data(self, field):
        """A moment-based θ0 from a noisy image of the field -> θ, or None.

        ``field`` holds, per node (NaN where there is none), a value u = x + c + ε with
        ε independent noise of any variance and c a constant (removed here): e.g. the
        working response of a likelihood at a constant linear predictor. The empirical
        covariances C(d) of u along the lattice's axes at lags of 1, 2, 3, 4, 6, 8, ...
        spacings (up to a quarter of the axis) do not see ε for d > 0, so the range is
        found from their ratio to the shortest lag d₀: the α = 2 Matérn correlation
        r(d) = κd K₁(κd) (Lindgren et al. 2011, section 2.1) is solved for κ at the lag
        whose ratio is nearest ½, in C(d)/C(d₀) = r(d)/r(d₀); and σ² = C(d₀)/r(d₀).
        O(n) work. None when the data do not determine a start (too few pairs, no
        positive covariance, ratios all above 0.95 or below 0.05, a root outside the
        accepted ranges); the caller then keeps :attr:`theta0`.
        """
        from scipy.optimize import brentq
        from scipy.special import k1

        u = np.asarray(field, dtype=float).reshape(self.shape)
        finite = np.isfinite(u)
        if finite.sum() < 16:
            return None
        u = np.where(finite, u - u[finite].mean(), 0.0)
        weight = finite.astype(float)
        lags = {}
        for axis, h in enumerate(self.spacing):
            # lags 1, 2, 3, 4, 6, 8, 12, 16, ...: 2^j and 3·2^j
            limit = max(1, self.shape[axis] // 4)
            for k in sorted({b << j for b in (1, 3) for j in range(limit.bit_length())}):
                if k > limit:
                    break
                head = [slice(None)] * 2
                tail = [slice(None)] * 2
                head[axis], tail[axis] = slice(k, None), slice(None, -k)
                pairs = float(np.sum(weight[tuple(head)] * weight[tuple(tail)]))
                if pairs >= 8:
                    total = float(np.sum(u[tuple(head)] * u[tuple(tail)]))
                    d = round(k * h, 12)
                    old = lags.get(d, (0.0, 0.0))
                    lags[d] = (old[0] + total, old[1] + pairs)
        distances = np.array(sorted(lags))
        if distances.size < 2:
            return None
        cov = np.array([lags[d][0] / lags[d][1] for d in distances])
        d0, c0 = distances[0], cov[0]
        if not c0 > 0:
            return None
        ratio = cov[1:] / c0
        usable = (ratio > 0.05) & (ratio < 0.95)
        if not np.any(usable):
            return None
        pick = np.flatnonzero(usable)[np.argmin(np.abs(ratio[usable] - 0.5))]
        d, target = distances[1 + pick], ratio[pick]

        def correlation(t):
            return t * k1(t) if t > 0 else 1.0

        def mismatch(log_kappa):
            kappa = math.exp(log_kappa)
            return correlation(kappa * d) / correlation(kappa * d0) - target

        low = math.log(math.sqrt(8.0) / self.max_range)
        high = math.log(math.sqrt(8.0) / (0.5 * min(self.spacing)))
        if not mismatch(low) * mismatch(high) < 0:
            return None
        kappa = math.exp(brentq(mismatch, low, high, xtol=1e-6))
        sigma2 = c0 / correlation(kappa * d0)
        theta = np.array([math.log(math.sqrt(8.0) / kappa), 0.5 * math.log(sigma2)])
        theta[0] = min(theta[0], math.log(0.5 * self.max_range))
        if not np.all(np.isfinite(theta)):
            return None
        try:
            self._log_kappa_tau(theta)
        except InputError:
            return None
        return theta

    def _eigen_factors(self):
        """Eigenvalues w0 λ_a + w1 λ_b of G (Neumann, DCT-II basis), shape (m, n).

        λ_a = 2 − 2cos(πa/m) is evaluated as 4 sin²(πa/(2m)), which has no
        cancellation for the smallest nonzero eigenvalues (the long-range modes that
        dominate log|Q| when κ² c is small).
        """
        m, n = self.shape
        h0, h1 = self.spacing
        path0 = 4.0 * np.sin(0.5 * np.pi * np.arange(m) / m) ** 2
        path1 = 4.0 * np.sin(0.5 * np.pi * np.arange(n) / n) ** 2
        return (h1 / h0) * path0[:, None] + (h0 / h1) * path1[None, :]

    def _log_kappa_tau(self, theta):
        log_kappa, log_tau = super()._log_kappa_tau(theta)
        # log(μ_max/μ_min) = log(κ²c + λ_max) − log(κ²c), without overflow or underflow
        log_kappa2_cell = 2.0 * log_kappa + self._log_cell
        log_ratio = float(np.logaddexp(log_kappa2_cell, self._log_largest_eigenvalue))
        log_ratio -= log_kappa2_cell
        if log_ratio > math.log(_LATTICE_RATIO_LIMIT):
            theta = self.check_theta(theta)
            raise InputError(
                f"Matern2D: practical range exp(theta[0]) = {math.exp(min(theta[0], 700)):.4g} "
                f"is too long for this lattice (spacing {self.spacing}): Q's condition number "
                f"would be {math.exp(min(2.0 * log_ratio, 700)):.3g} > 1e12, so its smallest "
                "eigenvalues are lost to rounding. Keep the range below "
                f"{self.max_range:.4g} (theta[0] < {math.log(self.max_range):.4f}), e.g. with a "
                "PCMaternPrior, or use a coarser lattice spacing."
            )
        return log_kappa, log_tau

    def logdet(self, theta):
        """Exact log|Q(θ)| from the eigenvalues of the Neumann lattice Laplacian.

        G = w0 L_m ⊗ I + w1 I ⊗ L_n with path-graph Laplacian eigenvalues
        λ_a = 2 − 2cos(πa/m), a = 0..m−1 (shared DCT-II eigenvectors), and
        C = c I (c = h0 h1), so Q = (τ/c)(κ² c I + G)² has eigenvalues
        (τ/c) μ_ab² with μ_ab = κ² c + w0 λ_a + w1 λ_b and

            log|Q| = N log(τ/c) + 2 Σ_ab log μ_ab.
        """
        log_kappa, log_tau = self._log_kappa_tau(theta)
        mu = math.exp(2.0 * log_kappa + self._log_cell) + self._stiffness_eigenvalues
        return self.n * (log_tau - self._log_cell) + 2.0 * float(np.sum(np.log(mu)))

    def logdet_grad(self, theta):
        """Gradient of :meth:`logdet`: (Σ_ab 2(λ_ab − κ²c)/μ_ab, −2N).

        ∂/∂θ₀ = 2N − 4κ²c Σ 1/μ_ab, summed term by term as 2(λ_ab − κ²c)/μ_ab
        (λ_ab = μ_ab − κ²c), which does not cancel when κ² c dominates (short range).
        """
        log_kappa, _ = self._log_kappa_tau(theta)
        kappa2_cell = math.exp(2.0 * log_kappa + self._log_cell)
        eigenvalues = self._stiffness_eigenvalues
        d_range = 2.0 * float(np.sum((eigenvalues - kappa2_cell) / (kappa2_cell + eigenvalues)))
        return np.array([d_range, -2.0 * self.n])

    def __repr__(self):
        return f"Matern2D(shape={self.shape}, spacing={self.spacing}, prior={self.prior!r})"


def _fem_matrices(points, triangles):
    """Lumped mass (vector) and P1 stiffness (CSC) of a triangle mesh.

    For a triangle of area A with edge vectors e_k opposite vertex k,
    G_kl = (e_k · e_l) / (4A); the consistent mass is A/12 (1 + δ_kl) and its row sum,
    the lumped mass, is A/3 per vertex (Lindgren et al. 2011, appendix C.5).
    """
    n_nodes = points.shape[0]
    area = 0.5 * np.abs(doubled_areas(points, triangles))
    p = [points[triangles[:, k]] for k in range(3)]
    edges = [p[2] - p[1], p[0] - p[2], p[1] - p[0]]  # edge opposite vertex k
    mass = np.bincount(triangles.ravel(), weights=np.repeat(area / 3.0, 3), minlength=n_nodes)
    rows, cols, values = [], [], []
    for k in range(3):
        for ell in range(3):
            rows.append(triangles[:, k])
            cols.append(triangles[:, ell])
            values.append(np.einsum("ij,ij->i", edges[k], edges[ell]) / (4.0 * area))
    stiffness = sp.coo_matrix(
        (np.concatenate(values), (np.concatenate(rows), np.concatenate(cols))),
        shape=(n_nodes, n_nodes),
    ).tocsc()
    stiffness.sum_duplicates()
    return mass, stiffness


class MaternSPDE(_MaternBase):
    """SPDE (α = 2) Matérn field on a triangle mesh with P1 finite elements.

    Q(θ) = τ(κ⁴ C + 2κ² G + G C⁻¹ G) with C the lumped mass matrix (diagonal of the
    row sums of the consistent P1 mass matrix: a third of the area of the triangles
    around each node) and G the P1 stiffness matrix, natural (Neumann) boundary
    (Lindgren, Rue & Lindström 2011, section 2.3 and appendix C.5). θ = (log
    practical range, log marginal sd); see the module docstring for κ(θ), τ(θ) and
    the derivatives. Q's pattern is that of G C⁻¹ G: nodes at most two edges apart.

    :meth:`logdet` and :meth:`logdet_grad` are exact from one factorization of the much
    sparser K = κ² C + G (log|Q| = n log τ + 2 log|K| − log|C|, and the diagonal of K⁻¹ for
    the gradient; see :mod:`gmrf_core.models._spde_logdet`), so a Laplace evaluation
    factorizes and inverts neither Q nor Q̃.

    Parameters
    ----------
    mesh : Mesh or object with ``.points`` (N x 2) and ``.triangles`` (T x 3 int)
        A valid (non-overlapping) triangulation; every node must belong to a
        triangle and no triangle may be degenerate.
    prior : PCMaternPrior, optional
        PC prior on (range, sigma); None (default) means no prior.

    Attributes
    ----------
    mesh : Mesh
        The validated mesh (arrays copied).
    n : int
        Number of mesh nodes.
    theta0 : numpy.ndarray
        ``(log(D/5), 0)``: range a fifth of the diagonal D of the mesh's bounding box,
        σ = 1.

    Raises
    ------
    InputError
        If the mesh is malformed (shapes, indices, unused nodes, zero-area
        triangles, non-finite coordinates) or the prior is not a PCMaternPrior.

    References
    ----------
    Lindgren, Rue and Lindström (2011), JRSS B 73(4), 423–498.
    """

    def __init__(self, mesh, prior=None):
        self.mesh = checked_copy(mesh, "MaternSPDE")
        points, triangles = self.mesh.points, self.mesh.triangles
        self.n = points.shape[0]
        mass, stiffness = _fem_matrices(points, triangles)
        # structural pattern from mesh connectivity (no numerical cancellation)
        adjacency = sp.coo_matrix(
            (
                np.ones(9 * triangles.shape[0]),
                (np.repeat(triangles, 3, axis=1).ravel(), np.tile(triangles, (1, 3)).ravel()),
            ),
            shape=(self.n, self.n),
        ).tocsc()
        pattern = (adjacency @ adjacency).tocsc()
        pattern.sum_duplicates()
        pattern.sort_indices()
        squared = stiffness @ sp.diags(1.0 / mass) @ stiffness
        mass_on = self.on_pattern(pattern, sp.diags(mass))
        diameter = float(np.hypot(*np.ptp(points, axis=0)))
        # K = κ²C + G on the mesh's own (one-edge) pattern, for the log-determinant
        adjacency.sort_indices()
        mass_on_k = self.on_pattern(adjacency, sp.diags(mass))
        self._k_logdet = SPDELogdet(
            mass_on_k.indptr,
            mass_on_k.indices,
            mass_on_k.data,
            self.on_pattern(adjacency, stiffness).data,
            np.asarray(mass, dtype=float),
        )
        self._set_matrices(
            mass_on.indptr,
            mass_on.indices,
            mass_on.data,
            self.on_pattern(pattern, stiffness).data,
            self.on_pattern(pattern, squared).data,
            diameter,
            prior,
        )

    def logdet(self, theta):
        """log|Q(θ)| = n log τ + 2 log|K| − log|C|, K = κ² C + G, from one factorization
        of K (kept for a :meth:`logdet_grad` at the same θ).

        Raises
        ------
        InputError
            As :meth:`precision`.
        NotPositiveDefiniteError
            If K's factorization breaks down (a range far beyond the mesh's extent).
        """
        log_kappa, log_tau = self._log_kappa_tau(theta)
        kappa2 = math.exp(2.0 * log_kappa)
        return self.n * log_tau + 2.0 * self._k_logdet.log_det(kappa2) - self._k_logdet.log_mass

    def logdet_grad(self, theta):
        """∂ log|Q| / ∂θ = (2n − 4κ² tr(K⁻¹ C), −2n).

        From log τ = const + 2θ₀ − 2θ₁ and ∂K/∂θ₀ = −2κ² C (κ = sqrt(8) e^(−θ₀)), with
        tr(K⁻¹ C) = Σ_i C_ii (K⁻¹)_ii from the selected inverse of K's factor.

        Raises
        ------
        InputError, NotPositiveDefiniteError
            As :meth:`logdet`.
        """
        log_kappa, _log_tau = self._log_kappa_tau(theta)
        kappa2 = math.exp(2.0 * log_kappa)
        trace = self._k_logdet.trace_mass_inverse(kappa2)
        return np.array([2.0 * self.n - 4.0 * kappa2 * trace, -2.0 * self.n])

    def __repr__(self):
        return f"MaternSPDE(n={self.n}, triangles={self.mesh.n_triangles}, prior={self.prior!r})"
