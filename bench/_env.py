"""Helpers shared by the comparison scripts: a fair BLAS setup for CHOLMOD and timing."""

import os
import statistics
import sys
import time


def ensure_cholmod_env():
    """Re-exec the script with the environment that lets CHOLMOD run at its best here.

    - ``OMP_THREAD_LIMIT=1``: CHOLMOD's OpenMP loops oversubscribe a 2-vCPU machine;
    - ``OPENBLAS_CORETYPE``: Debian's OpenBLAS 0.3.21 misdetects this CPU, so name the
      real core type (AVX-512 → SkylakeX, else AVX2 → Haswell).
    Must run before NumPy/SciPy/scikit-sparse load their BLAS.
    """
    if os.environ.get("GMRF_BENCH_ENV") == "1":
        return
    flags = ""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        pass
    env = dict(os.environ)
    env["GMRF_BENCH_ENV"] = "1"
    env.setdefault("OMP_THREAD_LIMIT", "1")
    env.setdefault("OPENBLAS_CORETYPE", "SkylakeX" if " avx512f" in flags else "Haswell")
    os.execve(sys.executable, [sys.executable, *sys.argv], env)


def interleaved_medians(candidates, repeat=5, warmup=1):
    """Median wall times of several candidates timed in turns (a, b, c, a, b, c, ...).

    ``candidates`` maps a label to ``func`` or to ``(func, context_factory)``; the context
    (e.g. a BLAS thread limit) is entered around each call but not timed. Taking turns
    spreads the load of a shared, noisy machine over all candidates alike.
    """
    import contextlib

    plans = {
        label: c if isinstance(c, tuple) else (c, contextlib.nullcontext)
        for label, c in candidates.items()
    }
    times = {label: [] for label in plans}
    for round_ in range(warmup + repeat):
        for label, (func, context) in plans.items():
            with context():
                t0 = time.perf_counter()
                func()
                elapsed = time.perf_counter() - t0
            if round_ >= warmup:
                times[label].append(elapsed)
    return {label: statistics.median(values) for label, values in times.items()}


def cholmod_blas_threads(limit):
    """threadpoolctl context limiting every loaded BLAS (CHOLMOD's OpenBLAS included)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=limit, user_api="blas")
