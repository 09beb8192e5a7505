"""From a data frame and a formula to a :class:`~gmrf_core.LatentGaussianModel`.

::

    model = gm.formula(
        "cases ~ 1 + income + f(county, model='bym2', graph=W) + f(year, model='rw1')",
        data=df, family="poisson", exposure="expected")

The formula is ``response ~ fixed part + f(...) + f(...)``:

- The *fixed part* (every summand that is not an ``f()`` term) goes to ``formulaic``
  (the maintained successor of patsy): intercept (``1``, removed by ``0`` or ``-1``),
  numeric and categorical covariates (treatment contrasts), interactions (``a:b``,
  ``a*b``), transforms (``np.log(x)``, ``I(x**2)``, ``C(x)``). Its columns are the
  design matrix X of the fixed effects β, named as formulaic names them
  (``Intercept``, ``income``, ``region[T.b]``); columns that are identically zero
  (unused categorical levels) are dropped. A covariate with missing values raises.
- Each ``f(column, model=..., **options)`` term (R-INLA's syntax) maps a column to a
  latent block and builds its projection from the column's values: observation i
  gets a 1 (or ``weights[i]``) in the column of the level of its value; repeated
  levels share one latent variable; levels that occur in no observation (the
  graph's or the series' own, or a categorical column's unused categories) are
  latent variables without data (predicted); a missing value (NaN) in the column
  means the term contributes nothing to that observation. Several ``f()`` terms are
  blocks of one :class:`gmrf_core.models.Stack`, labelled by the term names.

Latent models (``model=``) and their options:

===============  ====================================================================
``iid``          ``prior``
``rw1``, ``rw2``  ``prior``, ``scale`` (regular levels: an integer column covers every
                 integer from its minimum to its maximum; an equally spaced numeric
                 column its values)
``ar1``          ``prior``, ``rho0`` (levels as for rw1)
``besag``        ``graph`` (see :func:`gmrf_core.graphs.areal_graph`), ``prior``, ``scale``
``bym2``         ``graph``, ``prior``, ``phi0``; the table rows are the combined
                 effect b = (√(1-φ) v + √φ u)/√τ (the part that enters η)
``spde``         two coordinate columns ``f(x, y, model='spde', ...)``; ``mesh``
                 (default: :func:`~gmrf_core.models.mesh_from_points` of the distinct
                 locations, with ``max_area``, ``min_angle``, ``extend``), ``prior``
``matern2d``     two coordinate columns, ``shape`` (required), ``spacing``, ``prior``
===============  ====================================================================

Every term also takes ``name`` (its label; default the column name), ``values`` (the
levels, in model order: e.g. the areas of a SciPy graph, or time points without
data), ``weights`` (a column multiplying the term's contribution) and ``group``
(a column) with ``group_model`` (``"ar1"`` default, ``"rw1"``, ``"rw2"``, ``"iid"``):
a separable space–time (Kronecker) block Q = Q_group ⊗ Q_term, latent vector
ordered group-major, in which the group model's precision is fixed to 1 (R-INLA's
``control.group``: only the term's precision scales the product, the group model
contributes its correlation). Not available for ``bym2`` (its Kronecker product has
no analytic constrained log-determinant): use ``besag`` with a group.

Names: θ is named ``<term>.<hyperparameter>`` (``county.log_tau``,
``county.logit_phi``); a group term is called ``<column>:<group>`` and its θ
``county:year.group.atanh_rho``, ``county:year.main.log_tau``; then come the
likelihood's own (``log_noise_precision``, ``log_size``).

``gm.formula`` is this module's :func:`formula`; the table helpers are imported from
the module: ``from gmrf_core.formula import latent_table, fixed_table``. The returned model carries
``model.terms`` (:class:`FormulaTerms`): the fixed-effect names and positions and,
per term, its levels and positions in z = (x, β), which :func:`latent_table` and
:func:`fixed_table` use to label results.

Families: ``gaussian`` (``scale=`` column of precision scales), ``poisson`` and
``nbinomial`` (``exposure=`` column E, μ = E exp η), ``binomial`` (``trials=``
column or number), ``bernoulli``. ``offset=`` (column or array) is added to η.
NaN responses are missing: they contribute nothing and are predicted.
"""

import ast
import inspect
import re
import sys
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from . import likelihoods as _likelihoods
from . import models as _models
from .errors import GMRFError, InputError
from .graphs import areal_graph
from .laplace import LatentGaussianModel

__all__ = [
    "formula",
    "FormulaTerms",
    "Term",
    "latent_table",
    "fixed_table",
    "linear_predictor_table",
    "posterior_summaries",
]

FAMILIES = {
    "gaussian": "gaussian",
    "normal": "gaussian",
    "poisson": "poisson",
    "binomial": "binomial",
    "bernoulli": "bernoulli",
    "binary": "bernoulli",
    "nbinomial": "nbinomial",
    "negative_binomial": "nbinomial",
    "negbinomial": "nbinomial",
}

# options every f() term accepts, and each model's own
COMMON_OPTIONS = ("model", "name", "values", "weights", "group", "group_model")
MODEL_OPTIONS = {
    "iid": ("prior",),
    "rw1": ("prior", "scale"),
    "rw2": ("prior", "scale"),
    "ar1": ("prior", "rho0"),
    "besag": ("graph", "prior", "scale"),
    "bym2": ("graph", "prior", "phi0"),
    "spde": ("mesh", "prior", "max_area", "min_angle", "extend"),
    "matern2d": ("shape", "spacing", "prior"),
}
ORDERED_MODELS = ("rw1", "rw2", "ar1")
# the fewest levels a model of ordered or unordered levels is defined on (random walks
# of order k need k + 1)
MINIMUM_LEVELS = {"rw1": 2, "rw2": 3}
GROUP_MODELS = ("ar1", "rw1", "rw2", "iid")
# options whose value is a column of the data (a bare name means the column)
COLUMN_OPTIONS = ("weights", "group")
QUANTILES = (0.025, 0.5, 0.975)


