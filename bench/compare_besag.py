"""Build time of scaled Besag and BYM2 models on lattice graphs, against an earlier revision.

Scaling (Sørbye & Rue 2014) needs the constrained marginal variances and the
generalised log-determinant of the graph Laplacian. Today they come from one sparse
Cholesky factorization of the Laplacian grounded at one node per component, its
selected inverse and one solve; the revision given as ``--baseline`` (default
16b52df, before that change) used a banded Cholesky with a banded Takahashi
recursion after reverse Cuthill–McKee and refused graphs with n·b² > 2·10¹⁰.

Every build runs in a fresh worker process (after a warm-up build on a small graph,
so Numba loading is not timed); the baseline workers import the baseline's sources,
extracted with ``git archive``. Candidates are timed in turns and medians reported,
with the relative differences of the scale factor and log|R*|* between the two.

Usage: python bench/compare_besag.py [--sizes 300 1000] [--repeat 3] [--baseline REV]
(``--baseline none`` times the current code only).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def lattice(m):
    """Rook adjacency of an m × m lattice (CSR)."""
    import numpy as np
    import scipy.sparse as sp

    path = sp.diags([np.ones(m - 1), np.ones(m - 1)], [-1, 1])
    identity = sp.identity(m)
    return sp.csr_matrix(sp.kron(identity, path) + sp.kron(path, identity))


def worker(model_name, size):
    """Build one model in this process and print its build time and scaling as JSON."""
    from gmrf_core import models

    cls = getattr(models, model_name)
    cls(lattice(12))  # warm-up (the baseline's banded path too): Numba caches loaded, not timed
    graph = lattice(size)
    start = time.perf_counter()
    try:
        model = cls(graph)
    except Exception as exc:  # a refused graph is a result, reported as such
        seconds = time.perf_counter() - start
        print(json.dumps({"seconds": seconds, "error": f"{type(exc).__name__}: {exc}"}))
        return
    seconds = time.perf_counter() - start
    result = {
        "seconds": seconds,
        "scale_factor": float(model.scale_factors[0]),
        "log_pdet": float(model.structure_log_pdet),
    }
    print(json.dumps(result))


def baseline_tree(revision, directory):
    """Extract ``revision``'s sources into ``directory``; return the import path to use."""
    archive = os.path.join(directory, "source.tar")
    with open(archive, "wb") as out:
        subprocess.run(["git", "archive", revision], cwd=REPOSITORY, stdout=out, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(directory, filter="data")
    # kernels/ and bindings/ install as gmrf_core.kernels / gmrf_core.bindings
    for name in ("kernels", "bindings"):
        link = os.path.join(directory, "gmrf_core", name)
        if not os.path.exists(link):
            os.symlink(os.path.join(directory, name), link)
    return directory


def run_worker(model_name, size, pythonpath):
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    command = [sys.executable, os.path.abspath(__file__), "--worker", model_name, str(size)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd="/")
    if done.returncode != 0:
        return {"seconds": float("nan"), "error": done.stderr.strip().splitlines()[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[300, 1000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--baseline", default="16b52df")
    parser.add_argument("--models", nargs="+", default=["BYM2", "Besag"])
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker[0], int(args.worker[1]))
        return
    with tempfile.TemporaryDirectory() as directory:
        candidates = {"current": None}
        if args.baseline.lower() != "none":
            candidates[f"baseline {args.baseline}"] = baseline_tree(args.baseline, directory)
        print("fresh worker process per build, candidates in turns; medians in seconds")
        header = f"{'model':>6}{'lattice':>9}{'n':>10}"
        for label in candidates:
            header += f"{label + ' s':>22}"
        header += f"{'baseline/current':>18}{'factor rel.diff':>17}{'log|R*|* rel.diff':>19}"
        print(header)
        for size in args.sizes:
            for model_name in args.models:
                runs = {label: [] for label in candidates}
                for _ in range(args.repeat):
                    for label, path in candidates.items():
                        runs[label].append(run_worker(model_name, size, path))
                line = f"{model_name:>6}{f'{size}²':>9}{size * size:>10,}"
                medians = {}
                for label, results in runs.items():
                    errors = [r["error"] for r in results if "error" in r]
                    if errors:
                        line += f"{'refused':>22}"
                        print(f"  {label}: {errors[0][:150]}", file=sys.stderr)
                        continue
                    medians[label] = statistics.median(r["seconds"] for r in results)
                    line += f"{medians[label]:>22.2f}"
                labels = list(candidates)
                if len(labels) == 2 and all(label in medians for label in labels):
                    current, baseline = (runs[label][0] for label in labels)
                    ratio = medians[labels[1]] / medians[labels[0]]
                    factor_diff = abs(current["scale_factor"] / baseline["scale_factor"] - 1)
                    pdet_diff = abs(current["log_pdet"] / baseline["log_pdet"] - 1)
                    line += f"{ratio:>18.1f}{factor_diff:>17.1e}{pdet_diff:>19.1e}"
                else:
                    line += f"{'-':>18}{'-':>17}{'-':>19}"
                print(line, flush=True)


if __name__ == "__main__":
    main()
