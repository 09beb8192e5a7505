"""The result of :func:`gmrf_core.inla`: posterior summaries, draws, predictions."""

import numpy as np
import scipy.sparse as sp
from scipy.special import logsumexp

from ..errors import InputError
from .marginals import mixture_quantiles, natural_density, summarise_density
from .points import constrained_of

__all__ = ["InlaResult", "table"]

_COLUMNS = ("mean", "sd", "q0.025", "q0.5", "q0.975")


def table(rows, index, columns):
    """A pandas DataFrame (or a NumPy structured array without pandas)."""
    data = np.asarray(rows, dtype=float).reshape(len(index), len(columns))
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - pandas is a dependency
        dtype = [("name", object)] + [(c, float) for c in columns]
        out = np.empty(len(index), dtype=dtype)
        out["name"] = list(index)
        for j, c in enumerate(columns):
            out[c] = data[:, j]
        return out
    return pd.DataFrame(data, index=list(index), columns=list(columns))


def _parse_quantiles(q):
    q = np.asarray(q, dtype=float)
    if q.size == 0 or not np.all((q > 0) & (q < 1)):
        raise InputError(f"quantile levels must lie in (0, 1); got {q}.")
    return q


class InlaResult:
    """Posterior of a latent Gaussian model over θ, from :func:`gmrf_core.inla`.

    Attributes
    ----------
    theta_mode : numpy.ndarray
        Mode of π(θ | y) on the internal scale.
    theta_covariance : numpy.ndarray
        Inverse Hessian of −log π(θ | y) at the mode (exact-gradient central differences).
    theta_names, natural_names : tuple of str
        Internal and natural-scale names of θ.
    integration, latent_strategy : str
        The strategies used ("eb" / "grid" / "ccd"; "gaussian" / "simplified_laplace").
    points, weights : numpy.ndarray
        Integration points θ_k (internal scale, shape (K, d)) and their posterior weights.
    log_marginal_likelihood : float
        log p(y), integrated over θ by the integration rule.
    dic, waic : float or None
        DIC and WAIC (:mod:`gmrf_core.inference.criteria`); details in :attr:`criteria`.
    cpo, pit : numpy.ndarray or None
        Per observation (NaN where missing); PIT None for families without a distribution
        function here.
    defaults_applied : list of str
        "name: prior" for each hyperparameter that got a default prior.
    timings : dict
        Wall seconds of the stages (mode, hessian, points, marginals, criteria).
    notes : list of str
        Anything the user should know (failed points, skipped criteria, ...).
    criteria : dict
        Details of the criteria: ``dic`` (dic, p_d, mean_deviance, deviance_of_mean),
        ``waic`` (waic, p_waic, lppd), ``cpo``, ``pit``.
    hessian : numpy.ndarray
        The finite-difference Hessian of −log π(θ | y) at the mode.
    coordinates : ZCoordinates
        The standardised coordinates θ(z) of the integration rule.
    log_density : numpy.ndarray
        log π̃(θ_k | y) − log π̃(θ* | y) at the points.
    fit : DriverResult
        The mode search (iterations, evaluations, message).
    model : LatentGaussianModel
        The model, as given (without the default priors).
    """

    def __init__(self, **state):
        self.__dict__.update(state)
        self._hyper_table = None

    # ------------------------------------------------------------- hyperparameters
    def _summaries(self):
        if self._hyper_table is None:
            rows = []
            for k in range(len(self.theta_names)):
                t, density = self._theta_marginals[k]
                moments = self._theta_moments[k] if self._theta_moments else None
                s = summarise_density(t, density, self._natural_maps[k][1], moments=moments)
                rows.append([s["mean"], s["sd"], *s["quantiles"], s["mode"]])
            self._hyper_table = rows
        return self._hyper_table

    @property
    def hyperparameters(self):
        """Table of θ on the natural scale: mean sd q0.025 q0.5 q0.975 mode."""
        return table(self._summaries(), self.natural_names, _COLUMNS + ("mode",))

    def _theta_index(self, name):
        for names in (self.natural_names, self.theta_names):
            if name in names:
                return list(names).index(name)
        raise InputError(
            f"unknown hyperparameter {name!r}; natural names {self.natural_names}, internal "
            f"names {self.theta_names}."
        )

    def hyperparameter_marginal(self, name, scale="natural"):
        """(values, density) of one hyperparameter.

        Parameters
        ----------
        name : str
            Natural-scale name (e.g. "range") or internal name (e.g. "log_range").
        scale : {"natural", "internal"}
        """
        k = self._theta_index(name)
        t, density = self._theta_marginals[k]
        if scale == "internal":
            return t.copy(), density.copy()
        if scale != "natural":
            raise InputError(f"scale must be 'natural' or 'internal'; got {scale!r}.")
        return natural_density(t, density, self._natural_maps[k][1])

    # ------------------------------------------------------------- latent variables
    def _z_mean(self):
        return self.weights @ self._means

    def _z_sd(self):
        mean = self._z_mean()
        second = self.weights @ (self._sds**2 + self._means**2)
        return np.sqrt(np.maximum(second - mean**2, 0.0))

    def _z_quantiles(self, q, columns):
        q = _parse_quantiles(q)
        kappa = None if self._kappa3 is None else self._kappa3[:, columns]
        out = [
            mixture_quantiles(
                level, self.weights, self._means[:, columns], self._sds[:, columns], kappa
            )
            for level in np.atleast_1d(q)
        ]
        return out[0] if q.ndim == 0 else np.vstack(out)

    @property
    def latent_mean(self):
        """Posterior means of the latent field x (integrated over θ)."""
        return self._z_mean()[: self.n_latent]

    @property
    def latent_sd(self):
        """Posterior standard deviations of x (integrated over θ)."""
        return self._z_sd()[: self.n_latent]

    def latent_quantiles(self, q):
        """Posterior quantiles of every x_i: shape (n,) for a scalar q, else (len(q), n)."""
        return self._z_quantiles(q, slice(0, self.n_latent))

    @property
    def fixed(self):
        """Table of the fixed effects β: mean sd q0.025 q0.5 q0.975."""
        columns = slice(self.n_latent, self.n_latent + self.n_fixed)
        mean = self._z_mean()[columns]
        sd = self._z_sd()[columns]
        q = self._z_quantiles([0.025, 0.5, 0.975], columns) if self.n_fixed else np.zeros((3, 0))
        rows = np.column_stack([mean, sd, q.T]) if self.n_fixed else np.zeros((0, 5))
        return table(rows, self.fixed_names, _COLUMNS)

    @property
    def predictor_mean(self):
        """Posterior means of η = A x + X β + offset, every observation (missing ones too)."""
        return self.weights @ self._eta_means

    @property
    def predictor_sd(self):
        """Posterior standard deviations of η."""
        mean = self.predictor_mean
        second = self.weights @ (self._eta_sds**2 + self._eta_means**2)
        return np.sqrt(np.maximum(second - mean**2, 0.0))

    # ------------------------------------------------------------------------ draws
    def _approximation(self, k):
        """The Laplace approximation at point k, recomputed (a warm Newton solve) rather than
        kept: one factor of H per point would not fit in memory for large models."""
        return self._model.laplace(self.points[k])

    def sample(self, size, rng=None):
        """Joint draws of (θ, x, β) from the approximate posterior.

        θ is drawn among the integration points with their weights, then z = (x, β) from
        the Gaussian approximation at that point by a solve with its Cholesky factor and
        the kriging correction for constraints (constraints hold to rounding), shifted by
        the simplified-Laplace mean correction when that strategy is used.

        Returns
        -------
        dict
            ``theta`` (size, d) internal scale, ``latent`` (size, n), ``fixed`` (size, p).
        """
        size = int(size)
        if size < 1:
            raise InputError(f"size must be a positive integer; got {size}.")
        rng = np.random.default_rng(self._rng if rng is None else rng)
        which = rng.choice(len(self.weights), size=size, p=self.weights)
        z = np.empty((size, self.n_total))
        for k in np.unique(which):
            rows = np.flatnonzero(which == k)
            approximation = self._approximation(int(k))
            constrained = constrained_of(self._model, approximation)
            mean = np.asarray(approximation.mode, dtype=float) + self._shifts[k]
            draws = constrained.sample(size=rows.size, rng=rng, mean=mean)
            z[rows] = np.atleast_2d(draws)
        return {
            "theta": self.points[which].copy(),
            "latent": z[:, : self.n_latent],
            "fixed": z[:, self.n_latent :],
        }

    # ------------------------------------------------------------------- prediction
    def _variances_for(self, approximation, A_new):
        """diag(Ã_new Σ_c Ã_newᵀ): selected inverse for rows on the factor's pattern, blocked
        solves with L for the others."""
        constrained = constrained_of(self._model, approximation)
        factor = constrained.factor
        inside = _rows_in_pattern(factor, A_new)
        var = np.empty(A_new.shape[0])
        if inside.any():
            var[inside] = constrained.selected_inverse().quadratic_diag(A_new[inside])
        outside = np.flatnonzero(~inside)
        block = 256
        for start in range(0, outside.size, block):
            rows = outside[start : start + block]
            rhs = A_new[rows].T.toarray()
            w = factor.solve_L(rhs)
            var[rows] = np.einsum("ij,ij->j", w, w)
        if constrained.has_constraints:
            var = var - constrained.lowrank_diag(A_new)
        return np.maximum(var, 0.0)

    def predict(self, A_new, X_new=None, offset=None):
        """Posterior summaries of η_new = A_new x + X_new β + offset.

        Per integration point: the mean from the mode (and the simplified-Laplace shift),
        the variances diag(Ã_new Σ_c Ã_newᵀ) from the selected inverse for rows whose
        pairs of columns lie on the factor's pattern, otherwise from blocked solves with
        the factor L (256 right-hand sides at a time); then the mixture over points.

        Parameters
        ----------
        A_new : sparse or dense (k, n_latent)
        X_new : array (k, n_fixed), optional (zeros when None)
        offset : array (k,) or float, optional

        Returns
        -------
        table
            mean sd q0.025 q0.5 q0.975, one row per new prediction.
        """
        A_new = sp.csr_matrix(A_new, dtype=np.float64)
        if A_new.ndim != 2 or A_new.shape[1] != self.n_latent:
            raise InputError(f"A_new must have {self.n_latent} columns; got {A_new.shape}.")
        k = A_new.shape[0]
        if X_new is None:
            X_new = np.zeros((k, self.n_fixed))
        X_new = np.asarray(X_new, dtype=float)
        if X_new.ndim == 1 and self.n_fixed == 1:
            X_new = X_new[:, None]
        if X_new.shape != (k, self.n_fixed):
            raise InputError(f"X_new must have shape ({k}, {self.n_fixed}); got {X_new.shape}.")
        offset = np.broadcast_to(np.asarray(0.0 if offset is None else offset, float), (k,))
        if not (
            np.all(np.isfinite(A_new.data))
            and np.all(np.isfinite(X_new))
            and np.all(np.isfinite(offset))
        ):
            raise InputError("A_new, X_new and offset must be finite.")
        A_full = sp.csr_matrix(sp.hstack([A_new, sp.csr_matrix(X_new)]))
        A_full.sort_indices()
        means = np.empty((len(self.weights), k))
        sds = np.empty((len(self.weights), k))
        for j in range(len(self.weights)):
            approximation = self._approximation(j)
            z = np.asarray(approximation.mode, dtype=float) + self._shifts[j]
            means[j] = A_full @ z + offset
            sds[j] = np.sqrt(self._variances_for(approximation, A_full))
        mean = self.weights @ means
        sd = np.sqrt(np.maximum(self.weights @ (sds**2 + means**2) - mean**2, 0.0))
        q = np.vstack([mixture_quantiles(p, self.weights, means, sds) for p in (0.025, 0.5, 0.975)])
        return table(np.column_stack([mean, sd, q.T]), [f"pred[{i}]" for i in range(k)], _COLUMNS)

    # ---------------------------------------------------------------------- summary
    def summary(self):
        """Printable tables like R-INLA's ``summary()``."""
        lines = [
            f"INLA: {len(self.weights)} integration point(s) ({self.integration}), latent "
            f"marginals {self.latent_strategy}",
            "",
            "Fixed effects:",
        ]
        lines.append(_format(self.fixed, _COLUMNS))
        lines += ["", "Hyperparameters (natural scale):"]
        lines.append(_format(self.hyperparameters, _COLUMNS + ("mode",)))
        if self.defaults_applied:
            lines += ["", "Default priors applied: " + "; ".join(self.defaults_applied)]
        lines += ["", f"log marginal likelihood: {self.log_marginal_likelihood:.4f}"]
        if self.dic is not None:
            lines.append(
                f"DIC: {self.dic:.3f} (effective parameters p_D {self.criteria['dic']['p_d']:.3f})"
            )
        if self.waic is not None:
            lines.append(f"WAIC: {self.waic:.3f} (p_WAIC {self.criteria['waic']['p_waic']:.3f})")
        if self.cpo is not None:
            finite = self.cpo[np.isfinite(self.cpo)]
            if finite.size:
                lines.append(f"-sum log CPO: {-np.sum(np.log(finite)):.3f}")
        timing = ", ".join(f"{k} {v:.2f} s" for k, v in self.timings.items())
        lines.append(f"time: {timing}")
        for note in self.notes:
            lines.append(f"note: {note}")
        return "\n".join(lines)

    def __str__(self):
        return self.summary()

    def plot_hyperparameters(self, path=None, **kwargs):
        """Figure of the θ marginals (:func:`gmrf_core.plots.plot_hyperparameters`)."""
        from ..plots import plot_hyperparameters

        return plot_hyperparameters(self, path=path, **kwargs)

    def log_mixture_weights(self):
        """log of :attr:`weights` (for users combining results)."""
        return np.log(self.weights) - logsumexp(np.log(self.weights))

    def latent(self, name, part=None):
        """Posterior summaries of the f() term ``name`` of a :func:`gmrf_core.formula` model,
        a table indexed by the term's levels (see :func:`gmrf_core.formula.latent_table`)."""
        from ..formula import latent_table

        return latent_table(self, self.model, name, part=part)

    def to_inference_data(self, draws=1000, chains=4, rng=None):
        """ArviZ InferenceData of joint posterior draws (see
        :func:`gmrf_core.interop.to_inference_data`)."""
        from ..interop import to_inference_data

        return to_inference_data(self, self.model, draws=draws, chains=chains, rng=rng)