def _pandas():
    try:
        import pandas
    except ImportError as exc:  # pragma: no cover - optional extra
        raise InputError(
            "gm.formula needs pandas and formulaic: pip install 'gmrf_core[frame]'."
        ) from exc
    return pandas


# ------------------------------------------------------------------------------ metadata
@dataclass
class Term:
    """One ``f()`` term of a formula, as placed in the latent vector z = (x, β).

    Attributes
    ----------
    name : str
        Label of the term (block label of the Stack, prefix of its θ names).
    model : str
        Latent model name as written (``"bym2"``).
    columns : tuple of str
        Data columns the term reads (the coordinates for spde/matern2d).
    levels : pandas.Index
        One entry per effect value reported by :func:`latent_table` (a MultiIndex
        (group, level) for a group term; mesh/lattice node numbers for spde/matern2d).
    positions : numpy.ndarray of int
        Position in z of each level's effect value.
    block : slice
        Positions of the whole block in z (BYM2: 2n variables (b, u)).
    theta_names : tuple of str
        The term's hyperparameters, as named in the model's θ.
    parts : dict
        Other named sets of positions (BYM2: ``{"u": ...}``, the structured part).
    info : dict
        What plots need: ``graph`` (ArealGraph), ``mesh``, ``shape``/``spacing``,
        ``group`` (column) and ``group_levels``.
    """

    name: str
    model: str
    columns: tuple
    levels: object
    positions: np.ndarray
    block: slice
    theta_names: tuple
    parts: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)


@dataclass
class FormulaTerms:
    """What a formula put where: response, fixed effects and latent terms.

    Attributes
    ----------
    formula : str
    response : str
        Name of the response column.
    family : str
        Canonical family name.
    fixed_names : tuple of str
        Names of the fixed effects β (formulaic's column names).
    fixed_positions : numpy.ndarray of int
        Positions of β in z.
    terms : dict
        ``{name: Term}`` in formula order.
    dropped_fixed : tuple of str
        Design columns dropped because they were identically zero (unused levels).
    index : pandas.Index
        The data frame's index (one entry per observation).
    """

    formula: str
    response: str
    family: str
    fixed_names: tuple
    fixed_positions: np.ndarray
    terms: dict
    dropped_fixed: tuple = ()
    index: object = None

    def __getitem__(self, name):
        return self.term(name)

    def __contains__(self, name):
        return name in self.terms

    def term(self, name):
        """The :class:`Term` called ``name`` (InputError naming the known terms otherwise)."""
        if name not in self.terms:
            raise InputError(
                f"the formula has no term {name!r}; its f() terms are {list(self.terms)} "
                f"(fixed effects: {list(self.fixed_names)})."
            )
        return self.terms[name]


# -------------------------------------------------------------------------- parsing
_OPEN = {"(": ")", "[": "]", "{": "}"}


def _top_level_split(text, separator, owner):
    """Split ``text`` at ``separator`` characters outside brackets, strings and backticks."""
    pieces, depth, start, quote = [], [], 0, None
    i = 0
    while i < len(text):
        char = text[i]
        if quote is not None:
            if char == "\\" and quote != "`":
                i += 2
                continue
            if char == quote:
                quote = None
        elif char in "'\"`":
            quote = char
        elif char in _OPEN:
            depth.append(_OPEN[char])
        elif char in ")]}":
            if not depth or depth.pop() != char:
                raise InputError(f"{owner}: unbalanced {char!r} in the formula {text!r}.")
        elif char == separator and not depth:
            pieces.append(text[start:i])
            start = i + 1
        i += 1
    if depth or quote is not None:
        raise InputError(f"{owner}: unbalanced brackets or quotes in the formula {text!r}.")
    pieces.append(text[start:])
    return pieces


_F_TERM = re.compile(r"^\s*f\s*\(")
_F_ANYWHERE = re.compile(r"(^|[^\w.])f\s*\(")


def _split_formula(text):
    """(response, fixed-part text, list of f() term texts)."""
    if not isinstance(text, str):
        raise InputError(f"formula must be a string, got {type(text).__name__}.")
    sides = _top_level_split(text, "~", "formula")
    if len(sides) != 2 or not sides[0].strip():
        raise InputError(
            f"formula: expected 'response ~ terms' with one '~', got {text!r} (e.g. "
            "\"cases ~ 1 + income + f(county, model='bym2', graph=W)\")."
        )
    response = sides[0].strip()
    fixed, random = [], []
    for piece in _top_level_split(sides[1], "+", "formula"):
        if not piece.strip():
            raise InputError(f"formula: empty term (a stray '+') in {text!r}.")
        if _F_TERM.match(piece) and piece.strip().endswith(")"):
            # the whole summand must be the one f(...) call
            try:
                node = ast.parse(piece.strip(), mode="eval").body
            except SyntaxError as exc:
                raise InputError(
                    f"formula: cannot parse the term {piece.strip()!r}: {exc}"
                ) from exc
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                random.append((piece.strip(), node))
                continue
        if _F_ANYWHERE.search(piece):
            raise InputError(
                f"formula: the f() term in {piece.strip()!r} must be added on its own "
                "('... + f(column, model=...)'), not subtracted, multiplied or nested."
            )
        fixed.append(piece.strip())
    return response, " + ".join(fixed), random


