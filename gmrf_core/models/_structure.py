"""Shared machinery of the latent models: fixed sparsity patterns, graphs, intrinsic structures.

- :class:`LinearPrecision`: Q(θ) = Σ_j c_j(θ) B_j on a fixed pattern, with
  dQ/dθ_k = Σ_j (∂c_j/∂θ_k) B_j.
- :func:`adjacency_matrix`: validation of graphs given as sparse/dense adjacency
  matrices or neighbour lists.
- :func:`intrinsic_structure`, :func:`graph_scaling`: exact marginal variances of
  the constrained model and generalised log-determinant of an intrinsic structure
  matrix R with a known null space (for Sørbye & Rue 2014 scaling), from the
  library's sparse Cholesky factorization and selected inversion of a grounded R.
"""

import math

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from ..errors import InputError, NotPositiveDefiniteError, NotSymmetricError
from ..linalg import analyze, as_csc
from ..pattern import FixedPattern
from ..validation import check_positive
from .base import LatentModel


class LinearPrecision:
    """Q(θ) = Σ_j c_j B_j on a fixed pattern, for fixed sparse matrices B_j.

    Parameters
    ----------
    terms : sequence of scipy.sparse matrices
        The fixed matrices B_j (n × n).
    n : int
        Matrix size.
    """

    def __init__(self, terms, n):
        self.pattern = FixedPattern(terms, n)
        # filled row by row: a stacked copy would double the peak memory of large models
        self.basis = np.empty((len(terms), self.pattern.nnz))
        for row, term in zip(self.basis, terms):
            row[:] = self.pattern.data_of(term)

    def matrix(self, coefficients):
        """Σ_j coefficients[j] B_j on the fixed pattern."""
        return self.pattern.matrix(np.asarray(coefficients, dtype=float) @ self.basis)

    def matrices(self, coefficient_jacobian):
        """[Σ_j J[j, k] B_j for k] for J = ∂c/∂θ of shape (n_terms, p)."""
        jacobian = np.asarray(coefficient_jacobian, dtype=float)
        return [self.pattern.matrix(jacobian[:, k] @ self.basis) for k in range(jacobian.shape[1])]


def checked_exp(value, owner, name):
    """exp(value), or InputError when it would overflow or underflow (|value| > 700)."""
    if abs(value) > 700.0:
        raise InputError(
            f"{owner}: hyperparameter {name} = {value} is too large in magnitude (its "
            "exponential overflows or underflows); keep |value| <= 700."
        )
    return math.exp(value)


def check_finite_matrix(matrix, owner):
    """Raise InputError if a model matrix has a non-finite entry (hyperparameter overflow)."""
    if not np.all(np.isfinite(matrix.data)):
        raise InputError(
            f"{owner}: the precision matrix overflowed (non-finite entries) at these "
            "hyperparameters; use hyperparameters of moderate size."
        )
    return matrix


# -- graphs -------------------------------------------------------------------------------


