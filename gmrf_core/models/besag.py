"""Intrinsic CAR (Besag) and BYM2 models on a graph of areas."""

import math

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

from ..errors import InputError
from ..priors import PCBYM2Phi
from ..validation import check_positive, check_probability
from ._structure import (
    IntrinsicStructureModel,
    LinearPrecision,
    adjacency_matrix,
    check_finite_matrix,
    checked_exp,
    graph_components,
    graph_scaling,
    laplacian,
)
from .base import LatentModel
from .composite import _constraint_entries_ok

__all__ = ["Besag", "BYM2", "besag_structure"]

# Largest connected component whose eigenvalues are computed (densely) for PCBYM2Phi.
EIGEN_LIMIT = 4000


def besag_structure(adjacency, scale, owner):
    """Structure matrix of the (scaled) Besag model, per connected component.

    Components of two or more nodes get the graph Laplacian D - W (Rue & Held 2005,
    Section 3.3, first-order IGMRF on an irregular lattice), each scaled separately to
    unit generalised variance when ``scale`` (Sørbye & Rue 2014; R-INLA's
    ``scale.model`` with ``adjust.for.con.comp``), with one sum-to-zero constraint;
    all components are handled by one factorization
    (:func:`gmrf_core.models._structure.graph_scaling`).
    Isolated nodes (islands) get structure 1 and no constraint: with precision τ they
    are iid N(0, 1/τ), as in R-INLA.

    Parameters
    ----------
    adjacency : scipy.sparse matrix, numpy array, or list of neighbour lists
        See :func:`gmrf_core.models._structure.adjacency_matrix`.
    scale : bool
        Scale each component.
    owner : str
        Model name for error messages.

    Returns
    -------
    dict
        ``adjacency`` (CSR), ``structure`` (R*, CSC), ``log_pdet`` (log|R*|*),
        ``constraint`` (k × n indicator rows of the non-singleton components),
        ``components`` (list of node arrays), ``islands`` (node array),
        ``scale_factors`` (one per component, 1 for islands).
    """
    adjacency = adjacency_matrix(adjacency, owner)
    n = adjacency.shape[0]
    components = graph_components(adjacency)
    connected = [nodes for nodes in components if nodes.size > 1]
    # one dense sum-to-zero row per component: refuse before allocating, not with MemoryError
    _constraint_entries_ok(len(connected), n, owner)
    islands = np.array([int(nodes[0]) for nodes in components if nodes.size == 1], np.int64)
    graph_laplacian = laplacian(adjacency)
    connected_factors, log_pdet = graph_scaling(graph_laplacian, connected, owner, scale)
    # R* = c_c (D - W) on component c, 1 on islands (whose Laplacian rows are empty)
    node_factor = np.ones(n)
    for nodes, factor in zip(connected, connected_factors):
        node_factor[nodes] = factor
    structure = sp.csc_matrix(graph_laplacian.multiply(node_factor[:, None]))
    if islands.size:
        island_diagonal = np.zeros(n)
        island_diagonal[islands] = 1.0
        structure = sp.csc_matrix(structure + sp.diags(island_diagonal))
    structure.eliminate_zeros()
    structure.sort_indices()
    constraint = np.zeros((len(connected), n))
    for row, nodes in zip(constraint, connected):
        row[nodes] = 1.0
    factors = np.ones(len(components))
    factors[[k for k, nodes in enumerate(components) if nodes.size > 1]] = connected_factors
    return {
        "adjacency": adjacency,
        "structure": structure,
        "log_pdet": log_pdet,
        "constraint": constraint,
        "components": components,
        "islands": islands,
        "scale_factors": factors,
    }


