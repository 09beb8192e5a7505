"""Frequentist coverage of gm.inla's 95 % intervals on simulated Matérn–Poisson data sets.

Each data set is the demo's model (examples/demo.py: SPDE α = 2 field with range 30 and
σ = 0.8, intercept 1, Poisson counts) on a size × size lattice with its own seed. For every
data set ``gm.inla(integration="ccd")`` (simplified Laplace, default PC priors) gives 95 %
intervals of range and σ (the hyperparameter table's q0.025–q0.975) and of every linear
predictor η_i = β₀ + x_i (mean ± 1.96 sd); the script reports how often they cover the
truth: per hyperparameter over the data sets, and pointwise for η (all cells of all sets).

Usage: python bench/coverage_inla.py [--size 100] [--datasets 20]
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "examples"))
import numpy as np  # noqa: E402
from demo import TRUE_INTERCEPT, TRUE_RANGE, TRUE_SIGMA, simulate  # noqa: E402

import gmrf_core as gm  # noqa: E402
from gmrf_core import likelihoods  # noqa: E402


def main(size=100, datasets=20):
    truth = {"range": TRUE_RANGE, "sigma": TRUE_SIGMA}
    covered = {name: 0 for name in truth}
    eta_covered = eta_total = 0
    start = time.perf_counter()
    for k in range(datasets):
        prior, _theta, field, counts = simulate(size, seed=1000 + k)
        model = gm.LatentGaussianModel(
            prior, likelihoods.Poisson(counts), X=np.ones((size * size, 1))
        )
        res = gm.inla(model, integration="ccd", progress=False, compute=())
        table = res.hyperparameters
        line = []
        for name, value in truth.items():
            low, high = table.loc[name, "q0.025"], table.loc[name, "q0.975"]
            hit = bool(low <= value <= high)
            covered[name] += hit
            line.append(f"{name} ({low:.3f}, {high:.3f}) {'ok' if hit else 'MISS'}")
        eta = TRUE_INTERCEPT + field
        inside = np.abs(res.predictor_mean - eta) <= 1.96 * res.predictor_sd
        eta_covered += int(inside.sum())
        eta_total += inside.size
        print(f"data set {k + 1:2d}: " + ", ".join(line) + f", eta {inside.mean():.3f}", flush=True)
    print()
    print(f"{datasets} data sets of {size}x{size}, {time.perf_counter() - start:.0f} s")
    for name in truth:
        print(f"  {name}: 95% interval covers the truth in {covered[name]}/{datasets}")
    print(f"  eta: pointwise 95% coverage {eta_covered / eta_total:.4f} ({eta_total:,} cells)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--datasets", type=int, default=20)
    args = parser.parse_args()
    main(args.size, args.datasets)
