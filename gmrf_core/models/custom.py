"""A latent model from user-supplied precision callables, validated on every call."""

import numpy as np
import scipy.sparse as sp

from ..errors import InputError, NotSymmetricError
from ..kernels import assemble as _kasm
from ..linalg import as_csc, cholesky
from ..pattern import FixedPattern
from ..validation import check_count
from .base import LatentModel

__all__ = ["Custom"]

# Relative tolerance of the symmetry check of user matrices.
SYMMETRY_RTOL = 1e-10
# Relative tolerance of the check of a user log-determinant (and its gradient) against a
# factorization of Q(theta0) at construction.
LOGDET_RTOL = 1e-8


class Custom(LatentModel):
    """Latent model with Q(θ) and dQ/dθ given by user callables.

    Every returned matrix is checked and stored on the model's fixed pattern:
    shape (n, n), finite values, symmetric (to a relative tolerance of 1e-10), and
    no nonzero outside the pattern (:class:`~gmrf_core.errors.PatternError`, an
    InputError). Entries of the pattern that a call leaves out (e.g. dropped by
    scipy arithmetic when they cancel) are stored as explicit zeros. The pattern is
    ``pattern`` if given, else the structure of ``precision(theta0)``, plus the
    diagonal. An exception raised inside a user callable surfaces as an InputError
    naming the callable and θ, with the original exception as ``__cause__``.

    Parameters
    ----------
    n : int
        Size of the latent vector, n >= 1.
    precision : callable
        ``precision(theta) -> scipy.sparse matrix`` (or dense array), θ as a float array.
    precision_grad : callable
        ``precision_grad(theta) -> sequence`` of len(theta_names) matrices dQ/dθ_k.
    theta0 : array_like
        Default hyperparameters (finite), one per name.
    theta_names : sequence of str
        Distinct names of the hyperparameters.
    constraints : None or tuple (A, e), optional
        Linear constraints A x = e, A of shape (k, n) with full row rank.
    rank_deficiency : int, optional
        Dimension of the null space of Q (default 0: a proper model).
    pattern : scipy.sparse matrix, optional
        The fixed sparsity pattern (its structure is used, values ignored).
    prior : None, Prior or dict, optional
        Priors by hyperparameter name (any Prior may be used on any hyperparameter).
    to_natural : callable, optional
        ``to_natural(theta) -> dict``; default: the identity, keyed by theta_names.
    logdet, logdet_grad : callable, optional
        ``logdet(theta) -> float`` = log|Q(θ)| and ``logdet_grad(theta) -> array`` of its
        derivatives in θ, where the user knows them (as R-INLA's ``rgeneric`` takes its
        ``log.norm.const``): the Laplace objective then factorizes and inverts neither Q
        nor Q̃. Both or neither; for proper models without constraints only. Checked once
        at construction against a factorization of ``precision(theta0)`` and the traces
        tr(Q⁻¹ dQ/dθ_k) from its selected inverse (relative tolerance 1e-8), then trusted.

    Raises
    ------
    InputError
        Bad n, names, theta0, constraints, callables, or matrices at theta0 (wrong
        shape, non-finite values, gradient list of the wrong length); a user callable
        that raised (at theta0 during construction, or later), with the original
        exception as ``__cause__``; a ``logdet`` or ``logdet_grad`` that disagrees with
        the factorization at theta0, returns a value of the wrong shape or not finite,
        or is given without the other or for a constrained or intrinsic model.
    NotSymmetricError
        A returned matrix is not symmetric.
    PatternError
        A returned matrix has a nonzero outside the fixed pattern.
    """

    def __init__(
        self,
        n,
        precision,
        precision_grad,
        theta0,
        theta_names,
        constraints=None,
        rank_deficiency=0,
        pattern=None,
        prior=None,
        to_natural=None,
        logdet=None,
        logdet_grad=None,
    ):
        self.n = check_count(n, "n", "Custom", 1)
        if not callable(precision) or not callable(precision_grad):
            raise InputError("Custom: precision and precision_grad must be callables.")
        if (logdet is None) != (logdet_grad is None):
            raise InputError("Custom: give logdet and logdet_grad together, or neither.")
        if logdet is not None and not (callable(logdet) and callable(logdet_grad)):
            raise InputError("Custom: logdet and logdet_grad must be callables.")
        if to_natural is not None and not callable(to_natural):
            raise InputError("Custom: to_natural must be a callable or None.")
        if isinstance(theta_names, str):
            theta_names = (theta_names,)
        names = tuple(theta_names)
        if not all(isinstance(name, str) and name for name in names):
            raise InputError(f"Custom: theta_names must be non-empty strings, got {names}.")
        if len(set(names)) != len(names):
            raise InputError(f"Custom: theta_names must be distinct, got {names}.")
        self.theta_names = names
        self._log_precision_names = names
        self._mixing_names = names
        self.theta0 = self.check_theta(theta0).copy()
        self.rank_deficiency = check_count(rank_deficiency, "rank_deficiency", "Custom", 0)
        if self.rank_deficiency >= self.n:
            raise InputError(
                f"Custom: rank_deficiency must be < n = {self.n}, got {self.rank_deficiency}."
            )
        self.constraints = self._check_constraints(constraints)
        if logdet is not None and (self.constraints is not None or self.rank_deficiency):
            raise InputError(
                "Custom: a user logdet is taken for proper models without constraints only "
                "(rank_deficiency 0, constraints None); leave it out and the log-determinant "
                "on the constraint surface comes from a factorization."
            )
        self._precision = precision
        self._precision_grad = precision_grad
        self._to_natural = to_natural
        self._logdet = logdet
        self._logdet_grad = logdet_grad
        # (indptr, indices, positions) of the last sub-pattern a returned matrix was
        # mapped from, replaced as one tuple (threads may share the model)
        self._known = None
        if pattern is None:
            first = self._as_matrix(self._call("precision", self.theta0), "precision(theta0)")
            self._pattern = FixedPattern([first], self.n)
        else:
            self._pattern = FixedPattern([self._as_matrix(pattern, "pattern")], self.n)
        try:
            _ = self._pattern.transpose_positions
        except NotSymmetricError as exc:
            raise NotSymmetricError(
                "Custom: the sparsity pattern is not symmetric; a precision matrix is."
            ) from exc
        # validate both callables once up front, so errors surface at construction
        precision0 = self.precision(self.theta0)
        precision_grad0 = self.precision_grad(self.theta0)
        if logdet is not None:
            self._check_user_logdet(precision0, precision_grad0)
        self._set_priors(prior)

    def _check_user_logdet(self, precision0, precision_grad0):
        """The user's logdet and logdet_grad at theta0 against a factorization of
        ``precision0`` = Q(theta0) and tr(Q⁻¹ dQ/dθ_k) (``precision_grad0``) from its
        selected inverse."""
        theta = self.theta0
        factor = cholesky(precision0)
        expected = factor.logdet()
        value = self.logdet(theta)
        if abs(value - expected) > LOGDET_RTOL * max(1.0, abs(expected)):
            raise InputError(
                f"Custom: logdet(theta0) = {value!r}, but the factorization of "
                f"precision(theta0) gives log|Q| = {expected!r}; fix logdet or leave it out."
            )
        inverse = factor.selected_inverse()
        expected_grad = np.array([inverse.trace_product(d) for d in precision_grad0])
        grad = self.logdet_grad(theta)
        scale = max(1.0, float(np.max(np.abs(expected_grad))))
        if np.max(np.abs(grad - expected_grad)) > LOGDET_RTOL * scale:
            raise InputError(
                f"Custom: logdet_grad(theta0) = {grad.tolist()}, but tr(Q⁻¹ dQ/dθ_k) from "
                f"the factorization of precision(theta0) gives {expected_grad.tolist()}; fix "
                "logdet_grad or leave both out."
            )

    def logdet(self, theta):
        """The user's log|Q(θ)| (checked finite), or None when none was given."""
        if self._logdet is None:
            return None
        theta = self.check_theta(theta)
        value = self._call("logdet", theta)
        try:
            value = float(value)
        except (TypeError, ValueError) as exc:
            raise InputError(
                f"Custom: logdet must return a number, got {type(value).__name__}."
            ) from exc
        if not np.isfinite(value):
            raise InputError(f"Custom: logdet(theta) is {value} at theta = {theta.tolist()}.")
        return value

    def logdet_grad(self, theta):
        """The user's ∂ log|Q(θ)|/∂θ (checked: one finite number per θ), or None."""
        if self._logdet_grad is None:
            return None
        theta = self.check_theta(theta)
        grad = self._call("logdet_grad", theta)
        try:
            grad = np.array(grad, dtype=float)
        except (TypeError, ValueError) as exc:
            raise InputError("Custom: logdet_grad must return an array of numbers.") from exc
        if grad.shape != theta.shape:
            raise InputError(
                f"Custom: logdet_grad returned shape {grad.shape} for {theta.size} hyperparameters."
            )
        if not np.all(np.isfinite(grad)):
            raise InputError(
                f"Custom: logdet_grad(theta) has NaN or inf entries at theta = {theta.tolist()}."
            )
        return grad

    def _check_constraints(self, constraints):
        if constraints is None:
            return None
        try:
            a, e = constraints
        except (TypeError, ValueError) as exc:
            raise InputError("Custom: constraints must be None or a pair (A, e).") from exc
        if sp.issparse(a):
            a = a.toarray()
        a = np.atleast_2d(np.asarray(a, dtype=float))
        e = np.atleast_1d(np.asarray(e, dtype=float)).reshape(-1)
        if a.ndim != 2 or a.shape[1] != self.n:
            raise InputError(
                f"Custom: constraint matrix A must have shape (k, {self.n}), got {a.shape}."
            )
        if e.size != a.shape[0]:
            raise InputError(
                f"Custom: constraint right-hand side e must have {a.shape[0]} entries, "
                f"got {e.size}."
            )
        if not (np.all(np.isfinite(a)) and np.all(np.isfinite(e))):
            raise InputError("Custom: constraints contain NaN or inf.")
        if a.shape[0] > self.n or np.linalg.matrix_rank(a) < a.shape[0]:
            raise InputError("Custom: constraint matrix A must have full row rank.")
        return a, e

    def _as_matrix(self, matrix, what):
        if not (sp.issparse(matrix) or isinstance(matrix, np.ndarray)):
            raise InputError(
                f"Custom: {what} must return a scipy.sparse matrix or numpy array, got "
                f"{type(matrix).__name__}."
            )
        if matrix.shape != (self.n, self.n):
            raise InputError(
                f"Custom: {what} has shape {matrix.shape}, expected ({self.n}, {self.n})."
            )
        matrix = as_csc(matrix, f"Custom: {what}")  # index structure validated first
        if not np.all(np.isfinite(matrix.data)):
            raise InputError(f"Custom: {what} has NaN or inf entries.")
        return matrix

    def _call(self, name, theta):
        """The user's callable ``name`` at θ; an exception it raises becomes an InputError."""
        function = {
            "precision": self._precision,
            "precision_grad": self._precision_grad,
            "to_natural": self._to_natural,
            "logdet": self._logdet,
            "logdet_grad": self._logdet_grad,
        }[name]
        try:
            return function(np.array(theta, dtype=float))
        except Exception as exc:
            raise InputError(
                f"Custom: the user callable {name}(theta) raised {type(exc).__name__} at "
                f"theta = {np.asarray(theta).tolist()}: {exc}"
            ) from exc

    def _values(self, matrix, what):
        """The values of a returned matrix on the fixed pattern (a new array), validated.

        A CSC matrix of float64 values whose index arrays are the pattern's (scipy's sums of
        matrices on one pattern usually are), or those of the last sub-pattern mapped (e.g.
        a diagonal term of dQ/dθ_k), is read in one checked pass over its values: its
        structure is then known valid and canonical. Any other is validated and mapped
        onto the pattern by :meth:`FixedPattern.data_of`. Either way the same checks apply
        and the same errors are raised.
        """
        values = self._known_structure_values(matrix, what)
        if values is not None:
            return values
        original = matrix
        matrix = self._as_matrix(matrix, what)
        pattern = self._pattern
        positions = pattern._positions(matrix)  # canonical: every entry inside, or None
        if positions is None:
            data = pattern.data_of(
                matrix,
                f"Custom: {what}",
                hint="The fixed pattern is the one of precision(theta0) plus the diagonal, or "
                "the one given as pattern=; it must not change with theta.",
            )
            worst, scale = _kasm._asymmetry(data, pattern.transpose_positions)
        else:
            nnz = positions.size
            if sp.issparse(original) and original.format == "csc":
                # the next matrix with these index arrays is read without the mapping
                self._known = (matrix.indptr.copy(), matrix.indices[:nnz].copy(), positions)
            data = np.empty(pattern.nnz)
            _code, worst, scale = _kasm._checked_scatter(
                matrix.data, positions, pattern.transpose_positions, data
            )
        if worst > SYMMETRY_RTOL * scale:
            raise NotSymmetricError(f"Custom: {what} is not symmetric.")
        return data

    def _known_structure_values(self, matrix, what):
        """:meth:`_values` of a CSC float64 matrix stored on the fixed pattern or on the
        last sub-pattern mapped (copied or placed and checked by one kernel), else None."""
        if not (
            sp.issparse(matrix) and matrix.format == "csc" and matrix.shape == (self.n, self.n)
        ):
            return None
        indptr, indices, data = matrix.indptr, matrix.indices, matrix.data
        if not (
            isinstance(data, np.ndarray)
            and isinstance(indptr, np.ndarray)
            and isinstance(indices, np.ndarray)
            and data.dtype == np.float64
            and data.ndim == indptr.ndim == indices.ndim == 1
            and indptr.dtype.kind == indices.dtype.kind == "i"
            and indptr.size == self.n + 1
        ):
            return None
        pattern = self._pattern
        nnz = int(indptr[-1])
        if nnz == pattern.nnz:
            known, positions = (pattern.indptr, pattern.indices), None
        else:
            last = getattr(self, "_known", None)  # (a model pickled before it had one)
            if last is None or nnz != last[1].size:
                return None
            known, positions = last[:2], last[2]
        if data.size < nnz or not _kasm._same_structure(indptr, indices, known[0], known[1]):
            return None
        out = np.empty(pattern.nnz)
        if positions is None:
            code, worst, scale = _kasm._checked_copy(data, pattern.transpose_positions, out)
        else:
            code, worst, scale = _kasm._checked_scatter(
                data, positions, pattern.transpose_positions, out
            )
        if code != _kasm.OK:
            raise InputError(f"Custom: {what} has NaN or inf entries.")
        if worst > SYMMETRY_RTOL * scale:
            raise NotSymmetricError(f"Custom: {what} is not symmetric.")
        return out

    def precision(self, theta):
        """The user's Q(θ), validated and stored on the fixed pattern."""
        return self._pattern.matrix(self.precision_values(theta))

    def precision_values(self, theta):
        """The values of :meth:`precision` on :meth:`precision_pattern` (the same checks,
        no matrix built)."""
        theta = self.check_theta(theta)
        return self._values(self._call("precision", theta), "precision(theta)")

    def precision_pattern(self):
        """(indptr, indices) of the fixed pattern every :meth:`precision` and
        :meth:`precision_grad` matrix is stored on (read-only views)."""
        indptr, indices = self._pattern.indptr.view(), self._pattern.indices.view()
        indptr.flags.writeable = indices.flags.writeable = False
        return indptr, indices

    def precision_grad(self, theta):
        """The user's [dQ/dθ_k], validated and stored on the fixed pattern."""
        return [self._pattern.matrix(values) for values in self.precision_grad_values(theta)]

    def precision_grad_values(self, theta):
        """The values of :meth:`precision_grad` on :meth:`precision_pattern` (the same
        checks, no matrices built)."""
        theta = self.check_theta(theta)
        grads = self._call("precision_grad", theta)
        try:
            grads = list(grads)
        except TypeError as exc:
            raise InputError("Custom: precision_grad must return a sequence of matrices.") from exc
        if len(grads) != theta.size:
            raise InputError(
                f"Custom: precision_grad returned {len(grads)} matrices for {theta.size} "
                "hyperparameters."
            )
        return [self._values(grad, f"precision_grad(theta)[{k}]") for k, grad in enumerate(grads)]

    def to_natural(self, theta):
        """The user's ``to_natural(theta)``, or the identity keyed by theta_names."""
        theta = self.check_theta(theta)
        if self._to_natural is None:
            return super().to_natural(theta)
        natural = self._call("to_natural", theta)
        if not isinstance(natural, dict):
            raise InputError(
                f"Custom: to_natural must return a dict, got {type(natural).__name__}."
            )
        return natural
