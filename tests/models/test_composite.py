"""Tests of the Kronecker and Stack composite models."""

import numpy as np
import pytest
import scipy.linalg as sla
import scipy.sparse as sp

from gmrf_core.errors import InputError
from gmrf_core.models import (
    AR1,
    BYM2,
    IID,
    RW1,
    RW2,
    Besag,
    Kronecker,
    NormalPrior,
    PCPrecision,
    Stack,
    composite,
)


@pytest.mark.parametrize(
    "make",
    [
        lambda grid: (RW1(5), Besag(grid(2, 3))),
        lambda grid: (AR1(4), Besag(grid(2, 2))),
        lambda grid: (RW2(5), IID(3)),
        lambda grid: (IID(3), RW1(4)),
        lambda grid: (AR1(3), AR1(4)),
    ],
    ids=["rw1-besag", "ar1-besag", "rw2-iid", "iid-rw1", "ar1-ar1"],
)
def test_kronecker(make, grid, check, rng):
    time_model, space_model = make(grid)
    model = Kronecker(time_model, space_model)
    nt, ns = time_model.n, space_model.n
    assert model.n == nt * ns
    assert model.theta_names[0].startswith("time.") and model.theta_names[-1].startswith("space.")
    theta = model.theta0 + 0.3 * rng.standard_normal(len(model.theta0))
    tt, ts = theta[: len(time_model.theta0)], theta[len(time_model.theta0) :]
    q = model.precision(theta).toarray()
    np.testing.assert_allclose(
        q, np.kron(time_model.precision(tt).toarray(), space_model.precision(ts).toarray())
    )
    check.precision_grad(model, theta)
    check.fixed_pattern(model, rng)
    kt, ks = time_model.rank_deficiency, space_model.rank_deficiency
    assert model.rank_deficiency == nt * ks + ns * kt - kt * ks
    if model.rank_deficiency:
        assert model.constraints[0].shape == (model.rank_deficiency, model.n)
    else:
        assert model.constraints is None
    check.null_space(model, theta)
    assert model.logdet(theta) == pytest.approx(check.pdet(q, model.rank_deficiency), rel=1e-9)
    check.scalar_grad(model.logdet, model.logdet_grad, theta)
    basis = check.constraint_basis(model)
    assert model.constrained_logdet(theta) == pytest.approx(
        np.linalg.slogdet(basis.T @ q @ basis)[1], rel=1e-9
    )


def test_kronecker_type_iv_constraints(grid):
    """RW1 ⊗ Besag: every time slice and every area's time series sum to zero."""
    model = Kronecker(RW1(4), Besag(grid(2, 2)))
    a, e = model.constraints
    assert np.all(e == 0)
    x = np.random.default_rng(1).standard_normal(16)
    # project x onto {A x = 0} and check the sums
    basis = sla.null_space(a)
    y = basis @ (basis.T @ x)
    np.testing.assert_allclose(y.reshape(4, 4).sum(axis=1), 0.0, atol=1e-12)
    np.testing.assert_allclose(y.reshape(4, 4).sum(axis=0), 0.0, atol=1e-12)
    assert np.linalg.matrix_rank(a) == a.shape[0] == 4 + 4 - 1


def test_kronecker_priors_natural_and_errors(grid, check):
    time_model = RW1(4, prior=PCPrecision(1, 0.01))
    space_model = AR1(3, prior={"atanh_rho": NormalPrior(0, 1)})
    model = Kronecker(time_model, space_model, labels=("t", "s"))
    theta = np.array([0.2, -0.3, 0.5])
    assert model.log_prior(theta) == pytest.approx(
        time_model.log_prior(theta[:1]) + space_model.log_prior(theta[1:])
    )
    check.scalar_grad(model.log_prior, model.log_prior_grad, theta)
    natural = model.to_natural(theta)
    assert set(natural) == {"t.tau", "s.tau", "s.rho"}
    assert natural["s.rho"] == pytest.approx(np.tanh(0.5))
    with pytest.raises(InputError, match="mean"):
        Kronecker(RW1(3), IID(2, mean_param=True))
    with pytest.raises(InputError, match="latent model"):
        Kronecker(RW1(3), np.eye(2))
    with pytest.raises(InputError, match="distinct"):
        Kronecker(RW1(3), RW1(2), labels=("a", "a"))
    with pytest.raises(InputError, match="expects 3"):
        model.precision([0.0, 0.0])


def test_kronecker_constraint_size_limit(monkeypatch):
    monkeypatch.setattr(composite, "MAX_CONSTRAINT_ENTRIES", 100)
    with pytest.raises(InputError, match="too large"):
        Kronecker(RW1(10), RW1(10))


