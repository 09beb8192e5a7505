"""Tests of the SPDE Matérn models Matern2D (lattice) and MaternSPDE (triangle mesh)."""

import math

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla

import gmrf_core as gm
from gmrf_core.datasets import spde_precision_2d
from gmrf_core.errors import InputError
from gmrf_core.mesh import Mesh, mesh_from_points
from gmrf_core.models.matern import Matern2D, MaternSPDE
from gmrf_core.priors import PCMaternPrior

RNG_SEED = 20240611


# ------------------------------------------------------------------ references
def add_lattice_laplacian(stiffness, m, n, h0, h1):
    """Add the weighted Neumann graph Laplacian to ``stiffness`` (any [k, l]-indexable).

    Weights h1/h0 along axis 0 and h0/h1 along axis 1, node (i, j) -> i*n + j; the
    arithmetic is that of the entries (floats, or mpmath numbers in a mpmath matrix).
    """
    for i in range(m):
        for j in range(n):
            k = i * n + j
            for di, dj, weight in ((1, 0, h1 / h0), (0, 1, h0 / h1)):
                if i + di < m and j + dj < n:
                    ell = (i + di) * n + (j + dj)
                    stiffness[k, ell] -= weight
                    stiffness[ell, k] -= weight
                    stiffness[k, k] += weight
                    stiffness[ell, ell] += weight
    return stiffness


def dense_lattice_mass_stiffness(m, n, h0, h1):
    """C = h0 h1 I and the weighted Neumann graph Laplacian, node (i, j) -> i*n + j."""
    size = m * n
    return h0 * h1 * np.eye(size), add_lattice_laplacian(np.zeros((size, size)), m, n, h0, h1)


def dense_mesh_mass_stiffness(points, triangles):
    """Lumped mass and P1 stiffness by a triangle-by-triangle loop (reference)."""
    size = points.shape[0]
    mass = np.zeros((size, size))
    stiffness = np.zeros((size, size))
    for tri in triangles:
        xy = points[tri]
        # gradients of the three hat functions: solve [1 x y] c = e_k
        coefficients = np.linalg.inv(np.column_stack([np.ones(3), xy]))
        grads = coefficients[1:, :].T  # (3, 2)
        area = 0.5 * abs(np.linalg.det(np.column_stack([np.ones(3), xy])))
        consistent = area / 12.0 * (np.ones((3, 3)) + np.eye(3))
        for a in range(3):
            mass[tri[a], tri[a]] += consistent[a].sum()
            for b in range(3):
                stiffness[tri[a], tri[b]] += area * grads[a] @ grads[b]
    return mass, stiffness


def dense_precision(mass, stiffness, kappa, tau):
    return tau * (
        kappa**4 * mass
        + 2 * kappa**2 * stiffness
        + stiffness @ np.diag(1.0 / np.diag(mass)) @ stiffness
    )


def central_difference(fun, theta, k, step=1e-5):
    plus, minus = theta.copy(), theta.copy()
    plus[k] += step
    minus[k] -= step
    return (fun(plus) - fun(minus)) / (2 * step)


@pytest.fixture(scope="module")
def small_mesh():
    rng = np.random.default_rng(RNG_SEED)
    return mesh_from_points(rng.uniform(0, 1, (12, 2)), max_area=0.02, extend=0.2)


@pytest.fixture(scope="module")
def variance_mesh():
    rng = np.random.default_rng(1)
    return mesh_from_points(rng.uniform(0, 1, (30, 2)), max_area=0.002, extend=0.3)


def random_thetas(rng, count):
    return [np.array([rng.uniform(-1.0, 2.5), rng.uniform(-1.0, 1.0)]) for _ in range(count)]


def assert_precision_matches(model, mass, stiffness, rtol, atol_rel):
    """model.precision(θ) = the dense formula at three random θ (atol = atol_rel · max |Q|)."""
    rng = np.random.default_rng(RNG_SEED)
    for theta in random_thetas(rng, 3):
        kappa, tau = model.kappa_tau(theta)
        expected = dense_precision(mass, stiffness, kappa, tau)
        got = model.precision(theta).toarray()
        np.testing.assert_allclose(got, expected, rtol=rtol, atol=atol_rel * np.abs(expected).max())