class Besag(IntrinsicStructureModel):
    """Intrinsic conditional autoregression (ICAR) on a graph: Q = τ R*.

    R = D - W with W the 0/1 adjacency and D the diagonal of neighbour counts
    (Besag, York & Mollié 1991; Rue & Held 2005, Section 3.3), so
    x_i | x_{-i} ~ N(mean of the neighbours, 1/(τ d_i)).

    Disconnected graphs (R-INLA's conventions): every connected component with at
    least two nodes gets its own sum-to-zero constraint (a row of ``constraints``) and,
    with ``scale=True``, its own Sørbye–Rue scaling factor (geometric mean of the
    constrained marginal variances 1 within the component). Islands (nodes without
    neighbours) get an iid N(0, 1/τ) effect: structure 1, no constraint. The rank
    deficiency is the number of components with two or more nodes.

    Hyperparameter ``log_tau`` = log τ; log|Q|* = (n - k) log τ + log|R*|*, with
    log|R*|* computed once at construction.

    Scaling is exact, per component, by
    :func:`gmrf_core.models._structure.graph_scaling`: one sparse Cholesky
    factorization (:func:`gmrf_core.analyze`) of the Laplacian grounded at one node
    per component, its selected inverse and one solve give the constrained marginal
    variances and log|R|* of every component at once (Besag on the 10⁶-node lattice
    graph: 7 s on two cores, bench/compare_besag.py). Without scaling only the
    factorization is needed.

    Parameters
    ----------
    adjacency : scipy.sparse matrix, numpy array, or list of neighbour lists
        Symmetric 0/1 adjacency with zero diagonal, or neighbour lists (0-based).
    scale : bool
        Scale each component to unit generalised variance (default True).
    prior : None or Prior or dict
        Prior on ``log_tau``.
    tau0 : float
        Starting precision τ for :attr:`theta0` (natural scale, default 1).

    Attributes
    ----------
    adjacency : scipy.sparse.csr_matrix
    components : list of numpy.ndarray
        Node indices of each connected component.
    islands : numpy.ndarray
        Isolated nodes.
    scale_factors : numpy.ndarray
        Scaling factor of each component (1 for islands and when ``scale=False``).

    Raises
    ------
    InputError
        Malformed graph (not square, non-0/1 entries, self-loops, bad neighbour lists).
    NotSymmetricError
        An edge listed in one direction only.
    """

    def __init__(self, adjacency, scale=True, prior=None, tau0=1.0):
        graph = besag_structure(adjacency, scale, "Besag")
        self.adjacency = graph["adjacency"]
        self.components = graph["components"]
        self.islands = graph["islands"]
        self.scale_factors = graph["scale_factors"]
        self.scale = bool(scale)
        constraint = graph["constraint"]
        self._init_structure(
            graph["structure"], graph["log_pdet"], constraint, constraint.shape[0], prior, tau0
        )


