"""Scale-out of θ-level work: serial vs a LocalCluster of single-thread workers.

1. ``gm.fit_many`` on independent data sets (default 8 of 100² Matérn–Poisson): serial vs
   a Dask LocalCluster with 2 single-thread worker processes (target ≥ 1.8×).
2. The Hessian of a Matérn–Poisson model (default 300²) at its mode, 2·dim θ gradient
   evaluations: serial single-thread vs 2 single-thread Dask workers (target ≥ 1.7× for
   the parallel part), and the model's shipping cost (once per worker) reported apart.
3. ``gm.inla`` (CCD) on the same model, when it exists: serial single-thread vs the cluster
   vs serial with threads=2 — whole run and the parallel part.
4. Per-task overhead of ``map_model`` on the warm cluster (trivial tasks): ms and bytes.
5. The serial fraction (mode finding) measured here and, from it, an Amdahl prediction of
   the 10⁶-latent INLA run on 1, 4, 16 and 64 nodes, printed as a prediction.

Timings are medians of runs taken in turns (serial, cluster, serial, cluster, ...) on a
shared machine: read the ratios.

6. (with gm.inla) ``res.predict`` on many new rows in blocks: serial vs the cluster.
7. Shipping the model: bytes and wall time of the compact pickle against the plain one
   (each shipped to freshly emptied workers), and gm.inla with the model shipped in the
   background during the mode search against shipping it when the Hessian begins.

The last lines are a table ready for README: each row with the load when it was measured
and the machine ceiling of the run (the same gradients in two plain processes at once
against one: what any 2-worker run can reach on this machine at that time).

Usage: python bench/compare_distributed.py [--fits 8] [--fit-size 100] [--size 300]
       [--repeat 3] [--inla-repeat 2] [--skip-inla] [--predict-rows 20000] [--predict-far 100]
"""

import argparse
import logging
import os
import pickle
import statistics
import sys
import time

import numpy as np

import gmrf_core as gm
from gmrf_core import likelihoods, models, parallel
from gmrf_core.optimize import central_difference_points

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def matern_poisson(side, seed, threads=1):
    """Counts from exp(1 + a smooth Matérn-like field) on a side × side lattice."""
    rng = np.random.default_rng(seed)
    prior = models.Matern2D((side, side))
    theta_true = np.array([np.log(side / 10.0), np.log(0.8)])
    x = gm.cholesky(prior.precision(theta_true)).sample(rng=rng)
    y = rng.poisson(np.exp(1.0 + x)).astype(float)
    n = side * side
    return gm.LatentGaussianModel(prior, likelihoods.Poisson(y), X=np.ones((n, 1)), threads=threads)


def echo(model, item):
    return item


def ship_cost(client, model):
    """Wall seconds and bytes of sending ``model`` to freshly emptied workers (a no-op map
    of 2 tasks: pickle, file, unpickle on every worker)."""
    parallel.release(client)
    stats = {}
    t0 = time.perf_counter()
    parallel.map_model(echo, model, [0, 1], executor=client, stats=stats)
    return time.perf_counter() - t0, stats["model_bytes"]


class before:
    """The executor as it was before its overheads were removed: all tasks submitted at
    once (the scheduler pre-assigns two to a single-thread worker) and items scattered
    (each task placed with its item); with a cluster whose workers keep Dask's allocator
    setting, this is the previous library."""

    def __enter__(self):
        self.saved = parallel._THROTTLE_DASK, parallel._ITEMS_BY_FILE
        parallel._THROTTLE_DASK = parallel._ITEMS_BY_FILE = False

    def __exit__(self, *exc):
        parallel._THROTTLE_DASK, parallel._ITEMS_BY_FILE = self.saved


def run_before(func):
    with before():
        return func()


class plain_pickle:
    """map_model with the plain pickle of the model (warm start included), as before the
    compact one."""

    def __enter__(self):
        self.saved = parallel._pack

        def pack(model):
            blob = pickle.dumps(model, pickle.HIGHEST_PROTOCOL)
            return blob, parallel._content_token(blob), None

        parallel._pack = pack

    def __exit__(self, *exc):
        parallel._pack = self.saved


class ship_late:
    """gm.inla without the background shipment: the model goes to the workers when the
    Hessian's map begins, as before."""

    def __enter__(self):
        import contextlib

        from gmrf_core.inference import driver

        self.driver, self.saved = driver, driver._shipped
        driver._shipped = lambda model, executor: contextlib.nullcontext(None)

    def __exit__(self, *exc):
        self.driver._shipped = self.saved