# ------------------------------------------------------------------ Matern2D
@pytest.mark.parametrize("shape, spacing", [((5, 4), 1.0), ((4, 6), (0.5, 2.0)), ((2, 2), 3.0)])
def test_lattice_precision_matches_dense_formula(shape, spacing):
    model = Matern2D(shape, spacing=spacing)
    h0, h1 = np.broadcast_to(np.asarray(spacing, dtype=float), (2,))
    mass, stiffness = dense_lattice_mass_stiffness(*shape, h0, h1)
    assert_precision_matches(model, mass, stiffness, rtol=1e-12, atol_rel=1e-12)
    np.testing.assert_allclose(model.mass_matrix.toarray(), mass)
    np.testing.assert_allclose(model.stiffness_matrix.toarray(), stiffness, atol=1e-14)


def test_kappa_tau_from_range_sigma():
    model = Matern2D((4, 4))
    theta = model.theta_from(7.0, 1.7)
    kappa, tau = model.kappa_tau(theta)
    assert kappa == pytest.approx(math.sqrt(8) / 7.0, rel=1e-14)
    assert 1.0 / (4 * math.pi * kappa**2 * tau) == pytest.approx(1.7**2, rel=1e-13)
    assert model.range_sigma(theta) == pytest.approx((7.0, 1.7), rel=1e-14)


def test_lattice_matches_dataset_generator():
    model = Matern2D((7, 9), spacing=(0.5, 1.5))
    theta = model.theta_from(3.0, 0.8)
    kappa, tau = model.kappa_tau(theta)
    reference = spde_precision_2d(7, 9, kappa=kappa, tau=tau, spacing=(0.5, 1.5))
    got = model.precision(theta)
    np.testing.assert_array_equal(got.indptr, reference.indptr)
    np.testing.assert_array_equal(got.indices, reference.indices)
    np.testing.assert_allclose(got.data, reference.data, rtol=1e-13)


def test_lattice_pattern_is_13_point_and_fixed():
    m, n = 8, 9
    model = Matern2D((m, n))
    rng = np.random.default_rng(RNG_SEED)
    first = model.precision(model.theta0)
    per_column = np.diff(first.indptr).reshape(m, n)
    assert np.all(per_column[2:-2, 2:-2] == 13)
    assert per_column[0, 0] == 6  # self, 2 neighbours, 2 two-steps, 1 diagonal
    assert first.has_sorted_indices
    for theta in random_thetas(rng, 5):
        q = model.precision(theta)
        assert isinstance(q, sp.csc_matrix)
        np.testing.assert_array_equal(q.indptr, first.indptr)
        np.testing.assert_array_equal(q.indices, first.indices)
        for grad in model.precision_grad(theta):
            assert isinstance(grad, sp.csc_matrix)
            np.testing.assert_array_equal(grad.indptr, first.indptr)
            np.testing.assert_array_equal(grad.indices, first.indices)


def test_lattice_precision_grad_matches_central_differences():
    model = Matern2D((6, 5), spacing=(1.0, 0.7))
    rng = np.random.default_rng(RNG_SEED)
    for theta in random_thetas(rng, 3):
        grads = model.precision_grad(theta)
        for k in range(2):
            fd = central_difference(lambda t: model.precision(t).data, theta, k)
            np.testing.assert_allclose(grads[k].data, fd, rtol=1e-6, atol=1e-8 * np.abs(fd).max())


@pytest.mark.parametrize("theta", [(-2.0, 0.0), (0.5, -1.0), (4.0, 2.0), (6.5, 0.0)])
def test_lattice_precision_positive_definite(theta):
    model = Matern2D((6, 7))
    q = model.precision(np.array(theta)).toarray()
    np.testing.assert_array_equal(q, q.T)
    assert np.linalg.eigvalsh(q).min() > 0


