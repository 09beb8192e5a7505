"""The result of :func:`gmrf_core.inla`: posterior summaries, draws, predictions."""

import numpy as np
from scipy.special import logsumexp

from ..errors import InputError
from .marginals import mixture_quantiles, natural_density, summarise_density
from .points import constrained_of
from .prediction import DEFAULT_BLOCK_SIZE, design_rows, predict_mixture

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
    def predict(
        self,
        A_new,
        X_new=None,
        offset=None,
        *,
        executor=None,
        block_size=DEFAULT_BLOCK_SIZE,
        progress=False,
        stats=None,
    ):
        """Posterior summaries of η_new = A_new x + X_new β + offset.

        The mixture over integration points of N(ã_iᵀμ_k + offset_i, ã_iᵀΣ_k ã_i), with
        ã_i the rows of Ã_new = [A_new, X_new] and μ_k the mode (plus the
        simplified-Laplace shift) at θ_k; variances from the selected inverse for rows
        whose pairs of columns lie on the factor's pattern, otherwise from solves with
        the factor L, with the constraints' correction (see
        :mod:`gmrf_core.inference.prediction`). The points' Laplace approximations are
        recomputed as tasks (as many at once as there are workers), and rows go in
        blocks of ``block_size``, independent tasks of
        :func:`gmrf_core.parallel.map_model`: each point's factor is sent to each worker
        once, a task sends a block of rows and gets back its means and variances, and
        the mixture's quantiles are computed per block too.

        Parameters
        ----------
        A_new : sparse or dense (k, n_latent)
        X_new : array (k, n_fixed), optional (zeros when None)
        offset : array (k,) or float, optional
        executor : None, concurrent.futures.Executor or dask.distributed.Client
            Where the blocks run; None: serially in this process. The results are the
            same (to rounding) whichever is used.
        block_size : int
            Rows of A_new per task (default 2048).
        progress : bool or callable
            Report blocks as they finish (see :func:`gmrf_core.parallel.map_model`).
        stats : dict, optional
            Filled with what travelled and the stages' wall times (see
            :func:`gmrf_core.inference.prediction.predict_mixture`).

        Returns
        -------
        table
            mean sd q0.025 q0.5 q0.975, one row per new prediction.

        Raises
        ------
        InputError
            Wrong shapes, entries that are not finite, a block size that is not a
            positive integer.
        TaskError
            A block failed twice (it is retried once).
        """
        rows, offset = design_rows(A_new, X_new, offset, self.n_latent, self.n_fixed)
        mean, sd, quantiles = predict_mixture(
            self._model,
            self.points,
            self._shifts,
            self.weights,
            rows,
            offset,
            executor=executor,
            block_size=block_size,
            progress=progress,
            stats=stats,
        )
        names = [f"pred[{i}]" for i in range(rows.shape[0])]
        return table(np.column_stack([mean, sd, quantiles.T]), names, _COLUMNS)

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