def adjacency_matrix(adjacency, owner):
    """Validate a graph and return its adjacency as a CSR matrix of 0/1 floats.

    Parameters
    ----------
    adjacency : scipy.sparse matrix, numpy array, or sequence of neighbour lists
        A square symmetric 0/1 matrix with a zero diagonal, or a list whose entry i
        lists the neighbours of node i (0-based, each edge listed in both directions).
    owner : str
        Model name used in error messages.

    Raises
    ------
    InputError
        Not square, malformed sparse index arrays (through
        :func:`gmrf_core.linalg.as_csc`), entries other than 0/1, self-loops,
        neighbours out of range or repeated, NaN/inf.
    NotSymmetricError
        Edge i–j present without j–i.
    """
    if sp.issparse(adjacency) or isinstance(adjacency, np.ndarray):
        if adjacency.ndim != 2 or adjacency.shape[0] != adjacency.shape[1]:
            raise InputError(
                f"{owner}: the adjacency matrix must be square, got shape {adjacency.shape}."
            )
        # index structure validated before scipy or a kernel reads it
        matrix = as_csc(adjacency, f"{owner}: the adjacency matrix").tocsr()
        matrix.eliminate_zeros()
        if not np.all(np.isfinite(matrix.data)):
            raise InputError(f"{owner}: the adjacency matrix has NaN or inf entries.")
        if np.any(matrix.data != 1.0):
            raise InputError(
                f"{owner}: the adjacency matrix must contain only 0 and 1 (unweighted graph), "
                f"found values {np.unique(matrix.data[matrix.data != 1.0])[:5]}."
            )
    else:
        try:
            neighbours = [list(nbrs) for nbrs in adjacency]
        except TypeError as exc:
            raise InputError(
                f"{owner}: adjacency must be a scipy.sparse matrix, a numpy array, or a list of "
                f"neighbour lists, got {type(adjacency).__name__}."
            ) from exc
        n = len(neighbours)
        rows, cols = [], []
        for i, nbrs in enumerate(neighbours):
            for j in nbrs:
                if isinstance(j, bool) or not isinstance(j, (int, np.integer)):
                    raise InputError(
                        f"{owner}: neighbour lists must hold integer node indices, got {j!r} "
                        f"for node {i}."
                    )
                if not 0 <= j < n:
                    raise InputError(f"{owner}: node {i} lists neighbour {j}, outside 0..{n - 1}.")
            if len(set(int(j) for j in nbrs)) != len(nbrs):
                raise InputError(f"{owner}: node {i} lists a neighbour more than once.")
            rows.extend([i] * len(nbrs))
            cols.extend(int(j) for j in nbrs)
        matrix = sp.csr_matrix(
            (
                np.ones(len(rows)),
                (np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)),
            ),
            shape=(n, n),
        )
    n = matrix.shape[0]
    if n < 1:
        raise InputError(f"{owner}: the graph must have at least one node.")
    if np.any(matrix.diagonal() != 0):
        node = int(np.flatnonzero(matrix.diagonal())[0])
        raise InputError(f"{owner}: node {node} is its own neighbour (self-loop); remove it.")
    asymmetric = abs(matrix - matrix.T)
    asymmetric.eliminate_zeros()
    if asymmetric.nnz:
        coo = asymmetric.tocoo()
        raise NotSymmetricError(
            f"{owner}: the graph is not symmetric: edge {int(coo.row[0])}-{int(coo.col[0])} is "
            "listed in one direction only; list every edge in both directions."
        )
    matrix.sort_indices()
    return matrix


def graph_components(adjacency):
    """Connected components of a graph: list of sorted node-index arrays, in order of first node."""
    _, labels = connected_components(adjacency, directed=False)
    order = np.argsort(labels, kind="stable")
    splits = np.flatnonzero(np.diff(labels[order])) + 1
    components = np.split(order, splits)
    components.sort(key=lambda nodes: int(nodes[0]))
    return components


def laplacian(adjacency):
    """The graph Laplacian D - W of a 0/1 adjacency matrix (CSC)."""
    degree = np.asarray(adjacency.sum(axis=1)).ravel()
    return sp.csc_matrix(sp.diags(degree) - adjacency)


# -- intrinsic structures ----------------------------------------------------------------------
#
# An intrinsic structure R (symmetric positive semidefinite, null space spanned exactly by the
# columns of V, n × k) is handled through a grounded matrix: fix a set S of k nodes with V_S
# nonsingular; G = R_{-S,-S} is then positive definite. The Gaussian x_g with x_S = 0 and
# x_{-S} ~ N(0, G⁻¹) differs from the constrained model x ~ N(0, R⁻) | Vᵀx = 0 by a shift in the
# null space, so the constrained model is the projection x = P x_g, P = I - V̂V̂ᵀ (V̂ an
# orthonormal basis of span V), with covariance R⁺ = P Σ_g P (Σ_g = G⁻¹ padded with zeros; Rue
# & Held 2005, Sections 2.3.3 and 3.2). Hence
#
#     diag(R⁺) = diag(Σ_g) - 2 rowsum(V̂ ⊙ Σ_g V̂) + rowsum((V̂ V̂ᵀΣ_gV̂) ⊙ V̂),
#
# with diag(Σ_g) from the library's selected inversion of G and Σ_g V̂ from k solves, and
#
#     |R|* = det(G) det(VᵀV) / det(V_S)²
#
# (the Jacobian between the two parameterisations of R^n / span V; for a connected graph
# Laplacian, V = 1 and any single grounded node, this is Kirchhoff's matrix-tree theorem
# |R|* = n · #spanning trees). The geometric mean of diag(R⁺) is the Sørbye & Rue (2014)
# generalised variance used for scaling.


