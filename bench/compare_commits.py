"""value_and_grad of this tree against an older commit, on the same model, data and θ path.

The SPDE-type Custom prior of bench/compare_gradient.py (``anisotropic_prior``, 2 θ) with
Poisson counts and an intercept on m x m lattices (default 100² and 250²). Each side
evaluates value_and_grad along the same moving θ (θ_j = θ0 + 0.05 (cos j, cos(j + π/4)),
every call warm-started from the mode at θ_(j-1), as inside an optimizer), in a process
of its own: the current tree, and the older commit from a git worktree (default
``/tmp/gmrf_base`` at 16b52df, created if missing) imported through a package directory of
symlinks (``<base>/.import``) on PYTHONPATH (the worktree's ``gmrf_core/``, ``kernels/`` and
``bindings/`` arranged as setuptools' ``package-dir`` maps them), so the editable install
is left alone. The two processes take turns, a few evaluations each per round; medians
over all evaluations, the ratio old/new (and paired: the median over rounds of each round's
ratio of the two sides' adjacent turns), factorizations of H and of Q̃, selected
inversions and triangular solves per evaluation (counted by wrapping their entry points),
and the largest difference between the two sides' objective values and gradients (the
same points, so they must agree).

Usage: python bench/compare_commits.py [--base /tmp/gmrf_base] [--commit 16b52df]
       [--new-commit HEAD --new-base /tmp/gmrf_new] [--sizes 100 250] [--rounds 5]
       [--per-round 4]
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
sys.path.insert(0, BENCH)


def theta_path(theta0, count):
    """θ_j = θ0 + 0.05 (cos(j + k π / 2p))_k, j = 0 .. count - 1."""
    import numpy as np

    p = theta0.size
    return [theta0 + 0.05 * np.cos(j + np.arange(p) * np.pi / (2 * p)) for j in range(count)]


# ------------------------------------------------------------------ worker (one tree)


class KernelCounter:
    """Counts, while ``active`` (a model) evaluates, ``Factor.refactorize`` calls on the
    model's analysis of H ("H") and on any other (its prior's Q̃, "Q"), selected inversions
    ("selinv") and triangular solves ("solve"), by wrapping the Python-level entry points
    (installed after the warm-up, when every kernel is compiled)."""

    def __init__(self):
        from gmrf_core.kernels import cholesky, selinv
        from gmrf_core.linalg import Factor

        self.active = None
        self.counts = {"H": 0, "Q": 0, "selinv": 0, "solve": 0}
        original = Factor.refactorize
        counter = self

        def counting(factor, Q):
            h = counter.active is not None and factor.symbolic is counter.active.symbolic
            counter.counts["H" if h else "Q"] += 1
            return original(factor, Q)

        Factor.refactorize = counting
        self._count_calls(selinv, "_selected_inverse", "selinv")
        self._count_calls(cholesky, "_forward_solve", "solve")

    def _count_calls(self, module, name, key):
        original = getattr(module, name)

        def counted(*args):
            self.counts[key] += 1
            return original(*args)

        setattr(module, name, counted)


def worker(data_dir, sizes):
    """Answer ``run <m> <start> <count>`` lines on stdin with JSON lines on stdout."""
    import numpy as np

    import gmrf_core
    import gmrf_core.testing

    if not hasattr(gmrf_core.testing, "counting_factorizations"):
        # older trees: compare_gradient imports it at module level; this script counts
        # factorizations itself, so any placeholder satisfies the import
        gmrf_core.testing.counting_factorizations = None
    from compare_gradient import anisotropic_prior

    import gmrf_core as gm
    from gmrf_core import likelihoods

    models, paths = {}, {}
    for m in sizes:
        counts = np.load(os.path.join(data_dir, f"counts_{m}.npy"))
        model = gm.LatentGaussianModel(
            anisotropic_prior(m, 2), likelihoods.Poisson(counts), X=np.ones((m * m, 1))
        )
        model.value_and_grad(model.theta0)  # compilation and the first mode
        model.value_and_grad(model.theta0 + 0.01)
        models[m] = model
        paths[m] = theta_path(np.asarray(model.theta0, dtype=float), 10_000)
    counter = KernelCounter()
    print(json.dumps({"ready": os.path.dirname(gmrf_core.__file__)}), flush=True)
    for line in sys.stdin:
        command, m, start, count = line.split()
        if command != "run":
            break
        model = counter.active = models[int(m)]
        out = {"times": [], "values": [], "grads": [], **{key: [] for key in counter.counts}}
        for theta in paths[int(m)][int(start) : int(start) + int(count)]:
            before = dict(counter.counts)
            t0 = time.perf_counter()
            value, grad = model.value_and_grad(theta)
            out["times"].append(time.perf_counter() - t0)
            for key, total in counter.counts.items():
                out[key].append(total - before[key])
            out["values"].append(float(value))
            out["grads"].append([float(g) for g in grad])
        print(json.dumps(out), flush=True)


# ------------------------------------------------------------------ parent


def worktree_path(base, commit):
    """A directory for PYTHONPATH whose ``gmrf_core`` package is the worktree's (symlinks);
    the worktree at ``base`` is made at ``commit`` if missing, and must be at it."""
    if not os.path.isdir(os.path.join(base, "gmrf_core")):
        subprocess.run(["git", "-C", ROOT, "worktree", "add", "--detach", base, commit], check=True)

    found = subprocess.run(
        ["git", "-C", base, "rev-parse", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()
    wanted = subprocess.run(
        ["git", "-C", ROOT, "rev-parse", "--verify", f"{commit}^{{commit}}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    if found != wanted:
        sys.exit(f"compare_commits: {base} is at {found[:10]}, not {commit} ({wanted[:10]})")
    shim = os.path.join(base, ".import")  # untracked in the worktree, kept for its caches
    package = os.path.join(shim, "gmrf_core")
    os.makedirs(package, exist_ok=True)
    links = {
        name: os.path.join(base, "gmrf_core", name)
        for name in os.listdir(os.path.join(base, "gmrf_core"))
        if name != "__pycache__"
    }
    links.update({sub: os.path.join(base, sub) for sub in ("kernels", "bindings")})
    for name, target in links.items():
        if not os.path.lexists(os.path.join(package, name)):
            os.symlink(target, os.path.join(package, name))
    return shim


def start(label, data_dir, sizes, pythonpath):
    env = dict(os.environ)
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[name] = "1"
    if pythonpath is None:
        env.pop("PYTHONPATH", None)
    else:
        env["PYTHONPATH"] = pythonpath
    process = subprocess.Popen(
        [sys.executable, __file__, "--worker", data_dir, "--sizes", *map(str, sizes)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    ready = json.loads(process.stdout.readline())
    print(f"{label}: gmrf_core from {ready['ready']}", flush=True)
    return process


def ask(process, m, first, count):
    process.stdin.write(f"run {m} {first} {count}\n")
    process.stdin.flush()
    return json.loads(process.stdout.readline())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="/tmp/gmrf_base", help="worktree of the old commit")
    parser.add_argument("--commit", default="16b52df", help="commit for a new --base worktree")
    parser.add_argument(
        "--new-commit",
        help="measure this commit (from a worktree at --new-base) instead of this checkout, "
        "e.g. HEAD while the checkout holds work in progress",
    )
    parser.add_argument("--new-base", default="/tmp/gmrf_new", help="worktree of --new-commit")
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 250])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--per-round", type=int, default=4, help="evaluations per turn")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.sizes)
        return

    import numpy as np

    import gmrf_core as gm
    from gmrf_core import models

    data_dir = tempfile.mkdtemp(prefix="gmrf_commits_")
    rng = np.random.default_rng(0)
    for m in args.sizes:
        matern = models.Matern2D((m, m))
        field = gm.cholesky(matern.precision(matern.theta_from(m / 10.0, 0.8))).sample(rng=rng)
        np.save(os.path.join(data_dir, f"counts_{m}.npy"), rng.poisson(np.exp(1.0 + field)))
    sides = {
        "old": start(
            f"old ({args.commit})", data_dir, args.sizes, worktree_path(args.base, args.commit)
        ),
        "new": start("new (this tree)", data_dir, args.sizes, None)
        if args.new_commit is None
        else start(
            f"new ({args.new_commit})",
            data_dir,
            args.sizes,
            worktree_path(args.new_base, args.new_commit),
        ),
    }
    results = {(side, m): [] for side in sides for m in args.sizes}
    first = 0
    for round_ in range(args.rounds):
        order = ("old", "new") if round_ % 2 == 0 else ("new", "old")
        for m in args.sizes:
            for side in order:
                results[side, m].append(ask(sides[side], m, first, args.per_round))
        first += args.per_round
    for process in sides.values():
        process.stdin.write("stop 0 0 0\n")
        process.stdin.close()
        process.wait()
    shutil.rmtree(data_dir)

    print()
    print(
        f"SPDE-type Custom prior (2 θ), Poisson, intercept; value_and_grad along a moving θ "
        f"(steps of 0.05, warm-started), {args.rounds} rounds x {args.per_round} evaluations "
        "per side, turns interleaved; medians (paired: the median over rounds of the ratio of "
        "the two sides' adjacent turns, less sensitive to a machine whose speed drifts)"
    )
    print(
        f"{'n':>8}{'old s':>9}{'new s':>9}{'old/new':>9}{'paired':>8}"
        f"{'|Δvalue|':>10}{'|Δgrad|':>9}   "
        "per evaluation, old | new: factorizations of H, of Q̃, selected inversions, solves"
    )
    for m in args.sizes:
        merged = {}
        for side in sides:
            runs = results[side, m]
            merged[side] = {key: sum((run[key] for run in runs), []) for key in runs[0]}
        t_old = float(np.median(merged["old"]["times"]))
        t_new = float(np.median(merged["new"]["times"]))
        paired = float(
            np.median(
                [
                    np.median(old["times"]) / np.median(new["times"])
                    for old, new in zip(results["old", m], results["new", m])
                ]
            )
        )
        dv = np.abs(np.subtract(merged["old"]["values"], merged["new"]["values"])).max()
        dg = np.abs(np.subtract(merged["old"]["grads"], merged["new"]["grads"])).max()
        print(
            f"{m * m:>8,}{t_old:>9.3f}{t_new:>9.3f}{t_old / t_new:>9.2f}{paired:>8.2f}"
            f"{dv:>10.1e}{dg:>9.1e}   "
            + " | ".join(
                " ".join(
                    f"{np.mean(merged[side][key]):.2f}" for key in ("H", "Q", "selinv", "solve")
                )
                for side in ("old", "new")
            )
        )


if __name__ == "__main__":
    main()