def test_lattice_logdet_and_gradient():
    model = Matern2D((6, 5), spacing=(0.8, 1.1))
    rng = np.random.default_rng(RNG_SEED)
    for theta in random_thetas(rng, 3):
        sign, expected = np.linalg.slogdet(model.precision(theta).toarray())
        assert sign == 1.0
        assert model.logdet(theta) == pytest.approx(expected, rel=1e-11)
        fd = [central_difference(model.logdet, theta, k) for k in range(2)]
        np.testing.assert_allclose(model.logdet_grad(theta), fd, rtol=1e-7)


@pytest.mark.parametrize("spacing, practical_range", [(1.0, 10.0), (0.5, 5.0)])
def test_lattice_variance_near_sigma_squared_at_centre(spacing, practical_range):
    # 60 x 60 lattice, range 10 spacings: the centre is 3 ranges from the boundary
    model = Matern2D((60, 60), spacing=spacing)
    sigma = 2.0
    q = model.precision(model.theta_from(practical_range, sigma)).tocsc()
    centre = 30 * 60 + 30
    unit = np.zeros(model.n)
    unit[centre] = 1.0
    variance = spla.spsolve(q, unit)[centre]
    assert variance == pytest.approx(sigma**2, rel=0.10)
    # and clearly inflated in the corner (Neumann boundary)
    unit[:] = 0.0
    unit[0] = 1.0
    assert spla.spsolve(q, unit)[0] > 2.5 * sigma**2


def test_lattice_theta0_default():
    model = Matern2D((11, 21), spacing=2.0)
    diameter = math.hypot(20.0, 40.0)
    np.testing.assert_allclose(model.theta0, [math.log(diameter / 5), 0.0])
    assert model.n == 231
    assert model.theta_names == ("log_range", "log_sigma")
    assert model.log_prior(model.theta0) == 0.0
    np.testing.assert_array_equal(model.log_prior_grad(model.theta0), [0.0, 0.0])
    np.testing.assert_array_equal(model.mean(model.theta0), np.zeros(231))


@pytest.mark.parametrize("shape", [(1, 5), (5,), 5, (3, 2.5), (3, -1), (True, 3), (2, 3, 4), "ab"])
def test_lattice_bad_shape(shape):
    with pytest.raises(InputError, match="shape"):
        Matern2D(shape)


@pytest.mark.parametrize("spacing", [0.0, -1.0, np.nan, np.inf, (1.0, 2.0, 3.0), "x"])
def test_lattice_bad_spacing(spacing):
    with pytest.raises(InputError, match="spacing"):
        Matern2D((4, 4), spacing=spacing)


@pytest.mark.parametrize("theta", [[1.0], [1.0, 2.0, 3.0], [np.nan, 0.0], [0.0, np.inf]])
def test_bad_theta(theta):
    with pytest.raises(InputError):
        Matern2D((4, 4)).precision(theta)


def test_theta_overflowing_coefficients_rejected():
    model = Matern2D((4, 4))
    with pytest.raises(InputError, match="floating-point range"):
        model.precision([400.0, 0.0])
    with pytest.raises(InputError, match="floating-point range"):
        model.precision_grad([0.0, -400.0])


def test_bad_prior_type():
    with pytest.raises(InputError, match="PCMaternPrior"):
        Matern2D((4, 4), prior=(1.0, 0.5, 1.0, 0.5))


def test_model_uses_pc_prior():
    prior = PCMaternPrior(1.5, 0.1, 0.7, 0.2)
    model = Matern2D((5, 5), prior=prior)
    theta = np.array([0.3, -0.4])
    assert model.log_prior(theta) == prior.log_density(theta)
    fd = [central_difference(model.log_prior, theta, k) for k in range(2)]
    np.testing.assert_allclose(model.log_prior_grad(theta), fd, rtol=1e-7)


# ------------------------------------------------------------------ MaternSPDE
def test_mesh_precision_matches_dense_assembly(small_mesh):
    model = MaternSPDE(small_mesh)
    mass, stiffness = dense_mesh_mass_stiffness(small_mesh.points, small_mesh.triangles)
    assert_precision_matches(model, mass, stiffness, rtol=1e-10, atol_rel=1e-11)
    np.testing.assert_allclose(model.mass_matrix.toarray(), mass, rtol=1e-13)


