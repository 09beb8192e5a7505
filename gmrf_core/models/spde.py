"""Matérn fields through the SPDE approach: α = 2 in two dimensions, on a lattice or a mesh.

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
import numbers
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ..datasets import _lattice_size, _lattice_spacing, _spde_lattice_parts
from ..errors import InputError
from .base import LatentModel

__all__ = [
    "Matern2D",
    "MaternSPDE",
    "PCMaternPrior",
    "Mesh",
    "mesh_from_points",
    "projection_matrix",
    "lattice_projection",
]

_LOG_SQRT8 = 0.5 * math.log(8.0)
_LOG_4PI = math.log(4.0 * math.pi)
# exp() of a log coefficient outside this window overflows or underflows (Q singular)
_LOG_COEFFICIENT_LIMIT = 650.0


def _positive_scalar(value, name, owner):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InputError(f"{owner}: {name} must be a real number, got {value!r}.")
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise InputError(f"{owner}: {name} must be a finite number > 0, got {value!r}.")
    return value


def _probability(value, name, owner):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InputError(f"{owner}: {name} must be a real number, got {value!r}.")
    value = float(value)
    if not 0.0 < value < 1.0:
        raise InputError(f"{owner}: {name} must be a probability in (0, 1), got {value!r}.")
    return value


# ---------------------------------------------------------------------------- PC prior
class PCMaternPrior:
    """Joint PC prior of the practical range ρ and marginal standard deviation σ (d = 2).

    Fuglstad et al. (2019, theorem 2.6) with d = 2: ρ and σ are independent,

        π(ρ) = λ_ρ ρ⁻² exp(−λ_ρ / ρ),   λ_ρ = −log(α_ρ) ρ₀      (P(ρ < ρ₀) = α_ρ),
        π(σ) = λ_σ exp(−λ_σ σ),          λ_σ = −log(α_σ) / σ₀    (P(σ > σ₀) = α_σ).

    On the internal scale θ = (log ρ, log σ) the Jacobians ρ and σ are included:

        log π(θ) = log λ_ρ − θ₀ − λ_ρ e^(−θ₀) + log λ_σ + θ₁ − λ_σ e^(θ₁),
        ∂/∂θ₀ = −1 + λ_ρ e^(−θ₀),    ∂/∂θ₁ = 1 − λ_σ e^(θ₁),
        ∂²/∂θ₀² = −λ_ρ e^(−θ₀),      ∂²/∂θ₁² = −λ_σ e^(θ₁),  mixed = 0.

    Parameters
    ----------
    range0 : float
        Reference practical range ρ₀ > 0.
    range_alpha : float
        P(ρ < ρ₀), in (0, 1).
    sigma0 : float
        Reference standard deviation σ₀ > 0.
    sigma_alpha : float
        P(σ > σ₀), in (0, 1).

    Attributes
    ----------
    range_rate, sigma_rate : float
        λ_ρ and λ_σ.

    Raises
    ------
    InputError
        If a reference value is not a finite positive number or a probability is
        not in (0, 1).

    References
    ----------
    Fuglstad, Simpson, Lindgren and Rue (2019), JASA 114(525), 445–452; R-INLA's
    ``inla.spde2.pcmatern``.
    """

    def __init__(self, range0, range_alpha, sigma0, sigma_alpha):
        owner = "PCMaternPrior"
        self.range0 = _positive_scalar(range0, "range0", owner)
        self.range_alpha = _probability(range_alpha, "range_alpha", owner)
        self.sigma0 = _positive_scalar(sigma0, "sigma0", owner)
        self.sigma_alpha = _probability(sigma_alpha, "sigma_alpha", owner)
        self.range_rate = -math.log(self.range_alpha) * self.range0
        self.sigma_rate = -math.log(self.sigma_alpha) / self.sigma0

    def _exponentials(self, theta):
        theta = np.asarray(theta, dtype=float).reshape(-1)
        if theta.size != 2 or not np.all(np.isfinite(theta)):
            raise InputError(
                "PCMaternPrior: theta must be 2 finite numbers (log range, log sigma), "
                f"got {theta}."
            )
        # overflow to inf gives density -inf / gradient ±inf: the honest value
        with np.errstate(over="ignore"):
            return theta, float(np.exp(-theta[0])), float(np.exp(theta[1]))

    def log_density(self, theta):
        """log π(θ) on the internal scale (Jacobian included)."""
        theta, inv_range, sigma = self._exponentials(theta)
        return (
            math.log(self.range_rate)
            - theta[0]
            - self.range_rate * inv_range
            + math.log(self.sigma_rate)
            + theta[1]
            - self.sigma_rate * sigma
        )

    def log_density_grad(self, theta):
        """Gradient of :meth:`log_density` in θ, shape (2,)."""
        _, inv_range, sigma = self._exponentials(theta)
        return np.array([-1.0 + self.range_rate * inv_range, 1.0 - self.sigma_rate * sigma])

    def log_density_hess(self, theta):
        """Hessian of :meth:`log_density` in θ, shape (2, 2) (diagonal)."""
        _, inv_range, sigma = self._exponentials(theta)
        return np.diag([-self.range_rate * inv_range, -self.sigma_rate * sigma])

    def __repr__(self):
        return (
            f"PCMaternPrior(range0={self.range0!r}, range_alpha={self.range_alpha!r}, "
            f"sigma0={self.sigma0!r}, sigma_alpha={self.sigma_alpha!r})"
        )


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
        practical_range = _positive_scalar(practical_range, "practical_range", "theta_from")
        sigma = _positive_scalar(sigma, "sigma", "theta_from")
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
        log_kappa, log_tau = self._log_kappa_tau(theta)
        tau = math.exp(log_tau)
        kappa2 = math.exp(2.0 * log_kappa)
        data = (tau * kappa2 * kappa2) * self._mass
        data += (2.0 * tau * kappa2) * self._stiffness
        data += tau * self._stiffness_squared
        return self._csc(data)

    def precision_grad(self, theta):
        """[∂Q/∂θ₀, ∂Q/∂θ₁] = [2τ(G C⁻¹ G − κ⁴ C), −2Q], each CSC on Q's pattern.

        Exact: κ = sqrt(8) e^(−θ₀) and τ = e^(2θ₀ − 2θ₁) / (32π), so
        τκ⁴ ∝ e^(−2θ₀−2θ₁), τκ² ∝ e^(−2θ₁) and τ ∝ e^(2θ₀−2θ₁) (chain rule through κ, τ).

        Raises
        ------
        InputError
            As :meth:`precision`.
        """
        log_kappa, log_tau = self._log_kappa_tau(theta)
        tau = math.exp(log_tau)
        kappa2 = math.exp(2.0 * log_kappa)
        d_range = (2.0 * tau) * self._stiffness_squared
        d_range -= (2.0 * tau * kappa2 * kappa2) * self._mass
        d_sigma = (-2.0 * tau * kappa2 * kappa2) * self._mass
        d_sigma -= (4.0 * tau * kappa2) * self._stiffness
        d_sigma -= (2.0 * tau) * self._stiffness_squared
        return [self._csc(d_range), self._csc(d_sigma)]

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
        ``(log(D/5), 0)``: range a fifth of the lattice diagonal D, σ = 1.

    Raises
    ------
    InputError
        Bad shape, spacing or prior.

    References
    ----------
    Lindgren, Rue and Lindström (2011), JRSS B 73(4), 423–498, section 2.3 and
    appendix C.
    """

    def __init__(self, shape, spacing=1.0, prior=None):
        owner = "Matern2D"
        if isinstance(shape, numbers.Integral) or np.ndim(shape) != 1 or len(shape) != 2:
            raise InputError(f"{owner}: shape must be a pair (m, n) of integers, got {shape!r}.")
        m = _lattice_size(shape[0], "shape[0]", owner, minimum=2)
        n = _lattice_size(shape[1], "shape[1]", owner, minimum=2)
        self.shape = (m, n)
        self.spacing = _lattice_spacing(spacing, owner)
        self.n = m * n
        coefficients = [(1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)]
        indptr, indices, (mass, stiffness, squared) = _spde_lattice_parts(
            m, n, self.spacing, coefficients
        )
        diameter = math.hypot((m - 1) * self.spacing[0], (n - 1) * self.spacing[1])
        self._set_matrices(indptr, indices, mass, stiffness, squared, diameter, prior)

    def _eigen_factors(self):
        """μ_ab / κ²-free part: eigenvalues w0 λ_a + w1 λ_b of G (Neumann, DCT-II basis)."""
        m, n = self.shape
        h0, h1 = self.spacing
        path0 = 2.0 - 2.0 * np.cos(np.pi * np.arange(m) / m)
        path1 = 2.0 - 2.0 * np.cos(np.pi * np.arange(n) / n)
        return (h1 / h0) * path0[:, None] + (h0 / h1) * path1[None, :]

    def logdet(self, theta):
        """Exact log|Q(θ)| from the eigenvalues of the Neumann lattice Laplacian.

        G = w0 L_m ⊗ I + w1 I ⊗ L_n with path-graph Laplacian eigenvalues
        λ_a = 2 − 2cos(πa/m), a = 0..m−1 (shared DCT-II eigenvectors), and
        C = c I (c = h0 h1), so Q = (τ/c)(κ² c I + G)² has eigenvalues
        (τ/c) μ_ab² with μ_ab = κ² c + w0 λ_a + w1 λ_b and

            log|Q| = N log(τ/c) + 2 Σ_ab log μ_ab.
        """
        log_kappa, log_tau = self._log_kappa_tau(theta)
        cell = self.spacing[0] * self.spacing[1]
        mu = math.exp(2.0 * log_kappa) * cell + self._eigen_factors()
        return self.n * (log_tau - math.log(cell)) + 2.0 * float(np.sum(np.log(mu)))

    def logdet_grad(self, theta):
        """Gradient of :meth:`logdet`: (2N − 4κ² c Σ 1/μ_ab, −2N)."""
        log_kappa, _ = self._log_kappa_tau(theta)
        cell = self.spacing[0] * self.spacing[1]
        kappa2_cell = math.exp(2.0 * log_kappa) * cell
        mu = kappa2_cell + self._eigen_factors()
        return np.array([2.0 * self.n - 4.0 * kappa2_cell * float(np.sum(1.0 / mu)), -2.0 * self.n])

    def __repr__(self):
        return f"Matern2D(shape={self.shape}, spacing={self.spacing}, prior={self.prior!r})"


