"""MaternSPDE's log|Q| through K = κ²C + G against a factorization of Q̃, in one process.

A Poisson model on a triangle mesh (``mesh_from_points`` on uniform points in the unit
square, ``max_area`` chosen for about n nodes; one count per node, log E y = β + x,
x ~ MaternSPDE at range 0.2, σ 0.8) evaluated two ways along the same moving θ (θ_j =
θ0 + 0.05 (cos j, cos(j + π/4)), warm-started, as inside an optimizer):

- ``through K``: ``models.MaternSPDE`` as it is, whose ``logdet``/``logdet_grad`` take one
  factorization of K and the diagonal of its selected inverse;
- ``Q̃ factorized``: the same prior with ``logdet`` and ``logdet_grad`` returning None, so
  the Laplace objective factorizes Q̃ and inverts it selectively (what every MaternSPDE
  did before), the same Q(θ), data and settings otherwise.

With ``--ar1-times T`` the prior is the spatio-temporal ``Kronecker(AR1(T), MaternSPDE)``
(counts at every node and time), whose log|Q| = T log|Q_space| + n log|Q_AR1| comes from
the space model's the same way (``Q̃ factorized``: the Kronecker product's Q̃).

The two models take turns, a few evaluations each per round (one thread); medians of
value_and_grad, the ratio, factorizations of H, Q̃ and K and selected inversions per
evaluation, and the largest difference of the objectives and gradients (the same
function, so they must agree to rounding and the Newton tolerance).

Usage: python bench/compare_mesh_logdet.py [--nodes 10000 62500] [--ar1-times T] [--rounds 5]
       [--per-round 4]
"""

import argparse
import os
import sys
import time

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_name] = "1"
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
from compare_commits import theta_path  # noqa: E402

import gmrf_core as gm  # noqa: E402
from gmrf_core import likelihoods, models  # noqa: E402
from gmrf_core.linalg import Factor, SelectedInverse  # noqa: E402


class FactorizedMaternSPDE(models.MaternSPDE):
    """MaternSPDE without its own log-determinant: the Laplace objective factorizes Q̃."""

    def logdet(self, theta):
        return None

    def logdet_grad(self, theta):
        return None


def make_prior(cls, mesh, times):
    space = cls(mesh)
    return space if not times else models.Kronecker(models.AR1(times), space)


