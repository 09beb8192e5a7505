"""The Laplace gradient's pieces are the rules: ½ log det(BᵀHB) of the model's H at the mode,
its cotangents in Q̃ and in the weights, and the likelihood pullback, compared with what
gmrf_core.laplace and gmrf_core.latent gather by stored position."""

import numpy as np
import pytest
import scipy.sparse as sp

from gmrf_core import LatentGaussianModel, likelihoods, models
from gmrf_core.rules import likelihood as likelihood_rules
from gmrf_core.rules import sparse as sparse_rules


def _models():
    rng = np.random.default_rng(60)
    matern = models.Matern2D((6, 5))
    A = sp.random(25, matern.n, density=0.15, random_state=61, format="csr")
    counts = rng.poisson(3.0, 25).astype(float)
    counts[4] = np.nan
    yield (
        "matern, projection, negative binomial",
        LatentGaussianModel(matern, likelihoods.NegativeBinomial(counts), A=A, X=np.ones((25, 1))),
    )
    walk = models.RW1(20)  # intrinsic, with a sum-to-zero constraint
    yield (
        "rw1, constrained, poisson",
        LatentGaussianModel(
            walk, likelihoods.Poisson(rng.poisson(2.0, 20).astype(float)), X=np.ones((20, 1))
        ),
    )


MODELS = dict(_models())


@pytest.mark.parametrize("name", sorted(MODELS))
def test_laplace_pieces_are_the_rules(name):
    model = MODELS[name]
    s = model.structure
    theta = model.theta0 + 0.1
    approx = model.laplace(theta)
    split = s.split_theta(theta)
    Q_tilde = s.prior_precision(split.prior)
    (_ll, _score, w), pullback = likelihood_rules.likelihood_vjp(
        approx.linear_predictor, split.likelihood, likelihood=model.likelihood
    )
    constraints = None if s.constraints is None else s.constraints.as_pair()
    y, logdet_pullback = sparse_rules.weighted_logdet_vjp(
        Q_tilde, w, A=s.A_obs, constraints=constraints
    )
    assert y == pytest.approx(approx.constrained.logdet(), rel=1e-11)
    Q_bar, w_bar = logdet_pullback(0.5)
    # the library's gathers at positions found at set-up
    np.testing.assert_allclose(
        w_bar, 0.5 * s.predictor_variance(approx.constrained), rtol=1e-9, atol=1e-14
    )
    np.testing.assert_allclose(
        Q_bar.data, 0.5 * s.covariance_on_prior_pattern(approx.constrained), rtol=1e-9, atol=1e-14
    )
    # v = ∇_z ½ log det(BᵀHB) = Ãᵀ η̄ with η̄ from the weights' pullback, as in the gradient
    ev = model._evaluate(theta)
    try:
        w_lib, v_lib, _pullback = model._sensitivities(ev)
    finally:
        ev.close()
    np.testing.assert_allclose(w_lib, w_bar, rtol=1e-9, atol=1e-14)
    eta_bar, _theta_bar = pullback((None, None, w_bar))
    np.testing.assert_allclose(v_lib, s.A_obs.T @ eta_bar, rtol=1e-8, atol=1e-12)