class BYM2(LatentModel):
    """BYM2 model (Riebler et al. 2016): scaled Besag + iid, mixed by φ.

    The field that enters the linear predictor is
    b = (√(1-φ) v + √φ u) / √τ, with v ~ N(0, I) and u the scaled Besag (ICAR) field
    with structure R* (:class:`Besag` with ``scale=True``; one sum-to-zero constraint
    per connected component with two or more nodes, islands iid). As in R-INLA's
    ``bym2``, the latent vector is x = (b, u) of length 2n, with joint precision

        Q = [[ τ/(1-φ) I,          -√(φτ)/(1-φ) I    ],
             [ -√(φτ)/(1-φ) I,      R* + φ/(1-φ) I    ]]

    (b | u ~ N(√(φ/τ) u, (1-φ)/τ I); Riebler et al. 2016).
    The constraints act on u only (rows (0, A_u)); under them the marginal covariance
    of b is ((1-φ) I + φ R*⁻)/τ.

    Hyperparameters: ``log_tau`` = log τ and ``logit_phi`` = logit φ, φ ∈ (0, 1).
    ``to_natural`` gives ``{"tau": τ, "phi": φ}``.

    Log-determinants (k = rank deficiency, L = -log(1-φ)):

    - :meth:`logdet` (generalised, nonzero eigenvalues of Q): in the eigenbasis of R*
      Q splits into 2 × 2 blocks with determinant τγ_i/(1-φ) for each nonzero
      eigenvalue γ_i, and a single nonzero eigenvalue (τ + φ)/(1-φ) for each null
      direction, so log|Q|* = (n-k)(log τ + L) + log|R*|* + k(log(τ+φ) + L).
    - :meth:`constrained_logdet` (what the constrained density needs, since the
      constraints (0, A_u) do not span the null space of Q):
      log det(BᵀQB) = n log τ + n L + log|R*|*.

    Parameters
    ----------
    adjacency : scipy.sparse matrix, numpy array, or list of neighbour lists
        The graph, as for :class:`Besag`.
    prior : None or dict
        Priors by name, e.g. ``{"log_tau": PCPrecision(1.0, 0.01), "logit_phi":
        PCBYM2Phi(0.5, 2/3)}``. A :class:`PCBYM2Phi` is bound to the eigenvalues of
        R* (computed densely per connected component; components above 4000 nodes
        raise InputError).
    phi0 : float
        Starting mixing parameter φ for :attr:`theta0` (natural scale, default 0.5).
    tau0 : float
        Starting precision τ for :attr:`theta0` (natural scale, default 1).

    Attributes
    ----------
    n_areas : int
        Number of graph nodes (n = 2 n_areas latent variables).
    structure : scipy.sparse.csc_matrix
        R*.
    structure_log_pdet : float
        log|R*|*.
    adjacency, components, islands, scale_factors
        As for :class:`Besag`.

    Raises
    ------
    InputError
        Malformed graph; phi0 outside (0, 1); tau0 not a finite number > 0; bad
        prior; a PCBYM2Phi prior on a graph of islands only or with a component above
        4000 nodes.
    NotSymmetricError
        An edge listed in one direction only.
    """

    _mixing_names = ("logit_phi",)

    def __init__(self, adjacency, prior=None, phi0=0.5, tau0=1.0):
        graph = besag_structure(adjacency, True, "BYM2")
        self.adjacency = graph["adjacency"]
        self.components = graph["components"]
        self.islands = graph["islands"]
        self.scale_factors = graph["scale_factors"]
        self.structure = graph["structure"]
        self.structure_log_pdet = float(graph["log_pdet"])
        areas = self.structure.shape[0]
        self.n_areas = areas
        self.n = 2 * areas
        phi0 = check_probability(phi0, "phi0", "BYM2")
        tau0 = check_positive(tau0, "tau0", "BYM2")
        self.theta_names = ("log_tau", "logit_phi")
        self.theta0 = np.array([math.log(tau0), math.log(phi0) - math.log1p(-phi0)])
        constraint = graph["constraint"]
        self.rank_deficiency = constraint.shape[0]
        if constraint.shape[0]:
            full = np.hstack([np.zeros_like(constraint), constraint])
            self.constraints = (full, np.zeros(constraint.shape[0]))
        else:
            self.constraints = None
        identity = sp.identity(areas, format="csc")
        zero = sp.csc_matrix((areas, areas))
        self._linear = LinearPrecision(
            [
                sp.bmat([[identity, None], [None, zero]]),
                sp.bmat([[None, identity], [identity, None]]),
                sp.bmat([[zero, None], [None, self.structure]]),
                sp.bmat([[zero, None], [None, identity]]),
            ],
            self.n,
        )
        self._set_priors(prior)

    def _natural(self, theta):
        theta = self.check_theta(theta)
        tau = checked_exp(theta[0], "BYM2", "log_tau")
        odds = checked_exp(theta[1], "BYM2", "logit_phi")  # φ/(1-φ)
        phi = 1.0 / (1.0 + 1.0 / odds)
        return theta, tau, odds, phi

    def precision(self, theta):
        """Joint precision of (b, u), CSC on a fixed pattern."""
        _, tau, odds, phi = self._natural(theta)
        root = math.sqrt(tau * phi) * (1.0 + odds)  # √(τφ)/(1-φ)
        coefficients = [tau * (1.0 + odds), -root, 1.0, odds]
        return check_finite_matrix(self._linear.matrix(coefficients), "BYM2")

    def precision_grad(self, theta):
        """[dQ/dlog τ, dQ/dlogit φ] on the pattern of Q."""
        _, tau, odds, phi = self._natural(theta)
        root = math.sqrt(tau * phi) * (1.0 + odds)
        jacobian = np.array(
            [
                [tau * (1.0 + odds), tau * odds],
                [-0.5 * root, -math.sqrt(tau * phi) * (0.5 + odds)],
                [0.0, 0.0],
                [0.0, odds],
            ]
        )
        return [check_finite_matrix(m, "BYM2") for m in self._linear.matrices(jacobian)]

    def _log_terms(self, theta):
        theta, tau, _, phi = self._natural(theta)
        log_inv_one_minus_phi = float(np.logaddexp(0.0, theta[1]))  # -log(1-φ)
        log_phi = -float(np.logaddexp(0.0, -theta[1]))
        log_tau_plus_phi = float(np.logaddexp(theta[0], log_phi))
        return theta, tau, phi, log_inv_one_minus_phi, log_tau_plus_phi

    def logdet(self, theta):
        """Generalised log|Q|* = (n_a-k)(log τ + L) + log|R*|* + k(log(τ+φ) + L)."""
        theta, _, _, big_l, log_tau_plus_phi = self._log_terms(theta)
        areas, k = self.n_areas, self.rank_deficiency
        return (
            (areas - k) * (float(theta[0]) + big_l)
            + self.structure_log_pdet
            + k * (log_tau_plus_phi + big_l)
        )

    def logdet_grad(self, theta):
        """Gradient of :meth:`logdet`: (n_a - k + kτ/(τ+φ), n_a φ + kφ(1-φ)/(τ+φ))."""
        _, tau, phi, _, _ = self._log_terms(theta)
        areas, k = self.n_areas, self.rank_deficiency
        return np.array(
            [
                areas - k + k * tau / (tau + phi),
                areas * phi + k * phi * (1.0 - phi) / (tau + phi),
            ]
        )

    def constrained_logdet(self, theta):
        """log det(BᵀQB) = n_a log τ - n_a log(1-φ) + log|R*|* (B: basis of {A x = 0})."""
        theta, _, _, big_l, _ = self._log_terms(theta)
        return self.n_areas * (float(theta[0]) + big_l) + self.structure_log_pdet

    def constrained_logdet_grad(self, theta):
        """(n_a, n_a φ)."""
        _, _, phi, _, _ = self._log_terms(theta)
        return np.array([float(self.n_areas), self.n_areas * phi])

    def to_natural(self, theta):
        """{"tau": exp θ₁, "phi": 1/(1 + exp(-θ₂))}."""
        _, tau, _, phi = self._natural(theta)
        return {"tau": tau, "phi": phi}

    def structure_eigenvalues(self):
        """All eigenvalues of R* (islands contribute 1), computed densely per component.

        Raises
        ------
        InputError
            If a connected component has more than 4000 nodes.
        """
        values = []
        for nodes in self.components:
            if nodes.size > EIGEN_LIMIT:
                raise InputError(
                    f"BYM2: the eigenvalues needed by PCBYM2Phi are computed densely per "
                    f"connected component, limited to {EIGEN_LIMIT} nodes; this graph has a "
                    f"component of {nodes.size}. Use another prior for logit_phi."
                )
            block = self.structure[nodes][:, nodes].toarray()
            values.append(sla.eigvalsh(block))
        return np.concatenate(values)

    def _bind_prior(self, name, prior):
        if isinstance(prior, PCBYM2Phi) and not prior.is_bound:
            return prior.bind(self.structure_eigenvalues(), self.rank_deficiency)
        return prior