def _evaluate(node, context, term_text, option):
    try:
        return ast.literal_eval(node)
    except (ValueError, SyntaxError, TypeError):
        pass
    expression = ast.Expression(body=node)
    try:
        return eval(compile(expression, "<formula>", "eval"), dict(context))  # noqa: S307
    except NameError as exc:
        raise InputError(
            f"formula term {term_text!r}: option {option}= refers to {exc.name!r}, which is not "
            "defined where gm.formula was called; define it or pass context={...}."
        ) from exc
    except Exception as exc:
        raise InputError(
            f"formula term {term_text!r}: option {option}= could not be evaluated ({exc})."
        ) from exc


def _column_argument(node, term_text, what):
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    raise InputError(
        f"formula term {term_text!r}: {what} must be a column name, got {ast.unparse(node)!r}."
    )


def _parse_f(text, node, context):
    """(columns, options) of one f(...) term."""
    if node.func.id != "f":
        raise InputError(f"formula: unknown latent term {text!r}; write f(column, model=...).")
    columns = tuple(_column_argument(arg, text, "a positional argument") for arg in node.args)
    if not columns:
        raise InputError(f"formula term {text!r}: f() needs a column, e.g. f(county, model='iid').")
    options = {}
    for keyword in node.keywords:
        if keyword.arg is None:
            raise InputError(f"formula term {text!r}: **kwargs are not supported in f().")
        if keyword.arg in COLUMN_OPTIONS:
            options[keyword.arg] = _column_argument(keyword.value, text, f"{keyword.arg}=")
        else:
            options[keyword.arg] = _evaluate(keyword.value, context, text, keyword.arg)
    model = options.get("model")
    if not isinstance(model, str):
        raise InputError(
            f"formula term {text!r}: give the latent model as model='...', one of "
            f"{sorted(MODEL_OPTIONS)}."
        )
    model = model.lower()
    if model == "matern":
        model = "spde"
    if model not in MODEL_OPTIONS:
        raise InputError(
            f"formula term {text!r}: unknown model {options['model']!r}; known models are "
            f"{sorted(MODEL_OPTIONS)}."
        )
    options["model"] = model
    allowed = COMMON_OPTIONS + MODEL_OPTIONS[model]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise InputError(
            f"formula term {text!r}: unknown option(s) {unknown} for model {model!r}; it takes "
            f"{list(allowed)}."
        )
    spatial = model in ("spde", "matern2d")
    if spatial and len(columns) != 2:
        raise InputError(
            f"formula term {text!r}: model {model!r} takes two coordinate columns, "
            f"f(x, y, model={model!r}, ...); got {len(columns)}."
        )
    if not spatial and len(columns) != 1:
        raise InputError(
            f"formula term {text!r}: model {model!r} takes one column, got {list(columns)}."
        )
    return columns, options


# ---------------------------------------------------------------------------- levels
def _column(data, name, term):
    if name not in data.columns:
        raise InputError(
            f"formula term {term!r}: unknown column {name!r}; the data has columns "
            f"{list(data.columns)}."
        )
    return data[name]


def _integer_valued(values):
    return values.size and np.all(np.isfinite(values)) and np.all(values == np.round(values))


def _check_levels(term, what, model_name, count, source):
    """Refuse a model given fewer levels than it is defined on (:data:`MINIMUM_LEVELS`)."""
    minimum = MINIMUM_LEVELS.get(model_name, 1)
    if count < minimum:
        raise InputError(
            f"formula term {term!r}: {what} needs at least {minimum} levels, {source} gives "
            f"{count}."
        )


def _levels(series, values, ordered, term):
    """(levels as a pandas.Index, integer codes per row with -1 for missing)."""
    pd = _pandas()
    if values is not None:
        levels = pd.Index(list(values))
        if not levels.is_unique:
            raise InputError(f"formula term {term!r}: values= has repeated entries.")
    elif isinstance(series.dtype, pd.CategoricalDtype):
        levels = pd.Index(series.cat.categories)
    else:
        present = series.dropna()
        if ordered:
            try:
                numbers = np.asarray(present, dtype=float)
            except (TypeError, ValueError) as exc:
                raise InputError(
                    f"formula term {term!r}: column {series.name!r} must be numeric (or an "
                    "ordered categorical) for an ordered model; give values= otherwise."
                ) from exc
            if numbers.size == 0:
                raise InputError(f"formula term {term!r}: column {series.name!r} has no values.")
            unique = np.unique(numbers)
            if _integer_valued(unique):
                # every integer in the range is a latent node, observed or not
                levels = pd.Index(np.arange(int(unique[0]), int(unique[-1]) + 1))
            else:
                steps = np.diff(unique)
                if steps.size and np.ptp(steps) > 1e-9 * max(abs(unique).max(), 1.0):
                    raise InputError(
                        f"formula term {term!r}: column {series.name!r} has irregularly spaced "
                        "values; rw1/rw2/ar1 need regular levels — round or bin the column, or "
                        "give values= (the regular grid of levels)."
                    )
                levels = pd.Index(unique)
        else:
            try:
                levels = pd.Index(np.sort(pd.unique(present)))
            except TypeError:
                levels = pd.Index(pd.unique(present))
    codes = _codes(series, levels, term)
    return levels, codes


def _codes(series, levels, term):
    codes = np.asarray(levels.get_indexer(series.to_numpy()), dtype=np.int64)
    missing = series.isna().to_numpy()
    unknown = (codes < 0) & ~missing
    if unknown.any():
        bad = series[unknown].unique()[:5].tolist()
        raise InputError(
            f"formula term {term!r}: column {series.name!r} has values {bad} that are not "
            f"levels of the term (levels: {levels[:8].tolist()}"
            f"{' ...' if levels.size > 8 else ''}); check values= or the graph's area ids."
        )
    return codes