def mesh_case(nodes, times, rng):
    """A mesh of about ``nodes`` nodes and Poisson counts on it (at ``times`` times)."""
    points = rng.uniform(0.0, 1.0, (max(nodes // 5, 3), 2))
    mesh = models.mesh_from_points(points, max_area=1.2 / nodes)
    prior = models.MaternSPDE(mesh)
    theta = prior.theta_from(0.2, 0.8)
    if times:
        prior = make_prior(models.MaternSPDE, mesh, times)
        theta = np.r_[prior.time_model.theta0, theta]
    field = gm.cholesky(prior.precision(theta)).sample(rng=rng)
    y = rng.poisson(np.exp(1.0 + field)).astype(np.float64)
    return mesh, y


class Counter:
    """Factorizations by symbolic analysis and selected inversions, while installed."""

    def __init__(self):
        self.factorizations = {}
        self.inversions = {}
        refactorize, invert = Factor.refactorize, SelectedInverse.__init__
        counter = self

        def counting_refactorize(factor, matrix):
            key = id(factor.symbolic)
            counter.factorizations[key] = counter.factorizations.get(key, 0) + 1
            return refactorize(factor, matrix)

        def counting_invert(inverse, factor):
            key = id(factor.symbolic)
            counter.inversions[key] = counter.inversions.get(key, 0) + 1
            invert(inverse, factor)

        Factor.refactorize = counting_refactorize
        SelectedInverse.__init__ = counting_invert


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[10000, 62500])
    parser.add_argument("--ar1-times", type=int, default=0, help="Kronecker(AR1(T), MaternSPDE)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--per-round", type=int, default=4, help="evaluations per turn")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    rows = []
    for nodes in args.nodes:
        mesh, y = mesh_case(nodes, args.ar1_times, rng)
        sides = {}
        for name, cls in (("through K", models.MaternSPDE), ("Q̃ factorized", FactorizedMaternSPDE)):
            prior = make_prior(cls, mesh, args.ar1_times)
            model = gm.LatentGaussianModel(prior, likelihoods.Poisson(y), X=np.ones((prior.n, 1)))
            length = 1 + args.rounds * args.per_round
            path = theta_path(np.asarray(prior.theta0, dtype=float), length)
            model.value_and_grad(path[0])  # compilation, analyses and the first mode
            sides[name] = {"model": model, "path": path, "times": [], "values": [], "grads": []}
        counter = Counter()
        counts = {}
        for round_ in range(args.rounds):
            first = 1 + round_ * args.per_round
            order = list(sides) if round_ % 2 == 0 else list(sides)[::-1]
            for name in order:
                side = sides[name]
                model = side["model"]
                before = (dict(counter.factorizations), dict(counter.inversions))
                for theta in side["path"][first : first + args.per_round]:
                    t0 = time.perf_counter()
                    value, grad = model.value_and_grad(theta)
                    side["times"].append(time.perf_counter() - t0)
                    side["values"].append(float(value))
                    side["grads"].append(np.asarray(grad))
                tally = counts.setdefault(name, {"H": 0, "Q": 0, "K": 0, "inv": 0})
                h_id = id(model.symbolic)
                q_id = id(model.structure.prior_symbolic)
                space = model.prior.space_model if args.ar1_times else model.prior
                k_symbolic = space._k_logdet.symbolic
                k_id = id(k_symbolic) if k_symbolic is not None else None
                for key, total in counter.factorizations.items():
                    done = total - before[0].get(key, 0)
                    label = {h_id: "H", q_id: "Q", k_id: "K"}.get(key)
                    if label:
                        tally[label] += done
                for key, total in counter.inversions.items():
                    if key in (h_id, q_id, k_id):
                        tally["inv"] += total - before[1].get(key, 0)
        k, q = sides["through K"], sides["Q̃ factorized"]
        evaluations = len(k["times"])
        dv = np.max(np.abs(np.subtract(k["values"], q["values"])))
        dg = max(
            float(np.max(np.abs(a - b)) / np.max(np.abs(b))) for a, b in zip(k["grads"], q["grads"])
        )
        rows.append((mesh.n_nodes, q, k, counts, evaluations, dv, dg, k["values"][0]))
    kind = f"Kronecker(AR1({args.ar1_times}), MaternSPDE)" if args.ar1_times else "MaternSPDE"
    print(
        f"Poisson counts, {kind} on meshes (one per node, intercept); value_and_grad along a "
        f"moving θ, warm-started; {args.rounds} rounds x {args.per_round} evaluations per side "
        "in turns, medians; 1 thread"
    )
    print(
        f"{'nodes':>8}{'Q̃ fact. s':>11}{'through K s':>13}{'ratio':>7}{'|Δvalue|':>10}"
        f"{'rel Δgrad':>11}   per evaluation, Q̃ factorized | through K: H, Q̃, K, selinvs"
    )
    for n, q, k, counts, evaluations, dv, dg, value in rows:
        per = {
            name: " ".join(f"{counts[name][c] / evaluations:.2f}" for c in ("H", "Q", "K", "inv"))
            for name in counts
        }
        t_q, t_k = np.median(q["times"]), np.median(k["times"])
        print(
            f"{n:>8,}{t_q:>11.3f}{t_k:>13.3f}{t_q / t_k:>7.2f}{dv:>10.1e}{dg:>11.1e}   "
            f"{per['Q̃ factorized']} | {per['through K']}   (objective {value:.6f})"
        )


if __name__ == "__main__":
    main()
