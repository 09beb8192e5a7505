"""InlaResult.predict in blocks of rows, serially, on a process pool and on a Dask cluster,
against a dense reference written here.

Reference: at each of the result's integration points θ_k, the mode μ_k of p(z | θ_k, y) by a
dense Newton iteration and Σ_k = H_k⁻¹ (dense inverse of Q̃(θ_k) + Ãᵀ W Ã at the mode); the
predictive of a row ã is the mixture Σ_k w_k N(ãᵀμ_k + offset, ãᵀ Σ_k ã), whose quantiles are
found here by bracketing root search of its distribution function (scipy.optimize.brentq).
"""

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.optimize import brentq
from scipy.special import ndtr

import gmrf_core as gm
from gmrf_core import likelihoods, models
from tests import _executors
from tests._references import poisson_mode

SIDE = 6


def _poisson_model():
    rng = np.random.default_rng(5)
    prior = models.Matern2D((SIDE, SIDE))
    n = prior.n
    x = gm.cholesky(prior.precision(prior.theta0)).sample(rng=rng)
    y = rng.poisson(np.exp(0.3 + x)).astype(float)
    y[[4, 17, 30]] = np.nan  # missing observations too
    return gm.LatentGaussianModel(prior, likelihoods.Poisson(y), X=np.ones((n, 1)))


@pytest.fixture(scope="module")
def poisson_result():
    return gm.inla(
        _poisson_model(), integration="ccd", latent="gaussian", progress=False, compute=()
    )


@pytest.fixture(scope="session")
def executors(request):
    """Serial, the shared 2-worker spawn pool and the shared 2-worker LocalCluster."""
    return {
        "serial": None,
        "pool": _executors.process_pool(request),
        "dask": _executors.dask_client(request),
    }


def _dense_point(model, theta):
    """(μ, Σ) of the Gaussian approximation at θ: dense Newton on log p(y | Ãz) − ½ zᵀQ̃z."""
    n, p = model.n_latent, model.n_fixed
    Q = np.zeros((n + p, n + p))
    Q[:n, :n] = model.prior.precision(theta[: model.n_theta_prior]).toarray()
    Q[n:, n:] = model.fixed_precision * np.eye(p)
    A = np.hstack([np.eye(n), np.ones((n, 1))])
    y = np.asarray(model.likelihood.y, dtype=float)
    observed = np.isfinite(y)
    A_obs, y_obs = A[observed], y[observed]
    z, hess = poisson_mode(A_obs, y_obs, Q, 1e-13)
    return z, np.linalg.inv(hess)


def _mixture_quantile(q, weights, means, sds):
    def cdf(x):
        return float(weights @ ndtr((x - means) / sds)) - q

    low, high = np.min(means - 12 * sds), np.max(means + 12 * sds)
    return brentq(cdf, low, high, xtol=1e-14, rtol=1e-14)


def _dense_predictive(res, model, rows, offset):
    """mean, sd and the 0.025/0.5/0.975 quantiles of the mixture, densely."""
    means, variances = [], []
    for theta in res.points:
        mu, sigma = _dense_point(model, theta)
        means.append(rows @ mu + offset)
        variances.append(np.einsum("ij,jk,ik->i", rows, sigma, rows))
    means, sds = np.array(means), np.sqrt(np.array(variances))
    w = res.weights
    mean = w @ means
    sd = np.sqrt(w @ (sds**2 + means**2) - mean**2)
    quantiles = np.array(
        [
            [_mixture_quantile(q, w, means[:, i], sds[:, i]) for i in range(rows.shape[0])]
            for q in (0.025, 0.5, 0.975)
        ]
    )
    return mean, sd, quantiles


def _prediction_rows():
    """Rows on the factor's pattern (one node, neighbours) and off it (far pairs, a dense
    row), X_new and an offset."""
    n = SIDE * SIDE
    rng = np.random.default_rng(8)
    A = sp.lil_matrix((11, n))
    A[0, 3] = 1.0
    A[1, 7] = 0.5
    A[1, 8] = 0.5
    A[2, 0] = 1.0
    A[2, n - 1] = -1.0
    A[3, 5] = 1.0
    A[3, 20] = 1.0
    A[3, 33] = 2.0
    A[4, :] = rng.standard_normal(n) / n  # a dense row: an areal average
    A[5, 14] = 1.0
    A[6, 2] = 0.3
    A[6, 29] = 0.7
    A[7, 11] = 1.0
    A[8, 1] = 1.0
    A[8, 35] = 1.0
    A[9, 22] = 2.0
    A[10, 17] = 1.0
    X = np.ones((11, 1))
    X[[2, 5]] = 0.0
    offset = np.linspace(-0.5, 0.5, 11)
    return sp.csr_matrix(A), X, offset