def _grounded_factor(grounded_matrix, owner, k, ordering="auto"):
    """Cholesky factor of the grounded matrix G, or InputError when G is not positive definite."""
    try:
        return analyze(grounded_matrix, ordering=ordering).factorize(grounded_matrix)
    except NotPositiveDefiniteError as exc:
        raise InputError(
            f"{owner}: the structure matrix is not positive semidefinite with the expected null "
            f"space of dimension {k}."
        ) from exc


def intrinsic_structure(structure, null_space, owner, grounded=None, variances=True):
    """Marginal variances of the constrained model and log|R|* of an intrinsic structure R.

    For a symmetric positive semidefinite R whose null space is spanned exactly by the
    columns of ``null_space`` (V, shape (n, k)), the constrained model
    x ~ N(0, R⁻) | Vᵀx = 0 has covariance R⁺ (the Moore–Penrose inverse), whose diagonal
    is returned together with the generalised log-determinant
    log|R|* = Σ log λ_i over the nonzero eigenvalues (Rue & Held 2005, Chapter 3).

    Both come from one sparse Cholesky factorization of the grounded matrix
    G = R_{-S,-S} (:func:`gmrf_core.analyze`), its selected inverse (the diagonal of
    G⁻¹) and k solves: diag(R⁺) = diag(P Σ_g P) with P = I - V̂V̂ᵀ, and
    |R|* = det(G) det(VᵀV) / det(V_S)² (see the comment above this function).

    Parameters
    ----------
    structure : scipy.sparse matrix, shape (n, n)
        R, symmetric positive semidefinite.
    null_space : numpy.ndarray, shape (n, k)
        Basis of the null space of R (k >= 1, k < n).
    owner : str
        Model name for error messages.
    grounded : array_like of int, optional
        The k nodes S, factorized in the natural order (for chains already banded:
        grounding the last k nodes of a random walk makes the factor of G the
        transposed integer difference operator, computed without rounding). Default:
        the nodes where V̂ is best conditioned (pivoted QR), with a fill-reducing
        ordering.
    variances : bool
        Compute diag(R⁺) (default); False returns ``(None, log_pdet)`` after the
        factorization alone.

    Returns
    -------
    marginal_variances : numpy.ndarray of shape (n,), or None
        diag(R⁺).
    log_pdet : float
        log|R|*.

    Raises
    ------
    InputError
        If the null-space basis is not in the null space of R, or R is not positive
        semidefinite with exactly that null space.
    """
    structure, basis, orthonormal = _null_basis(structure, null_space, owner)
    n, k = basis.shape
    if not 1 <= k < n:
        raise InputError(f"{owner}: the null space must have dimension in [1, {n - 1}], got {k}.")
    if grounded is None:
        grounded, ordering = _grounded_nodes(orthonormal), "auto"
    else:
        grounded, ordering = np.asarray(grounded, dtype=np.int64).reshape(-1), "natural"
    keep = np.setdiff1d(np.arange(n), grounded)
    factor = _grounded_factor(sp.csc_matrix(structure[keep][:, keep]), owner, k, ordering)
    log_pdet = _pdet_from_grounded(factor.logdet(), basis, grounded)
    if not variances:
        return None, log_pdet
    grounded_variances = np.zeros(n)
    grounded_variances[keep] = factor.selected_inverse().diag()
    sigma_v = np.zeros((n, k))
    sigma_v[keep] = factor.solve(orthonormal[keep]).reshape(keep.size, k)
    vt_sigma_v = orthonormal.T @ sigma_v
    result = (
        grounded_variances
        - 2.0 * np.sum(orthonormal * sigma_v, axis=1)
        + np.sum((orthonormal @ vt_sigma_v) * orthonormal, axis=1)
    )
    _check_variances(result, owner, k)
    return result, log_pdet


