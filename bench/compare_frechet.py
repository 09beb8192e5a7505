"""Explicit Jacobian vs one Fréchet derivative (JVP) vs one adjoint (VJP) for inv and expm.

Reproduces the comparison of the Julia Discourse thread "Autodiff: custom derivatives of
vector functions for linear algebra": building the full ``n^2 x n^2`` Jacobian of a
matrix function costs orders of magnitude more than applying its Fréchet derivative to the
one direction that is needed (forward mode) or its adjoint to the one cotangent that is
needed (reverse mode).

For each operation and size the script times (median of several ``timeit`` repeats):

* the primal (``inv`` / ``expm``);
* one JVP, ``gmrf_core.rules.dense.<op>_jvp(A, E)``;
* one VJP, ``<op>_vjp(A)`` followed by ``pullback(E_bar)``;
* the explicit Jacobian (column-major ``vec``):
  - ``inv``: analytically, ``J = -(Y^T kron Y)`` with ``Y = A^{-1}``, built in column
    blocks ``-(Y^T[:, j] kron Y)``; and column by column from the JVP;
  - ``expm``: column by column from the JVP (``n^2`` Fréchet derivatives).

At n = 200 the Jacobian has 1.6e9 entries (12.8 GB), so it is never stored there: the
Kronecker blocks are generated and discarded (the time is that of producing every entry),
and the column-by-column timings are measured on a subset of columns and scaled to
``n^2`` columns (marked "extrapolated"). At n = 40 the Jacobians are built in full and
checked against the JVP and VJP.

Usage: ``python bench/compare_frechet.py [--sizes 40 200] [--repeats 5] [--threads 1]``.
"""

import argparse
import statistics
import timeit

import numpy as np
from threadpoolctl import threadpool_limits

from gmrf_core.rules import dense


def median_time(function, repeats, number=None):
    """Median seconds per call over ``repeats`` timeit repeats."""
    timer = timeit.Timer(function)
    if number is None:
        number, _ = timer.autorange()  # calls per repeat so that one repeat takes >= 0.2 s
        number = max(1, number // 4)
    return statistics.median(t / number for t in timer.repeat(repeat=repeats, number=number))


def jacobian_from_jvp(jvp, matrix, columns):
    """Columns ``columns`` of the Jacobian of vec(f(A)), one JVP per unit direction."""
    n = matrix.shape[0]
    block = np.empty((n * n, len(columns)))
    unit = np.zeros((n, n))
    for position, column in enumerate(columns):
        i, j = column % n, column // n  # column-major vec: entry (i, j) is i + j n
        unit[i, j] = 1.0
        block[:, position] = jvp(matrix, unit)[1].ravel(order="F")
        unit[i, j] = 0.0
    return block


def inverse_jacobian_kron(matrix, store=True):
    """-(Y^T kron Y) in column blocks; returns the full matrix or, unstored, its trace."""
    inverse = dense.inv(matrix)
    n = matrix.shape[0]
    full = np.empty((n * n, n * n)) if store else None
    checksum = 0.0
    for j in range(n):
        block = -np.kron(inverse.T[:, j : j + 1], inverse)  # columns j n ... (j + 1) n - 1
        if store:
            full[:, j * n : (j + 1) * n] = block
        else:
            checksum += block[j * n : (j + 1) * n, :].trace()
    return full if store else checksum


def compare(op, n, repeats, rng):
    if op == "inv":
        primal, jvp, vjp = dense.inv, dense.inv_jvp, dense.inv_vjp
        matrix = 2.0 * np.eye(n) + rng.standard_normal((n, n)) / np.sqrt(n)
    else:
        primal, jvp, vjp = dense.expm, dense.expm_jvp, dense.expm_vjp
        matrix = rng.standard_normal((n, n)) / np.sqrt(n)
    direction = rng.standard_normal((n, n))
    cotangent = rng.standard_normal((n, n))

    def one_vjp():
        _, pullback = vjp(matrix)
        return pullback(cotangent)

    row = {
        "op": op,
        "n": n,
        "primal": median_time(lambda: primal(matrix), repeats),
        "jvp": median_time(lambda: jvp(matrix, direction), repeats),
        "vjp": median_time(one_vjp, repeats),
        "jacobians": [],
    }
    size = n * n
    full = n <= 64
    if op == "inv":
        t = median_time(lambda: inverse_jacobian_kron(matrix, store=full), repeats, number=1)
        label = "Kronecker" if full else "Kronecker (blocks, unstored)"
        row["jacobians"].append((label, t, False))
    if full:
        t = median_time(lambda: jacobian_from_jvp(jvp, matrix, range(size)), repeats, number=1)
        row["jacobians"].append(("n^2 JVP columns", t, False))
        _check(op, matrix, direction, cotangent, jvp, one_vjp())
    else:
        subset = list(range(0, size, max(1, size // (200 if op == "inv" else 8))))
        t = median_time(lambda: jacobian_from_jvp(jvp, matrix, subset), repeats, number=1)
        row["jacobians"].append(
            (f"n^2 JVP columns, extrapolated from {len(subset)}", t * size / len(subset), True)
        )
    return row


def _check(op, matrix, direction, cotangent, jvp, vjp_result):
    """The full Jacobian applied to E and transposed on E_bar matches the JVP and VJP."""
    n = matrix.shape[0]
    if op == "inv":
        jacobian = inverse_jacobian_kron(matrix)
        columns = jacobian_from_jvp(jvp, matrix, range(n * n))
        assert np.allclose(jacobian, columns, rtol=1e-10, atol=1e-12)
    else:
        jacobian = jacobian_from_jvp(jvp, matrix, range(n * n))
    forward = (jacobian @ direction.ravel(order="F")).reshape((n, n), order="F")
    reverse = (jacobian.T @ cotangent.ravel(order="F")).reshape((n, n), order="F")
    scale = np.max(np.abs(forward))
    assert np.max(np.abs(forward - jvp(matrix, direction)[1])) <= 1e-10 * scale
    assert np.max(np.abs(reverse - vjp_result[0])) <= 1e-10 * np.max(np.abs(reverse))


def _ms(seconds):
    return f"{1e3 * seconds:10.3f}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[40, 200])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads (default 1)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    rows = []
    with threadpool_limits(limits=args.threads, user_api="blas"):
        for n in args.sizes:
            for op in ("inv", "expm"):
                rows.append(compare(op, n, args.repeats, rng))

    print(f"median times in ms, {args.repeats} repeats, {args.threads} BLAS thread(s)")
    print(
        f"{'op':<5}{'n':>5}{'primal':>11}{'one JVP':>11}{'one VJP':>11}"
        f"{'Jacobian':>13}  {'Jac/JVP':>9}{'Jac/VJP':>9}  Jacobian method"
    )
    for row in rows:
        for k, (label, seconds, _) in enumerate(row["jacobians"]):
            lead = (
                f"{row['op']:<5}{row['n']:>5}{_ms(row['primal'])} {_ms(row['jvp'])} "
                f"{_ms(row['vjp'])}"
                if k == 0
                else " " * 43
            )
            print(
                f"{lead}{1e3 * seconds:13.1f}  {seconds / row['jvp']:9.0f}"
                f"{seconds / row['vjp']:9.0f}  {label}"
            )
    return rows


if __name__ == "__main__":
    main()