# ------------------------------------------------------------------------------ mesh
@dataclass(frozen=True, eq=False)
class Mesh:
    """A triangle mesh in the plane.

    Attributes
    ----------
    points : numpy.ndarray, shape (N, 2)
        Node coordinates.
    triangles : numpy.ndarray, shape (T, 3), int64
        Node indices of each triangle (counter-clockwise from Triangle).
    input_nodes : numpy.ndarray of int64 or None
        For a mesh built by :func:`mesh_from_points`: the node of every input point
        (input points are mesh nodes, so ``points[input_nodes]`` are the inputs).
    """

    points: np.ndarray
    triangles: np.ndarray
    input_nodes: np.ndarray | None = None

    @property
    def n_nodes(self):
        """Number of nodes N."""
        return int(self.points.shape[0])

    @property
    def n_triangles(self):
        """Number of triangles T."""
        return int(self.triangles.shape[0])


def _check_mesh(mesh, owner):
    """Return (points, triangles) of a mesh-like object as validated arrays."""
    if not hasattr(mesh, "points") or not hasattr(mesh, "triangles"):
        raise InputError(
            f"{owner}: mesh must have .points (N x 2) and .triangles (T x 3), got "
            f"{type(mesh).__name__}; build one with mesh_from_points."
        )
    try:
        points = np.asarray(mesh.points, dtype=float)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{owner}: mesh.points must be a numeric (N, 2) array.") from exc
    if points.ndim != 2 or points.shape[1] != 2 or points.shape[0] < 3:
        raise InputError(
            f"{owner}: mesh.points must have shape (N, 2) with N >= 3, got {points.shape}."
        )
    if not np.all(np.isfinite(points)):
        bad = np.flatnonzero(~np.all(np.isfinite(points), axis=1))
        raise InputError(f"{owner}: mesh.points has non-finite coordinates at rows {bad[:10]}.")
    triangles = np.asarray(mesh.triangles)
    if (
        triangles.ndim != 2
        or triangles.shape[1] != 3
        or triangles.shape[0] == 0
        or not np.issubdtype(triangles.dtype, np.integer)
    ):
        raise InputError(
            f"{owner}: mesh.triangles must be a non-empty integer (T, 3) array, got "
            f"shape {triangles.shape} dtype {triangles.dtype}."
        )
    triangles = triangles.astype(np.int64)
    n_nodes = points.shape[0]
    if triangles.min() < 0 or triangles.max() >= n_nodes:
        raise InputError(
            f"{owner}: mesh.triangles refers to nodes outside 0..{n_nodes - 1} "
            f"(min {triangles.min()}, max {triangles.max()})."
        )
    used = np.zeros(n_nodes, dtype=bool)
    used[triangles.ravel()] = True
    if not np.all(used):
        raise InputError(
            f"{owner}: mesh nodes {np.flatnonzero(~used)[:10]} belong to no triangle "
            "(their lumped mass would be 0); remove them."
        )
    doubled_area = _doubled_areas(points, triangles)
    scale = float(np.ptp(points, axis=0).max()) ** 2
    degenerate = np.flatnonzero(np.abs(doubled_area) <= 1e-12 * scale)
    if degenerate.size:
        raise InputError(
            f"{owner}: mesh triangles {degenerate[:10]} have (near) zero area; "
            "remove degenerate triangles."
        )
    return points, triangles


