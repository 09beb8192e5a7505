"""Derivative checkers: compare hand-written derivatives with central finite differences.

Three public checkers, meant for users' own rules as much as for the package's tests:

:func:`check_jvp`
    ``f_jvp(*x, *x_dot) -> (out, out_dot)`` against ``(f(x + h x_dot) - f(x - h x_dot)) / 2h``.
:func:`check_vjp`
    the dot-product test ``<out_bar, J x_dot> = <J^T out_bar, x_dot>`` for
    ``f_vjp(*x) -> (out, pullback)``, with ``J x_dot`` from finite differences (or an exact
    ``f_jvp``), in random directions.
:func:`check_grad`
    the gradient of a scalar function: directional derivatives in random directions, and
    optionally every partial derivative.

Arguments
---------
``x`` is one primal (a float, a NumPy array or a SciPy sparse matrix) or a *tuple* of
primals, in which case the functions are called with them unpacked: ``f(*x)``,
``f_jvp(*x, *x_dot)``, ``f_vjp(*x)``, and ``pullback`` returns a tuple with one cotangent
per primal. That is the calling convention of :mod:`gmrf_core.rules` (``solve_jvp(A, b,
A_dot, b_dot)``), so a rule is checked with ``check_jvp(solve, solve_jvp, (A, b), (A_dot,
b_dot))``. Outputs may be floats, arrays, sparse matrices or tuples of them.

A SciPy sparse primal (CSR, CSC or COO, matrix or array classes) is treated as the vector
of its stored entries ``.data`` with its sparsity pattern held fixed: tangents must be
sparse matrices on the same pattern (a pattern stored in another order or format is
mapped onto it), perturbations ``x + h x_dot`` change ``.data`` only, random directions
are drawn on the pattern, and the cotangent of a sparse primal may be sparse or dense; only
its entries on the pattern are used. Tangent entries given as ``None`` mean zero and are
passed to ``f_jvp`` as ``None``.

Step and tolerances
-------------------
The default step is ``h = eps**(1/3) * max(1, max|x|) / max|x_dot|`` with ``eps`` the
float64 machine epsilon (about 6.1e-6 times the scale of ``x``): it balances the
``O(h^2)`` truncation error of the central difference against its ``O(eps / h)``
rounding error, so both are near ``eps**(2/3) ~ 4e-11`` relative. A comparison passes
when ``max|a - b| <= atol + rtol * scale + rounding`` where ``scale`` is the larger
max-norm of the two (for dot products: the sum of absolute values of the products, which
cannot cancel) and ``rounding = 100 * eps * max|f| / h`` bounds the cancellation error of
the finite difference. Failures raise :class:`AssertionError` with both values, the
absolute and relative errors, the step, and the random seed.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .errors import InputError, PatternError
from .linalg import Factor
from .pattern import FixedPattern
from .rules.dense._common import real_array

__all__ = ["CheckResult", "check_jvp", "check_vjp", "check_grad", "counting_factorizations"]

_EPS = np.finfo(np.float64).eps
_ROUNDING_FACTOR = 100.0
_SPARSE_FORMATS = ("csr", "csc", "coo")
_PRINT_MAX_SIZE = 36  # arrays up to this size are printed whole in failure reports


@dataclass(frozen=True)
class CheckResult:
    """Outcome of a successful derivative check.

    Attributes
    ----------
    check : str
        ``"jvp"``, ``"vjp"`` or ``"grad"``.
    max_abs_error : float
        Largest absolute disagreement over all comparisons.
    max_rel_error : float
        Largest disagreement relative to the scale of the compared values.
    step : float
        Largest finite-difference step used (0.0 when none was needed).
    n_directions : int
        Number of directions (or coordinates) checked.
    seed : int or None
        Seed of the random directions (pass it as ``rng`` to reproduce them).
    """

    check: str
    max_abs_error: float
    max_rel_error: float
    step: float
    n_directions: int
    seed: int | None

    def __post_init__(self):
        # plain Python numbers, whatever NumPy scalar types the arithmetic produced
        for name in ("max_abs_error", "max_rel_error", "step"):
            object.__setattr__(self, name, float(getattr(self, name)))
        object.__setattr__(self, "n_directions", int(self.n_directions))


# ----------------------------------------------------------------------------------
# leaves: one primal, tangent, output or cotangent (float, ndarray or sparse matrix)


def _real_array(value, name):
    return real_array(value, name, "the checkers")


def _is_number(value):
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _primal_leaf(value, name):
    """Validated float64 copy of one primal."""
    if sp.issparse(value):
        if value.format not in _SPARSE_FORMATS:
            raise InputError(
                f"{name} is a sparse matrix in {value.format.upper()} format; use CSR, CSC or "
                f"COO (e.g. {name}.tocsc())"
            )
        if value.dtype.kind not in "biuf":
            raise InputError(f"{name} must be a real sparse matrix, got dtype {value.dtype}")
        leaf = value.astype(np.float64, copy=True)
    elif _is_number(value):
        leaf = float(value)
    else:  # a copy, so a function that writes into its input cannot move the point
        leaf = np.array(_real_array(value, name), copy=True)
    if not np.all(np.isfinite(_values(leaf))):
        raise InputError(f"{name} contains NaN or inf; derivatives are checked at finite points")
    return leaf


def _values(leaf):
    """The free values of a leaf as a flat read-only view (sparse: its stored entries)."""
    if leaf is None:
        return np.zeros(0)
    if sp.issparse(leaf):
        return leaf.data.ravel()
    return np.asarray(leaf, dtype=np.float64).ravel()


def _coordinates(matrix):
    coo = matrix.tocoo(copy=False) if matrix.format != "coo" else matrix
    return np.asarray(coo.row, dtype=np.int64), np.asarray(coo.col, dtype=np.int64)


def _same_stored_pattern(a, b):
    if a.format != b.format or a.shape != b.shape or a.nnz != b.nnz:
        return False
    if a.format == "coo":
        rows_a, cols_a = _coordinates(a)
        rows_b, cols_b = _coordinates(b)
        return np.array_equal(rows_a, rows_b) and np.array_equal(cols_a, cols_b)
    return np.array_equal(a.indptr, b.indptr) and np.array_equal(a.indices, b.indices)


def _values_on_pattern(pattern, matrix, name):
    """Values of sparse ``matrix`` at the stored entries of ``pattern``, in pattern order.

    Raises PatternError if ``matrix`` has a nonzero outside the pattern.
    """
    if _same_stored_pattern(pattern, matrix):
        return np.asarray(matrix.data, dtype=np.float64).ravel().copy()
    fixed = FixedPattern.of(pattern)
    where = fixed.stored_positions(pattern, "the sparse primal")
    if np.unique(where).size != where.size:
        raise PatternError(
            f"the sparse primal has duplicate entries, so {name} must have exactly its stored "
            f"pattern (same format, indices and order); call sum_duplicates() on both"
        )
    hint = (
        "Directions of a sparse primal must lie on its pattern (build them as x.copy() with "
        "new .data)."
    )
    return fixed.data_of(matrix, name, hint=hint)[where]


def _with_values(leaf, values):
    """A copy of a primal leaf whose free values are replaced."""
    if sp.issparse(leaf):
        result = leaf.copy()
        result.data = np.asarray(values, dtype=np.float64).reshape(leaf.data.shape).copy()
        return result
    if isinstance(leaf, float):
        return float(values[0])
    return np.asarray(values, dtype=np.float64).reshape(np.shape(leaf)).copy()


def _tangent_leaf(primal, tangent, name):
    """Validated tangent of one primal: ``(values, tangent to pass to f_jvp)``."""
    if tangent is None:
        return None, None
    if sp.issparse(primal):
        if not sp.issparse(tangent):
            raise InputError(
                f"{name} must be a sparse matrix on the pattern of the sparse primal, got "
                f"{type(tangent).__name__}; build it as x.copy() with new .data"
            )
        if tangent.shape != primal.shape:
            raise InputError(f"{name} has shape {tangent.shape}, the primal {primal.shape}")
        values = _values_on_pattern(primal, tangent, name)
    else:
        if sp.issparse(tangent):
            tangent = tangent.toarray()
        array = _real_array(tangent, name)
        if array.shape != np.shape(primal):
            raise InputError(
                f"{name} has shape {array.shape} but the primal has shape {np.shape(primal)}"
            )
        values = array.ravel()
    if not np.all(np.isfinite(values)):
        raise InputError(f"{name} contains NaN or inf")
    return values, _with_values(primal, values)


def _random_values(primal, rng, symmetric):
    """Standard normal direction values for one primal (symmetric for square matrices)."""
    if sp.issparse(primal):
        rows, cols = _coordinates(primal)
        if symmetric and primal.shape[0] == primal.shape[1]:
            pair = np.minimum(rows, cols) * primal.shape[0] + np.maximum(rows, cols)
            unique_pairs, inverse = np.unique(pair, return_inverse=True)
            return rng.standard_normal(unique_pairs.size)[inverse]
        return rng.standard_normal(rows.size)
    shape = np.shape(primal)
    values = rng.standard_normal(shape)
    if symmetric and len(shape) >= 2 and shape[-1] == shape[-2]:
        values = 0.5 * (values + np.swapaxes(values, -1, -2))
    return np.asarray(values, dtype=np.float64).ravel()


def _output_leaf(value, name):
    if value is None:
        return None
    if sp.issparse(value):
        if value.dtype.kind == "c":
            raise InputError(f"{name} is complex; the checkers support real values only")
        return value.tocsr().astype(np.float64)
    return _real_array(value, name)


def _max_abs(leaf):
    if leaf is None:
        return 0.0
    values = leaf.data if sp.issparse(leaf) else leaf
    return float(np.max(np.abs(values))) if np.size(values) else 0.0


def _dense(leaf):
    return leaf.toarray() if sp.issparse(leaf) else leaf


def _difference(a, b, name):
    """a - b for output leaves; None is zero. Sparse stays sparse when both are sparse."""
    if a is None and b is None:
        return None
    if a is None:
        return -b
    if b is None:
        return a
    if np.shape(a) != np.shape(b):
        raise AssertionError(f"{name}: shapes differ, {np.shape(a)} vs {np.shape(b)}")
    if sp.issparse(a) and sp.issparse(b):
        return (a - b).tocsr()
    return np.asarray(_dense(a) - _dense(b))


def _inner(a, b, absolute=False):
    """sum(a * b) for leaves of equal shape (dense or sparse); None is zero."""
    if a is None or b is None:
        return 0.0
    if sp.issparse(a) or sp.issparse(b):
        sparse, other = (a, b) if sp.issparse(a) else (b, a)
        if absolute:
            sparse = abs(sparse)
            other = abs(other)
        return float(sparse.multiply(other).sum())
    if absolute:
        return float(np.sum(np.abs(a) * np.abs(b)))
    return float(np.sum(a * b))


def _worst_entry(error):
    """(index, value) of the entry of largest magnitude of an error leaf."""
    if sp.issparse(error):
        coo = error.tocoo()
        if coo.nnz == 0:
            return (), 0.0
        i = int(np.argmax(np.abs(coo.data)))
        return (int(coo.row[i]), int(coo.col[i])), float(coo.data[i])
    error = np.asarray(error)
    if error.size == 0:
        return (), 0.0
    flat = int(np.argmax(np.abs(error)))
    index = tuple(int(i) for i in np.unravel_index(flat, error.shape))
    return index, float(error.reshape(-1)[flat])


def _entry(leaf, index):
    if leaf is None:
        return 0.0
    if sp.issparse(leaf):
        return float(leaf.tocsr()[index]) if index else 0.0
    return float(np.asarray(leaf)[index]) if index else float(np.asarray(leaf).reshape(()))


def _show(leaf):
    if leaf is None:
        return "0 (None)"
    dense = _dense(leaf)
    if np.size(dense) <= _PRINT_MAX_SIZE:
        return np.array2string(np.asarray(dense), precision=10, max_line_width=100)
    return f"<array of shape {np.shape(dense)}, max |.| = {_max_abs(leaf):.6e}>"


# ----------------------------------------------------------------------------------
# structures: one leaf or a tuple of leaves


def _as_tuple(value):
    return (tuple(value), True) if isinstance(value, tuple) else ((value,), False)


def _call(f, primals, multi):
    return f(*primals) if multi else f(primals[0])


def _outputs(value, name):
    leaves, multi = _as_tuple(value)
    return tuple(_output_leaf(v, f"{name}[{i}]" if multi else name) for i, v in enumerate(leaves))


def _label(i, multi, what="output"):
    return f"{what}[{i}]" if multi else what


def _prepare_primals(x):
    leaves, multi = _as_tuple(x)
    if not leaves:
        raise InputError("x is an empty tuple; give at least one primal")
    names = [_label(i, multi, "x") for i in range(len(leaves))]
    return tuple(_primal_leaf(v, n) for v, n in zip(leaves, names)), multi


def _prepare_tangents(primals, multi, x_dot, name="x_dot"):
    leaves, dot_multi = _as_tuple(x_dot)
    if dot_multi != multi or len(leaves) != len(primals):
        raise InputError(
            f"{name} must mirror x: a tuple of {len(primals)} tangents when x is a tuple, a "
            f"single tangent otherwise"
        )
    prepared = [
        _tangent_leaf(p, t, _label(i, multi, name)) for i, (p, t) in enumerate(zip(primals, leaves))
    ]
    values = tuple(v for v, _ in prepared)
    passed = tuple(t for _, t in prepared)
    if all(v is None for v in values):
        raise InputError(f"{name} is entirely None (zero); give a nonzero direction")
    return values, passed


def _random_tangents(primals, rng, symmetric):
    values = tuple(_random_values(p, rng, symmetric) for p in primals)
    return values, tuple(_with_values(p, v) for p, v in zip(primals, values))


def _resolve_rng(rng):
    if isinstance(rng, np.random.Generator):
        return rng, None
    if rng is None:
        seed = int(np.random.SeedSequence().generate_state(1)[0])
    elif isinstance(rng, (int, np.integer)):
        seed = int(rng)
    else:
        raise InputError(f"rng must be None, an int seed or a numpy Generator, got {rng!r}")
    return np.random.default_rng(seed), seed


def _default_step(primals, tangent_values, eps):
    if eps is not None:
        if not (isinstance(eps, (int, float, np.floating)) and eps > 0 and math.isfinite(eps)):
            raise InputError(f"eps (the finite-difference step) must be a positive float: {eps}")
        return float(eps)
    x_scale = max([1.0] + [float(np.max(np.abs(_values(p)), initial=0.0)) for p in primals])
    d_scale = max(float(np.max(np.abs(v), initial=0.0)) for v in tangent_values if v is not None)
    if d_scale == 0.0:
        raise InputError("the direction x_dot is zero; give a nonzero direction")
    return _EPS ** (1.0 / 3.0) * x_scale / d_scale


def _shifted(primals, tangent_values, step):
    return tuple(
        p if v is None else _with_values(p, _values(p) + step * v)
        for p, v in zip(primals, tangent_values)
    )


def _central_difference(f, primals, multi, tangent_values, step):
    """(f(x + h d) - f(x - h d)) / 2h per output leaf, and the rounding bound per leaf."""
    plus = _outputs(_call(f, _shifted(primals, tangent_values, step), multi), "f(x + h x_dot)")
    minus = _outputs(_call(f, _shifted(primals, tangent_values, -step), multi), "f(x - h x_dot)")
    if len(plus) != len(minus):
        raise AssertionError("f returned a different number of outputs at x + h x_dot and x - h")
    derivative, rounding = [], []
    for i, (a, b) in enumerate(zip(plus, minus)):
        difference = _difference(a, b, f"f output {i}")
        derivative.append(None if difference is None else difference * (0.5 / step))
        size = max(_max_abs(a), _max_abs(b))
        rounding.append(_ROUNDING_FACTOR * _EPS * size / step)
    return tuple(derivative), tuple(rounding)


def _check_count(got, expected, what):
    if len(got) != len(expected):
        raise AssertionError(
            f"{what} has {len(got)} entries but the function has {len(expected)}; they must "
            f"correspond one to one"
        )


def _compare_leaves(reference, candidate, rtol, atol, rounding, labels):
    """Max-norm comparison per leaf: [(label, abs_err, rel_err, tol, index, ref, cand, ...)]."""
    rows = []
    for label, ref, cand, extra in zip(labels, reference, candidate, rounding):
        error = _difference(cand, ref, label)
        abs_error = _max_abs(error)
        scale = max(_max_abs(ref), _max_abs(cand))
        tolerance = atol + rtol * scale + extra
        rel_error = abs_error / scale if scale > 0 else (0.0 if abs_error == 0 else math.inf)
        index, _ = _worst_entry(error) if error is not None else ((), 0.0)
        rows.append((label, abs_error, rel_error, tolerance, index, ref, cand, extra))
    return rows


def _leaf_report(row, reference_name, candidate_name):
    label, abs_error, rel_error, tolerance, index, ref, cand, extra = row
    lines = [
        f"  {label} (shape {np.shape(_dense(cand) if cand is not None else ref)}): "
        f"max |{candidate_name} - {reference_name}| = {abs_error:.3e}, relative {rel_error:.3e} "
        f"(tolerance {tolerance:.3e}, of which finite-difference rounding {extra:.1e})"
    ]
    if index or (cand is not None and np.ndim(_dense(cand)) == 0):
        where = f"worst entry {index}" if index else "value"
        lines.append(
            f"    {where}: {candidate_name} = {_entry(cand, index):.12g}, "
            f"{reference_name} = {_entry(ref, index):.12g}"
        )
    lines.append(f"    {candidate_name}:\n{_indent(_show(cand))}")
    lines.append(f"    {reference_name}:\n{_indent(_show(ref))}")
    return "\n".join(lines)


def _indent(text, prefix="      "):
    return "\n".join(prefix + line for line in text.splitlines())


def _rtol_atol(rtol, atol):
    for name, value in (("rtol", rtol), ("atol", atol)):
        if not (isinstance(value, (int, float, np.floating)) and value >= 0):
            raise InputError(f"{name} must be a non-negative float, got {value!r}")


# ----------------------------------------------------------------------------------
# public checkers


def check_jvp(
    f, f_jvp, x, x_dot=None, *, eps=None, rtol=1e-6, atol=1e-10, rng=None, symmetric=False
):
    """Check a forward-mode rule against central finite differences.

    Verifies ``out == f(x)`` and ``out_dot == (f(x + h x_dot) - f(x - h x_dot)) / (2 h)``
    for ``(out, out_dot) = f_jvp(*x, *x_dot)``.

    Parameters
    ----------
    f : callable
        The primal function, ``f(*x)`` (or ``f(x)`` for a single primal).
    f_jvp : callable
        ``f_jvp(*x, *x_dot) -> (out, out_dot)``; ``out_dot`` mirrors ``out`` (a tuple for a
        tuple-valued ``f``).
    x : float, ndarray, scipy.sparse matrix, or tuple of them
        The point. Sparse matrices count as the vector of their stored entries.
    x_dot : same structure as ``x``, optional
        Direction; entries may be None (zero). Random standard normal when omitted.
    eps : float, optional
        Finite-difference step ``h``; default ``eps_mach**(1/3) * max(1, max|x|) / max|x_dot|``.
    rtol, atol : float
        Tolerances of the max-norm comparison (see the module docstring).
    rng : None, int or numpy.random.Generator
        Source of the random direction when ``x_dot`` is omitted.
    symmetric : bool
        Draw symmetric random directions for square matrices (for rules defined on
        symmetric matrices, e.g. Cholesky).

    Returns
    -------
    CheckResult

    Raises
    ------
    AssertionError
        The derivative (or ``out``) disagrees with finite differences; the message shows
        both values, the absolute and relative errors and the step.
    InputError
        Malformed arguments (shapes, NaN, a direction off a sparse pattern, ...).
    """
    _rtol_atol(rtol, atol)
    primals, multi = _prepare_primals(x)
    generator, seed = _resolve_rng(rng)
    if x_dot is None:
        tangent_values, passed = _random_tangents(primals, generator, symmetric)
    else:
        tangent_values, passed = _prepare_tangents(primals, multi, x_dot)
        seed = None
    step = _default_step(primals, tangent_values, eps)

    result = f_jvp(*primals, *passed) if multi else f_jvp(primals[0], passed[0])
    if not (isinstance(result, tuple) and len(result) == 2):
        raise AssertionError("f_jvp must return the pair (out, out_dot)")
    out = _outputs(result[0], "out")
    out_dot = _outputs(result[1], "out_dot")
    expected = _outputs(_call(f, primals, multi), "f(x)")
    _check_count(out, expected, "out returned by f_jvp")
    _check_count(out_dot, expected, "out_dot returned by f_jvp")
    finite_difference, rounding = _central_difference(f, primals, multi, tangent_values, step)
    out_multi = isinstance(result[0], tuple)

    labels = [_label(i, out_multi) for i in range(len(out))]
    value_rows = _compare_leaves(expected, out, rtol, atol, [0.0] * len(out), labels)
    derivative_rows = _compare_leaves(finite_difference, out_dot, rtol, atol, rounding, labels)
    header = f"step h = {step:.3e} (x +- h x_dot)"
    if seed is not None:
        header += f", rng seed = {seed}"
    bad_values = [r for r in value_rows if not r[1] <= r[3]]
    if bad_values:
        report = "\n".join(_leaf_report(r, "f(x)", "out") for r in bad_values)
        raise AssertionError(
            f"check_jvp: the primal output of f_jvp differs from f(x)\n  {header}\n{report}"
        )
    bad = [r for r in derivative_rows if not r[1] <= r[3]]
    if bad:
        report = "\n".join(_leaf_report(r, "FD", "JVP") for r in bad)
        raise AssertionError(
            f"check_jvp: JVP disagrees with central finite differences\n  {header}\n{report}"
        )
    return CheckResult(
        check="jvp",
        max_abs_error=max(r[1] for r in derivative_rows),
        max_rel_error=max(r[2] for r in derivative_rows),
        step=step,
        n_directions=1,
        seed=seed,
    )


def _cotangent_values_for(primal, cotangent, name):
    """Cotangent of one primal, validated against its shape (None is zero)."""
    if cotangent is None:
        return None
    if sp.issparse(cotangent):
        if cotangent.shape != np.shape(primal) and not (
            sp.issparse(primal) and cotangent.shape == primal.shape
        ):
            raise AssertionError(
                f"{name} has shape {cotangent.shape}, the primal {np.shape(primal)}"
            )
        return cotangent.tocsr().astype(np.float64)
    array = _real_array(cotangent, name)
    shape = primal.shape if sp.issparse(primal) else np.shape(primal)
    if array.shape != shape:
        raise AssertionError(f"{name} has shape {array.shape} but the primal has shape {shape}")
    return array


def check_vjp(
    f,
    f_vjp,
    x,
    x_dot=None,
    out_bar=None,
    rng=None,
    *,
    f_jvp=None,
    n_directions=2,
    eps=None,
    rtol=1e-6,
    atol=1e-10,
    symmetric=False,
):
    """Dot-product test of a reverse-mode rule: ``<out_bar, J x_dot> = <J^T out_bar, x_dot>``.

    ``J^T out_bar`` comes from ``(out, pullback) = f_vjp(*x)``, ``pullback(out_bar)``;
    ``J x_dot`` from central finite differences of ``f``, or from ``f_jvp`` when given
    (then the test is exact up to rounding and ``rtol`` can be tightened). Also verifies
    ``out == f(x)``.

    Parameters
    ----------
    f : callable
        The primal function, ``f(*x)``.
    f_vjp : callable
        ``f_vjp(*x) -> (out, pullback)``; ``pullback(out_bar)`` returns one cotangent per
        primal (a tuple; a bare cotangent is accepted for a single primal; None is zero).
    x : float, ndarray, scipy.sparse matrix, or tuple of them
        The point. A sparse primal's cotangent may be sparse or dense; only its entries on
        the pattern enter ``<x_bar, x_dot>``.
    x_dot : same structure as ``x``, optional
        Direction; random standard normal (on the pattern for sparse) when omitted.
    out_bar : same structure as ``f(x)``, optional
        Output cotangent; random standard normal when omitted.
    rng : None, int or numpy.random.Generator
        Source of the random directions.
    f_jvp : callable, optional
        Exact ``f_jvp(*x, *x_dot) -> (out, out_dot)`` used instead of finite differences.
    n_directions : int
        Number of random (x_dot, out_bar) pairs; 1 when both are given.
    eps : float, optional
        Finite-difference step, as in :func:`check_jvp`.
    rtol, atol : float
        Tolerances; the scale of a dot product is the sum of absolute values of its terms.
    symmetric : bool
        Draw symmetric random ``x_dot`` for square matrices.

    Returns
    -------
    CheckResult

    Raises
    ------
    AssertionError
        The two sides of the dot-product test disagree (or ``out != f(x)``, or the pullback
        returns the wrong number or shapes of cotangents).
    InputError
        Malformed arguments.
    """
    _rtol_atol(rtol, atol)
    if not (isinstance(n_directions, (int, np.integer)) and n_directions >= 1):
        raise InputError(f"n_directions must be a positive integer, got {n_directions!r}")
    primals, multi = _prepare_primals(x)
    generator, seed = _resolve_rng(rng)
    given_tangent = None
    if x_dot is not None:
        given_tangent = _prepare_tangents(primals, multi, x_dot)
    if x_dot is not None and out_bar is not None:
        n_directions = 1

    out, pullback = _call(f_vjp, primals, multi)
    out_leaves = _outputs(out, "out")
    out_multi = isinstance(out, tuple)
    expected = _outputs(_call(f, primals, multi), "f(x)")
    _check_count(out_leaves, expected, "out returned by f_vjp")
    labels = [_label(i, out_multi) for i in range(len(out_leaves))]
    for row in _compare_leaves(expected, out_leaves, rtol, atol, [0.0] * len(labels), labels):
        if not row[1] <= row[3]:
            raise AssertionError(
                "check_vjp: the primal output of f_vjp differs from f(x)\n"
                + _leaf_report(row, "f(x)", "out")
            )
    given_cotangent = None
    if out_bar is not None:
        given_cotangent = _outputs(out_bar, "out_bar")
        _check_count(given_cotangent, out_leaves, "out_bar")

    worst_abs, worst_rel, worst_step = 0.0, 0.0, 0.0
    for direction in range(n_directions):
        if given_tangent is None:
            tangent_values, passed = _random_tangents(primals, generator, symmetric)
        else:
            tangent_values, passed = given_tangent
        if given_cotangent is None:
            cotangent = tuple(_random_output_like(o, generator) for o in out_leaves)
        else:
            cotangent = given_cotangent
        pulled = pullback(cotangent if out_multi else cotangent[0])
        pulled = tuple(pulled) if isinstance(pulled, (tuple, list)) else (pulled,)
        if len(pulled) != len(primals):
            raise AssertionError(
                f"pullback returned {len(pulled)} cotangents for {len(primals)} primals; it "
                f"must return a tuple with one cotangent per primal"
            )
        primal_bar = [
            _cotangent_values_for(p, c, f"pullback output {_label(i, multi, 'x_bar')}")
            for i, (p, c) in enumerate(zip(primals, pulled))
        ]
        if f_jvp is None:
            step = _default_step(primals, tangent_values, eps)
            jx, rounding = _central_difference(f, primals, multi, tangent_values, step)
        else:
            step = 0.0
            jvp_result = f_jvp(*primals, *passed) if multi else f_jvp(primals[0], passed[0])
            jx = _outputs(jvp_result[1], "out_dot of f_jvp")
            rounding = (0.0,) * len(jx)
        _check_count(jx, out_leaves, "J x_dot")
        output_side = sum(_inner(c, j) for c, j in zip(cotangent, jx))
        input_side = sum(_inner(b, t) for b, t in zip(primal_bar, passed))
        scale = max(
            sum(_inner(c, j, absolute=True) for c, j in zip(cotangent, jx)),
            sum(_inner(b, t, absolute=True) for b, t in zip(primal_bar, passed)),
        )
        rounding_bound = sum(r * _l1(c) for c, r in zip(cotangent, rounding))
        tolerance = atol + rtol * scale + rounding_bound
        abs_error = abs(output_side - input_side)
        rel_error = abs_error / scale if scale > 0 else (0.0 if abs_error == 0 else math.inf)
        worst_abs, worst_rel = max(worst_abs, abs_error), max(worst_rel, rel_error)
        worst_step = max(worst_step, step)
        if not abs_error <= tolerance:
            how = "f_jvp" if f_jvp is not None else f"central differences, step h = {step:.3e}"
            raise AssertionError(
                "check_vjp: dot-product test failed, <out_bar, J x_dot> != <J^T out_bar, x_dot>\n"
                f"  <out_bar, J x_dot>   = {output_side:.15g}   (J x_dot by {how})\n"
                f"  <J^T out_bar, x_dot> = {input_side:.15g}   (pullback)\n"
                f"  abs error {abs_error:.3e}, relative error {rel_error:.3e} (scale "
                f"{scale:.3e}), tolerance {tolerance:.3e}\n"
                f"  direction {direction + 1} of {n_directions}"
                + (f", rng seed = {seed}" if seed is not None else "")
            )
    return CheckResult(
        check="vjp",
        max_abs_error=worst_abs,
        max_rel_error=worst_rel,
        step=worst_step,
        n_directions=n_directions,
        seed=seed if (given_tangent is None or given_cotangent is None) else None,
    )


def _l1(leaf):
    if leaf is None:
        return 0.0
    values = leaf.data if sp.issparse(leaf) else leaf
    return float(np.sum(np.abs(values)))


def _random_output_like(leaf, rng):
    if leaf is None:
        return None
    if sp.issparse(leaf):
        result = leaf.copy()
        result.data = rng.standard_normal(leaf.data.shape)
        return result
    return np.asarray(rng.standard_normal(np.shape(leaf)))


def _scalar_value(value, what):
    array = np.asarray(_dense(value) if sp.issparse(value) else value)
    if array.size != 1 or array.dtype.kind not in "biuf":
        raise InputError(f"{what} must return a real scalar, got {type(value).__name__} {array}")
    return float(array.reshape(()))


def check_grad(
    f,
    grad,
    x,
    *,
    n_directions=3,
    full=False,
    eps=None,
    rtol=1e-6,
    atol=1e-10,
    rng=None,
    symmetric=False,
):
    """Check the gradient of a scalar function against central finite differences.

    Compares ``<grad(x), d>`` with ``(f(x + h d) - f(x - h d)) / 2h`` in ``n_directions``
    random directions ``d`` and, with ``full=True``, every partial derivative (``2 * x.size``
    evaluations of ``f``: for small ``x``).

    Parameters
    ----------
    f : callable
        Scalar function, ``f(*x)``.
    grad : callable
        ``grad(*x)`` returning the gradient with the structure of ``x`` (a tuple for a tuple
        ``x``; for a sparse primal, sparse or dense with values on the pattern).
    x : float, ndarray, scipy.sparse matrix, or tuple of them
        The point.
    n_directions : int
        Number of random directions.
    full : bool
        Also compare every partial derivative.
    eps : float, optional
        Finite-difference step, as in :func:`check_jvp`.
    rtol, atol : float
        Tolerances (see the module docstring).
    rng : None, int or numpy.random.Generator
        Source of the random directions.
    symmetric : bool
        Draw symmetric random directions for square matrices.

    Returns
    -------
    CheckResult

    Raises
    ------
    AssertionError
        A directional or partial derivative disagrees with finite differences.
    InputError
        Malformed arguments or a non-scalar ``f``.
    """
    _rtol_atol(rtol, atol)
    if not (isinstance(n_directions, (int, np.integer)) and n_directions >= 0):
        raise InputError(f"n_directions must be a non-negative integer, got {n_directions!r}")
    if n_directions == 0 and not full:
        raise InputError("nothing to check: n_directions = 0 and full = False")
    primals, multi = _prepare_primals(x)
    generator, seed = _resolve_rng(rng)
    _scalar_value(_call(f, primals, multi), "f")
    gradient = _call(grad, primals, multi)
    if isinstance(gradient, (tuple, list)) and (multi or len(gradient) == 1):
        gradient = tuple(gradient)
    else:
        gradient = (gradient,)
    if len(gradient) != len(primals):
        raise AssertionError(
            f"grad returned {len(gradient)} entries for {len(primals)} primals; it must mirror x"
        )
    gradient = [
        _cotangent_values_for(p, g, _label(i, multi, "grad"))
        for i, (p, g) in enumerate(zip(primals, gradient))
    ]

    def directional_fd(tangent_values):
        step = _default_step(primals, tangent_values, eps)
        plus = _scalar_value(_call(f, _shifted(primals, tangent_values, step), multi), "f")
        minus = _scalar_value(_call(f, _shifted(primals, tangent_values, -step), multi), "f")
        rounding = _ROUNDING_FACTOR * _EPS * max(abs(plus), abs(minus)) / step
        return (plus - minus) / (2.0 * step), step, rounding

    worst_abs, worst_rel, worst_step = 0.0, 0.0, 0.0
    for direction in range(n_directions):
        tangent_values, passed = _random_tangents(primals, generator, symmetric)
        fd, step, rounding = directional_fd(tangent_values)
        analytic = sum(_inner(g, t) for g, t in zip(gradient, passed))
        scale = max(abs(fd), sum(_inner(g, t, absolute=True) for g, t in zip(gradient, passed)))
        tolerance = atol + rtol * scale + rounding
        abs_error = abs(analytic - fd)
        rel_error = abs_error / scale if scale > 0 else (0.0 if abs_error == 0 else math.inf)
        worst_abs, worst_rel = max(worst_abs, abs_error), max(worst_rel, rel_error)
        worst_step = max(worst_step, step)
        if not abs_error <= tolerance:
            raise AssertionError(
                "check_grad: directional derivative disagrees with central finite differences\n"
                f"  <grad, d> = {analytic:.15g}\n  FD        = {fd:.15g}   (step h = {step:.3e})\n"
                f"  abs error {abs_error:.3e}, relative error {rel_error:.3e} (scale "
                f"{scale:.3e}), tolerance {tolerance:.3e}\n"
                f"  direction {direction + 1} of {n_directions}"
                + (f", rng seed = {seed}" if seed is not None else "")
            )
    n_checked = n_directions
    if full:
        failures = []
        for i, primal in enumerate(primals):
            size = _values(primal).size
            analytic_all = _gradient_values(primal, gradient[i])
            for entry, members in _coordinate_groups(primal, symmetric):
                unit = np.zeros(size)
                unit[members] = 1.0
                tangent_values = tuple(unit if j == i else None for j in range(len(primals)))
                fd, step, rounding = directional_fd(tangent_values)
                analytic = float(np.sum(analytic_all[members]))
                scale = max(abs(fd), abs(analytic))
                abs_error = abs(analytic - fd)
                rel_error = abs_error / scale if scale > 0 else (0.0 if abs_error == 0 else 1.0)
                worst_abs, worst_rel = max(worst_abs, abs_error), max(worst_rel, rel_error)
                worst_step = max(worst_step, step)
                if not abs_error <= atol + rtol * scale + rounding:
                    name = _label(i, multi, "x")
                    failures.append((name, entry, analytic, fd, abs_error, rel_error))
                n_checked += 1
        if failures:
            lines = [
                f"  {name} entry {entry}: grad = {a:.12g}, FD = {b:.12g}, abs error {e:.3e}, "
                f"relative {r:.3e}"
                for name, entry, a, b, e, r in failures[:20]
            ]
            raise AssertionError(
                f"check_grad: {len(failures)} partial derivatives disagree with central finite "
                f"differences (step h ~ {worst_step:.3e}, rtol {rtol:g}, atol {atol:g})\n"
                + "\n".join(lines)
            )
    return CheckResult(
        check="grad",
        max_abs_error=worst_abs,
        max_rel_error=worst_rel,
        step=worst_step,
        n_directions=n_checked,
        seed=seed if n_directions else None,
    )


def _coordinate_groups(primal, symmetric):
    """Coordinates perturbed together by ``check_grad(full=True)``: ``[(label, indices)]``.

    One free value at a time; with ``symmetric`` and a square matrix, the entries (i, j)
    and (j, i) together (their gradient entries are summed), so the perturbed matrix stays
    symmetric.
    """
    if sp.issparse(primal):
        rows, cols = _coordinates(primal)
        shape = primal.shape
    elif np.ndim(primal) == 0:
        return [((), np.array([0]))]
    else:
        shape = np.shape(primal)
        if len(shape) != 2 or not symmetric:
            return [
                (tuple(int(i) for i in np.unravel_index(k, shape)), np.array([k]))
                for k in range(int(np.prod(shape)))
            ]
        rows, cols = (index.ravel() for index in np.indices(shape))
    if not symmetric or shape[0] != shape[1]:
        return [((int(r), int(c)), np.array([k])) for k, (r, c) in enumerate(zip(rows, cols))]
    pair = np.minimum(rows, cols) * shape[0] + np.maximum(rows, cols)
    groups = {}
    for k, key in enumerate(pair):
        groups.setdefault(int(key), []).append(k)
    return [
        ((int(rows[m[0]]), int(cols[m[0]])), np.array(m, dtype=np.int64)) for m in groups.values()
    ]


def _gradient_values(primal, gradient):
    """The gradient's values at the free entries of ``primal`` (its pattern if sparse)."""
    size = _values(primal).size
    if gradient is None:
        return np.zeros(size)
    if sp.issparse(primal):
        rows, cols = _coordinates(primal)
        dense = _dense(gradient)
        return np.asarray(dense[rows, cols], dtype=np.float64).ravel()
    return np.asarray(_dense(gradient), dtype=np.float64).ravel()


@contextlib.contextmanager
def counting_factorizations(model):
    """Count the numeric factorizations of H and of Q̃ that ``model`` runs inside the block.

    Factorizations are told apart by their symbolic analysis (H's: ``model.symbolic``;
    Q̃'s: ``model.structure.prior_symbolic``), so every work factor of the model's pools
    is counted, failed attempts included.

    Parameters
    ----------
    model : LatentGaussianModel

    Yields
    ------
    dict
        ``{"H": int, "Q": int}``, updated while the block runs.

    Notes
    -----
    :meth:`Factor.refactorize` is replaced for the duration of the block, process-wide:
    meant for tests and benchmarks, not for concurrent use.
    """
    counts = {"H": 0, "Q": 0}
    original = Factor.refactorize

    def counting(self, Q):
        if self.symbolic is model.symbolic:
            counts["H"] += 1
        elif self.symbolic is model.structure.prior_symbolic:
            counts["Q"] += 1
        return original(self, Q)

    Factor.refactorize = counting
    try:
        yield counts
    finally:
        Factor.refactorize = original
