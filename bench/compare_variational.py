"""Natural-gradient vs plain-gradient variational inference on large latent GMRF models.

For a Bernoulli and a Poisson model on a ``side x side`` Matérn field (data simulated at the
prior's default θ with a fixed seed, θ held at that value) the script

1. converges q with natural-gradient (CVI) steps from the Laplace start
   (:func:`gmrf_core.variational.optimize_q`, tol 1e-10) to get the reference optimum L*;
2. runs natural gradients again (from the Laplace start and from q = prior) and plain
   gradient ascent on (m, λ) (backtracking learning rate) from the Laplace start, each
   until the ELBO is within ``--rtol`` (relative, default 1e-9) of L*, the plain-gradient
   run capped at ``--gd-iters`` iterations or ``--gd-time`` seconds;
3. reports iterations, seconds, and where each run got, next to the Laplace objective
   ``model.objective(theta)`` at the same θ (−ELBO ≥ −log p(y | θ); the Laplace value is
   an approximation of −log p(y | θ) that may lie on either side of it).

Each natural-gradient step costs one factorisation and one selected inversion of Λ; a
plain-gradient step three (two for the central-difference gradient in λ, one for the trial
point) plus any backtracking.

Usage: ``python bench/compare_variational.py [--side 200] [--gd-iters 200] [--gd-time 90]``.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import numpy as np  # noqa: E402
from plain_gradient import PlainGradient  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

import gmrf_core as gm  # noqa: E402
from gmrf_core import likelihoods, models  # noqa: E402
from gmrf_core import variational as vi  # noqa: E402


def simulate(kind, side, seed):
    prior = models.Matern2D((side, side))
    rng = np.random.default_rng(seed)
    x = gm.cholesky(prior.precision(prior.theta0)).sample(rng=rng)
    if kind == "bernoulli":
        y = (rng.random(prior.n) < 1.0 / (1.0 + np.exp(-x))).astype(float)
        model = gm.LatentGaussianModel(prior, likelihoods.Bernoulli(y))
    else:
        offset = 1.0
        y = rng.poisson(np.exp(offset + x)).astype(float)
        model = gm.LatentGaussianModel(prior, likelihoods.Poisson(y), offset=offset)
    return model, prior.theta0.copy()


def run(model, theta, q0, method, target, maxiter, max_time, step):
    """Iterations and seconds until the ELBO reaches ``target`` (None if it did not)."""
    reached = {}
    start = time.perf_counter()

    def callback(iteration, q, value):
        if value >= target and "iteration" not in reached:
            reached["iteration"] = iteration
            reached["time"] = time.perf_counter() - start
            return True
        return False

    result = vi.optimize_q(
        model,
        theta,
        q0,
        method=PlainGradient() if method == "gradient" else method,
        step=step,
        tol=1e-14,
        maxiter=maxiter,
        max_time=max_time,
        callback=callback,
    )
    elapsed = time.perf_counter() - start
    return result, reached.get("iteration"), reached.get("time"), elapsed


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=200)
    parser.add_argument("--gd-iters", type=int, default=200)
    parser.add_argument("--gd-time", type=float, default=90.0)
    parser.add_argument("--rtol", type=float, default=1e-9)
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    # compile the kernels outside the timings
    warm, warm_theta = simulate("poisson", 6, 0)
    vi.optimize_q(warm, warm_theta)
    vi.optimize_q(warm, warm_theta, method=PlainGradient(), step=1e-2, maxiter=2)

    rows = []
    with threadpool_limits(limits=args.threads):
        for kind in ("bernoulli", "poisson"):
            model, theta = simulate(kind, args.side, args.seed)
            t0 = time.perf_counter()
            laplace = model.objective(theta)
            t_laplace = time.perf_counter() - t0
            t0 = time.perf_counter()
            q0 = vi.initial_q(model, theta, "laplace")
            t_init = time.perf_counter() - t0
            t0 = time.perf_counter()
            reference = vi.optimize_q(model, theta, q0, tol=1e-10, maxiter=200)
            t_reference = time.perf_counter() - t0
            best = reference.elbo
            target = best - args.rtol * abs(best)
            start_gap = best - vi.elbo(model, theta, q0)
            print(
                f"{kind} {args.side}x{args.side}: n = {model.n_total}, Laplace objective "
                f"{laplace:.4f} ({t_laplace:.1f} s), initial q {t_init:.1f} s, natgrad "
                f"reference {reference.nit} steps to tol 1e-10 in {t_reference:.1f} s "
                f"({reference.message}), "
                f"-ELBO* = {-best:.4f}, gap of the Laplace start {start_gap:.3e}",
                flush=True,
            )
            rows.append(
                (
                    kind,
                    "natural (to tol 1e-10)",
                    reference.nit,
                    t_reference,
                    reference.nit,
                    t_reference,
                    -best,
                    0.0,
                    laplace,
                )
            )
            q_prior = vi.initial_q(model, theta, "prior")
            for label, start_q, method, step, maxiter, max_time in (
                ("natural", q0, "natural", 1.0, 200, None),
                ("natural (prior start)", q_prior, "natural", 1.0, 200, None),
                ("gradient", q0, "gradient", 1e-2, args.gd_iters, args.gd_time),
            ):
                result, iterations, seconds, elapsed = run(
                    model, theta, start_q, method, target, maxiter, max_time, step
                )
                rows.append(
                    (
                        kind,
                        label,
                        iterations,
                        seconds,
                        result.nit,
                        elapsed,
                        -result.elbo,
                        best - result.elbo,
                        laplace,
                    )
                )
                print(
                    f"  {label}: {result.nit} iterations, {elapsed:.1f} s, "
                    f"-ELBO {-result.elbo:.6f}, gap {best - result.elbo:.3e}",
                    flush=True,
                )

    print()
    print(
        f"Target: ELBO within {args.rtol:g} (relative) of the natural-gradient optimum; "
        f"plain gradient capped at {args.gd_iters} iterations / {args.gd_time:g} s; "
        f"{args.threads} BLAS thread(s)."
    )
    print()
    print(
        "| model | method | iterations to target | seconds to target | iterations run "
        "| seconds run | final -ELBO | gap to optimum | Laplace objective |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for kind, method, its, secs, nit, elapsed, neg_elbo, gap, laplace in rows:
        its_text = str(its) if its is not None else f"not reached (> {nit})"
        secs_text = f"{secs:.1f}" if secs is not None else "-"
        print(
            f"| {kind} {args.side}x{args.side} | {method} | {its_text} | {secs_text} | {nit} "
            f"| {elapsed:.1f} | {neg_elbo:.4f} | {gap:.2e} | {laplace:.4f} |"
        )


if __name__ == "__main__":
    main()
