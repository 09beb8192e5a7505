"""InlaResult.summary, plot_hyperparameters, constrained models and executors."""

import concurrent.futures

import numpy as np
import pytest
import scipy.sparse as sp

import gmrf_core as gm
from gmrf_core import likelihoods, models
from gmrf_core.priors import PCPrecision
from tests.inference import rw1_gaussian


def test_summary_lists_every_table(grid_result):
    text = grid_result.summary()
    for piece in (
        "Fixed effects",
        "beta[0]",
        "Hyperparameters",
        "tau",
        "noise_precision",
        "log marginal likelihood",
        "DIC",
        "WAIC",
        "CPO",
    ):
        assert piece in text
    assert str(grid_result) == text


def test_plot_hyperparameters_writes_a_png(grid_result, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    path = tmp_path / "theta.png"
    fig = grid_result.plot_hyperparameters(path=str(path))
    assert path.exists() and path.stat().st_size > 5000
    with open(path, "rb") as handle:
        assert handle.read(8) == b"\x89PNG\r\n\x1a\n"
    axes = [ax for ax in fig.axes if ax.lines]
    assert [ax.get_title() for ax in axes] == ["tau", "noise_precision"]
    values, density = axes[0].lines[0].get_data()
    expected = grid_result.hyperparameter_marginal("tau")
    np.testing.assert_allclose(values, expected[0])
    np.testing.assert_allclose(density, expected[1])
    import matplotlib.pyplot as plt

    plt.close(fig)


def _grid_adjacency(m):
    """Rook adjacency of an m × m lattice."""
    path = sp.diags([np.ones(m - 1), np.ones(m - 1)], [-1, 1], shape=(m, m))
    return sp.csr_matrix(sp.kron(sp.eye(m), path) + sp.kron(path, sp.eye(m)))


@pytest.mark.parametrize("kind", ["besag", "bym2"])
def test_constrained_models_sample_on_the_constraint(kind):
    m = 6
    W = _grid_adjacency(m)
    rng = np.random.default_rng(5)
    n = m * m
    expected = np.full(n, 5.0)
    counts = rng.poisson(expected * np.exp(0.3 * rng.standard_normal(n)))
    if kind == "besag":
        prior = models.Besag(W, prior=PCPrecision(1.0, 0.01))
    else:
        prior = models.BYM2(W, prior={"log_tau": PCPrecision(1.0, 0.01)})
    # BYM2's latent vector is (b, u): the observations see b
    A = sp.hstack([sp.eye(n), sp.csr_matrix((n, prior.n - n))]).tocsr()
    model = gm.LatentGaussianModel(
        prior, likelihoods.Poisson(counts, exposure=expected), A=A, X=np.ones((n, 1))
    )
    res = gm.inla(model, progress=False, compute=("dic", "waic", "cpo"))
    A_c, e = prior.constraints
    A_c = A_c.toarray() if sp.issparse(A_c) else np.asarray(A_c)
    draws = res.sample(300, rng=1)
    assert np.max(np.abs(draws["latent"] @ A_c.T - e)) < 1e-10
    # mixture means satisfy the (linear) constraints too
    assert np.max(np.abs(A_c @ res.latent_mean - e)) < 1e-8
    for name in res.natural_names:
        values, density = res.hyperparameter_marginal(name)
        assert abs(np.trapezoid(density, values) - 1.0) < 5e-3
    if kind == "bym2":
        assert any(line.startswith("logit_phi") for line in res.defaults_applied)
    assert np.isfinite(res.dic) and np.isfinite(res.waic)


def test_executor_gives_the_serial_result():
    model = rw1_gaussian.model()
    serial = gm.inla(model, integration="ccd", progress=False, compute=())
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        threaded = gm.inla(model, integration="ccd", progress=False, compute=(), executor=pool)
    np.testing.assert_allclose(threaded.theta_mode, serial.theta_mode, rtol=1e-9)
    np.testing.assert_allclose(threaded.weights, serial.weights, rtol=1e-8)
    np.testing.assert_allclose(threaded.latent_mean, serial.latent_mean, rtol=1e-8, atol=1e-10)


def test_model_with_default_priors_pickles_and_adds_the_priors():
    import pickle

    from gmrf_core.inference import WithDefaultPriors, default_priors

    model = rw1_gaussian.model(with_priors=False)
    defaults = default_priors(model)
    proxy = WithDefaultPriors(model, defaults)
    theta = np.array([0.7, 1.4])
    expected = model.objective(theta) - sum(
        prior.log_density(theta[k]) for k, _name, prior, _d in defaults
    )
    # the defaults are the PC priors P(σ > 1) = 0.01, written out here
    assert (
        abs(
            proxy.objective(theta)
            - (
                model.objective(theta)
                - rw1_gaussian.log_pc(theta[0])
                - rw1_gaussian.log_pc(theta[1])
            )
        )
        < 1e-10
    )
    clone = pickle.loads(pickle.dumps(proxy))
    assert abs(clone.objective(theta) - expected) < 1e-9
    value, grad = clone.value_and_grad(theta)
    step = 1e-6
    numeric = [
        (clone.objective(theta + step * e) - clone.objective(theta - step * e)) / (2 * step)
        for e in np.eye(2)
    ]
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-6)