def _null_basis(structure, null_space, owner):
    """(R as CSC, V, orthonormal V̂), after checking that R V = 0."""
    structure = sp.csc_matrix(structure, dtype=float)
    n = structure.shape[0]
    basis = np.asarray(null_space, dtype=float).reshape(n, -1)
    residual = np.abs(structure @ basis).max() if structure.nnz else 0.0
    if residual > 1e-8 * max(np.abs(structure.data).max(initial=0.0), 1.0) * np.abs(basis).max():
        raise InputError(
            f"{owner}: the given null-space basis is not in the null space of the structure "
            f"matrix (max |R V| = {residual:.3g})."
        )
    orthonormal, _ = np.linalg.qr(basis)
    return structure, basis, orthonormal


def _grounded_nodes(orthonormal):
    """The k nodes where the null-space basis is best conditioned (pivoted QR of V̂ᵀ)."""
    k = orthonormal.shape[1]
    _, _, pivots = sla.qr(orthonormal.T, pivoting=True, mode="economic")
    return np.sort(pivots[:k])


def _pdet_from_grounded(log_det_grounded, basis, grounded):
    """|R|* = det(G) det(VᵀV) / det(V_S)², in logs (see :func:`intrinsic_structure`)."""
    _, log_det_gram = np.linalg.slogdet(basis.T @ basis)
    _, log_det_vs = np.linalg.slogdet(basis[grounded])
    return log_det_grounded + log_det_gram - 2.0 * log_det_vs


def structure_log_pdet(structure, null_space, owner, grounded=None):
    """log|R|* only (no marginal variances): one factorization of the grounded matrix.

    Same identity as :func:`intrinsic_structure`, |R|* = det(G) det(VᵀV)/det(V_S)².

    Raises
    ------
    InputError
        If R is not positive semidefinite with exactly that null space.
    """
    return intrinsic_structure(structure, null_space, owner, grounded, variances=False)[1]


def _check_variances(variances, owner, k):
    if not np.all(np.isfinite(variances)) or np.any(variances <= 0):
        raise InputError(
            f"{owner}: the structure matrix is not positive semidefinite with the expected "
            f"null space of dimension {k} (non-positive constrained marginal variance)."
        )


def graph_scaling(laplacian_matrix, components, owner, scale):
    """Sørbye–Rue scaling of a graph Laplacian, every connected component at once.

    The Laplacian R = D - W of a graph whose connected components (of two or more
    nodes each) are ``components`` has null space spanned by their indicator vectors.
    Grounding the first node of every component gives a block-diagonal positive
    definite G, factorized once; since V_c = 1_c, the formula of
    :func:`intrinsic_structure` becomes, for node i of component c with n_c nodes and
    w = Σ_g 1 (one solve),

        diag(R⁺)_i = (Σ_g)_ii - 2 w_i / n_c + (Σ_{j∈c} w_j) / n_c²,

    and |R_c|* = n_c det(G_c). With c_c the geometric mean of diag(R⁺) on component c
    (Sørbye & Rue 2014), R*_c = c_c R_c and log|R*_c|* = log|R_c|* + (n_c - 1) log c_c.

    Parameters
    ----------
    laplacian_matrix : scipy.sparse matrix, shape (n, n)
        D - W (rows of nodes outside ``components`` are ignored).
    components : list of numpy.ndarray
        Node indices of each component (two or more nodes each).
    owner : str
        Model name for error messages.
    scale : bool
        Compute the scaling factors (needs the selected inverse); else only log|R|*.

    Returns
    -------
    factors : numpy.ndarray, shape (len(components),)
        c_c (ones when ``scale`` is False).
    log_pdet : float
        Σ_c log|R*_c|* (unscaled: Σ_c log|R_c|*).
    """
    count = len(components)
    if count == 0:
        return np.ones(0), 0.0
    sizes = np.array([nodes.size for nodes in components], dtype=np.int64)
    nodes = np.concatenate(components)
    labels = np.repeat(np.arange(count), sizes)
    first = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    free = np.ones(nodes.size, dtype=bool)
    free[first] = False  # the grounded node of each component
    keep, keep_labels = nodes[free], labels[free]
    laplacian_matrix = sp.csc_matrix(laplacian_matrix)
    grounded = sp.csc_matrix(laplacian_matrix[keep][:, keep])
    factor = _grounded_factor(grounded, owner, count)
    log_pdet = factor.logdet() + float(np.sum(np.log(sizes)))
    if not scale:
        return np.ones(count), log_pdet
    diagonal = factor.selected_inverse().diag()
    w = factor.solve(np.ones(keep.size))
    sums = np.bincount(keep_labels, weights=w, minlength=count)
    variances = np.full(nodes.size, 0.0)
    variances[free] = diagonal - 2.0 * w / sizes[keep_labels]
    variances += sums[labels] / sizes[labels] ** 2.0
    _check_variances(variances, owner, count)
    log_factors = np.bincount(labels, weights=np.log(variances), minlength=count) / sizes
    log_pdet += float(np.sum((sizes - 1) * log_factors))
    return np.exp(log_factors), log_pdet


