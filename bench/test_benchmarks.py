"""pytest-benchmark suite: ``python -m pytest bench/test_benchmarks.py --benchmark-only``.

Moderate sizes (200² SPDE precision, 40k unknowns) so that the whole suite takes a
minute; the comparison scripts in this folder measure the large sizes against
CHOLMOD and SelInv. Not part of the test suite (tests/ is).
"""

import numpy as np
import pytest

import gmrf_core as gm
from gmrf_core import likelihoods, models
from gmrf_core.datasets import spde_precision_2d

SIZE = 200


@pytest.fixture(scope="module")
def precision():
    return spde_precision_2d(SIZE, kappa=0.05)


@pytest.fixture(scope="module")
def factor(precision):
    return gm.cholesky(precision)


@pytest.fixture(scope="module")
def poisson_model():
    prior = models.Matern2D((SIZE, SIZE))
    rng = np.random.default_rng(0)
    x = gm.cholesky(prior.precision(prior.theta0)).sample(rng=rng)
    y = rng.poisson(np.exp(1.0 + x))
    model = gm.LatentGaussianModel(prior, likelihoods.Poisson(y), X=np.ones((SIZE * SIZE, 1)))
    model.value_and_grad(model.theta0)
    return model


@pytest.mark.parametrize("ordering", ["amd", "nd"])
def test_analyze(benchmark, precision, ordering):
    benchmark(gm.analyze, precision, ordering=ordering)


def test_refactorize(benchmark, factor, precision):
    benchmark(factor.refactorize, precision)


def test_solve(benchmark, factor):
    b = np.random.default_rng(1).standard_normal(factor.n)
    benchmark(factor.solve, b)


def test_selected_inverse(benchmark, factor):
    benchmark(factor.selected_inverse)


def test_sample(benchmark, factor):
    benchmark(factor.sample, 10, 0)


def test_laplace_objective(benchmark, poisson_model):
    benchmark(poisson_model.objective, poisson_model.theta0)


def test_laplace_value_and_grad(benchmark, poisson_model):
    benchmark(poisson_model.value_and_grad, poisson_model.theta0)