def test_mesh_pattern_fixed_and_gradient(small_mesh):
    model = MaternSPDE(small_mesh)
    pattern = model.precision(model.theta0)
    rng = np.random.default_rng(RNG_SEED)
    for theta in random_thetas(rng, 3):
        q = model.precision(theta)
        np.testing.assert_array_equal(q.indices, pattern.indices)
        np.testing.assert_array_equal(q.indptr, pattern.indptr)
        grads = model.precision_grad(theta)
        for k in range(2):
            np.testing.assert_array_equal(grads[k].indices, pattern.indices)
            fd = central_difference(lambda t: model.precision(t).data, theta, k)
            np.testing.assert_allclose(grads[k].data, fd, rtol=1e-6, atol=1e-8 * np.abs(fd).max())


@pytest.mark.parametrize("theta", [(-3.0, 0.0), (-0.5, 1.0), (2.0, -1.0)])
def test_mesh_precision_positive_definite(small_mesh, theta):
    q = MaternSPDE(small_mesh).precision(np.array(theta)).toarray()
    np.testing.assert_allclose(q, q.T, rtol=1e-14, atol=1e-14 * np.abs(q).max())
    assert np.linalg.eigvalsh(q).min() > 0


def test_mesh_variance_near_sigma_squared_in_interior(variance_mesh):
    model = MaternSPDE(variance_mesh)
    sigma = 1.5
    q = model.precision(model.theta_from(0.5, sigma)).tocsc()
    points = variance_mesh.points
    inner = np.flatnonzero(np.all((points > 0.4) & (points < 0.6), axis=1))
    assert inner.size >= 5
    rhs = np.zeros((model.n, inner.size))
    rhs[inner, np.arange(inner.size)] = 1.0
    variance = spla.splu(q).solve(rhs)[inner, np.arange(inner.size)]
    np.testing.assert_allclose(variance, sigma**2, rtol=0.12)
    assert abs(variance.mean() / sigma**2 - 1) < 0.08


def test_mesh_theta0_and_attributes(small_mesh):
    model = MaternSPDE(small_mesh, prior=PCMaternPrior(0.3, 0.5, 1.0, 0.5))
    diameter = np.hypot(*np.ptp(small_mesh.points, axis=0))
    np.testing.assert_allclose(model.theta0, [math.log(diameter / 5), 0.0])
    assert model.n == small_mesh.n_nodes
    assert model.log_prior(model.theta0) != 0.0


def test_mesh_logdet_and_gradient_match_dense_references(small_mesh):
    """log|Q| through K = κ²C + G against the dense log-determinant of Q itself, its
    gradient against central differences of that (both independent of K's path), over
    ranges from a tenth to ten times the mesh's extent."""
    model = MaternSPDE(small_mesh)
    rng = np.random.default_rng(RNG_SEED)

    def dense_logdet(theta):
        sign, value = np.linalg.slogdet(model.precision(theta).toarray())
        assert sign == 1.0
        return value

    for theta in [model.theta0, model.theta0 + [2.3, 0.4], model.theta0 - [0.7, 0.9]] + [
        model.theta0 + d for d in rng.uniform(-1.0, 1.0, (3, 2))
    ]:
        assert model.logdet(theta) == pytest.approx(dense_logdet(theta), rel=1e-12, abs=1e-9)
        fd = [central_difference(dense_logdet, theta, k, step=1e-4) for k in range(2)]
        # the dense differences carry the rounding of log|Q| (cond(Q) up to 1e9 here)
        np.testing.assert_allclose(model.logdet_grad(theta), fd, rtol=1e-6)