def _doubled_areas(points, triangles):
    p0, p1, p2 = (points[triangles[:, k]] for k in range(3))
    e1, e2 = p1 - p0, p2 - p0
    return e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]


def _fem_matrices(points, triangles):
    """Lumped mass (vector) and P1 stiffness (CSC) of a triangle mesh.

    For a triangle of area A with edge vectors e_k opposite vertex k,
    G_kl = (e_k · e_l) / (4A); the consistent mass is A/12 (1 + δ_kl) and its row sum,
    the lumped mass, is A/3 per vertex (Lindgren et al. 2011, appendix C.5).
    """
    n_nodes = points.shape[0]
    area = 0.5 * np.abs(_doubled_areas(points, triangles))
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
        points, triangles = _check_mesh(mesh, "MaternSPDE")
        input_nodes = getattr(mesh, "input_nodes", None)
        self.mesh = Mesh(points.copy(), triangles, input_nodes)
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
        self._set_matrices(
            mass_on.indptr,
            mass_on.indices,
            mass_on.data,
            self.on_pattern(pattern, stiffness).data,
            self.on_pattern(pattern, squared).data,
            diameter,
            prior,
        )

    def __repr__(self):
        return f"MaternSPDE(n={self.n}, triangles={self.mesh.n_triangles}, prior={self.prior!r})"