def load():
    return os.getloadavg()[0]


def fresh_cluster_runs(args, model, rows, start_cluster):
    """gm.inla on a LocalCluster started just before (as a user's first run on a new
    cluster): the model shipped during the mode search (the workers import the library,
    unpickle the model and load the kernels meanwhile) against shipped when the Hessian
    begins. Timed in turns, a new cluster for every run."""
    print(f"\n3c. gm.inla CCD {args.size}² on a freshly started 2-worker cluster")
    whole = {"late": [], "ahead": []}
    hessian = {"late": [], "ahead": []}
    load0 = load()
    for _ in range(args.fresh_repeat):
        for kind in ("late", "ahead"):
            cluster, client = start_cluster()
            client.wait_for_workers(2)
            t0 = time.perf_counter()
            if kind == "late":
                with ship_late():
                    res = gm.inla(model, integration="ccd", progress=False, executor=client)
            else:
                res = gm.inla(model, integration="ccd", progress=False, executor=client)
            whole[kind].append(time.perf_counter() - t0)
            hessian[kind].append(res.timings["hessian"])
            client.close()
            cluster.close()
    w = {k: statistics.median(v) for k, v in whole.items()}
    h = {k: statistics.median(v) for k, v in hessian.items()}
    print(
        f"   shipped when the Hessian begins: whole run {w['late']:.1f} s, Hessian stage "
        f"{h['late']:.2f} s; shipped during the mode search: {w['ahead']:.1f} s, "
        f"{h['ahead']:.2f} s (medians of {args.fresh_repeat})"
    )
    loads = loads_text(load0)
    label = (
        f"`gm.inla` CCD {args.size}², fresh cluster, model shipped late → during the mode search"
    )
    rows.append((f"{label}: Hessian stage", loads, h["late"], h["ahead"]))
    rows.append((f"{label}: whole run", loads, w["late"], w["ahead"]))


def timed_gradient(model, theta):
    """CPU and wall seconds of one gradient evaluation where the task runs."""
    cpu, wall = time.process_time(), time.perf_counter()
    model.gradient(theta)
    return time.process_time() - cpu, time.perf_counter() - wall


def _timed(work):
    """Where and when ``work()`` ran: pid, start and end (epoch seconds, one clock for the
    client and the workers of a LocalCluster), CPU seconds."""
    start, cpu = time.time(), time.process_time()
    work()
    return {
        "pid": os.getpid(),
        "start": start,
        "end": time.time(),
        "cpu": time.process_time() - cpu,
    }


def timed_fit_task(_options, model):
    return _timed(lambda: gm.fit(model, progress=False))


def timed_gradient_task(model, theta):
    return _timed(lambda: model.gradient(theta))


def where_time_goes(label, serial, spans, t_submit, t_done, slowdown):
    """Print how a 2-worker map spent its wall time, from each task's own timing: the work
    itself (its wall time in a worker against the same task run serially, and the slowdown a
    plain process suffers when two run at once), the time workers sat idle (start latency,
    imbalance at the end) and what remains (scheduling, serialization, transfers)."""
    makespan = t_done - t_submit
    serial_wall = float(np.sum([r["end"] - r["start"] for r in serial]))
    walls = np.array([r["end"] - r["start"] for r in spans])
    cpus = np.array([r["cpu"] for r in spans])
    by_worker = {}
    for r in spans:
        by_worker.setdefault(r["pid"], []).append(r)
    busy = {pid: sum(r["end"] - r["start"] for r in rs) for pid, rs in by_worker.items()}
    first = min(r["start"] for r in spans) - t_submit
    ends = sorted(max(r["end"] for r in rs) for rs in by_worker.values())
    tail = t_done - ends[0] if len(ends) > 1 else 0.0
    inflation = float(walls.sum()) / serial_wall
    print(
        f"   {label}: {len(spans)} tasks on {len(by_worker)} workers, makespan {makespan:.2f} s; "
        f"serially the same tasks take {serial_wall:.2f} s of wall"
    )
    print(
        f"   in the workers the tasks took {walls.sum():.2f} s of wall ({inflation:.2f}× their "
        f"serial wall; two plain processes at once: {slowdown:.2f}×), {cpus.sum():.2f} s CPU; "
        f"workers busy {sum(busy.values()) / (len(by_worker) * makespan):.0%} of the makespan "
        f"(first task started after {first:.2f} s, one worker idle for the last {tail:.2f} s)"
    )
    ideal = serial_wall * slowdown / 2
    print(
        f"   makespan if the only cost were the machine's ({slowdown:.2f}× per process): "
        f"{ideal:.2f} s; the rest, {makespan - ideal:.2f} s, is start-up, imbalance and "
        f"executor overhead"
    )


