"""Marginal posteriors of :func:`gmrf_core.inla`: hyperparameters and latent variables.

Hyperparameters (internal scale first, then the natural scale by the Jacobian of the
monotone map θ_k ↦ g_k(θ_k): π(g) = π(θ_k) / |g'(θ_k)|):

* grid: log π̃(θ(z) | y) is interpolated (cubic) from the lattice of evaluated points to a
  lattice 8 times finer in z, whose masses are binned along θ_k (for d = 1 this is a
  spline of the log-density); the same masses give the moments.
* CCD and any dimension: the asymmetric Gaussian interpolation (Martins, Simpson, Lindgren
  & Rue 2013, §3.3; Rue et al. 2009, §6.5): along each z-axis a split normal with scales
  σ_j^± = r / √(2 Δ_j^±), Δ_j^± the log-density drop at the star points z = ±r e_j;
  θ_k − θ*_k = Σ_j (V Λ^(−1/2))_kj z_j with the z_j independent, whose density is the
  convolution of the scaled split normals, computed on a fine grid.

Latent variables: mixtures over the integration points of Gaussians (``gaussian``) or of
skew-normals with matched mean, variance and third cumulant (``simplified_laplace``,
Rue et al. 2009 §3.2.3); quantiles by a monotone root search (safeguarded Newton) of the mixture's
distribution function, vectorised over variables.
"""

import math

import numpy as np
from scipy.interpolate import RegularGridInterpolator
from scipy.special import expit, ndtr, ndtri, owens_t

from ..errors import GMRFError

__all__ = [
    "natural_maps",
    "grid_theta_marginals",
    "ccd_theta_marginals",
    "summarise_density",
    "skew_normal_parameters",
    "mixture_quantiles",
]

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_SQRT_2PI = math.sqrt(2.0 * math.pi)
_MAX_SKEWNESS = 0.99  # a skew-normal's skewness is below 0.9953


# ------------------------------------------------------------------- natural scale
def _generic_map(name):
    leaf = name.rsplit(".", 1)
    prefix, last = (leaf[0] + ".", leaf[1]) if len(leaf) == 2 else ("", leaf[0])
    if last.startswith("log_"):
        return prefix + last[4:], np.exp
    if last.startswith("logit_"):
        return prefix + last[6:], expit
    if last.startswith("atanh_"):
        return prefix + last[6:], np.tanh
    return name, lambda t: np.asarray(t, dtype=float)


def natural_maps(model, theta_mode):
    """One (natural name, vectorised map g_k) per θ, from the parts' ``to_natural``.

    A part's ``to_natural`` is used when it returns one value per hyperparameter
    (assumed coordinate-wise, as for every model in :mod:`gmrf_core.models`); otherwise
    ``log_x`` ↦ (x, exp), ``logit_x`` ↦ (x, expit), ``atanh_x`` ↦ (x, tanh), else identity.
    """
    theta_mode = np.asarray(theta_mode, dtype=float)
    maps = []
    split = model.n_theta_prior
    for part, offset, size in (
        (model.prior, 0, split),
        (model.likelihood, split, len(theta_mode) - split),
    ):
        names = list(model.theta_names[offset : offset + size])
        to_natural = getattr(part, "to_natural", None)
        natural = None
        if to_natural is not None and size:
            try:
                natural = to_natural(theta_mode[offset : offset + size].copy())
            except (TypeError, ValueError, OverflowError, GMRFError):
                natural = None
        if isinstance(natural, dict) and len(natural) == size:
            keys = list(natural)
            for j in range(size):

                def g(t, j=j, part=part, offset=offset, size=size, keys=keys):
                    t = np.atleast_1d(np.asarray(t, dtype=float))
                    base = theta_mode[offset : offset + size].copy()
                    out = np.empty(t.size)
                    for i, value in enumerate(t):
                        base[j] = value
                        out[i] = float(part.to_natural(base.copy())[keys[j]])
                    return out

                maps.append((keys[j], g))
        else:
            maps.extend(_generic_map(name) for name in names)
    return maps


# --------------------------------------------------------------- θ marginal densities
def _normalise(t, density):
    density = np.maximum(np.asarray(density, dtype=float), 0.0)
    total = np.trapezoid(density, t)
    return density / total