def test_stack(grid, check, rng):
    blocks = [IID(3, mean_param=True), RW1(4), BYM2(grid(2, 2)), AR1(3)]
    model = Stack(blocks)
    assert model.labels == ("iid", "rw1", "bym2", "ar1")
    assert model.n == 3 + 4 + 8 + 3
    assert model.theta_names[:3] == ("iid.log_tau", "iid.mu", "rw1.log_tau")
    theta = model.theta0 + 0.4 * rng.standard_normal(len(model.theta0))
    parts = [theta[s] for s in model.theta_slices]
    q = model.precision(theta).toarray()
    expected = sla.block_diag(*[b.precision(p).toarray() for b, p in zip(blocks, parts)])
    np.testing.assert_allclose(q, expected)
    check.precision_grad(model, theta)
    check.fixed_pattern(model, rng)
    # mean and its gradient
    mean = model.mean(theta)
    np.testing.assert_allclose(mean[model.slices[0]], theta[1])
    np.testing.assert_allclose(mean[3:], 0.0)
    grad = model.mean_grad(theta)
    step = 1e-6
    for k in range(theta.size):
        e = np.zeros(theta.size)
        e[k] = step
        np.testing.assert_allclose(
            grad[k], (model.mean(theta + e) - model.mean(theta - e)) / (2 * step), atol=1e-9
        )
    # constraints block diagonal: RW1 sum-to-zero and BYM2's on u
    a, e = model.constraints
    assert a.shape == (2, model.n) and np.all(e == 0)
    np.testing.assert_allclose(a[0, model.slices[1]], 1.0)
    np.testing.assert_allclose(a[1, model.slices[2]], [0, 0, 0, 0, 1, 1, 1, 1])
    assert model.rank_deficiency == 2
    # log-determinants
    assert model.logdet(theta) == pytest.approx(check.pdet(q, 2), rel=1e-10)
    check.scalar_grad(model.logdet, model.logdet_grad, theta)
    basis = check.constraint_basis(model)
    assert model.constrained_logdet(theta) == pytest.approx(
        np.linalg.slogdet(basis.T @ q @ basis)[1], rel=1e-10
    )
    check.scalar_grad(model.constrained_logdet, model.constrained_logdet_grad, theta)
    natural = model.to_natural(theta)
    assert natural["bym2.phi"] == pytest.approx(1 / (1 + np.exp(-theta[model.theta_slices[2]][1])))


def test_stack_priors_labels_and_errors(check):
    model = Stack([IID(2, prior=PCPrecision(1, 0.01)), IID(3)], labels=["a", "b"])
    assert model.theta_names == ("a.log_tau", "b.log_tau")
    check.scalar_grad(model.log_prior, model.log_prior_grad, [0.3, 0.1])
    assert model.log_prior([0.3, 0.1]) == pytest.approx(PCPrecision(1, 0.01).log_density(0.3))
    assert Stack([IID(2), IID(2)]).labels == ("iid", "iid_2")
    empty = Stack([])  # the prior of a model whose latent vector is its fixed effects alone
    assert empty.n == 0 and empty.precision([]).shape == (0, 0) and empty.logdet([]) == 0.0
    with pytest.raises(TypeError):
        Stack([IID(2)], fixed_effects=2)  # fixed effects are LatentGaussianModel's X=
    with pytest.raises(InputError, match="latent model"):
        Stack([IID(2), sp.eye(2)])
    with pytest.raises(InputError, match="distinct"):
        Stack([IID(2), IID(2)], labels=["x", "x"])
    with pytest.raises(InputError, match="labels"):
        Stack([IID(2), IID(2)], labels=["x"])
    with pytest.raises(InputError, match="expects 2"):
        model.precision([0.0])


def test_fixed_effects_go_through_x_not_the_stack(rng):
    """Fixed effects alone (empty Stack + X=) and next to a block, against the exact marginal.

    With a Gaussian likelihood the Laplace objective is exact: y ~ N(0, A Q⁻¹ Aᵀ +
    X Xᵀ/κ + I/τ_y), written densely here.
    """
    import gmrf_core as gm
    from gmrf_core.likelihoods import Gaussian

    m, kappa, log_noise = 12, 1e-3, 0.4
    X = np.column_stack([np.ones(m), rng.standard_normal(m)])
    y = X @ [1.0, -0.5] + rng.standard_normal(m)

    def exact(covariance):
        sign, logdet = np.linalg.slogdet(covariance)
        assert sign > 0
        return 0.5 * (m * np.log(2 * np.pi) + logdet + y @ np.linalg.solve(covariance, y))

    noise = np.eye(m) / np.exp(log_noise)
    glm = gm.LatentGaussianModel(Stack([]), Gaussian(y), A=sp.csr_matrix((m, 0)), X=X)
    assert glm.n_latent == 0 and glm.n_fixed == 2
    assert glm.objective([log_noise]) == pytest.approx(exact(X @ X.T / kappa + noise), rel=1e-10)
    block = IID(m)
    mixed = gm.LatentGaussianModel(Stack([block]), Gaussian(y), X=X)
    tau = 2.0
    theta = [np.log(tau), log_noise]
    covariance = np.eye(m) / tau + X @ X.T / kappa + noise
    assert mixed.objective(theta) == pytest.approx(exact(covariance), rel=1e-10)