CEILING_SCRIPT = """
import sys, time
sys.path.insert(0, {bench!r})
from threadpoolctl import threadpool_limits
threadpool_limits(1)
from compare_distributed import matern_poisson
model = matern_poisson({side}, seed=3)
model.gradient(model.theta0)
t0 = time.perf_counter()
for k in range({count}):
    model.gradient(model.theta0 + 1e-3 * k)
print(time.perf_counter() - t0)
"""


def machine_ceiling(side, count):
    """Speed-up two plain processes get over one on this machine for the same gradient work
    (no executor involved): 2 · t(alone) / t(two at once). The ceiling of any 2-worker run."""
    import subprocess

    code = CEILING_SCRIPT.format(
        bench=os.path.dirname(os.path.abspath(__file__)), side=side, count=count
    )

    def start():
        return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)

    alone = float(start().communicate()[0])
    pair = [start(), start()]
    together = max(float(p.communicate()[0]) for p in pair)
    return alone, together, 2 * alone / together


def prediction_rows(side, count, far, seed=11):
    """New rows: bilinear interpolation at random points (the 4 surrounding nodes: on the
    factor's pattern), then ``far`` areal means over 20 scattered nodes (off it)."""
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    near = count - far
    u = rng.uniform(0, side - 1, size=(near, 2))
    i0 = np.minimum(np.floor(u).astype(int), side - 2)
    f = u - i0
    rows, cols, vals = [], [], []
    for di in (0, 1):
        for dj in (0, 1):
            w = (f[:, 0] if di else 1 - f[:, 0]) * (f[:, 1] if dj else 1 - f[:, 1])
            rows.append(np.arange(near))
            cols.append((i0[:, 0] + di) * side + i0[:, 1] + dj)
            vals.append(w)
    for r in range(far):
        rows.append(np.full(20, near + r))
        cols.append(rng.choice(side * side, size=20, replace=False))
        vals.append(np.full(20, 1 / 20))
    return sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(count, side * side),
    )


def turns(candidates, repeat):
    """Median wall time of each candidate, the candidates timed in turns."""
    times = {label: [] for label in candidates}
    for _ in range(repeat):
        for label, func in candidates.items():
            t0 = time.perf_counter()
            func()
            times[label].append(time.perf_counter() - t0)
    return {label: statistics.median(v) for label, v in times.items()}, times


def report_before(rows, med, label, loads):
    """Print the older scheduling's median (``med["old"]``) against serial and add its row."""
    print(
        f"   before (Dask's allocator, all tasks at once, items scattered): "
        f"{med['old']:.2f} s, "
        f"{med['serial'] / med['old']:.2f}×"
    )
    rows.append((label, loads, med["serial"], med["old"]))