def _format(frame, columns):
    try:
        return frame.to_string(float_format=lambda v: f"{v:.5g}")
    except AttributeError:  # pragma: no cover - structured array fallback
        return "\n".join(
            f"{row['name']:<16}" + "".join(f"{row[c]:>12.5g}" for c in columns) for row in frame
        )


def _rows_in_pattern(factor, A):
    """Per row of A: whether every pair of its columns lies on the pattern of L."""
    A = sp.csr_matrix(A)
    n = factor.n
    L = factor.L().tocsc()
    L.sort_indices()
    cols_of = np.repeat(np.arange(n, dtype=np.int64), np.diff(L.indptr))
    keys = cols_of * n + L.indices.astype(np.int64)  # (row, col) of L in factor order, sorted
    pinv = np.empty(n, dtype=np.int64)
    pinv[np.asarray(factor.perm)] = np.arange(n)
    counts = np.diff(A.indptr).astype(np.int64)
    rows = np.repeat(np.arange(A.shape[0]), counts * counts)
    ptr = np.zeros(A.shape[0] + 1, dtype=np.int64)
    np.cumsum(counts * counts, out=ptr[1:])
    within = np.arange(ptr[-1]) - ptr[rows]
    r = counts[rows]
    start = A.indptr[rows]
    a = pinv[A.indices[start + within // r]]
    b = pinv[A.indices[start + within % r]]
    key = np.minimum(a, b) * n + np.maximum(a, b)
    pos = np.minimum(np.searchsorted(keys, key), keys.size - 1)
    found = keys[pos] == key
    inside = np.ones(A.shape[0], dtype=bool)
    np.logical_and.at(inside, rows, found)
    return inside