def grid_theta_marginals(coordinates, lower, upper, dz, values, f_mode, refine=8, bins=400):
    """Internal-scale marginals (t, density) per θ_k from a full lattice of objective values.

    Parameters
    ----------
    coordinates : ZCoordinates
    lower, upper : sequences of int
        Lattice extents in units of dz (as :func:`~gmrf_core.inference.design.grid_box`).
    dz : float
    values : array
        −log π̃ at the lattice points, in ``grid_box`` order (+inf where it failed).
    f_mode : float
        The value at the mode.

    Returns
    -------
    list of (t, density), moments
        ``moments`` is a list of dicts with the fine-lattice masses ``theta`` (k-th
        coordinate values) and ``mass`` (normalised), for moments of any g(θ_k).
    """
    d = coordinates.dim
    axes = [np.arange(lo, hi + 1) * dz for lo, hi in zip(lower, upper)]
    logdens = -(np.asarray(values, dtype=float) - f_mode)
    finite = np.isfinite(logdens)
    floor = logdens[finite].min() - 50.0
    logdens = np.where(finite, logdens, floor).reshape([a.size for a in axes])
    method = "cubic" if all(a.size >= 4 for a in axes) else "linear"
    interpolator = RegularGridInterpolator(axes, logdens, method=method)
    fine_axes = [np.linspace(a[0], a[-1], (a.size - 1) * refine + 1) for a in axes]
    mesh = np.meshgrid(*fine_axes, indexing="ij")
    z_fine = np.column_stack([m.reshape(-1) for m in mesh])
    log_mass = interpolator(z_fine)
    mass = np.exp(log_mass - log_mass.max())
    mass /= mass.sum()
    theta_fine = coordinates.theta(z_fine)
    out, moments = [], []
    for k in range(d):
        values_k = theta_fine[:, k]
        lo, hi = values_k.min(), values_k.max()
        edges = np.linspace(lo, hi, bins + 1)
        hist, _ = np.histogram(values_k, bins=edges, weights=mass)
        centres = 0.5 * (edges[1:] + edges[:-1])
        density = hist / (edges[1] - edges[0])
        out.append((centres, _normalise(centres, density)))
        moments.append({"theta": values_k, "mass": mass})
    return out, moments


def _split_normal(x, sigma_minus, sigma_plus):
    scale = np.where(x < 0, sigma_minus, sigma_plus)
    return np.exp(-0.5 * (x / scale) ** 2) * (2.0 / (math.sqrt(2 * math.pi)))


def ccd_theta_marginals(coordinates, sigma_minus, sigma_plus, points_per_sd=60, width=7.0):
    """Internal-scale marginals (t, density) per θ_k from the asymmetric Gaussian.

    Parameters
    ----------
    coordinates : ZCoordinates
    sigma_minus, sigma_plus : arrays (d,)
        Split-normal scales along each z-axis.
    """
    d = coordinates.dim
    out = []
    for k in range(d):
        loadings = coordinates.scale[k]
        spread = np.abs(loadings) * np.maximum(sigma_minus, sigma_plus)
        total = math.sqrt(float(np.sum(spread**2)))
        h = total / points_per_sd
        density = np.ones(1)
        origin = 0  # index of offset 0 in `density`
        mean_shift = 0.0
        for j in range(d):
            b = loadings[j]
            lo_scale, hi_scale = (
                (sigma_minus[j], sigma_plus[j])
                if b >= 0
                else (
                    sigma_plus[j],
                    sigma_minus[j],
                )
            )
            lo_scale, hi_scale = abs(b) * lo_scale, abs(b) * hi_scale
            if max(lo_scale, hi_scale) < 0.5 * h:
                # negligible spread: keep only its mean (split normal mean)
                mean_shift += _SQRT_2_OVER_PI * (hi_scale - lo_scale)
                continue
            n_lo = int(math.ceil(width * lo_scale / h))
            n_hi = int(math.ceil(width * hi_scale / h))
            x = np.arange(-n_lo, n_hi + 1) * h
            component = _split_normal(x, lo_scale, hi_scale)
            component /= component.sum()
            density = np.convolve(density, component)
            origin += n_lo
        offsets = (np.arange(density.size) - origin) * h + mean_shift
        t = coordinates.mode[k] + offsets
        out.append((t, _normalise(t, density)))
    return out


def summarise_density(t, density, g, quantiles=(0.025, 0.5, 0.975), moments=None):
    """mean, sd, quantiles and mode of g(θ_k) from the internal-scale density of θ_k.

    ``g`` is increasing or decreasing; ``moments`` (fine masses, grid strategy) gives
    the mean and sd instead of the density when present.
    """
    gt = g(t)
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (density[1:] + density[:-1]) * np.diff(t))])
    cdf /= cdf[-1]
    keep = np.concatenate([[True], np.diff(cdf) > 0])
    levels = np.asarray(quantiles, dtype=float)
    if gt[-1] < gt[0]:  # decreasing map: quantile q of g(θ) is g(quantile 1 − q of θ)
        levels = 1.0 - levels
    q_natural = g(np.interp(levels, cdf[keep], t[keep]))
    if moments is not None:
        values = g(moments["theta"])
        mean = float(np.sum(moments["mass"] * values))
        var = float(np.sum(moments["mass"] * (values - mean) ** 2))
    else:
        mean = float(np.trapezoid(gt * density, t))
        var = float(np.trapezoid((gt - mean) ** 2 * density, t))
    jac = np.abs(np.gradient(gt, t))
    natural_density = density / np.maximum(jac, 1e-300)
    mode = float(gt[int(np.argmax(natural_density))])
    return {
        "mean": mean,
        "sd": math.sqrt(max(var, 0.0)),
        "quantiles": np.asarray(q_natural, dtype=float),
        "mode": mode,
    }


