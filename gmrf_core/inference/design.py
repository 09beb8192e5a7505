"""Integration points over θ: standardised z-coordinates, the grid and the central composite design.

With θ* the mode of π(θ | y) and H its Hessian (of −log π), H = V Λ Vᵀ, the standardised
coordinates are z with θ(z) = θ* + V Λ^(−1/2) z (Rue, Martino & Chopin 2009, §3.1), in which
π(θ | y) is close to a standard Gaussian.

* Grid (Rue et al. 2009, §3.1; R-INLA ``int.strategy = "grid"``): points z on the lattice
  ``dz · ℤ^d``, found by walking along each axis from 0 in steps of ``dz`` while the
  log-density drop log π(θ*) − log π(θ(z)) stays below ``diff_logdens``, then every point
  of the box so spanned whose drop is below ``diff_logdens``. Equal volume weights dz^d.
* CCD (Rue et al. 2009, §6.5): the centre, 2d star points ± f₀√d e_j and the points
  ± f₀ (each coordinate) of a two-level fractional factorial design of resolution ≥ V,
  every non-central point at radius f₀√d. The volume weights make the rule exact for a
  standard Gaussian in z, its second moments included:
  Δ₀ = (2π)^(d/2) (f₀² − 1)/f₀² for the centre and Δ = (2π)^(d/2) e^(d f₀²/2) / (f₀² (N − 1))
  for the N − 1 others (relative weight Δ/Δ₀ = e^(d f₀²/2) / ((N − 1)(f₀² − 1)), the
  formula of Rue et al. 2009 once it multiplies π̃(θ_k | y)).

The posterior weight of point k is Δ_k π̃(θ_k | y) / Σ_l Δ_l π̃(θ_l | y); with
|det ∂θ/∂z| = |Λ|^(−1/2), Σ_k Δ_k π̃(y, θ_k) |Λ|^(−1/2) estimates p(y).
"""

import itertools
import math

import numpy as np

from ..errors import InputError

__all__ = ["ZCoordinates", "ccd_design", "ccd_weights", "grid_box"]


class ZCoordinates:
    """θ(z) = θ* + V Λ^(−1/2) z from the mode and the Hessian of −log π(θ | y).

    Parameters
    ----------
    mode : array (d,)
    hessian : array (d, d)
        Symmetric positive definite.

    Raises
    ------
    InputError
        If the Hessian is not positive definite (the mode is not a maximum).
    """

    def __init__(self, mode, hessian):
        self.mode = np.asarray(mode, dtype=float).copy()
        hessian = 0.5 * (np.asarray(hessian, dtype=float) + np.asarray(hessian, dtype=float).T)
        values, vectors = np.linalg.eigh(hessian)
        if not np.all(np.isfinite(values)) or values.min() <= 0:
            raise InputError(
                f"the Hessian of -log pi(theta | y) at the mode has eigenvalues {values}: it is "
                "not positive definite, so the mode is not a maximum or the posterior of theta "
                "is improper along some direction. Give the hyperparameters proper priors or "
                "check the model."
            )
        self.eigenvalues = values
        self.eigenvectors = vectors
        self.scale = vectors / np.sqrt(values)  # ∂θ/∂z = V Λ^(-1/2)
        self.log_jacobian = -0.5 * float(np.sum(np.log(values)))
        self.covariance = (vectors / values) @ vectors.T

    @property
    def dim(self):
        return self.mode.size

    def theta(self, z):
        """θ for z of shape (d,) or (k, d)."""
        z = np.asarray(z, dtype=float)
        return self.mode + z @ self.scale.T

    def z(self, theta):
        """Inverse map."""
        theta = np.asarray(theta, dtype=float)
        return (theta - self.mode) @ (self.eigenvectors * np.sqrt(self.eigenvalues))


def _fractional_factorial(d):
    """Two-level design in ±1 (rows = runs) of resolution ≥ V for d factors.

    Full factorial for d ≤ 4; 2^(d−1) with the last factor the product of all others
    (resolution d) for 5 ≤ d ≤ 8; beyond, 2^(d−k) with generated factors the products
    of disjoint-ish subsets of at least four base factors.
    """
    if d <= 4:
        return np.array(list(itertools.product((-1.0, 1.0), repeat=d)))
    if d <= 8:
        base = np.array(list(itertools.product((-1.0, 1.0), repeat=d - 1)))
        return np.column_stack([base, np.prod(base, axis=1)])
    k = 2 if d <= 11 else 3
    b = d - k
    base = np.array(list(itertools.product((-1.0, 1.0), repeat=b)))
    columns = [base]
    for j in range(k):
        # each generator multiplies all base factors but a different block of them
        drop = set(range(j, b, k))
        keep = [i for i in range(b) if i not in drop] or list(range(b))
        columns.append(np.prod(base[:, keep], axis=1)[:, None])
    return np.hstack(columns)


def ccd_design(d, f0=1.1):
    """CCD points in z (centre first), shape (N, d).

    Parameters
    ----------
    d : int
        Dimension of θ, ≥ 1.
    f0 : float
        Radius factor f₀ > 1 (R-INLA's default 1.1): non-central points at radius f₀√d.
    """
    if d < 1:
        raise InputError("the CCD needs at least one hyperparameter.")
    if not f0 > 1.0:
        raise InputError(f"f0 must be > 1, got {f0}.")
    radius = f0 * math.sqrt(d)
    star = np.vstack([radius * np.eye(d), -radius * np.eye(d)])
    points = [np.zeros((1, d)), star]
    if d > 1:
        points.append(f0 * _fractional_factorial(d))
    return np.vstack(points)


def ccd_weights(n_points, d, f0=1.1):
    """Volume weights Δ_k of the CCD (centre first), see the module docstring."""
    others = n_points - 1
    delta0 = (2.0 * math.pi) ** (d / 2.0) * (f0 * f0 - 1.0) / (f0 * f0)
    delta = (2.0 * math.pi) ** (d / 2.0) * math.exp(d * f0 * f0 / 2.0) / (f0 * f0 * others)
    weights = np.full(n_points, delta)
    weights[0] = delta0
    return weights


def grid_box(lower, upper, dz):
    """Every lattice point dz·k with lower_j ≤ k_j ≤ upper_j (integers), shape (N, d)."""
    axes = [np.arange(lo, hi + 1) * dz for lo, hi in zip(lower, upper)]
    mesh = np.meshgrid(*axes, indexing="ij")
    return np.column_stack([m.reshape(-1) for m in mesh]), [a.size for a in axes]
