"""Laplace objective + gradient: gmrf_core's value_and_grad against TMB (framework "TMBad").

The same models on both sides: Poisson counts on an m x m lattice or a mesh of about m²
nodes (default m = 100 and 250), log E y = β + x, β ~ N(0, 1/τ_β), τ_β = 10⁻³ (gmrf_core's
default ``fixed_precision``), and x ~ N(0, Q(θ)⁻¹) with one of three priors (``--priors``,
default all):

- ``custom``: the SPDE-type Custom prior of bench/compare_gradient.py
  (``anisotropic_prior``, Q(θ) = e^θ₀ C + e^θ₁ (G_h + G_v)²), a user's precision callable
  about which gmrf_core knows nothing: it factorizes Q and takes a selected inversion of it
  for log|Q| and its gradient, as TMB does. TMB template bench/tmb/custom_poisson.cpp.
- ``matern``: gmrf_core's ``models.Matern2D`` (θ = (log range, log sd),
  Q = τ(κ⁴ C + 2κ² G + G C⁻¹ G)), whose log|Q| is exact from the lattice's eigenvalues, so
  an evaluation factorizes and inverts H only; TMB's template bench/tmb/matern_poisson.cpp
  builds the same Q from θ and takes log|Q| through ``density::GMRF``, as TMB's SPDE
  examples (and sdmTMB) do.
- ``mesh``: gmrf_core's ``models.MaternSPDE`` on a triangle mesh of about m² nodes
  (``mesh_from_points`` on m²/5 uniform points in the unit square, ``max_area`` 1.2/m²;
  counts of a field of range 0.2 and sd 0.8 at every node), whose log|Q| comes from one
  factorization of the far sparser K = κ²C + G and the diagonal of K⁻¹; TMB's template is
  matern_poisson.cpp again, with the mesh's C, G and G C⁻¹ G.

In both templates x and β are random and ``density::GMRF`` (with TMBad: its atomic sparse
log-determinant) gives log|Q|; they are compiled with ``TMB::compile(..., framework =
"TMBad")`` into a build directory outside the repository. Both sides evaluate the same θ
path (θ_j = θ0 + 0.05 (cos j, cos(j + π/4)), each call warm-started from the mode at
θ_(j-1): TMB's inner Newton starts from its last random effects) in turns, a few points
each per round; TMB's cost per point is ``obj$fn(θ)`` then ``obj$gr(θ)`` (as nlminb calls
them), gmrf_core's is one ``value_and_grad(θ)``. Both objectives keep every constant (the
Poisson log y!, the Gaussian 2π terms), so they must agree up to the inner solvers'
tolerances: the largest difference of the values and of the gradients over the path is
printed. One thread on both sides (OMP/OpenBLAS threads 1, ``TMB::openmp(1)``, gmrf_core
threads=1). Needs R with TMB (bench/install_tmb.sh).

Usage: python bench/compare_tmb.py [--sizes 100 250] [--priors custom matern mesh] [--rounds 5]
       [--per-round 4] [--build-dir ~/.cache/gmrf_core_tmb]
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_name] = "1"
from _env import ensure_cholmod_env  # noqa: E402

ensure_cholmod_env()  # the same OpenBLAS core type for R's OpenBLAS and ours

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402
from compare_commits import theta_path  # noqa: E402
from compare_gradient import anisotropic_prior  # noqa: E402

import gmrf_core as gm  # noqa: E402
from gmrf_core import likelihoods, models  # noqa: E402
from gmrf_core.lattice import spde_lattice_parts  # noqa: E402

TMB_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tmb")


def simulated_counts(m, rng):
    """Poisson counts with log mean 1 + a Matérn field (range m/10, sd 0.8)."""
    matern = models.Matern2D((m, m))
    field = gm.cholesky(matern.precision(matern.theta_from(m / 10.0, 0.8))).sample(rng=rng)
    return rng.poisson(np.exp(1.0 + field)).astype(np.float64)


def mesh_case(m):
    """The ``mesh`` prior for size m and counts on its nodes."""
    rng = np.random.default_rng(m)
    points = rng.uniform(0.0, 1.0, (m * m // 5, 2))
    prior = models.MaternSPDE(models.mesh_from_points(points, max_area=1.2 / (m * m)))
    field = gm.cholesky(prior.precision(prior.theta_from(0.2, 0.8))).sample(rng=rng)
    return prior, rng.poisson(np.exp(1.0 + field)).astype(np.float64)


def prior_structures_counts(kind, m, lattice_counts):
    """The prior of ``kind`` (see the module docstring), the structure matrices TMB's
    template combines into Q(θ), and the counts (``lattice_counts`` on the lattices)."""
    if kind == "mesh":
        prior, y = mesh_case(m)
        # C, G and G C⁻¹ G on Q's pattern, the matrices MaternSPDE combines
        parts = (prior._mass, prior._stiffness, prior._stiffness_squared)
        return prior, [prior._csc(part) for part in parts], y
    if kind == "custom":
        prior = anisotropic_prior(m, 2)
        theta0 = np.asarray(prior.theta0, dtype=float)
        # e^θ_k S_k at θ = 0
        return prior, prior.precision_grad(np.zeros(theta0.size)), lattice_counts
    prior = models.Matern2D((m, m))
    coefficients = [(1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)]  # C, G, G C⁻¹ G
    indptr, indices, parts = spde_lattice_parts(m, m, prior.spacing, coefficients)
    n = m * m
    structures = [sp.csc_matrix((data, indices, indptr), shape=(n, n)) for data in parts]
    return prior, structures, lattice_counts


def write_case(data_dir, kind, m, lattice_counts, path_length):
    """The counts, the structure matrices and the θ path as little-endian binaries."""
    prior, structures, y = prior_structures_counts(kind, m, lattice_counts)
    theta0 = np.asarray(prior.theta0, dtype=float)
    y.astype("<f8").tofile(os.path.join(data_dir, f"y_{m}"))
    with open(os.path.join(data_dir, f"n_{m}"), "w") as f:
        f.write(f"{prior.n}\n")
    for k, s in enumerate(structures):
        coo = sp.coo_matrix(s)
        coo.eliminate_zeros()
        coo.row.astype("<i4").tofile(os.path.join(data_dir, f"S{k}_{m}.i"))
        coo.col.astype("<i4").tofile(os.path.join(data_dir, f"S{k}_{m}.j"))
        coo.data.astype("<f8").tofile(os.path.join(data_dir, f"S{k}_{m}.x"))
        with open(os.path.join(data_dir, f"S{k}_{m}.nnz"), "w") as f:
            f.write(f"{coo.nnz}\n")
    with open(os.path.join(data_dir, f"structures_{m}"), "w") as f:
        f.write(f"{len(structures)}\n")
    path = np.array(theta_path(theta0, path_length))
    path.astype("<f8").tofile(os.path.join(data_dir, f"path_{m}"))
    with open(os.path.join(data_dir, f"path_{m}.shape"), "w") as f:
        f.write(f"{path.shape[0]} {path.shape[1]}\n")
    model = gm.LatentGaussianModel(prior, likelihoods.Poisson(y), X=np.ones((prior.n, 1)))
    return model, path


class TMBProcess:
    """Rscript bench/tmb/driver.R on one template, answering θ-path requests over a pipe."""

    def __init__(self, data_dir, build_dir, template, sizes):
        os.makedirs(build_dir, exist_ok=True)
        source = os.path.join(TMB_DIR, f"{template}.cpp")
        target = os.path.join(build_dir, f"{template}.cpp")
        if not os.path.exists(target) or open(source).read() != open(target).read():
            shutil.copyfile(source, target)
        self.process = subprocess.Popen(
            ["Rscript", os.path.join(TMB_DIR, "driver.R"), data_dir, build_dir, template]
            + [str(m) for m in sizes],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.setup = {}
        for line in self.process.stdout:
            words = line.split()
            if words and words[0] == "setup":
                self.setup[int(words[1])] = float(words[2])
            elif words == ["ready"]:
                break
        else:
            raise RuntimeError("bench/tmb/driver.R ended before it was ready (see its stderr)")

    def run(self, m, first, count):
        self.process.stdin.write(f"run {m} {first} {count}\n")
        self.process.stdin.flush()
        times, values, grads = [], [], []
        for line in self.process.stdout:
            words = line.split()
            if words == ["done"]:
                return times, values, grads
            times.append((float(words[1]), float(words[2])))
            values.append(float(words[3]))
            grads.append([float(w) for w in words[4:]])
        raise RuntimeError("bench/tmb/driver.R ended while evaluating")

    def close(self):
        self.process.stdin.write("stop\n")
        self.process.stdin.close()
        self.process.wait()


PRIOR_TITLES = {
    "custom": "SPDE-type Custom prior (2 θ; Q factorized and inverted on both sides)",
    "matern": "models.Matern2D (θ = log range, log sd; gmrf_core's log|Q| exact from the "
    "lattice eigenvalues, TMB's by density::GMRF)",
    "mesh": "models.MaternSPDE on a triangle mesh (gmrf_core's log|Q| from one factorization of "
    "K = κ²C + G, TMB's by density::GMRF)",
}
TEMPLATES = {"custom": "custom_poisson", "matern": "matern_poisson", "mesh": "matern_poisson"}


def compare(kind, counts, args, path_length):
    """Both sides along the θ path for one prior; prints the table."""
    data_dir = tempfile.mkdtemp(prefix=f"gmrf_tmb_{kind}_")
    cases = {}
    for m in args.sizes:
        model, path = write_case(data_dir, kind, m, counts[m], path_length)
        t0 = time.perf_counter()
        model.value_and_grad(path[0])  # compilation and the first mode, as TMB's setup
        cases[m] = (model, path, time.perf_counter() - t0)
    tmb = TMBProcess(data_dir, args.build_dir, TEMPLATES[kind], args.sizes)

    results = {(side, m): ([], [], []) for side in ("tmb", "gmrf") for m in args.sizes}
    for round_ in range(args.rounds):
        first = 1 + round_ * args.per_round
        for m in args.sizes:
            model, path, _ = cases[m]
            turns = ("tmb", "gmrf") if round_ % 2 == 0 else ("gmrf", "tmb")
            for side in turns:
                times, values, grads = results[side, m]
                if side == "tmb":
                    t, v, g = tmb.run(m, first, args.per_round)
                    times += t
                    values += v
                    grads += g
                    continue
                for theta in path[first : first + args.per_round]:
                    t0 = time.perf_counter()
                    value, grad = model.value_and_grad(theta)
                    times.append(time.perf_counter() - t0)
                    values.append(float(value))
                    grads.append(list(grad))
    tmb.close()
    shutil.rmtree(data_dir)

    print(
        f"Poisson, {PRIOR_TITLES[kind]}, intercept; objective + gradient of the Laplace "
        f"approximation along a moving θ (steps of 0.05, warm-started), {args.rounds} rounds x "
        f"{args.per_round} points per side in turns; medians; 1 thread"
    )
    print(
        f"{'n':>8}{'TMB fn s':>10}{'TMB gr s':>10}{'fn+gr s':>9}{'gmrf_core s':>13}"
        f"{'TMB/gmrf':>10}{'max|Δ value|':>14}{'max rel Δ grad':>16}{'TMB setup s':>13}"
    )
    for m in args.sizes:
        split, v_tmb, g_tmb = results["tmb", m]
        t_fn, t_gr = np.median(split, axis=0)
        t_tmb = np.sum(split, axis=1)
        t_gm, v_gm, g_gm = results["gmrf", m]
        dv = np.abs(np.subtract(v_tmb, v_gm)).max()
        g_tmb, g_gm = np.array(g_tmb), np.array(g_gm)
        dg = (np.abs(g_tmb - g_gm).max(axis=1) / np.abs(g_gm).max(axis=1)).max()
        print(
            f"{cases[m][0].n_latent:>8,}{t_fn:>10.3f}{t_gr:>10.3f}{np.median(t_tmb):>9.3f}{np.median(t_gm):>13.3f}"
            f"{np.median(t_tmb) / np.median(t_gm):>10.2f}{dv:>14.1e}{dg:>16.1e}"
            f"{tmb.setup[m]:>13.1f}"
        )
    first_values = ", ".join(f"{results['gmrf', m][1][0]:.6f}" for m in args.sizes)
    print(f"gmrf_core's objective at θ_1: {first_values}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 250])
    parser.add_argument(
        "--priors", nargs="+", choices=sorted(PRIOR_TITLES), default=["custom", "matern", "mesh"]
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--per-round", type=int, default=4, help="evaluations per turn")
    parser.add_argument(
        "--build-dir",
        default=os.path.join(os.path.expanduser("~"), ".cache", "gmrf_core_tmb"),
        help="where TMB compiles the templates of bench/tmb/",
    )
    args = parser.parse_args()
    if shutil.which("Rscript") is None:
        sys.exit("compare_tmb: Rscript not found; run bench/install_tmb.sh first")
    path_length = 1 + args.rounds * args.per_round
    rng = np.random.default_rng(0)
    counts = {m: simulated_counts(m, rng) for m in args.sizes}
    for kind in args.priors:
        compare(kind, counts, args, path_length)


if __name__ == "__main__":
    main()
