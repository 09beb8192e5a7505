"""Cost of gm.inla on the demo's Matérn–Poisson model, split by stage, for both latent strategies.

The model of ``examples/demo.py``: a Matérn field (SPDE α = 2, range 30, σ = 0.8) on a
size × size lattice plus an intercept, Poisson counts. ``gm.inla(integration="ccd")`` with
the Gaussian and the simplified-Laplace latent marginals (DIC, WAIC and CPO computed),
each started at the same fitted mode. Reported per strategy: wall seconds of the stages
(mode search, Hessian from 2·dim θ exact gradients, the CCD points, θ and latent
marginals, criteria, latent quantiles), the total, the total relative to one warm
value_and_grad at the mode (the unit of cost of a fit), and the peak RSS of the process.
Runs alternate between the strategies (``--repeat``), medians reported.

Usage: python bench/compare_inla.py [--size 300] [--repeat 1] [--threads 1]
"""

import argparse
import os
import resource
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "examples"))
import numpy as np  # noqa: E402
from demo import simulate  # noqa: E402

import gmrf_core as gm  # noqa: E402
from gmrf_core import likelihoods  # noqa: E402


def peak_rss_gib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def run(model, theta0, latent):
    t0 = time.perf_counter()
    res = gm.inla(
        model,
        integration="ccd",
        latent=latent,
        theta0=theta0,
        progress=False,
        compute=("dic", "waic", "cpo"),
    )
    t1 = time.perf_counter()
    res.latent_quantiles([0.025, 0.975])
    quantiles = time.perf_counter() - t1
    total = time.perf_counter() - t0
    stages = dict(res.timings)
    marginals = stages.pop("hyperparameter marginals") + stages.pop("latent marginals")
    return res, {
        "mode": stages["mode"],
        "hessian": stages["hessian"],
        "points": stages["points"],
        "marginals": marginals,
        "criteria": stages["criteria"],
        "quantiles": quantiles,
        "total": total,
    }


def main(size=300, repeat=1, threads=1):
    prior, _theta_true, _field, counts = simulate(size)
    model = gm.LatentGaussianModel(
        prior, likelihoods.Poisson(counts), X=np.ones((size * size, 1)), threads=threads
    )
    print(
        f"Matérn–Poisson {size}x{size}: {model.n_total:,} latent, nnz(L) = {model.symbolic.nnz:,}"
    )
    t0 = time.perf_counter()
    fitted = gm.fit(model, progress=False, std_err=False)
    print(f"fit (from the default start) {time.perf_counter() - t0:.1f} s, theta {fitted.theta}")
    # one warm value_and_grad at the mode: the unit of cost
    model.value_and_grad(fitted.theta)
    unit = []
    for _ in range(3):
        t1 = time.perf_counter()
        model.value_and_grad(fitted.theta)
        unit.append(time.perf_counter() - t1)
    unit = statistics.median(unit)
    print(f"one value_and_grad at the mode: {unit:.2f} s")
    times = {"gaussian": [], "simplified_laplace": []}
    results = {}
    rss = {}
    for _ in range(repeat):
        for latent in times:
            res, stage = run(model, fitted.theta, latent)
            times[latent].append(stage)
            results[latent] = res
            rss[latent] = peak_rss_gib()
    columns = ["mode", "hessian", "points", "marginals", "criteria", "quantiles", "total"]
    print()
    print(
        "| latent | points | "
        + " | ".join(f"{c} s" for c in columns)
        + " | total / value_and_grad | peak RSS GiB |"
    )
    print("|---|---:|" + "---:|" * (len(columns) + 2))
    for latent, runs in times.items():
        med = {c: statistics.median(r[c] for r in runs) for c in columns}
        cells = " | ".join(f"{med[c]:.1f}" for c in columns)
        print(
            f"| {latent} | {len(results[latent].weights)} | {cells} | "
            f"{med['total'] / unit:.1f} | {rss[latent]:.2f} |"
        )
    g, s = results["gaussian"], results["simplified_laplace"]
    print()
    for label, res in (("gaussian", g), ("simplified_laplace", s)):
        table = res.hyperparameters
        print(
            f"{label}: range {table.loc['range', 'mean']:.2f} "
            f"({table.loc['range', 'q0.025']:.2f}, {table.loc['range', 'q0.975']:.2f}), "
            f"sigma {table.loc['sigma', 'mean']:.3f}, intercept {res.fixed['mean'].iloc[0]:.3f}, "
            f"mlik {res.log_marginal_likelihood:.2f}, DIC {res.dic:.1f}, WAIC {res.waic:.1f}"
        )
    shift = np.abs(s.latent_mean - g.latent_mean) / g.latent_sd
    print(
        "simplified vs gaussian latent means: mean |diff|/sd "
        f"{shift.mean():.4f}, max {shift.max():.4f}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    main(args.size, args.repeat, args.threads)