class IntrinsicStructureModel(LatentModel):
    """Q = τ R* for a fixed (optionally scaled) intrinsic structure R*; θ = (log τ,).

    Shared by :class:`~gmrf_core.models.RW1`, :class:`~gmrf_core.models.RW2` and
    :class:`~gmrf_core.models.Besag`. The constraints span the null space of R*, so
    the generalised log-determinant log|Q|* = (n - k) log τ + log|R*|* is also the
    one of the constrained density; log|R*|* is computed once at construction.

    Attributes
    ----------
    structure : scipy.sparse.csc_matrix
        R* (scaled if the model was built with ``scale=True``).
    structure_log_pdet : float
        log|R*|*, the sum of the logs of the nonzero eigenvalues of R*.
    """

    _constraints_span_null_space = True

    def _init_structure(
        self, structure, log_pdet, constraint_matrix, rank_deficiency, prior, tau0=1.0
    ):
        self.n = structure.shape[0]
        self.theta_names = ("log_tau",)
        self.theta0 = np.array([math.log(check_positive(tau0, "tau0", type(self).__name__))])
        self.structure = sp.csc_matrix(structure)
        self.structure_log_pdet = float(log_pdet)
        self.rank_deficiency = int(rank_deficiency)
        if constraint_matrix is None or constraint_matrix.shape[0] == 0:
            self.constraints = None
        else:
            constraint_matrix = np.asarray(constraint_matrix, dtype=float)
            self.constraints = (constraint_matrix, np.zeros(constraint_matrix.shape[0]))
        self._linear = LinearPrecision([self.structure], self.n)
        self._set_priors(prior)

    def precision(self, theta):
        """Q = τ R* on the pattern of R* (plus the diagonal)."""
        theta = self.check_theta(theta)
        tau = checked_exp(theta[0], type(self).__name__, "log_tau")
        return check_finite_matrix(self._linear.matrix([tau]), type(self).__name__)

    def precision_grad(self, theta):
        """[dQ/dlog τ] = [τ R*]."""
        return [self.precision(theta)]

    def logdet(self, theta):
        """log|Q|* = (n - k) log τ + log|R*|* (generalised: nonzero eigenvalues only)."""
        theta = self.check_theta(theta)
        return (self.n - self.rank_deficiency) * float(theta[0]) + self.structure_log_pdet

    def logdet_grad(self, theta):
        """[n - k]."""
        self.check_theta(theta)
        return np.array([float(self.n - self.rank_deficiency)])

    def to_natural(self, theta):
        """{"tau": exp(log_tau)}."""
        theta = self.check_theta(theta)
        return {"tau": checked_exp(theta[0], type(self).__name__, "log_tau")}