def test_mesh_logdet_gradient_alone_and_in_any_order(small_mesh):
    """logdet_grad without a logdet before it, at a θ other than the last logdet's, and
    after pickling gives the same numbers as logdet then logdet_grad at one θ."""
    import pickle

    model = MaternSPDE(small_mesh)
    a, b = model.theta0, model.theta0 + [0.5, -0.2]
    value_a, grad_a = model.logdet(a), model.logdet_grad(a)
    value_b, grad_b = model.logdet(b), model.logdet_grad(b)
    fresh = MaternSPDE(small_mesh)
    np.testing.assert_array_equal(fresh.logdet_grad(b), grad_b)
    fresh.logdet(b)
    np.testing.assert_array_equal(fresh.logdet_grad(a), grad_a)
    assert fresh.logdet(a) == value_a
    loaded = pickle.loads(pickle.dumps(model))
    assert loaded.logdet(b) == value_b
    np.testing.assert_array_equal(loaded.logdet_grad(b), grad_b)


def test_mesh_logdet_from_many_threads_matches_serial_results(small_mesh):
    """One model's logdet and logdet_grad from several threads at once, at several θ."""
    from concurrent.futures import ThreadPoolExecutor

    model = MaternSPDE(small_mesh)
    thetas = [model.theta0 + [0.1 * k, -0.05 * k] for k in range(6)]
    serial = [(model.logdet(t), tuple(model.logdet_grad(t))) for t in thetas]

    def both(theta):
        return model.logdet(theta), tuple(model.logdet_grad(theta))

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(both, thetas * 4))
    assert results == serial * 4


def test_mesh_logdet_breakdown_is_a_clear_error(small_mesh, monkeypatch):
    """A factorization of K that breaks down raises NotPositiveDefiniteError naming K and
    the fix, and the model evaluates normally afterwards."""
    model = MaternSPDE(small_mesh)
    expected = model.logdet(model.theta0)
    helper = model._k_logdet
    stiffness = helper._stiffness
    monkeypatch.setattr(helper, "_stiffness", -np.abs(stiffness))  # K indefinite
    with pytest.raises(gm.NotPositiveDefiniteError, match="K = κ²C \\+ G .*shorter range"):
        model.logdet(model.theta0 + 0.3)
    monkeypatch.setattr(helper, "_stiffness", stiffness)
    assert model.logdet(model.theta0) == expected


def test_mesh_accepts_duck_typed_mesh():
    class Plain:
        points = [[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]
        triangles = [[0, 1, 2], [1, 3, 2]]

    model = MaternSPDE(Plain())
    assert model.n == 4
    assert np.linalg.eigvalsh(model.precision([0.0, 0.0]).toarray()).min() > 0


def _square_mesh(**changes):
    fields = {
        "points": np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]),
        "triangles": np.array([[0, 1, 2], [1, 3, 2]]),
    }
    fields.update(changes)
    return Mesh(**fields)


@pytest.mark.parametrize(
    "mesh, message",
    [
        (object(), "points"),
        (_square_mesh(points=np.zeros((4, 3))), "shape"),
        (_square_mesh(points=np.array([[0, 0], [1, 0], [0, np.nan], [1, 1.0]])), "non-finite"),
        (_square_mesh(triangles=np.array([[0, 1, 4]])), "outside"),
        (_square_mesh(triangles=np.array([[0.0, 1.0, 2.0]])), "integer"),
        (_square_mesh(triangles=np.array([[0, 1, 2]])), "belong to no triangle"),
        (
            _square_mesh(
                points=np.array([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0], [1.0, 1.0]]),
                triangles=np.array([[0, 1, 2], [0, 1, 3], [1, 2, 3]]),
            ),
            "zero area",
        ),
        (_square_mesh(triangles=np.array([[0, 1, 2], [1, 3, 2], [2, 1, 0]])), "same nodes"),
        (_square_mesh(triangles=np.array([[0, 1, 2], [0, 1, 3]])), "same side"),
        (
            Mesh(
                points=np.array([[0, 0], [4, 0], [0, 4], [1, 1], [2, 1], [1, 2.0]]),
                triangles=np.array([[0, 1, 2], [3, 4, 5]]),
            ),
            "node 3 lies inside triangle 0",
        ),
        (  # a star of David: no node inside the other triangle, the centroids are
            Mesh(
                points=np.array([[0, 0], [2, 0], [1, 2], [0, 1.3], [2, 1.3], [1, -0.7]]),
                triangles=np.array([[0, 1, 2], [3, 4, 5]]),
            ),
            r"triangles \[0, 1\] overlap",
        ),
        (  # two copies of the square on distinct nodes at the same coordinates
            Mesh(
                points=np.tile([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], (2, 1)),
                triangles=np.array([[0, 1, 2], [1, 3, 2], [4, 5, 6], [5, 7, 6]]),
            ),
            "overlap",
        ),
    ],
)
def test_mesh_bad_input(mesh, message):
    with pytest.raises(InputError, match=message):
        MaternSPDE(mesh)


