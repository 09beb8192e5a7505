"""InlaResult.sample and .predict against the exact RW1 + Gaussian posterior at the points."""

import numpy as np
import scipy.sparse as sp

import gmrf_core as gm
from tests.inference.rw1_gaussian import N, exact_posterior


def test_sample_honours_constraints_and_moments(grid_result):
    res = grid_result
    draws = res.sample(4000, rng=3)
    assert draws["theta"].shape == (4000, 2)
    assert draws["latent"].shape == (4000, N) and draws["fixed"].shape == (4000, 1)
    # the RW1's sum-to-zero constraint holds for every draw
    assert np.max(np.abs(draws["latent"].sum(axis=1))) < 1e-10
    # θ draws are integration points; moments agree with the marginals (Monte Carlo error)
    assert set(map(tuple, draws["theta"])) <= set(map(tuple, res.points))
    z = (draws["latent"].mean(axis=0) - res.latent_mean) / (res.latent_sd / np.sqrt(4000))
    assert np.max(np.abs(z)) < 4.5
    np.testing.assert_allclose(draws["latent"].std(axis=0), res.latent_sd, rtol=0.08)
    again = res.sample(10, rng=3)
    # the same seed gives the same draws (up to the rounding of the recomputed modes)
    np.testing.assert_allclose(again["latent"], res.sample(10, rng=3)["latent"], atol=1e-12)


def _exact_predictive(res, a_x, a_beta):
    """Mixture over the result's points of the exact N(aᵀz, aᵀ Σ a) at each point."""
    post = exact_posterior(res.points[:, 0], res.points[:, 1])
    U = post["U"]
    means = post["x_mean"] @ a_x.T + post["beta_mean"][:, None] * a_beta[None, :]
    coords = a_x @ U  # rows of A in the eigenbasis
    variances = post["coord_var"] @ (coords**2).T + post["beta_var"][:, None] * a_beta**2
    mean = res.weights @ means
    sd = np.sqrt(res.weights @ (variances + means**2) - mean**2)
    return mean, sd


def test_predict_inside_and_outside_the_pattern(grid_result):
    res = grid_result
    rows = [
        {3: 1.0},  # one node: inside the pattern
        {10: 0.5, 11: 0.5},  # neighbours: inside
        {0: 1.0, N - 1: -1.0},  # the two ends: outside the factor's pattern
        {7: 1.0, 40: 1.0, 52: 2.0},  # outside
    ]
    A_new = sp.lil_matrix((len(rows), N))
    for i, row in enumerate(rows):
        for j, value in row.items():
            A_new[i, j] = value
    X_new = np.array([[1.0], [1.0], [0.0], [1.0]])
    table = res.predict(A_new, X_new, offset=0.25)
    mean, sd = _exact_predictive(res, A_new.toarray(), X_new[:, 0])
    np.testing.assert_allclose(table["mean"].to_numpy(), mean + 0.25, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(table["sd"].to_numpy(), sd, rtol=1e-6)
    assert np.all(table["q0.025"] < table["mean"]) and np.all(table["mean"] < table["q0.975"])
    # rows inside and outside the pattern took both code paths
    from gmrf_core.inference.prediction import rows_in_pattern

    factor = res._approximation(0).factor
    full = sp.hstack([A_new, sp.csr_matrix(X_new)]).tocsr()
    inside = rows_in_pattern(factor, full)
    assert inside[:2].all() and not inside[2:].any()


def test_predict_rejects_bad_shapes(grid_result):
    import pytest

    with pytest.raises(gm.InputError, match="columns"):
        grid_result.predict(np.ones((2, N + 1)))
    with pytest.raises(gm.InputError, match="X_new"):
        grid_result.predict(np.ones((2, N)), X_new=np.ones((3, 1)))
