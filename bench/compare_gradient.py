"""Cost of the exact Laplace gradient vs the objective, and vs finite differences.

1. Matérn2D–Poisson at 500² (250k latent variables): median time of the objective
   and of value_and_grad at the same θ (warm-started inner Newton, as inside an
   optimizer), and their ratio (target ≤ 3).
2. The same lattice and data with SPDE-type Custom priors Q = Σ_k exp(θ_k) S_k of
   2 and of 6 hyperparameters on one pattern: the gradient/objective ratio should
   stay within 10 % between them, since the reverse-mode gradient costs one
   selected inversion and one adjoint solve whatever the number of hyperparameters.
3. Exact gradient vs central finite differences (2p objective evaluations): time
   ratio and accuracy side by side.
4. Evaluations along a moving θ (each call warm-started from the mode at another θ, as
   inside an optimizer; objective and value_and_grad in turns), and a real L-BFGS-B path
   (gm.fit from θ0): factorizations of H and of Q̃ per evaluation, and solves with H's
   factors (Newton's chord and Newton steps, the adjoint) per evaluation.

Usage: python bench/compare_gradient.py [--size 500] [--repeat 5] [--no-fit]
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402
from _env import interleaved_medians  # noqa: E402

import gmrf_core as gm  # noqa: E402
from gmrf_core import likelihoods, models  # noqa: E402
from gmrf_core.linalg import Factor  # noqa: E402
from gmrf_core.testing import counting_factorizations  # noqa: E402


def lattice_parts(m):
    """C = I, 1-D second differences along rows (G_h) and columns (G_v) on an m x m lattice."""
    path = sp.diags_array(
        [-np.ones(m - 1), np.r_[1.0, 2.0 * np.ones(m - 2), 1.0], -np.ones(m - 1)],
        offsets=[-1, 0, 1],
    )
    eye = sp.eye_array(m)
    g_h = sp.csc_matrix(sp.kron(eye, path))
    g_v = sp.csc_matrix(sp.kron(path, eye))
    return sp.eye_array(m * m, format="csc"), g_h, g_v


def anisotropic_prior(m, k):
    """Q(θ) = Σ_k exp(θ_k) S_k, every term positive semi-definite and C positive definite.

    k = 6: S = (C, G_h, G_v, G_h², G_v², (G_h+G_v)²); k = 2: S = (C, (G_h+G_v)²), the
    same pattern, so the two differ only in the number of hyperparameters.
    """
    C, g_h, g_v = lattice_parts(m)
    g = g_h + g_v
    terms = (C, g_h, g_v, g_h @ g_h, g_v @ g_v, g @ g) if k == 6 else (C, g @ g)
    structures = [sp.csc_matrix(s) for s in terms]
    pattern = sp.csc_matrix(sum(abs(s) for s in structures))

    def precision(theta):
        return sum(np.exp(t) * s for t, s in zip(theta, structures))

    def precision_grad(theta):
        return [np.exp(t) * s for t, s in zip(theta, structures)]

    theta0 = np.log([0.05, 0.1, 0.1, 1.0, 1.0, 0.5] if k == 6 else [0.05, 1.0])
    names = tuple(f"log_w{j}" for j in range(k))
    return models.Custom(m * m, precision, precision_grad, theta0, names, pattern=pattern)


def moving_theta(model, theta, repeat):
    """Median seconds of objective and value_and_grad, and factorizations per call, along
    θ_j = θ + 0.05 (cos j, sin j, ...): every call starts from the mode at θ_(j-1)."""
    p = theta.size
    path = [
        theta + 0.05 * np.cos(j + np.arange(p) * np.pi / (2 * max(p, 1)))
        for j in range(2 * repeat + 1)
    ]
    model.objective(path[0])
    times = {"objective": [], "gradient": []}
    with counting_factorizations(model) as counts:
        per = {"objective": [0, 0], "gradient": [0, 0]}
        for j, point in enumerate(path[1:]):
            kind = "objective" if j % 2 == 0 else "gradient"
            before = (counts["H"], counts["Q"])
            t0 = time.perf_counter()
            model.objective(point) if kind == "objective" else model.value_and_grad(point)
            times[kind].append(time.perf_counter() - t0)
            per[kind][0] += counts["H"] - before[0]
            per[kind][1] += counts["Q"] - before[1]
    calls = {kind: len(values) for kind, values in times.items()}
    medians = {kind: float(np.median(values)) for kind, values in times.items()}
    factorizations = {kind: (h / calls[kind], q / calls[kind]) for kind, (h, q) in per.items()}
    return medians, factorizations


class counting_solves:
    """Count Factor.solve calls on factors of H (``model.symbolic``) inside the block."""

    def __init__(self, model):
        self.model, self.count = model, 0

    def __enter__(self):
        self.original = Factor.solve
        original, symbolic = self.original, self.model.symbolic

        def solve(factor, b):
            if factor.symbolic is symbolic:
                self.count += 1
            return original(factor, b)

        Factor.solve = solve
        return self

    def __exit__(self, *exc):
        Factor.solve = self.original


def finite_differences(model, theta, h=1e-5):
    grad = np.zeros(theta.size)
    for k in range(theta.size):
        e = np.zeros(theta.size)
        e[k] = h
        grad[k] = (model.objective(theta + e) - model.objective(theta - e)) / (2 * h)
    return grad


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-fit", action="store_true", help="skip the L-BFGS-B path")
    args = parser.parse_args()
    m = args.size
    rng = np.random.default_rng(0)
    matern = models.Matern2D((m, m))
    theta_true = matern.theta_from(m / 10.0, 0.8)
    field = gm.cholesky(matern.precision(theta_true)).sample(rng=rng)
    counts = rng.poisson(np.exp(1.0 + field))
    X = np.ones((m * m, 1))

    cases = []
    for label, prior, theta in (
        ("Matern2D (2 θ)", matern, theta_true + 0.1),
        ("SPDE-type Custom (2 θ)", anisotropic_prior(m, 2), None),
        ("SPDE-type Custom (6 θ)", anisotropic_prior(m, 6), None),
    ):
        model = gm.LatentGaussianModel(prior, likelihoods.Poisson(counts), X=X)
        theta = model.theta0 if theta is None else theta
        model.value_and_grad(theta)  # warm start and compilation
        cases.append((label, model, theta))
    candidates = {}
    for label, model, theta in cases:
        candidates[(label, "objective")] = lambda model=model, theta=theta: model.objective(theta)
        candidates[(label, "gradient")] = lambda model=model, theta=theta: model.value_and_grad(
            theta
        )
    times = interleaved_medians(candidates, repeat=args.repeat, warmup=0)
    rows = [
        (label, model, theta, times[(label, "objective")], times[(label, "gradient")])
        for label, model, theta in cases
    ]

    print(
        f"Poisson counts on a {m}x{m} lattice ({m * m:,} latent + 1 intercept); medians of "
        "runs taken in turns, warm-started Newton"
    )
    print(f"{'prior':<26}{'objective s':>12}{'value_and_grad s':>18}{'ratio':>8}")
    for label, _model, _theta, t_obj, t_grad in rows:
        print(f"{label:<26}{t_obj:>12.2f}{t_grad:>18.2f}{t_grad / t_obj:>8.2f}")
    r2 = rows[1][4] / rows[1][3]
    r6 = rows[2][4] / rows[2][3]
    print(
        f"Custom: ratio(6 θ) / ratio(2 θ) = {r6 / r2:.3f}, value_and_grad(6 θ) / "
        f"value_and_grad(2 θ) = {rows[2][4] / rows[1][4]:.3f}  (Matern2D has an analytic "
        "log|Q|; the Custom priors factorize Q and invert it selectively)"
    )

    print()
    print(f"{'prior':<26}{'exact s':>9}{'FD s':>9}{'FD/exact':>10}{'max rel. diff':>15}")
    for label, model, theta, _t_obj, _t_grad in rows:
        t0 = time.perf_counter()
        _value, grad = model.value_and_grad(theta)
        t_exact = time.perf_counter() - t0
        t0 = time.perf_counter()
        fd = finite_differences(model, theta)
        t_fd = time.perf_counter() - t0
        rel = np.abs(grad - fd).max() / np.abs(fd).max()
        print(f"{label:<26}{t_exact:>9.2f}{t_fd:>9.2f}{t_fd / t_exact:>10.2f}{rel:>15.1e}")

    print()
    print(
        "moving θ (each call warm-started from the mode at another θ, steps of 0.05; "
        "objective and value_and_grad in turns)"
    )
    print(
        f"{'prior':<26}{'objective s':>12}{'value_and_grad s':>18}{'ratio':>8}"
        f"{'H/obj':>8}{'Q/obj':>8}{'H/grad':>8}{'Q/grad':>8}"
    )
    for label, model, theta, _t_obj, _t_grad in rows:
        medians, fact = moving_theta(model, theta, args.repeat)
        print(
            f"{label:<26}{medians['objective']:>12.2f}{medians['gradient']:>18.2f}"
            f"{medians['gradient'] / medians['objective']:>8.2f}"
            f"{fact['objective'][0]:>8.2f}{fact['objective'][1]:>8.2f}"
            f"{fact['gradient'][0]:>8.2f}{fact['gradient'][1]:>8.2f}"
        )
    if not args.no_fit:
        print()
        print("a real L-BFGS-B path (gm.fit from θ0, std_err=False): factorizations per evaluation")
        print(
            f"{'prior':<26}{'evaluations':>12}{'H/eval':>8}{'Q/eval':>8}{'solves/eval':>12}"
            f"{'seconds':>9}"
        )
        for label, model, _theta, _t_obj, _t_grad in rows[:2]:
            model._last_mode = None
            with counting_factorizations(model) as counts, counting_solves(model) as solves:
                t0 = time.perf_counter()
                result = gm.fit(model, progress=False, std_err=False)
                elapsed = time.perf_counter() - t0
            nfev = result.nfev
            print(
                f"{label:<26}{nfev:>12d}{counts['H'] / nfev:>8.2f}{counts['Q'] / nfev:>8.2f}"
                f"{solves.count / nfev:>12.2f}{elapsed:>9.1f}  (success={result.success}, "
                f"θ̂ = {np.array2string(result.theta, precision=8)})"
            )


if __name__ == "__main__":
    main()