# ------------------------------------------------------------------ Matern2D accepted range
def mpmath_lattice_logdet_and_grad(shape, spacing, theta):
    """log|Q| and ∂log|Q|/∂θ₀ = tr(Q⁻¹ ∂Q/∂θ₀) in 50-digit arithmetic from dense C, G.

    Q = τ(κ⁴ C + 2κ² G + G C⁻¹ G), ∂Q/∂θ₀ = 2τ(G C⁻¹ G − κ⁴ C), κ = √8 e^(−θ₀),
    τ = 1/(4π κ² σ²): no eigenvalue formula, a Cholesky factorization of the exact matrix.
    """
    mpmath = pytest.importorskip("mpmath")
    with mpmath.workdps(50):
        # assembled in 50 digits: a float G's rounded diagonal would move its null space
        m, n = shape
        h0, h1 = (mpmath.mpf(h) for h in spacing)
        c = mpmath.eye(m * n) * (h0 * h1)
        g = add_lattice_laplacian(mpmath.zeros(m * n, m * n), m, n, h0, h1)
        c_inverse = mpmath.eye(m * n) / (h0 * h1)
        kappa = mpmath.sqrt(8) * mpmath.exp(-mpmath.mpf(theta[0]))
        sigma = mpmath.exp(mpmath.mpf(theta[1]))
        tau = 1 / (4 * mpmath.pi * kappa**2 * sigma**2)
        g_c_g = g * c_inverse * g
        q = tau * (kappa**4 * c + 2 * kappa**2 * g + g_c_g)
        factor = mpmath.cholesky(q)
        logdet = 2 * mpmath.fsum(mpmath.log(factor[i, i]) for i in range(q.rows))
        d_q = 2 * tau * (g_c_g - kappa**4 * c)
        product = mpmath.inverse(q) * d_q
        trace = mpmath.fsum(product[i, i] for i in range(q.rows))
        return float(logdet), float(trace)


def test_lattice_theta0_is_capped_below_max_range(monkeypatch):
    """On lattices wider than ~5000 spacings D/5 exceeds max_range: theta0 stays usable.

    Such a lattice is too large for a test, so the ratio limit is lowered instead.
    """
    import gmrf_core.models.matern as matern

    monkeypatch.setattr(matern, "_LATTICE_RATIO_LIMIT", 10.0)
    model = Matern2D((30, 30))
    diameter = math.hypot(29.0, 29.0)
    assert model.max_range < diameter / 5
    assert model.theta0[0] == pytest.approx(math.log(0.5 * model.max_range))
    model.logdet(model.theta0)  # accepted
    with pytest.raises(InputError, match="too long"):
        model.logdet([math.log(diameter / 5), 0.0])


def test_lattice_max_range_is_about_a_thousand_spacings():
    assert 900.0 < Matern2D((8, 7)).max_range < 1100.0
    # it scales with the spacing and is capped into theta0
    model = Matern2D((8, 7), spacing=0.5)
    assert model.max_range == pytest.approx(0.5 * Matern2D((8, 7)).max_range, rel=1e-12)
    assert model.theta0[0] < math.log(model.max_range)