def natural_density(t, density, g):
    """(values, density) of g(θ_k), increasing values."""
    gt = g(t)
    jac = np.abs(np.gradient(gt, t))
    dens = density / np.maximum(jac, 1e-300)
    order = np.argsort(gt)
    return gt[order], dens[order]


# ----------------------------------------------------------------- latent mixtures
def skew_normal_parameters(mean, variance, kappa3):
    """(location ξ, scale ω, shape α) of the skew-normal with the given three cumulants.

    The skewness is clipped to ±0.99 (a skew-normal's is below 0.9953).
    """
    sd = np.sqrt(np.maximum(variance, 1e-300))
    skewness = np.clip(kappa3 / sd**3, -_MAX_SKEWNESS, _MAX_SKEWNESS)
    c = np.cbrt(2.0 * np.abs(skewness) / (4.0 - math.pi))
    b_delta = np.sign(skewness) * c / np.sqrt(1.0 + c * c)  # √(2/π) δ
    delta = b_delta / _SQRT_2_OVER_PI
    omega = sd / np.sqrt(1.0 - b_delta**2)
    xi = mean - omega * b_delta
    alpha = delta / np.sqrt(np.maximum(1.0 - delta**2, 1e-300))
    return xi, omega, alpha


def _component_cdf_pdf(x, mean, sd, skew):
    """CDFs and densities of Gaussian (skew None) or skew-normal components at x."""
    if skew is None:
        u = (x - mean) / sd
        return ndtr(u), np.exp(-0.5 * u * u) / (_SQRT_2PI * sd)
    xi, omega, alpha = skew
    u = (x - xi) / omega
    cdf = ndtr(u) - 2.0 * owens_t(u, alpha)
    pdf = 2.0 * np.exp(-0.5 * u * u) / (_SQRT_2PI * omega) * ndtr(alpha * u)
    return cdf, pdf


def mixture_quantiles(q, weights, means, sds, kappa3=None, iterations=60, tol=1e-12):
    """Quantiles of the mixture Σ_k w_k F_k, per variable (vectorised).

    A safeguarded Newton iteration on the monotone F(x) − q: each step keeps a bracket
    [low, high] with F(low) < q ≤ F(high) and falls back to bisection where the Newton
    step leaves it; it stops when every variable's step is below ``tol`` times its
    spread (usually after 4–6 steps; ``iterations`` bounds it).

    Parameters
    ----------
    q : float
    weights : array (K,)
    means, sds : arrays (K, n)
        Component means and standard deviations.
    kappa3 : array (K, n), optional
        Third cumulants (skew-normal components); None for Gaussian components.
    """
    weights = np.asarray(weights, dtype=float)[:, None]
    skew = None
    if kappa3 is not None and np.any(kappa3 != 0):
        skew = skew_normal_parameters(means, sds**2, kappa3)
    low = np.min(means - 12.0 * sds, axis=0)
    high = np.max(means + 12.0 * sds, axis=0)
    mean = np.sum(weights * means, axis=0)
    spread = np.sqrt(np.sum(weights * (sds**2 + means**2), axis=0) - mean**2)
    spread = np.maximum(spread, np.max(sds, axis=0))
    x = np.clip(mean + spread * ndtri(q), low, high)
    for _ in range(iterations):
        cdf, pdf = _component_cdf_pdf(x[None, :], means, sds, skew)
        cdf = np.sum(weights * cdf, axis=0)
        pdf = np.sum(weights * pdf, axis=0)
        below = cdf < q
        low = np.where(below, x, low)
        high = np.where(below, high, x)
        with np.errstate(divide="ignore", invalid="ignore"):
            newton = x - (cdf - q) / pdf
        # inclusive: a converged Newton step stays where the bracket was just moved
        inside = np.isfinite(newton) & (newton >= low) & (newton <= high)
        step = np.where(inside, newton, 0.5 * (low + high))
        done = np.abs(step - x) <= tol * spread
        x = step
        if np.all(done):
            break
    return x