def loads_text(start):
    return f"{start:.1f}→{load():.1f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fits", type=int, default=8)
    parser.add_argument("--fit-size", type=int, default=100)
    parser.add_argument("--size", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--inla-repeat", type=int, default=2)
    parser.add_argument("--skip-inla", action="store_true")
    parser.add_argument("--skip-fits", action="store_true")
    parser.add_argument("--repeat-fits", type=int, default=None)
    parser.add_argument("--compare-old", action="store_true")
    parser.add_argument("--skip-threads2", action="store_true")
    parser.add_argument("--fresh-repeat", type=int, default=1)
    parser.add_argument("--predict-rows", type=int, default=20000)
    parser.add_argument("--predict-far", type=int, default=100)
    parser.add_argument("--block-size", type=int, default=2048)
    args = parser.parse_args()

    from distributed import Client, LocalCluster
    from threadpoolctl import threadpool_limits

    os.environ["PYTHONPATH"] = REPO + os.pathsep + os.environ.get("PYTHONPATH", "")
    threadpool_limits(limits=1)  # serial single-thread baseline in this process
    t0 = time.perf_counter()

    def start_cluster():
        cluster = LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.ERROR,
        )
        return cluster, Client(cluster)

    cluster, client = start_cluster()
    print(f"LocalCluster(2 workers × 1 thread) up in {time.perf_counter() - t0:.1f} s")
    old = None
    if args.compare_old:
        # a second cluster whose workers keep Dask's allocator setting (the fixed 128 KiB
        # mmap threshold that MALLOC_TRIM_THRESHOLD_ implies): the library before it tuned it
        os.environ["GMRF_CORE_WORKER_MALLOC"] = "keep"
        old_cluster, old = start_cluster()
        del os.environ["GMRF_CORE_WORKER_MALLOC"]
        small = matern_poisson(40, seed=0)
        parallel.hessian(small, small.theta0, executor=old)  # imports and cache loads
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} (1 min)")

    alone, together, ceiling = machine_ceiling(args.fit_size, 8)
    slowdown = together / alone
    print(
        f"machine ceiling: 8 gradients at {args.fit_size}² in one process {alone:.2f} s, in each "
        f"of two processes at once {together:.2f} s: 2 processes do {ceiling:.2f}× the work of one"
    )
    alone_big, together_big, ceiling_big = machine_ceiling(args.size, 2)
    print(
        f"machine ceiling at {args.size}²: 2 gradients in one process {alone_big:.2f} s, in each "
        f"of two at once {together_big:.2f} s: {ceiling_big:.2f}×"
    )
    # first task on a fresh worker: Numba kernels from the on-disk cache, not compiled
    small = matern_poisson(40, seed=0)
    small.gradient(small.theta0)
    stats = {}
    t0 = time.perf_counter()
    parallel.hessian(small, small.theta0, executor=client, stats=stats)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    parallel.hessian(small, small.theta0, executor=client)
    again = time.perf_counter() - t0
    print(
        f"first map on fresh workers (40² Hessian, imports + cache loads): {first:.2f} s, "
        f"the same again: {again:.2f} s"
    )

    rows = []
    if not args.skip_fits:
        data = [matern_poisson(args.fit_size, seed=s) for s in range(args.fits)]
        print(f"\n1. fit_many: {args.fits} × {args.fit_size}² Matérn–Poisson")
        gm.fit(matern_poisson(30, seed=99), progress=False)  # warm this process
        results = {}

        def serial_fits():
            results["serial"] = gm.fit_many(data, progress=False)

        def cluster_fits():
            results["cluster"] = gm.fit_many(data, executor=client, progress=False)

        candidates = {"serial": serial_fits, "cluster": cluster_fits}
        if old is not None:
            candidates["old"] = lambda: run_before(
                lambda: gm.fit_many(data, executor=old, progress=False)
            )
        load0 = load()
        med, _ = turns(candidates, args.repeat_fits or args.repeat)
        fit_loads = loads_text(load0)
        if old is not None:
            report_before(rows, med, f"fit_many, {args.fits} × {args.fit_size}², before", fit_loads)
        diff = max(
            float(np.max(np.abs(a.theta - b.theta)))
            for a, b in zip(results["serial"], results["cluster"])
        )
        print(
            f"   serial {med['serial']:.2f} s, 2 workers {med['cluster']:.2f} s: "
            f"{med['serial'] / med['cluster']:.2f}× (max |Δθ̂| {diff:.1e})"
        )
        # the same fits as map_model tasks that time themselves: where the wall time goes
        serial_spans = [timed_fit_task(None, m) for m in data]
        t_submit = time.time()
        spans = parallel.map_model(timed_fit_task, None, data, executor=client, scatter_items=True)
        where_time_goes("fits", serial_spans, spans, t_submit, time.time(), slowdown)
        rows.append(
            (
                f"`fit_many`, {args.fits} × {args.fit_size}²",
                fit_loads,
                med["serial"],
                med["cluster"],
            )
        )

    print(f"\n2. Hessian at the mode, {args.size}² Matérn–Poisson (threads=1)")
    model = matern_poisson(args.size, seed=7)
    t0 = time.perf_counter()
    fitted = gm.fit(model, progress=False, std_err=False)
    t_mode = time.perf_counter() - t0
    theta = fitted.theta
    print(f"   mode finding (gm.fit, no std. errors): {t_mode:.1f} s, {fitted.nfev} evaluations")
    hess = {}

    def serial_hessian():
        hess["serial"] = parallel.hessian(model, theta)

    def cluster_hessian():
        st = {}
        t0 = time.perf_counter()
        hess["cluster"] = parallel.hessian(model, theta, executor=client, stats=st)
        hess["stats"] = st
        hess["wall"] = time.perf_counter() - t0

    candidates = {"serial": serial_hessian, "cluster": cluster_hessian}
    if old is not None:
        candidates["old"] = lambda: run_before(lambda: parallel.hessian(model, theta, executor=old))
    # the model on the workers before the turns (its shipping is measured in section 7; its
    # warm start, which the serial runs move, goes with every map)
    parallel.map_model(echo, model, [0, 1], executor=client)
    load0 = load()
    med, _ = turns(candidates, args.repeat)
    hessian_loads = loads_text(load0)
    if old is not None:
        report_before(rows, med, f"Hessian {args.size}², before", hessian_loads)
    st = hessian_stats = hess["stats"]
    # what shipping costs: map_model of a no-op on freshly emptied workers, 2 tasks
    t_ship, _bytes = ship_cost(client, model)
    # CPU per gradient where it runs: the same work, or extra work in the workers?
    points = [theta + 1e-4 * k for k in range(1, 5)]
    serial_cpu = [timed_gradient(model, p) for p in points]
    worker_cpu = parallel.map_model(timed_gradient, model, points, executor=client)
    rel = np.max(np.abs(hess["serial"] - hess["cluster"])) / np.max(np.abs(hess["serial"]))
    print(
        f"   serial {med['serial']:.2f} s, 2 workers {med['cluster']:.2f} s: "
        f"{med['serial'] / med['cluster']:.2f}× (model on the workers), "
        f"{med['serial'] / (med['cluster'] + t_ship):.2f}× with shipping the model "
        f"({t_ship:.2f} s) added; rel. diff {rel:.1e}"
    )
    print(
        f"   model {st['model_bytes'] / 2**20:.1f} MiB sent once per worker, its warm start "
        f"{st['warm_bytes'] / 2**10:.0f} KiB once per worker and map, {st['task_bytes']:.0f} B "
        f"per task; shipping it (pickle, file, unpickle on both workers) {t_ship:.2f} s"
    )
    _steps, hessian_points = central_difference_points(theta, 1e-4)  # those of parallel.hessian
    parallel.map_model(echo, model, [0, 1], executor=client)  # the model on the workers first
    # serially on a copy, so that both start from the same warm start
    twin = pickle.loads(pickle.dumps(model, pickle.HIGHEST_PROTOCOL))
    serial_spans = [timed_gradient_task(twin, p) for p in hessian_points]
    del twin
    t_submit = time.time()
    spans = parallel.map_model(timed_gradient_task, model, hessian_points, executor=client)
    where_time_goes(
        "Hessian gradients (model already on the workers)",
        serial_spans,
        spans,
        t_submit,
        time.time(),
        together_big / alone_big,
    )
    sc, sw = np.mean(serial_cpu, axis=0)
    wc, ww = np.mean(worker_cpu, axis=0)
    print(
        f"   per gradient: serial {sc:.2f} s CPU / {sw:.2f} s wall, in a worker {wc:.2f} s CPU / "
        f"{ww:.2f} s wall (CPU/wall < 1: the process waited for a core)"
    )
    rows.append(
        (
            f"`parallel.hessian`, {args.size}², {st['tasks']} gradients (model on the workers)",
            hessian_loads,
            med["serial"],
            med["cluster"],
        )
    )
    t_task = med["serial"] / st["tasks"]

    runs_inla = {}
    if not args.skip_inla and hasattr(gm, "inla"):
        print(f"\n3. gm.inla(integration='ccd') on {args.size}²")
        threaded = matern_poisson(args.size, seed=7, threads=2)
        runs = {}
        # warm-up of every code path (threaded factorizations included) on a small model
        if not args.skip_threads2:
            with threadpool_limits(limits=2):
                gm.inla(matern_poisson(40, seed=1, threads=2), integration="ccd", progress=False)
        gm.inla(matern_poisson(40, seed=1), integration="ccd", progress=False, executor=client)

        def inla_serial():
            runs["serial"] = gm.inla(model, integration="ccd", progress=False)

        def inla_cluster():
            # workers that never saw this model (as a new gm.inla run): it is shipped during
            # the mode search
            parallel.release(client)
            runs["cluster"] = gm.inla(model, integration="ccd", progress=False, executor=client)

        def inla_cluster_late():
            parallel.release(client)
            with ship_late():
                runs["late"] = gm.inla(model, integration="ccd", progress=False, executor=client)

        def inla_threads():
            with threadpool_limits(limits=2):
                runs["threads2"] = gm.inla(threaded, integration="ccd", progress=False)

        order = [("serial", inla_serial), ("cluster", inla_cluster), ("late", inla_cluster_late)]
        if old is not None:

            def inla_old():
                with before():
                    runs["old"] = gm.inla(model, integration="ccd", progress=False, executor=old)

            order.append(("old", inla_old))
        if not args.skip_threads2:
            order.append(("threads2", inla_threads))
        whole = {label: [] for label, _f in order}
        part = {label: [] for label, _f in order}
        hessian_stage = {label: [] for label, _f in order}
        inla_load0 = load()
        for _ in range(args.inla_repeat):
            for label, func in order:
                t0 = time.perf_counter()
                func()
                whole[label].append(time.perf_counter() - t0)
                timings = runs[label].timings
                part[label].append(timings["hessian"] + timings["points"])
                hessian_stage[label].append(timings["hessian"])
        inla_loads = loads_text(inla_load0)
        w = {k: statistics.median(v) for k, v in whole.items()}
        q = {k: statistics.median(v) for k, v in part.items()}
        h = {k: statistics.median(v) for k, v in hessian_stage.items()}
        if old is not None:
            print(
                f"   before (Dask's allocator, all tasks at once, items scattered): whole run "
                f"{w['old']:.1f} s "
                f"({w['serial'] / w['old']:.2f}×), Hessian + points {q['old']:.1f} s "
                f"({q['serial'] / q['old']:.2f}×)"
            )
            rows.append(
                (
                    f"gm.inla CCD {args.size}², Hessian + points, before",
                    inla_loads,
                    q["serial"],
                    q["old"],
                )
            )
        if args.skip_threads2:
            w["threads2"] = q["threads2"] = float("nan")
        print(
            f"   whole run: serial 1 thread {w['serial']:.1f} s, 2 workers {w['cluster']:.1f} s "
            f"({w['serial'] / w['cluster']:.2f}×), serial threads=2 {w['threads2']:.1f} s "
            f"({w['serial'] / w['threads2']:.2f}×)"
        )
        print(
            f"   parallel part (Hessian + points): serial {q['serial']:.1f} s, 2 workers "
            f"{q['cluster']:.1f} s ({q['serial'] / q['cluster']:.2f}×), threads=2 "
            f"{q['threads2']:.1f} s ({q['serial'] / q['threads2']:.2f}×)"
        )
        print(
            f"   2 workers against serial threads=2, whole run: "
            f"{w['threads2'] / w['cluster']:.2f}× "
            f"({'faster' if w['cluster'] < w['threads2'] else 'not faster'})"
        )
        print(
            f"   model shipped during the mode search vs when the Hessian begins: Hessian stage "
            f"{h['cluster']:.2f} vs {h['late']:.2f} s (serial {h['serial']:.2f} s), Hessian + "
            f"points {q['cluster']:.1f} vs {q['late']:.1f} s, whole run {w['cluster']:.1f} vs "
            f"{w['late']:.1f} s"
        )
        runs_inla.update(runs)
        runs_inla["n_points"] = len(np.atleast_1d(runs["serial"].weights))
        if args.fresh_repeat:
            fresh_cluster_runs(args, model, rows, start_cluster)
        if args.predict_rows:
            print(f"\n3b. res.predict on {args.predict_rows} new rows ({args.size}² CCD result)")
            A_new = prediction_rows(args.size, args.predict_rows, args.predict_far)
            res = runs["serial"]
            tables, st = {}, {}

            def predict_serial():
                tables["serial"] = res.predict(A_new, block_size=args.block_size)

            def predict_cluster():
                tables["cluster"] = res.predict(
                    A_new, executor=client, block_size=args.block_size, stats=st
                )

            med, _ = turns({"serial": predict_serial, "cluster": predict_cluster}, 1)
            diff = float(np.max(np.abs(tables["serial"].to_numpy() - tables["cluster"].to_numpy())))
            print(
                f"   {args.predict_rows - args.predict_far} interpolation rows (4 neighbouring "
                f"nodes) and {args.predict_far} areal rows (20 scattered nodes, solved with L), "
                f"blocks of {args.block_size}: serial {med['serial']:.2f} s, 2 workers "
                f"{med['cluster']:.2f} s ({med['serial'] / med['cluster']:.2f}×; max |diff| "
                f"{diff:.1e})"
            )
            print(
                f"   {st['points']} points × {st['chunks']} chunk(s) of rows as tasks (each "
                f"recomputes its point's factor where it runs), {st['blocks']} blocks of rows; "
                f"a point task {st['task_bytes']:.0f} B + its rows by file "
                f"{st['item_bytes'] / st['point_tasks'] / 1024:.1f} KiB, a mixture task "
                f"{st['mixture_task_bytes'] / 1024:.1f} KiB; in the cluster run: points "
                f"{st['points_wall']:.2f} s, mixture {st['mixture_wall']:.2f} s"
            )
            rows.append(
                (
                    f"`res.predict`, {args.predict_rows} rows",
                    loads_text(load()),
                    med["serial"],
                    med["cluster"],
                )
            )
        a, b, c = runs["serial"], runs["cluster"], runs["late"]
        print(
            f"   log p(y): serial {a.log_marginal_likelihood:.10g}, cluster "
            f"{b.log_marginal_likelihood:.10g}, shipped late {c.log_marginal_likelihood:.10g}; "
            "stages " + ", ".join(f"{k} {v:.1f} s" for k, v in runs["serial"].timings.items())
        )
        label = f"`gm.inla` CCD {args.size}²"
        rows.append((f"{label}, whole run", inla_loads, w["serial"], w["cluster"]))
        rows.append(
            (
                f"{label}, Hessian + {runs_inla['n_points']} points",
                inla_loads,
                q["serial"],
                q["cluster"],
            )
        )
        rows.append((f"{label}, Hessian stage", inla_loads, h["serial"], h["cluster"]))
        rows.append(
            (
                f"{label}, Hessian stage, model shipped when it begins",
                inla_loads,
                h["serial"],
                h["late"],
            )
        )
        rows.append(
            (
                f"{label}, whole run, serial threads=2 (instead of 2 workers)",
                inla_loads,
                w["serial"],
                w["threads2"],
            )
        )

    print("\n4. per-task overhead on the warm cluster (trivial tasks)")
    tiny = np.zeros(2)
    n_tasks = 200
    task_stats = {}
    parallel.map_model(echo, tiny, [np.zeros(2)] * 20, executor=client)
    t0 = time.perf_counter()
    parallel.map_model(echo, tiny, [np.zeros(2)] * n_tasks, executor=client, stats=task_stats)
    per_task = (time.perf_counter() - t0) / n_tasks
    print(
        f"   {1e3 * per_task:.2f} ms per task wall on 2 workers ({n_tasks} tasks), "
        f"{task_stats['task_bytes']:.0f} B per task (function reference, token, θ, warm-start key)"
    )

    print("\n5. Amdahl PREDICTION for the 10⁶-latent INLA run (a prediction, not a measurement)")
    # from this run: the serial part (mode finding, marginals, criteria) and the parallel
    # part (Hessian gradients + CCD points, one task each) of the serial single-thread run;
    # every part costs about one factorization per evaluation, scaled to 10⁶ by the exponent
    # measured between two lattice sizes; the model (its pickled bytes scale with n) is sent
    # to every node once per run, in the background during the mode search: only what the
    # sending takes beyond the mode search adds
    small_side = max(args.size // 2, 20)
    small_model = matern_poisson(small_side, seed=7)
    t0 = time.perf_counter()
    small_fit = gm.fit(small_model, progress=False, std_err=False)
    t_small = (time.perf_counter() - t0) / max(small_fit.nfev, 1)
    t_eval = t_mode / max(fitted.nfev, 1)
    exponent = np.log(t_eval / t_small) / np.log((args.size / small_side) ** 2)
    scale = (1e6 / args.size**2) ** exponent
    d = theta.size
    if "serial" in runs_inla:
        timings = runs_inla["serial"].timings
        n_points = runs_inla["n_points"]
        t_serial = sum(v for k, v in timings.items() if k not in ("hessian", "points"))
        t_parallel = timings["hessian"] + timings["points"]
        source = "gm.inla CCD stages"
    else:
        n_points = 2**d + 2 * d + 1  # CCD: full factorial (d ≤ 2), axial points, centre
        t_serial = t_mode
        t_parallel = t_task * (2 * d + 1.5 * n_points)  # a point ≈ 1.5 gradients (assumed)
        source = "fit + Hessian (INLA points assumed 1.5 gradients each)"
    n_tasks = 2 * d + n_points
    t_one = t_parallel / n_tasks * scale
    serial_big = t_serial * scale
    fraction = serial_big / (serial_big + t_parallel * scale)
    bytes_big = hessian_stats["model_bytes"] * 1e6 / args.size**2
    bandwidth = 1e9  # bytes/s from the client to a node: an assumption, not measured
    print(
        f"   from {source} at {args.size}²: serial part {t_serial:.1f} s, parallel part "
        f"{t_parallel:.1f} s ({n_tasks} tasks); cost per evaluation ∝ n^{exponent:.2f} "
        f"({t_small:.3f} s at {small_side}², {t_eval:.3f} s at {args.size}²)"
    )
    mode_big = (timings["mode"] if "serial" in runs_inla else t_mode) * scale
    print(
        f"   at 10⁶: serial {serial_big:.0f} s (mode search {mode_big:.0f} s), {t_one:.1f} s per "
        f"task, serial fraction {fraction:.2f}; model ≈ {bytes_big / 2**30:.2f} GiB per node, "
        f"once per run (at an assumed {bandwidth / 1e9:.0f} GB/s from the client)"
    )
    print("   nodes  predicted wall (s)   ideal Amdahl (s)")
    prediction = []
    for nodes in (1, 4, 16, 64):
        rounds = -(-2 * d // nodes) + -(-n_points // nodes)
        ship = 0.0 if nodes == 1 else max(0.0, nodes * bytes_big / bandwidth - mode_big)
        predicted = serial_big + rounds * t_one + ship + n_tasks * per_task
        amdahl = (serial_big + n_tasks * t_one) * (fraction + (1 - fraction) / nodes)
        print(f"   {nodes:5d}  {predicted:12.0f}  {amdahl:16.0f}")
        prediction.append(f"{nodes} node{'s' if nodes > 1 else ''} {predicted:.0f} s")

    print(f"\n7. shipping the model to 2 freshly emptied workers, {args.size}²: plain vs compact")
    shipping = {"plain": [], "compact": []}
    sizes = {}
    ship_load0 = load()
    for _ in range(args.repeat):
        with plain_pickle():
            seconds, sizes["plain"] = ship_cost(client, model)
        shipping["plain"].append(seconds)
        seconds, sizes["compact"] = ship_cost(client, model)
        shipping["compact"].append(seconds)
    ship_med = {k: statistics.median(v) for k, v in shipping.items()}
    for kind in ("plain", "compact"):
        print(
            f"   {kind:8s} {sizes[kind] / 2**20:6.1f} MiB ({sizes[kind] / args.size**2:.0f} B per "
            f"latent variable), shipped in {ship_med[kind]:.2f} s (median of {args.repeat})"
        )
    rows.append(
        (
            f"shipping the {args.size}² model to 2 workers, plain pickle → compact "
            f"({sizes['plain'] / 2**20:.1f} → {sizes['compact'] / 2**20:.1f} MiB)",
            loads_text(ship_load0),
            ship_med["plain"],
            ship_med["compact"],
        )
    )

    print(f"\nload average at the end {load():.1f} (1 min)")
    print(
        f"\nmachine ceiling of this run: {ceiling:.2f}× at {args.fit_size}², {ceiling_big:.2f}× at "
        f"{args.size}²; per task {1e3 * per_task:.1f} ms and {task_stats['task_bytes']:.0f} B; 10⁶ "
        f"gm.inla PREDICTED (Amdahl, not measured): " + ", ".join(prediction)
    )
    ceilings = f"{ceiling:.2f}× / {ceiling_big:.2f}×"
    print(
        f"\n| run (Matérn–Poisson, single-thread) | load | ceiling {args.fit_size}² / {args.size}² "
        "| serial (s) | 2 workers (s) | speed-up |"
    )
    print("|---|---|---|---:|---:|---:|")
    for label, loads, a, b in rows:
        print(f"| {label} | {loads} | {ceilings} | {a:.2f} | {b:.2f} | **{a / b:.2f}×** |")
    client.close()
    cluster.close()
    if old is not None:
        old.close()
        old_cluster.close()


if __name__ == "__main__":
    sys.exit(main())