@pytest.mark.parametrize("spacing", [(1.0, 1.0), (0.8, 1.1)])
def test_lattice_logdet_matches_mpmath_over_the_accepted_range(spacing):
    """From a range of 1e-100 spacings to just below max_range (both ends of the API)."""
    shape = (4, 3)
    model = Matern2D(shape, spacing=spacing)
    top = math.log(model.max_range) - 1e-9
    for theta0 in (-230.0, -40.0, -5.0, 0.0, 2.0, 4.0, 5.5, top - 1.0, top):
        theta = np.array([theta0, 0.4])
        expected, expected_grad = mpmath_lattice_logdet_and_grad(shape, spacing, theta)
        assert model.logdet(theta) == pytest.approx(expected, rel=1e-13, abs=1e-11)
        grad = model.logdet_grad(theta)
        assert grad[0] == pytest.approx(expected_grad, rel=1e-11, abs=1e-11)
        assert grad[1] == -2.0 * model.n


def test_lattice_logdet_agrees_with_the_factorization_over_the_accepted_range():
    """The factor of the assembled Q loses ≈ 0.1 ε cond(Q): at most ~3e-5 at the limit."""
    model = Matern2D((30, 25))
    top = math.log(model.max_range) - 1e-9
    for theta0 in np.linspace(-6.0, top, 9):
        theta = np.array([theta0, -0.3])
        exact = model.logdet(theta)
        factored = gm.cholesky(model.precision(theta)).logdet()
        assert abs(factored - exact) <= 1e-4 + 1e-12 * abs(exact), theta0


def test_lattice_range_beyond_the_limit_rejected_by_every_method():
    model = Matern2D((6, 5), spacing=(0.8, 1.1))
    theta = np.array([math.log(model.max_range) + 1e-3, 0.0])
    for method in (model.precision, model.precision_grad, model.logdet, model.logdet_grad):
        with pytest.raises(InputError, match=r"too long for this lattice.*Keep the range below"):
            method(theta)
    # far beyond, without overflow in the message
    with pytest.raises(InputError, match="too long"):
        model.logdet([300.0, 0.0])


def _lattice_sample(shape, practical_range, sigma, seed):
    model = Matern2D(shape)
    theta = model.theta_from(practical_range, sigma)
    x = gm.cholesky(model.precision(theta)).sample(rng=np.random.default_rng(seed))
    return model, x


@pytest.mark.parametrize("noise_sd", [0.0, 1.0])
def test_lattice_start_from_data_recovers_range_and_sigma(noise_sd):
    """The moment start lands near the simulating (range, σ) whatever the independent
    noise: the lag covariances it uses do not see it."""
    model, x = _lattice_sample((150, 140), 12.0, 0.7, seed=3)
    rng = np.random.default_rng(4)
    u = 2.5 + x + noise_sd * rng.standard_normal(x.size)
    u[rng.random(x.size) < 0.1] = np.nan  # missing nodes
    rho, sigma = model.range_sigma(model.start_from_data(u))
    assert rho == pytest.approx(12.0, rel=0.25)
    assert sigma == pytest.approx(0.7, rel=0.25)


def test_lattice_start_from_data_gives_up_without_spatial_signal():
    model = Matern2D((40, 40))
    rng = np.random.default_rng(5)
    assert model.start_from_data(rng.standard_normal(model.n)) is None  # white noise
    assert model.start_from_data(np.full(model.n, np.nan)) is None
    assert model.start_from_data(np.ones(model.n)) is None  # no variation


def test_precision_grad_values_are_the_matrices_values_on_the_fixed_pattern(small_mesh):
    for model in (Matern2D((7, 9), spacing=(1.0, 2.0)), MaternSPDE(small_mesh)):
        theta = np.array([0.4, -0.3])
        indptr, indices = model.precision_pattern()
        assert not indptr.flags.writeable and not indices.flags.writeable
        Q = model.precision(theta)
        np.testing.assert_array_equal(Q.indptr, indptr)
        np.testing.assert_array_equal(Q.indices, indices)
        for dQ, values in zip(model.precision_grad(theta), model.precision_grad_values(theta)):
            np.testing.assert_array_equal(dQ.indptr, indptr)
            np.testing.assert_array_equal(dQ.indices, indices)
            np.testing.assert_array_equal(dQ.data, values)