def test_predict_matches_the_dense_mixture(poisson_result):
    res = poisson_result
    model = _poisson_model()
    A, X, offset = _prediction_rows()
    table = res.predict(A, X, offset=offset, block_size=4)
    rows = np.hstack([A.toarray(), X])
    mean, sd, quantiles = _dense_predictive(res, model, rows, offset)
    np.testing.assert_allclose(table["mean"].to_numpy(), mean, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(table["sd"].to_numpy(), sd, rtol=1e-9)
    for j, name in enumerate(("q0.025", "q0.5", "q0.975")):
        np.testing.assert_allclose(table[name].to_numpy(), quantiles[j], rtol=1e-9, atol=1e-10)
    # both code paths were taken: rows on the factor's pattern and rows off it
    from gmrf_core.inference.prediction import rows_in_pattern

    inside = rows_in_pattern(res._approximation(0).factor, sp.csr_matrix(rows))
    assert inside.any() and not inside.all()
    assert len(res.weights) > 1  # a mixture, not one Gaussian


def test_rows_in_pattern_against_the_pattern_of_L():
    from gmrf_core.inference.prediction import rows_in_pattern

    model = _poisson_model()
    factor = model.laplace(model.theta0).factor
    L = factor.L().tocsc()
    stored = np.zeros((factor.n, factor.n), dtype=bool)  # stored entries, explicit zeros too
    for c in range(factor.n):
        stored[L.indices[L.indptr[c] : L.indptr[c + 1]], c] = True
    pinv = np.empty(factor.n, dtype=int)
    pinv[np.asarray(factor.perm)] = np.arange(factor.n)
    A = sp.random(300, factor.n, density=0.06, random_state=1, format="csr")
    expected = np.array(
        [
            all(stored[max(a, b), min(a, b)] for a in pinv[row.indices] for b in pinv[row.indices])
            for row in A
        ]
    )
    assert 0.2 < expected.mean() < 0.8  # both kinds of rows
    np.testing.assert_array_equal(rows_in_pattern(model.symbolic, A), expected)
    np.testing.assert_array_equal(rows_in_pattern(factor, A), expected)


def test_predict_same_on_every_executor(poisson_result, executors):
    A, X, offset = _prediction_rows()
    outputs = {}
    stats = {}
    for name, executor in executors.items():
        stats[name] = {}
        outputs[name] = poisson_result.predict(
            A, X, offset=offset, executor=executor, block_size=3, stats=stats[name]
        ).to_numpy()
    scale = np.abs(outputs["serial"]).max()
    for name in ("pool", "dask"):
        # the points' Laplace approximations were recomputed in the workers: the modes
        # agree to the rounding of the Newton iteration
        np.testing.assert_allclose(outputs[name], outputs["serial"], rtol=1e-10, atol=1e-10 * scale)
        st = stats[name]
        assert st["blocks"] == 4 and st["points"] == len(poisson_result.weights)
        assert st["point_tasks"] == st["points"] * st["chunks"]
    # on the cluster the rows go by file: a task carries a path, not the rows
    assert stats["dask"]["item_bytes"] > 0 and stats["dask"]["task_bytes"] < 1000
    # one block or many: the same numbers
    whole = poisson_result.predict(A, X, offset=offset, block_size=1000).to_numpy()
    np.testing.assert_allclose(outputs["serial"], whole, rtol=1e-10, atol=1e-10 * scale)


def test_one_point_is_split_into_chunks_of_rows(poisson_result, executors):
    # more workers than points: a point's rows are split over the workers
    from gmrf_core.inference.prediction import design_rows, predict_mixture

    res = poisson_result
    A, X, offset = _prediction_rows()
    rows, offset = design_rows(A, X, offset, res.n_latent, res.n_fixed)
    args = (res._model, res.points[:1], res._shifts[:1], [1.0], rows, offset)
    stats = {}
    cluster = predict_mixture(*args, executor=executors["dask"], block_size=3, stats=stats)
    serial = predict_mixture(*args, block_size=3)
    assert stats["chunks"] == 2 and stats["point_tasks"] == 2
    for a, b in zip(cluster, serial):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_predict_with_constraints_on_a_cluster(grid_result, executors):
    # the RW1's sum-to-zero constraint: the kriging correction of the variances in workers
    from tests.inference.rw1_gaussian import N
    from tests.inference.test_result import _exact_predictive

    rng = np.random.default_rng(2)
    A = sp.random(7, N, density=0.1, random_state=3, format="lil")
    A[0, 5] = 1.0
    A = sp.csr_matrix(A)
    X = rng.standard_normal((7, 1))
    table = grid_result.predict(A, X, executor=executors["dask"], block_size=2)
    mean, sd = _exact_predictive(grid_result, A.toarray(), X[:, 0])
    np.testing.assert_allclose(table["mean"].to_numpy(), mean, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(table["sd"].to_numpy(), sd, rtol=1e-6)
    serial = grid_result.predict(A, X, block_size=2)
    np.testing.assert_allclose(
        table.to_numpy(),
        serial.to_numpy(),
        rtol=1e-10,
        atol=1e-10 * np.abs(serial.to_numpy()).max(),
    )


def test_predict_no_rows_and_bad_block_size(poisson_result):
    n = SIDE * SIDE
    empty = poisson_result.predict(sp.csr_matrix((0, n)))
    assert empty.shape == (0, 5)
    for bad in (0, -1, 2.5, True, "8"):
        with pytest.raises(gm.InputError, match="block_size"):
            poisson_result.predict(np.ones((2, n)), block_size=bad)
    with pytest.raises(gm.InputError, match="offset"):
        poisson_result.predict(np.ones((2, n)), offset=np.zeros(3))
    with pytest.raises(gm.InputError, match="finite"):
        poisson_result.predict(np.full((2, n), np.nan))