def _one_hot(codes, n, weights=None):
    rows = np.flatnonzero(codes >= 0)
    data = np.ones(rows.size) if weights is None else weights[rows]
    return sp.csr_matrix((data, (rows, codes[rows])), shape=(codes.size, n))


# ---------------------------------------------------------------------------- builders
def _graph_levels(graph_input, series, values, term):
    """(ArealGraph, levels, codes) of a besag/bym2 term."""
    pd = _pandas()
    if graph_input is None:
        raise InputError(f"formula term {term!r}: model needs graph= (an adjacency or W).")
    ids = None
    if type(graph_input).__name__ == "GeoDataFrame" and series.name in graph_input.columns:
        ids = series.name  # the areas are named by the same column of the map
    graph = areal_graph(graph_input, ids=ids, owner=f"formula term {term!r}")
    default_ids = np.array_equal(np.asarray(graph.ids), np.arange(graph.n))
    if values is not None:
        levels = pd.Index(list(values))
    elif not default_ids:
        levels = pd.Index(graph.ids)
    elif isinstance(series.dtype, pd.CategoricalDtype):
        levels = pd.Index(series.cat.categories)
    else:
        present = series.dropna().to_numpy()
        numeric = present.dtype.kind in "iuf"
        if numeric and _integer_valued(np.asarray(present, float)):
            outside = (present < 0) | (present >= graph.n)
            if outside.any():
                raise InputError(
                    f"formula term {term!r}: the graph has {graph.n} areas (node numbers 0.."
                    f"{graph.n - 1}) but column {series.name!r} has values "
                    f"{np.unique(present[outside])[:5].tolist()} outside them; give values= "
                    "listing the areas in the graph's order."
                )
            levels = pd.Index(np.arange(graph.n))  # node numbers 0..n-1
        else:
            levels = pd.Index(np.sort(pd.unique(present)))
    if levels.size != graph.n:
        raise InputError(
            f"formula term {term!r}: the graph has {graph.n} areas but column {series.name!r} "
            f"gives {levels.size} levels; give values= listing the {graph.n} areas in the "
            "graph's order (or a categorical column with those categories)."
        )
    if not levels.is_unique:
        raise InputError(f"formula term {term!r}: the area identifiers are not unique.")
    return graph, levels, _codes(series, levels, term)


def _optional(options, *names):
    return {name: options[name] for name in names if name in options}


def _coordinates(data, columns, term):
    coords = np.column_stack([np.asarray(_column(data, c, term), dtype=float) for c in columns])
    finite = np.all(np.isfinite(coords), axis=1)
    return coords, finite


def _spatial_projection(rows_finite, projection_rows, m):
    """Projection with the rows of observations that have coordinates, zero rows elsewhere."""
    where = np.flatnonzero(rows_finite)
    embed = sp.csr_matrix(
        (np.ones(where.size), (where, np.arange(where.size))), shape=(m, where.size)
    )
    return sp.csr_matrix(embed @ sp.csr_matrix(projection_rows))


def _build_term(data, columns, options, term):
    """(latent model, projection (m × n_block), levels, positions within the block, parts, info)."""
    pd = _pandas()
    model_name = options["model"]
    m = data.shape[0]
    info, parts = {}, {}
    if model_name in ("spde", "matern2d"):
        coords, finite = _coordinates(data, columns, term)
        if not finite.any():
            raise InputError(f"formula term {term!r}: no row has finite coordinates.")
        if model_name == "spde":
            mesh = options.get("mesh")
            if mesh is None:
                distinct = np.unique(coords[finite], axis=0)
                mesh = _models.mesh_from_points(
                    distinct, **_optional(options, "max_area", "min_angle", "extend")
                )
            model = _models.MaternSPDE(mesh, **_optional(options, "prior"))
            local = _models.projection_matrix(model.mesh, coords[finite])
            info["mesh"] = model.mesh
        else:
            if "shape" not in options:
                raise InputError(f"formula term {term!r}: model 'matern2d' needs shape=(m, n).")
            model = _models.Matern2D(options["shape"], **_optional(options, "spacing", "prior"))
            local = _models.lattice_projection(
                model.shape, coords[finite], **_optional(options, "spacing")
            )
            info["shape"] = model.shape
            info["spacing"] = model.spacing
        projection = _spatial_projection(finite, local, m)
        levels = pd.RangeIndex(model.n, name="node")
        return model, projection, levels, np.arange(model.n), parts, info
    series = _column(data, columns[0], term)
    if model_name in ("besag", "bym2"):
        graph, levels, codes = _graph_levels(
            options.get("graph"), series, options.get("values"), term
        )
        info["graph"] = graph
        if model_name == "besag":
            model = _models.Besag(graph.adjacency, **_optional(options, "scale", "prior"))
            positions = np.arange(graph.n)
        else:
            model = _models.BYM2(graph.adjacency, **_optional(options, "prior", "phi0"))
            positions = np.arange(graph.n)
            parts["u"] = np.arange(graph.n, 2 * graph.n)
    else:
        ordered = model_name in ORDERED_MODELS
        levels, codes = _levels(series, options.get("values"), ordered, term)
        n = levels.size
        _check_levels(term, f"model {model_name!r}", model_name, n, f"column {series.name!r}")
        if model_name == "iid":
            model = _models.IID(n, **_optional(options, "prior"))
        elif model_name == "rw1":
            model = _models.RW1(n, **_optional(options, "scale", "prior"))
        elif model_name == "rw2":
            model = _models.RW2(n, **_optional(options, "scale", "prior"))
        else:
            model = _models.AR1(n, **_optional(options, "prior", "rho0"))
        positions = np.arange(n)
    # BYM2: the codes address b (columns 0..n-1) only; u gets no weight in η
    projection = _one_hot(codes, model.n)
    levels = levels.rename(series.name)
    return model, projection, levels, positions, parts, info


