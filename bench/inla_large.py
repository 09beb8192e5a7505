"""gm.inla on the demo's Matérn–Poisson model at any size, with stage times and memory.

The model of ``examples/demo.py --size SIZE`` (a Matérn field, SPDE α = 2, range 30,
σ = 0.8, on a SIZE × SIZE lattice plus an intercept; Poisson counts), then one
``gm.inla(model, integration="ccd", latent="simplified_laplace",
compute=("dic", "waic", "cpo"))`` — the issue's 10⁶-latent target at ``--size 1000``
(under 15 minutes, peak RSS under 16 GiB, threads=2).

The mode search of gm.inla starts where gm.fit does (the model's start from the data), or
with ``--theta0 RANGE SIGMA`` at a known estimate (gm.inla's documented ``theta0=``, as a
user would pass the θ̂ of an earlier ``gm.fit``). Printed: every progress line of gm.inla
with its wall time and the resident memory then; the stages (mode search, Hessian, points,
marginals, criteria) and the points' parts (Laplace, marginal variances by selected
inversion, predictor variances, simplified-Laplace corrections, criteria terms) summed over
the points, each with the peak RSS seen while it ran (sampled every 50 ms); the total with
and without the mode search; and the process's peak RSS (getrusage). Every line carries the
machine's 1-minute load average: with threads=2, OpenBLAS's spinning threads make every
small BLAS call slow once the 2 cores are shared with other work (at 100², load 3.6–4.2:
32–39 s with the default OPENBLAS_THREAD_TIMEOUT, 6.7–10 s with OPENBLAS_THREAD_TIMEOUT=4
set before the start), so read the times with the load.

Usage: python bench/inla_large.py [--size 300] [--threads 2] [--theta0 RANGE SIGMA]
"""

import argparse
import os
import resource
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "examples"))
import numpy as np  # noqa: E402
from demo import simulate  # noqa: E402

import gmrf_core as gm  # noqa: E402
from gmrf_core import likelihoods  # noqa: E402

_PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_gib():
    """Resident memory of this process now (GiB)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE / 2**30


def load_average():
    """The 1-minute load average of the machine."""
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def peak_rss_gib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


class MemorySampler(threading.Thread):
    """(time, RSS) every ``interval`` seconds until stopped."""

    def __init__(self, interval=0.05):
        super().__init__(daemon=True)
        self.interval = interval
        self.samples = []
        self._stop_event = threading.Event()

    def run(self):
        while not self._stop_event.is_set():
            self.samples.append((time.perf_counter(), rss_gib()))
            self._stop_event.wait(self.interval)

    def stop(self):
        self._stop_event.set()
        self.join()

    def peak(self, start, end):
        inside = [r for t, r in self.samples if start <= t <= end]
        return max(inside) if inside else float("nan")


class StampedStream:
    """A progress stream that prefixes each line with the wall time and the RSS."""

    def __init__(self, origin):
        self.origin = origin
        self.lines = []

    def write(self, text):
        for line in text.splitlines():
            if line.strip():
                now = time.perf_counter()
                self.lines.append((now, line))
                print(
                    f"[{now - self.origin:7.1f} s, {rss_gib():5.2f} GiB, load "
                    f"{load_average():4.1f}] {line}",
                    flush=True,
                )

    def flush(self):
        pass


def main(size=300, threads=2, theta0=None):
    t_start = time.perf_counter()
    prior, _theta_true, _field, counts = simulate(size)
    model = gm.LatentGaussianModel(
        prior, likelihoods.Poisson(counts), X=np.ones((size * size, 1)), threads=threads
    )
    print(
        f"Matérn–Poisson {size}x{size}: {model.n_total:,} latent, nnz(L) = "
        f"{model.symbolic.nnz:,}, threads={threads} (simulation and analysis "
        f"{time.perf_counter() - t_start:.1f} s, RSS {rss_gib():.2f} GiB); load average "
        f"{load_average():.1f}, OPENBLAS_THREAD_TIMEOUT="
        f"{os.environ.get('OPENBLAS_THREAD_TIMEOUT', 'unset')}",
        flush=True,
    )
    start = None if theta0 is None else prior.theta_from(*theta0)
    sampler = MemorySampler()
    sampler.start()
    t0 = time.perf_counter()
    res = gm.inla(
        model,
        integration="ccd",
        latent="simplified_laplace",
        compute=("dic", "waic", "cpo"),
        theta0=start,
        progress=True,
        stream=StampedStream(t0),
    )
    total = time.perf_counter() - t0
    sampler.stop()
    print()
    print(f"mode search: {res.fit.nit} L-BFGS iterations, {res.fit.nfev} evaluations")
    print("| stage | s | peak RSS GiB while running |")
    print("|---|---:|---:|")
    clock = t0
    for stage, seconds in res.timings.items():
        print(f"| {stage} | {seconds:.1f} | {sampler.peak(clock, clock + seconds):.2f} |")
        clock += seconds
    points_start = t0 + res.timings["mode"] + res.timings["hessian"]
    print()
    print(f"points ({res.n_evaluated}), parts summed over the points:")
    print("| part | s (sum) | s (mean per point) |")
    print("|---|---:|---:|")
    for part, seconds in res.point_timings.items():
        print(f"| {part} | {seconds:.1f} | {seconds / res.n_evaluated:.1f} |")
    print(
        f"RSS before the points {sampler.peak(points_start - 0.1, points_start):.2f} GiB, "
        f"after them {rss_gib():.2f} GiB (the per-point summaries and the result)"
    )
    print()
    print(
        f"gm.inla total {total:.1f} s; without the mode search "
        f"{total - res.timings['mode']:.1f} s; peak RSS {peak_rss_gib():.2f} GiB"
    )
    table = res.hyperparameters
    print(
        f"range {table.loc['range', 'mean']:.2f} ({table.loc['range', 'q0.025']:.2f}, "
        f"{table.loc['range', 'q0.975']:.2f}), sigma {table.loc['sigma', 'mean']:.3f} "
        f"({table.loc['sigma', 'q0.025']:.3f}, {table.loc['sigma', 'q0.975']:.3f}), "
        f"intercept {res.fixed['mean'].iloc[0]:.3f}, mlik {res.log_marginal_likelihood:.2f}, "
        f"DIC {res.dic:.1f}, WAIC {res.waic:.1f}, -sum log CPO "
        f"{-np.nansum(np.log(res.cpo)):.1f}"
    )
    print(
        f"script wall time {time.perf_counter() - t_start:.1f} s, load average now "
        f"{load_average():.1f}"
    )
    return res


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=300, help="lattice side (n = size²)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--theta0",
        type=float,
        nargs=2,
        metavar=("RANGE", "SIGMA"),
        help="start of the mode search on the natural scale (default: the model's theta0)",
    )
    args = parser.parse_args()
    main(args.size, args.threads, args.theta0)