# -------------------------------------------------------------------------- helpers
def _check_locations(locations, owner, name="locations"):
    try:
        locations = np.asarray(locations, dtype=float)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{owner}: {name} must be a numeric (k, 2) array.") from exc
    if locations.ndim != 2 or locations.shape[1] != 2:
        raise InputError(f"{owner}: {name} must have shape (k, 2), got {locations.shape}.")
    finite = np.all(np.isfinite(locations), axis=1)
    if not np.all(finite):
        bad = np.flatnonzero(~finite)
        raise InputError(
            f"{owner}: {name} has non-finite coordinates at rows {bad[:10].tolist()}"
            f"{' ...' if bad.size > 10 else ''}; remove or fix them."
        )
    return locations


def _outside_error(owner, locations, bad, where):
    shown = ", ".join(f"{int(i)}: ({locations[i, 0]:.6g}, {locations[i, 1]:.6g})" for i in bad[:5])
    more = f" (and {bad.size - 5} more)" if bad.size > 5 else ""
    return InputError(
        f"{owner}: {bad.size} location(s) lie outside {where}: rows {shown}{more}. "
        "Enlarge the domain or drop these observations."
    )


def mesh_from_points(points, max_area=None, min_angle=25, extend=0.1):
    """Quality triangle mesh over (and beyond) the convex hull of a set of points.

    The domain is the convex hull of the points grown outward by ``extend`` times
    their diameter D (the diagonal of their bounding box), which moves the
    Neumann boundary away from the data as R-INLA's ``inla.mesh.2d`` does. The
    (distinct) input points are mesh nodes; Shewchuk's Triangle (switches
    ``p q<min_angle> a<max_area>``) adds Steiner points until no angle is below
    ``min_angle`` and no triangle is larger than ``max_area``.

    Parameters
    ----------
    points : array_like, shape (k, 2)
        Point locations (at least 3 distinct, not all collinear). Points very close
        together force very small triangles.
    max_area : float, optional
        Largest triangle area. Default: that of an equilateral triangle with edge
        D/25.
    min_angle : float, optional
        Smallest triangle angle in degrees, in (0, 33] (Triangle's guarantee ends
        near 33.8°). Default 25.
    extend : float, optional
        Margin beyond the convex hull, as a fraction of D (>= 0; default 0.1). The
        grown hull is the Minkowski sum of the hull with a regular 16-gon inscribed
        in the circle of radius ``extend*D``.

    Returns
    -------
    Mesh
        ``points`` (N, 2), ``triangles`` (T, 3) and ``input_nodes`` (node of every
        input point).

    Raises
    ------
    InputError
        Non-finite or too few points, collinear points, or a bad option value.

    References
    ----------
    Shewchuk, J. R. (1996). Triangle: engineering a 2D quality mesh generator and
    Delaunay triangulator. *Applied Computational Geometry*, LNCS 1148, 203–222.
    Lindgren, F. and Rue, H. (2015). Bayesian spatial modelling with R-INLA.
    *J. Stat. Softw.* 63(19).
    """
    import triangle
    from scipy.spatial import ConvexHull, QhullError

    owner = "mesh_from_points"
    points = _check_locations(points, owner, "points")
    unique, inverse = np.unique(points, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    if unique.shape[0] < 3:
        raise InputError(f"{owner}: need at least 3 distinct points, got {unique.shape[0]}.")
    min_angle = _positive_scalar(min_angle, "min_angle", owner)
    if min_angle > 33.0:
        raise InputError(f"{owner}: min_angle must be <= 33 degrees, got {min_angle}.")
    if isinstance(extend, bool) or not isinstance(extend, numbers.Real):
        raise InputError(f"{owner}: extend must be a number >= 0, got {extend!r}.")
    extend = float(extend)
    if not math.isfinite(extend) or extend < 0:
        raise InputError(f"{owner}: extend must be a finite number >= 0, got {extend!r}.")

    lower, upper = unique.min(axis=0), unique.max(axis=0)
    diameter = float(np.hypot(*(upper - lower)))
    centre = 0.5 * (lower + upper)
    # Triangle works on coordinates of order one; areas are rescaled accordingly
    scaled = (unique - centre) / diameter
    if max_area is None:
        area = math.sqrt(3.0) / 4.0 / 25.0**2
    else:
        area = _positive_scalar(max_area, "max_area", owner) / diameter**2
    try:
        hull = ConvexHull(scaled)
    except QhullError as exc:
        raise InputError(f"{owner}: the points are collinear; a 2-D mesh needs spread.") from exc
    if hull.volume <= 1e-10:
        raise InputError(f"{owner}: the points are (nearly) collinear; a 2-D mesh needs spread.")
    if extend > 0:
        angles = 2.0 * np.pi * np.arange(16) / 16
        disc = extend * np.column_stack([np.cos(angles), np.sin(angles)])
        grown = (scaled[hull.vertices][:, None, :] + disc[None, :, :]).reshape(-1, 2)
        boundary = grown[ConvexHull(grown).vertices]  # counter-clockwise
        vertices = np.vstack([scaled, boundary])
        ring = unique.shape[0] + np.arange(boundary.shape[0])
    else:
        vertices = scaled
        ring = hull.vertices
    segments = np.column_stack([ring, np.roll(ring, -1)])
    options = (
        f"pq{np.format_float_positional(min_angle, trim='-')}"
        f"a{np.format_float_positional(area, trim='-')}"
    )
    result = triangle.triangulate({"vertices": vertices, "segments": segments}, options)
    nodes = result["vertices"] * diameter + centre
    # Triangle keeps the input vertices first and in order; restore them bit-exactly
    if not np.allclose(nodes[: unique.shape[0]], unique, rtol=0, atol=1e-9 * diameter):
        raise InputError(  # pragma: no cover - would be a Triangle bug
            f"{owner}: Triangle did not keep the input points as the first mesh nodes."
        )
    nodes[: unique.shape[0]] = unique
    triangles = np.asarray(result["triangles"], dtype=np.int64)
    return Mesh(nodes, triangles, inverse.astype(np.int64))


def _barycentric(points, triangles, which, locations):
    """Barycentric coordinates (k, 3) of ``locations`` in triangles ``which``."""
    a = points[triangles[which, 0]]
    e1 = points[triangles[which, 1]] - a
    e2 = points[triangles[which, 2]] - a
    r = locations - a
    det = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    l1 = (r[:, 0] * e2[:, 1] - r[:, 1] * e2[:, 0]) / det
    l2 = (e1[:, 0] * r[:, 1] - e1[:, 1] * r[:, 0]) / det
    return np.column_stack([1.0 - l1 - l2, l1, l2])


def _locate(points, triangles, locations, tolerance=1e-10):
    """Containing triangle of every location (-1 if none), by uniform-grid bucketing.

    The bounding box of the mesh is cut into about T cells; each triangle is listed
    in every cell its (slightly padded) bounding box overlaps, and a location is
    tested only against the triangles listed in its own cell. A point inside a
    triangle lies in that triangle's bounding box, so its cell always lists the
    triangle: the search is exact for any valid triangulation. Among the candidates
    the triangle with the largest smallest barycentric coordinate wins; it is
    accepted if that coordinate is >= -``tolerance`` (points on the boundary).
    """
    n_triangles = triangles.shape[0]
    corners = points[triangles]  # (T, 3, 2)
    low = points.min(axis=0)
    extent = points.max(axis=0) - low
    ratio = extent[0] / extent[1]
    nx = int(min(max(1, round(math.sqrt(n_triangles * ratio))), n_triangles))
    ny = int(max(1, round(n_triangles / nx)))
    cells = np.array([nx, ny])
    size = extent / cells
    pad = 1e-9 * extent

    def cell_of(xy):
        return np.clip(np.floor((xy - low) / size).astype(np.int64), 0, cells - 1)

    first = cell_of(corners.min(axis=1) - pad)
    last = cell_of(corners.max(axis=1) + pad)
    width = last - first + 1
    count = width[:, 0] * width[:, 1]
    owner = np.repeat(np.arange(n_triangles), count)
    local = np.arange(owner.size) - np.repeat(np.cumsum(count) - count, count)
    cx = first[owner, 0] + local % width[owner, 0]
    cy = first[owner, 1] + local // width[owner, 0]
    cell = cx * ny + cy
    order = np.argsort(cell, kind="stable")
    cell_triangles = owner[order]
    cell_start = np.zeros(nx * ny + 1, dtype=np.int64)
    np.cumsum(np.bincount(cell, minlength=nx * ny), out=cell_start[1:])

    which = np.full(locations.shape[0], -1, dtype=np.int64)
    inside_box = np.all((locations >= low - pad) & (locations <= low + extent + pad), axis=1)
    candidates = np.flatnonzero(inside_box)
    location_cell = cell_of(locations[candidates])
    location_cell = location_cell[:, 0] * ny + location_cell[:, 1]
    chunk = 1 << 16
    for start in range(0, candidates.size, chunk):
        rows = candidates[start : start + chunk]
        cells_here = location_cell[start : start + chunk]
        begin = cell_start[cells_here]
        number = cell_start[cells_here + 1] - begin
        pair_row = np.repeat(np.arange(rows.size), number)
        pair_slot = np.arange(pair_row.size) - np.repeat(np.cumsum(number) - number, number)
        pair_triangle = cell_triangles[begin[pair_row] + pair_slot]
        score = _barycentric(points, triangles, pair_triangle, locations[rows[pair_row]]).min(
            axis=1
        )
        # best candidate per location: sort by (row, -score) and take each row's first
        best = np.lexsort((-score, pair_row))
        head = best[np.r_[True, pair_row[best][1:] != pair_row[best][:-1]]] if best.size else best
        accept = head[score[head] >= -tolerance]
        which[rows[pair_row[accept]]] = pair_triangle[accept]
    return which


def projection_matrix(mesh, locations):
    """Barycentric (linear) interpolation matrix A from mesh nodes to locations.

    Row i holds the three barycentric coordinates of location i in its containing
    triangle, so ``A @ x`` is the P1 interpolant of the nodal values x: rows sum to
    one and linear functions are reproduced exactly. The containing triangle is
    found by a vectorised uniform-grid search (about T cells, each listing the
    triangles whose bounding box overlaps it); locations on the mesh boundary are
    accepted with a tolerance of 1e-10 on the barycentric coordinates.

    Parameters
    ----------
    mesh : Mesh or object with ``.points`` and ``.triangles``
        The mesh (e.g. ``MaternSPDE.mesh``).
    locations : array_like, shape (k, 2)
        Observation locations, finite, inside the mesh.

    Returns
    -------
    scipy.sparse.csr_matrix
        Shape (k, N), exactly 3 stored entries per row (sorted columns; an entry is
        an explicit zero where a location lies on an edge or a node).

    Raises
    ------
    InputError
        Malformed mesh, non-finite locations, or locations outside the mesh (the
        message names them).
    """
    owner = "projection_matrix"
    points, triangles = _check_mesh(mesh, owner)
    locations = _check_locations(locations, owner)
    n_locations = locations.shape[0]
    which = _locate(points, triangles, locations)
    outside = np.flatnonzero(which < 0)
    if outside.size:
        raise _outside_error(owner, locations, outside, "the mesh")
    weights = _barycentric(points, triangles, which, locations)
    columns = triangles[which]
    order = np.argsort(columns, axis=1)
    columns = np.take_along_axis(columns, order, axis=1)
    weights = np.take_along_axis(weights, order, axis=1)
    indptr = np.arange(0, 3 * n_locations + 1, 3, dtype=np.int64)
    return sp.csr_matrix(
        (weights.ravel(), columns.ravel(), indptr), shape=(n_locations, points.shape[0])
    )


def lattice_projection(shape, locations, spacing=1.0):
    """Bilinear interpolation matrix from the nodes of a :class:`Matern2D` lattice.

    Node ``(i, j)`` (unknown ``i*n + j``) sits at ``(i*h0, j*h1)``; a location
    ``(x0, x1)`` in the cell with lower corner ``(i, j)`` and fractional position
    ``(u, v)`` gets weights ``(1−u)(1−v), (1−u)v, u(1−v), uv`` on nodes
    ``(i, j), (i, j+1), (i+1, j), (i+1, j+1)``. Rows sum to one and functions
    ``a + b x0 + c x1 + d x0 x1`` are reproduced exactly.

    Parameters
    ----------
    shape : (int, int)
        Lattice shape ``(m, n)``, both >= 2.
    locations : array_like, shape (k, 2)
        Finite locations inside ``[0, (m−1) h0] x [0, (n−1) h1]`` (a relative
        tolerance of 1e-12 of the extent is allowed at the edges).
    spacing : float or (float, float), optional
        Node spacing (default 1).

    Returns
    -------
    scipy.sparse.csr_matrix
        Shape (k, m*n), exactly 4 stored entries per row (sorted columns; explicit
        zeros where a location lies on a cell edge).

    Raises
    ------
    InputError
        Bad shape or spacing, non-finite locations, or locations outside the
        lattice (named in the message).
    """
    owner = "lattice_projection"
    if isinstance(shape, numbers.Integral) or np.ndim(shape) != 1 or len(shape) != 2:
        raise InputError(f"{owner}: shape must be a pair (m, n) of integers, got {shape!r}.")
    m = _lattice_size(shape[0], "shape[0]", owner, minimum=2)
    n = _lattice_size(shape[1], "shape[1]", owner, minimum=2)
    h = np.array(_lattice_spacing(spacing, owner))
    locations = _check_locations(locations, owner)
    extent = np.array([m - 1, n - 1]) * h
    scaled = locations / h
    tolerance = 1e-12 * np.array([m - 1, n - 1])
    outside = np.flatnonzero(
        np.any((scaled < -tolerance) | (scaled > np.array([m - 1, n - 1]) + tolerance), axis=1)
    )
    if outside.size:
        where = f"the lattice [0, {extent[0]:.6g}] x [0, {extent[1]:.6g}]"
        raise _outside_error(owner, locations, outside, where)
    scaled = np.clip(scaled, 0.0, np.array([m - 1, n - 1], dtype=float))
    corner = np.minimum(np.floor(scaled).astype(np.int64), np.array([m - 2, n - 2]))
    u, v = (scaled - corner).T
    i, j = corner.T
    base = i * n + j
    columns = np.column_stack([base, base + 1, base + n, base + n + 1])
    weights = np.column_stack([(1 - u) * (1 - v), (1 - u) * v, u * (1 - v), u * v])
    k = locations.shape[0]
    indptr = np.arange(0, 4 * k + 1, 4, dtype=np.int64)
    return sp.csr_matrix((weights.ravel(), columns.ravel(), indptr), shape=(k, m * n))