class _UnitPrecision(_models.LatentModel):
    """A latent model with its ``log_tau`` fixed at 0 (τ = 1): the group factor of a Kronecker.

    In Q_group ⊗ Q_term only the product of the two precisions is identified, so the
    group model keeps its correlation parameters only (R-INLA's ``control.group``).
    Every method evaluates the wrapped model at θ with log τ = 0 inserted and drops
    the log τ entries of gradients.
    """

    def __init__(self, model):
        names = tuple(model.theta_names)
        self.base = model
        self._k = names.index("log_tau") if "log_tau" in names else None
        keep = [i for i in range(len(names)) if i != self._k]
        self._keep = keep
        self.n = model.n
        self.theta_names = tuple(names[i] for i in keep)
        self.theta0 = np.asarray(model.theta0, float)[keep]
        self.constraints = model.constraints
        self.rank_deficiency = model.rank_deficiency
        self.has_mean = model.has_mean
        self._constraints_span_null_space = model._constraints_span_null_space
        self.priors = tuple(model.priors[i] for i in keep) if len(model.priors) else ()

    def _full(self, theta):
        theta = self.check_theta(theta)
        return theta if self._k is None else np.insert(theta, self._k, 0.0)

    def _drop(self, gradient):
        if gradient is None:
            return None
        return np.asarray(gradient, float).reshape(-1)[self._keep]

    def precision(self, theta):
        return self.base.precision(self._full(theta))

    def precision_grad(self, theta):
        grads = self.base.precision_grad(self._full(theta))
        return [grads[i] for i in self._keep]

    def mean(self, theta):
        return self.base.mean(self._full(theta))

    def mean_grad(self, theta):
        grad = np.asarray(self.base.mean_grad(self._full(theta)), float)
        return grad.reshape(-1, self.n)[self._keep]

    def logdet(self, theta):
        return self.base.logdet(self._full(theta))

    def logdet_grad(self, theta):
        return self._drop(self.base.logdet_grad(self._full(theta)))

    def constrained_logdet(self, theta):
        return self.base.constrained_logdet(self._full(theta))

    def constrained_logdet_grad(self, theta):
        return self._drop(self.base.constrained_logdet_grad(self._full(theta)))

    def log_prior(self, theta):
        return self.base.log_prior(self._full(theta))

    def log_prior_grad(self, theta):
        return self._drop(self.base.log_prior_grad(self._full(theta)))

    def to_natural(self, theta):
        natural = dict(self.base.to_natural(self._full(theta)))
        natural.pop("tau", None)
        return natural


def _group(data, options, model, projection, levels, positions, term):
    """Kronecker block Q_group ⊗ Q_term and its projection, x[t * n_term + j]."""
    pd = _pandas()
    group_column = options["group"]
    if options["model"] == "bym2":
        raise InputError(
            f"formula term {term!r}: group= is not available for bym2 (the Kronecker product "
            "has no analytic constrained log-determinant); use model='besag' with group=, "
            "plus an iid term for the unstructured part."
        )
    group_model = str(options.get("group_model", "ar1")).lower()
    if group_model not in GROUP_MODELS:
        raise InputError(
            f"formula term {term!r}: unknown group_model {options.get('group_model')!r}; "
            f"known: {list(GROUP_MODELS)}."
        )
    series = _column(data, group_column, term)
    group_levels, group_codes = _levels(series, None, group_model in ORDERED_MODELS, term)
    nt = group_levels.size
    _check_levels(term, f"group_model {group_model!r}", group_model, nt, f"column {group_column!r}")
    factory = {"ar1": _models.AR1, "rw1": _models.RW1, "rw2": _models.RW2, "iid": _models.IID}
    group = _UnitPrecision(factory[group_model](nt))
    kron = _models.Kronecker(group, model, labels=("group", "main"))
    ns = model.n
    coo = sp.coo_matrix(projection)
    keep = group_codes[coo.row] >= 0
    rows, cols = coo.row[keep], coo.col[keep] + group_codes[coo.row[keep]] * ns
    full = sp.csr_matrix((coo.data[keep], (rows, cols)), shape=(projection.shape[0], kron.n))
    index = pd.MultiIndex.from_product(
        [group_levels.rename(group_column), levels], names=[group_column, levels.name]
    )
    new_positions = (np.arange(nt)[:, None] * ns + np.asarray(positions)[None, :]).ravel()
    return kron, full, index, new_positions, group_levels


# ------------------------------------------------------------------------------- family
def _numbers(data, value, what, owner):
    """A per-row array from a column name, an array or a scalar."""
    if value is None:
        return None
    if isinstance(value, str):
        if value not in data.columns:
            raise InputError(
                f"{owner}: {what}={value!r} is not a column of the data; columns are "
                f"{list(data.columns)}."
            )
        series = data[value]
        try:
            return np.asarray(series, dtype=float)
        except (TypeError, ValueError) as exc:
            raise InputError(f"{owner}: column {value!r} ({what}) must be numeric.") from exc
    try:
        array = np.asarray(value, dtype=float)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{owner}: {what} must be a column name, an array or a number.") from exc
    if array.ndim == 0:
        return np.full(data.shape[0], float(array))
    if array.shape != (data.shape[0],):
        raise InputError(
            f"{owner}: {what} has shape {array.shape}; the data has {data.shape[0]} rows."
        )
    return array


def _likelihood(family, y, response, data, exposure, trials, scale, family_options):
    owner = f"formula (family {family!r}, response {response!r})"
    options = dict(family_options or {})
    if family not in ("poisson", "nbinomial") and exposure is not None:
        raise InputError(
            f"{owner}: exposure= applies to the poisson and nbinomial families; use offset= "
            "for an additive term in η."
        )
    if family != "binomial" and trials is not None:
        raise InputError(f"{owner}: trials= applies to the binomial family only.")
    if family != "gaussian" and scale is not None:
        raise InputError(f"{owner}: scale= applies to the gaussian family only.")
    observed = ~np.isnan(y)
    if family in ("poisson", "nbinomial", "binomial"):
        values = y[observed]
        if np.any(values < 0):
            i = int(np.flatnonzero(observed)[np.argmax(values < 0)])
            raise InputError(
                f"{owner}: counts must be >= 0, but column {response!r} has {y[i]:g} at row "
                f"{i}; the {family} family models non-negative integer counts."
            )
        if np.any(values != np.round(values)):
            i = int(np.flatnonzero(observed)[np.argmax(values != np.round(values))])
            raise InputError(
                f"{owner}: counts must be integers, but column {response!r} has {y[i]:g} at row "
                f"{i}."
            )
    exposure_values = _numbers(data, exposure, "exposure", owner)
    trials_values = _numbers(data, trials, "trials", owner)
    scale_values = _numbers(data, scale, "scale", owner)
    if family == "binomial":
        if trials_values is None:
            raise InputError(f"{owner}: the binomial family needs trials= (a column or number).")
        too_many = observed & (np.nan_to_num(y) > np.nan_to_num(trials_values, nan=np.inf))
        if too_many.any():
            i = int(np.argmax(too_many))
            raise InputError(
                f"{owner}: successes exceed trials at row {i}: {response!r} = {y[i]:g} > "
                f"trials {trials_values[i]:g}."
            )
    try:
        if family == "gaussian":
            return _likelihoods.Gaussian(y, scale=scale_values, **options)
        if family == "poisson":
            return _likelihoods.Poisson(y, exposure=exposure_values, **options)
        if family == "nbinomial":
            return _likelihoods.NegativeBinomial(y, exposure=exposure_values, **options)
        if family == "binomial":
            return _likelihoods.Binomial(y, trials_values, **options)
        return _likelihoods.Bernoulli(y, **options)
    except TypeError as exc:
        raise InputError(f"{owner}: bad family_options {sorted(options)} ({exc}).") from exc
    except InputError as exc:
        raise InputError(f"{owner}: {exc}") from exc


# ------------------------------------------------------------------------------ fixed part
def _design(fixed_text, data, context):
    """(X as float array (m, p), names, dropped names) from formulaic."""
    try:
        import formulaic
    except ImportError as exc:  # pragma: no cover - optional extra
        raise InputError(
            "gm.formula needs formulaic for the fixed effects: pip install 'gmrf_core[frame]'."
        ) from exc
    spec = fixed_text if fixed_text.strip() else "1"
    try:
        matrix = formulaic.model_matrix(spec, data, context=context, na_action="raise")
    except formulaic.errors.FactorEvaluationError as exc:
        raise InputError(
            f"formula: the fixed part {spec!r} could not be evaluated: {exc} (unknown column "
            f"or function); the data has columns {list(data.columns)}."
        ) from exc
    except ValueError as exc:
        raise InputError(
            f"formula: the fixed part {spec!r}: {exc} Remove or impute the missing covariate "
            "values (only the response may be missing)."
        ) from exc
    except formulaic.errors.FormulaicError as exc:
        raise InputError(f"formula: the fixed part {spec!r} is not valid: {exc}") from exc
    names = [str(c) for c in matrix.columns]
    X = np.asarray(matrix, dtype=float).reshape(data.shape[0], len(names))
    if not np.all(np.isfinite(X)):
        bad = [names[j] for j in range(X.shape[1]) if not np.all(np.isfinite(X[:, j]))]
        raise InputError(f"formula: fixed-effect columns {bad} have NaN or infinite values.")
    zero = np.all(X == 0.0, axis=0)
    dropped = tuple(n for n, z in zip(names, zero) if z)
    keep = ~zero
    return X[:, keep], tuple(n for n, k in zip(names, keep) if k), dropped


# ------------------------------------------------------------------------------- entry
def formula(
    formula,
    data,
    family="gaussian",
    *,
    exposure=None,
    offset=None,
    trials=None,
    scale=None,
    family_options=None,
    context=None,
    fixed_precision=1e-3,
    **model_options,
):
    """Build a :class:`~gmrf_core.LatentGaussianModel` from a formula and a data frame.

    Parameters
    ----------
    formula : str
        ``"response ~ fixed part + f(column, model=..., ...) + ..."`` (see the module
        docstring for the fixed part, the models and their options).
    data : pandas.DataFrame (or GeoDataFrame, or a dict of columns)
        One row per observation.
    family : str
        ``"gaussian"``, ``"poisson"``, ``"binomial"``, ``"bernoulli"`` or ``"nbinomial"``.
    exposure : str or array_like, optional
        Poisson/nbinomial exposure E (μ = E exp η): a column name or values.
    offset : str or array_like, optional
        Added to η: a column name or values.
    trials : str, array_like or int, optional
        Binomial numbers of trials.
    scale : str or array_like, optional
        Gaussian per-observation precision scales.
    family_options : dict, optional
        Keyword arguments of the likelihood (e.g. ``{"prior": PCPrecision(1, 0.01)}``).
    context : dict, optional
        Names that f() options (``graph=W``) and the fixed part may refer to; default
        the caller's globals and locals.
    fixed_precision : float
        Prior precision of each fixed effect (default 1e-3, as R-INLA).
    **model_options
        Passed to :class:`~gmrf_core.LatentGaussianModel` (``ordering``, ``threads``,
        ``newton_tol``, ``max_newton``).

    Returns
    -------
    LatentGaussianModel
        With ``model.terms`` (:class:`FormulaTerms`) describing where each term sits.

    Raises
    ------
    InputError
        An unknown column (named), an unknown model or family, an unknown f() option, a
        graph whose number of areas differs from the term's levels, a family/response
        mismatch (negative or non-integer counts, successes above trials, non-binary
        Bernoulli data), missing covariates, a malformed formula, repeated term names.
    """
    pd = _pandas()
    if context is None:
        caller = sys._getframe(1)
        context = {**caller.f_globals, **caller.f_locals}
    elif not isinstance(context, dict):
        raise InputError(f"formula: context must be a dict, got {type(context).__name__}.")
    if isinstance(data, dict):
        data = pd.DataFrame(data)
    if not isinstance(data, pd.DataFrame):
        raise InputError(f"formula: data must be a pandas DataFrame, got {type(data).__name__}.")
    if data.shape[0] == 0:
        raise InputError("formula: the data frame has no rows.")
    family_key = str(family).lower()
    if family_key not in FAMILIES:
        raise InputError(
            f"formula: unknown family {family!r}; known families are "
            f"{sorted(set(FAMILIES.values()))}."
        )
    family = FAMILIES[family_key]
    response, fixed_text, random_terms = _split_formula(formula)
    if response not in data.columns:
        raise InputError(
            f"formula: unknown response column {response!r}; the data has columns "
            f"{list(data.columns)}."
        )
    try:
        y = np.asarray(data[response], dtype=float)
    except (TypeError, ValueError) as exc:
        raise InputError(f"formula: the response column {response!r} must be numeric.") from exc

    blocks, projections, labels, pending = [], [], [], []
    for text, node in random_terms:
        columns, options = _parse_f(text, node, context)
        label = str(options.get("name") or columns[0])
        if "group" in options and "name" not in options:
            label = f"{columns[0]}:{options['group']}"
        if label in labels:
            raise InputError(
                f"formula: two f() terms are called {label!r}; give one of them name='...'."
            )
        try:
            model, projection, levels, positions, parts, info = _build_term(
                data, columns, options, text
            )
            if "group" in options:
                model, projection, levels, positions, group_levels = _group(
                    data, options, model, projection, levels, positions, text
                )
                info["group"] = options["group"]
                info["group_levels"] = group_levels
                parts = {}
        except GMRFError as exc:
            if str(exc).startswith("formula"):
                raise
            raise InputError(f"formula term {text!r}: {exc}") from exc
        if options.get("weights") is not None:
            weights = _numbers(data, options["weights"], "weights", f"formula term {text!r}")
            if not np.all(np.isfinite(weights)):
                raise InputError(f"formula term {text!r}: weights must be finite.")
            projection = sp.csr_matrix(sp.diags(weights) @ projection)
        blocks.append(model)
        projections.append(sp.csr_matrix(projection))
        labels.append(label)
        pending.append((label, options["model"], columns, levels, positions, parts, info))

    X, fixed_names, dropped = _design(fixed_text, data, context)
    likelihood = _likelihood(family, y, response, data, exposure, trials, scale, family_options)
    offset_values = _numbers(data, offset, "offset", "formula")
    if offset_values is not None and not np.all(np.isfinite(offset_values)):
        raise InputError("formula: offset has NaN or infinite values.")

    if blocks:
        prior = _models.Stack(blocks, labels=labels)
        A = sp.csr_matrix(sp.hstack(projections))
        fixed_positions = prior.n + np.arange(X.shape[1])
        design = X if X.shape[1] else None
    elif X.shape[1]:
        # no f() term: an empty prior, the fixed effects (X=) are the whole latent vector
        prior = _models.Stack([])
        A = sp.csr_matrix((X.shape[0], 0))
        fixed_positions = np.arange(X.shape[1])
        design = X
    else:
        raise InputError(f"formula: {formula!r} has no terms (no fixed effects and no f()).")
    known = set(inspect.signature(LatentGaussianModel).parameters) - {
        "prior",
        "likelihood",
        "A",
        "X",
        "offset",
        "fixed_precision",
    }
    unknown = sorted(set(model_options) - known)
    if unknown:
        raise InputError(
            f"formula: unknown keyword argument(s) {unknown}; besides the formula's own it "
            f"takes the model options {sorted(known)}."
        )
    model = LatentGaussianModel(
        prior,
        likelihood,
        A=A,
        X=design,
        offset=offset_values,
        fixed_precision=fixed_precision,
        **model_options,
    )
    terms = {}
    for index, (label, name, columns, levels, positions, parts, info) in enumerate(pending):
        block = prior.slices[index]
        theta_slice = prior.theta_slices[index]
        terms[label] = Term(
            name=label,
            model=name,
            columns=tuple(columns),
            levels=levels,
            positions=block.start + np.asarray(positions, dtype=np.int64),
            block=block,
            theta_names=tuple(prior.theta_names[theta_slice]),
            parts={key: block.start + np.asarray(v) for key, v in parts.items()},
            info=info,
        )
    model.terms = FormulaTerms(
        formula=formula,
        response=response,
        family=family,
        fixed_names=fixed_names,
        fixed_positions=np.asarray(fixed_positions, dtype=np.int64),
        terms=terms,
        dropped_fixed=dropped,
        index=data.index,
    )
    model.fixed_names = fixed_names
    return model


# ------------------------------------------------------------------------------- tables
def _terms_of(model):
    terms = getattr(model, "terms", None)
    if not isinstance(terms, FormulaTerms):
        raise InputError(
            "this model was not built by gm.formula (it has no .terms); latent blocks have no "
            "names to look up."
        )
    return terms


def _is_inla(result):
    return hasattr(result, "latent_mean") and hasattr(result, "latent_quantiles")


def posterior_summaries(result, model, positions):
    """(mean, sd, quantiles (3, k)) of the entries ``positions`` of z = (x, β).

    From an INLA result: its posterior means, sds and mixture quantiles integrated over
    θ (``latent_mean``, ``latent_sd``, ``latent_quantiles`` for x; the ``fixed`` table
    for β). From a FitResult or LaplaceApproximation: the Gaussian approximation at θ̂,
    N(mode, marginal_sd²), and its quantiles.

    Raises
    ------
    InputError
        If the result is none of these, or its vectors do not match the model.
    """
    from scipy.stats import norm

    positions = np.asarray(positions, dtype=np.int64)
    levels = np.asarray(QUANTILES)
    if _is_inla(result):
        n_latent = model.n_latent
        latent_mean = np.asarray(result.latent_mean, float).reshape(-1)
        if latent_mean.size != n_latent:
            raise InputError(
                f"the result has {latent_mean.size} latent means for a model with {n_latent} "
                "latent variables; was it computed for this model?"
            )
        mean = np.empty(positions.size)
        sd = np.empty(positions.size)
        quantiles = np.empty((levels.size, positions.size))
        inside = positions < n_latent
        if inside.any():
            where = positions[inside]
            mean[inside] = latent_mean[where]
            sd[inside] = np.asarray(result.latent_sd, float).reshape(-1)[where]
            q = np.asarray(result.latent_quantiles(list(levels)), float)
            quantiles[:, inside] = q.reshape(levels.size, n_latent)[:, where]
        if (~inside).any():
            fixed = np.asarray(result.fixed, dtype=float).reshape(model.n_fixed, -1)
            rows = positions[~inside] - n_latent
            mean[~inside] = fixed[rows, 0]
            sd[~inside] = fixed[rows, 1]
            quantiles[:, ~inside] = fixed[rows, 2:5].T
        return mean, sd, quantiles
    if hasattr(result, "mode") and hasattr(result, "marginal_sd"):
        mode = np.asarray(result.mode, float).reshape(-1)
        marginal_sd = result.marginal_sd
        marginal_sd = np.asarray(
            marginal_sd() if callable(marginal_sd) else marginal_sd, float
        ).reshape(-1)
    else:
        raise InputError(
            f"cannot read posterior summaries from a {type(result).__name__}; pass a "
            "FitResult, an INLA result or a LaplaceApproximation."
        )
    if mode.size != model.n_total or marginal_sd.size != model.n_total:
        raise InputError(
            f"the result has {mode.size} latent values for a model with {model.n_total} "
            "latent variables (x, β); was it computed for this model?"
        )
    mean, sd = mode[positions], marginal_sd[positions]
    return mean, sd, mean[None, :] + norm.ppf(levels)[:, None] * sd[None, :]


def _table(mean, sd, quantiles, index):
    pd = _pandas()
    frame = pd.DataFrame({"mean": mean, "sd": sd}, index=index)
    for level, values in zip(QUANTILES, quantiles):
        frame[f"q{level:g}"] = values
    return frame


def latent_table(result, model, term, part=None):
    """Posterior summaries of one f() term, indexed by the term's levels.

    Columns ``mean sd q0.025 q0.5 q0.975`` (see :func:`posterior_summaries`: integrated
    over θ for an INLA result, the Gaussian approximation at θ̂ for a FitResult).

    Parameters
    ----------
    result : FitResult, INLA result or LaplaceApproximation
    model : LatentGaussianModel
        Built by :func:`formula`.
    term : str
        Term name (as in ``model.terms.terms``).
    part : str, optional
        Another set of positions of the term (BYM2: ``"u"``, the structured effect).

    Returns
    -------
    pandas.DataFrame

    Raises
    ------
    InputError
        Unknown term or part, a model not built by :func:`formula`.
    """
    terms = _terms_of(model)
    info = terms.term(term)
    positions = info.positions
    if part is not None:
        if part not in info.parts:
            raise InputError(
                f"term {term!r} has no part {part!r}; its parts are {sorted(info.parts)}."
            )
        positions = info.parts[part]
    return _table(*posterior_summaries(result, model, positions), info.levels)


def fixed_table(result, model):
    """Posterior summaries of the fixed effects, indexed by their names (columns as above)."""
    terms = _terms_of(model)
    pd = _pandas()
    summaries = posterior_summaries(result, model, terms.fixed_positions)
    return _table(*summaries, pd.Index(terms.fixed_names, name="fixed effect"))


def linear_predictor_table(approximation, model):
    """Mean and sd of η (offset included) for every observation, under a Laplace approximation.

    Parameters
    ----------
    approximation : LaplaceApproximation
        E.g. ``model.laplace(result.theta)``.
    model : LatentGaussianModel

    Returns
    -------
    pandas.DataFrame
        Indexed like the data frame (when the model came from :func:`formula`).
    """
    from scipy.stats import norm

    mean = np.asarray(approximation.linear_predictor, float)
    sd = np.sqrt(np.maximum(np.asarray(approximation.linear_predictor_variance(), float), 0.0))
    terms = getattr(model, "terms", None)
    index = terms.index if isinstance(terms, FormulaTerms) else None
    quantiles = mean[None, :] + norm.ppf(np.asarray(QUANTILES))[:, None] * sd[None, :]
    return _table(mean, sd, quantiles, index)
