"""gm.parallel: map_model and the Hessian serially, on a process pool and on a Dask cluster.

The references are independent of the executor machinery: the serial loop written in the test,
optimize.hessian_from_gradient and second differences of the objective; what travels is
counted by a wrapper class whose unpickling increments a per-process counter.
"""

import multiprocessing
import os
import pickle
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import numpy as np
import pytest

import gmrf_core as gm
from gmrf_core import likelihoods, models, parallel
from gmrf_core.optimize import hessian_from_gradient
from tests import _executors
from tests._references import second_difference_hessian

# -- helpers the workers import (module level, so they pickle by reference) --------------------
UNPICKLED = {"count": 0}


class CountingModel:
    """A model wrapper that counts how often this process unpickled it."""

    def __init__(self, model):
        self.model = model

    def __getstate__(self):
        return {"model": self.model}

    def __setstate__(self, state):
        UNPICKLED["count"] += 1
        self.model = state["model"]

    @property
    def theta0(self):
        return self.model.theta0

    def gradient(self, theta):
        return self.model.gradient(theta)


def probe(model, item):
    """Where a task ran, how often its process unpickled the model, and its thread limits."""
    import numba
    from threadpoolctl import threadpool_info

    blas = [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]
    return {
        "item": item,
        "pid": os.getpid(),
        "unpickled": UNPICKLED["count"],
        "blas": blas,
        "numba": numba.get_num_threads(),
    }


def square_or_fail(model, item):
    if item == 3:
        raise ValueError(f"item {item} is bad")
    return item * item


def fail_first_time(model, path):
    """Fails on the first attempt only (a marker file records the attempt)."""
    if not os.path.exists(path):
        with open(path, "w") as handle:
            handle.write("tried")
        raise RuntimeError("transient failure")
    return "ok"


def die(model, item):
    if item == 1:
        os._exit(3)
    return item


def die_first_time(model, item):
    """The objective at θ; kills its worker process at the first attempt when a marker path
    comes with θ (the marker file records that attempt)."""
    theta, marker = item
    if marker is not None and not os.path.exists(marker):
        with open(marker, "w") as handle:
            handle.write("died")
        os._exit(3)
    return float(model.objective(theta))


def die_at_large_theta(model, theta):
    """Kills its worker process whenever θ_0 > 10."""
    if theta[0] > 10:
        os._exit(3)
    return float(model.objective(theta))


def allocation_faults(model, item):
    """Page faults of 50 allocations of a 4 MiB array, each freed again, in this process."""
    import resource

    np.ones(1 << 19)  # the heap has held such an array once
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(50):
        array = np.ones(1 << 19)
        del array
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    return faults, "MALLOC_TRIM_THRESHOLD_" in os.environ


def tasks_held(model, item):
    """How many tasks this Dask worker holds (running or waiting to run) while running one."""
    import time

    from distributed import get_worker

    time.sleep(0.05)
    states = [task.state for task in get_worker().state.tasks.values()]
    return sum(state in ("executing", "ready", "constrained", "waiting") for state in states)


def item_size(model, item):
    return item.nbytes


def model_threads(model, item):
    return model.symbolic.threads


def objective_task(model, theta):
    return model.objective(theta)


def kernel_cache_stats(model, item):
    """Numba compile-cache hits and misses of this process's kernels after one gradient."""
    import sys

    model.gradient(item)
    hits = misses = 0
    for name, module in list(sys.modules.items()):
        if not name.startswith("gmrf_core.kernels"):
            continue
        for value in vars(module).values():
            stats = getattr(value, "stats", None)
            if stats is not None and hasattr(stats, "cache_hits"):
                hits += sum(stats.cache_hits.values())
                misses += sum(stats.cache_misses.values())
    return hits, misses


def matern_poisson(side=12, seed=0):
    rng = np.random.default_rng(seed)
    n = side * side
    y = rng.poisson(2.0, size=n).astype(float)
    y[rng.choice(n, size=n // 10, replace=False)] = np.nan  # missing observations too
    return gm.LatentGaussianModel(
        models.Matern2D((side, side)), likelihoods.Poisson(y), X=np.ones((n, 1))
    )


# -- fixtures --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def model():
    return matern_poisson()


@pytest.fixture(scope="module")
def fragile_client():
    """A LocalCluster of its own (2 single-thread workers), for tests that kill workers; its
    scheduler reports a task whose worker died at once (allowed-failures 0) instead of
    rescheduling it up to 3 times, so that the library's own retry is what is tested."""
    client, close = _executors.start_cluster(allowed_failures=0)
    yield client
    close()


EXECUTORS = ["serial", "pool", "dask"]


@pytest.fixture(params=EXECUTORS)
def executor(request):
    if request.param == "serial":
        return None
    return request.getfixturevalue("pool" if request.param == "pool" else "client")


# -- map_model -------------------------------------------------------------------------------
def test_map_model_keeps_order_and_reports_progress(executor):
    items = list(range(7))
    seen = []
    stats = {}
    out = parallel.map_model(
        square_or_fail,
        None,
        [i + 4 for i in items],
        executor=executor,
        progress=lambda done, total: seen.append((done, total)),
        stats=stats,
    )
    assert out == [(i + 4) ** 2 for i in items]
    assert seen == [(k, 7) for k in range(1, 8)]
    assert stats["tasks"] == 7 and stats["retries"] == 0 and stats["wall"] > 0


def test_map_model_prints_progress():
    import io

    stream = io.StringIO()
    parallel.map_model(square_or_fail, None, [0, 1], progress=True, label="point", stream=stream)
    assert "point 1/2 done" in stream.getvalue() and "point 2/2 done" in stream.getvalue()


def test_empty_items(executor):
    assert parallel.map_model(square_or_fail, None, [], executor=executor) == []


def test_task_error_names_the_item(executor):
    with pytest.raises(
        gm.TaskError, match=r"task 3 failed twice .* at 3: ValueError: item 3"
    ) as info:
        parallel.map_model(square_or_fail, None, [1, 2, 5, 3, 4], executor=executor)
    error = info.value
    assert isinstance(error, gm.GMRFError)
    assert error.item == 3 and error.index == 3
    assert isinstance(error.original, ValueError)


def test_failed_theta_is_named_in_the_error(executor, model):
    bad = np.array([np.nan, 0.0])
    with pytest.raises(
        gm.TaskError, match=r"objective 1 failed twice .* at \[nan,\s+0\.\]: InputError"
    ):
        parallel.map_model(
            objective_task, model, [model.theta0, bad], executor=executor, label="objective"
        )


def test_a_task_is_retried_once(executor, tmp_path):
    stats = {}
    paths = [str(tmp_path / f"marker{k}") for k in range(3)]
    out = parallel.map_model(fail_first_time, None, paths, executor=executor, stats=stats)
    assert out == ["ok"] * 3
    assert stats["retries"] == 3


def test_broken_process_pool_is_a_task_error():
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=context) as executor:
        with pytest.raises(gm.TaskError, match="BrokenProcessPool"):
            parallel.map_model(die, None, [0, 1, 2, 3], executor=executor)


def test_dask_worker_dying_in_a_task_is_retried(fragile_client, tmp_path):
    # a small model of its own: the restarted worker does not hold it and gets it again
    model = matern_poisson(side=6, seed=4)
    thetas = [model.theta0 + 0.05 * k for k in range(4)]
    marker = str(tmp_path / "died")
    items = [(t, marker if k == 1 else None) for k, t in enumerate(thetas)]
    stats = {}
    out = parallel.map_model(
        die_first_time, model, items, executor=fragile_client, stats=stats, label="point"
    )
    assert os.path.exists(marker)  # the worker did die once
    assert stats["retries"] >= 1  # the task (and any other lost with that worker) ran again
    reference = [float(matern_poisson(side=6, seed=4).objective(t)) for t in thetas]
    np.testing.assert_allclose(out, reference, rtol=1e-10)


def test_dask_worker_dying_every_time_is_a_task_error(fragile_client):
    model = matern_poisson(side=6, seed=4)
    bad = np.array([12.5, 0.25])
    with pytest.raises(
        gm.TaskError, match=r"point 1 failed twice .* at \[12\.5\s*,\s+0\.25\]: KilledWorker"
    ) as info:
        parallel.map_model(
            die_at_large_theta,
            model,
            [model.theta0, bad],
            executor=fragile_client,
            label="point",
        )
    assert info.value.index == 1 and np.array_equal(info.value.item, bad)


def test_bad_arguments():
    with pytest.raises(gm.InputError, match="executor must be"):
        parallel.map_model(square_or_fail, None, [1], executor="dask")
    with pytest.raises(gm.InputError, match="callable"):
        parallel.map_model(None, None, [1])
    with pytest.raises(gm.InputError, match="threads_per_worker"):
        parallel.map_model(square_or_fail, None, [1], threads_per_worker=0)


def test_task_error_pickles():
    error = gm.TaskError("message", item=np.ones(2), index=4, original=ValueError("x"))
    back = pickle.loads(pickle.dumps(error))
    assert str(back) == "message" and back.index == 4 and np.array_equal(back.item, np.ones(2))


# -- what travels ----------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["pool", "dask"])
def test_model_is_unpickled_once_per_worker(kind, model, request):
    executor = request.getfixturevalue("pool" if kind == "pool" else "client")
    wrapped = CountingModel(model)
    stats = {}
    out = parallel.map_model(
        probe, wrapped, list(range(12)), executor=executor, stats=stats, threads_per_worker=1
    )
    assert [o["item"] for o in out] == list(range(12))
    before = {}
    for o in out:
        before.setdefault(o["pid"], set()).add(o["unpickled"])
    # every task on a worker saw the same count: the model arrived before its first task only
    for counts in before.values():
        assert len(counts) == 1
    # the same model again (same pickled bytes, e.g. the next stage of gm.inla): the workers'
    # cached copy is used, nothing is unpickled
    second = parallel.map_model(probe, wrapped, list(range(6)), executor=executor)
    for o in second:
        if o["pid"] in before:
            assert o["unpickled"] == next(iter(before[o["pid"]]))
    # a changed model is sent again, once per worker
    changed = CountingModel(matern_poisson(seed=1))
    third = parallel.map_model(probe, changed, list(range(6)), executor=executor)
    for o in third:
        if o["pid"] in before:
            assert o["unpickled"] == next(iter(before[o["pid"]])) + 1
    # the model is big, a task is small
    assert stats["model_bytes"] > 100 * stats["task_bytes"]
    assert stats["task_bytes"] < 2000
    assert all(o["blas"] and max(o["blas"]) == 1 for o in out)
    assert all(o["numba"] == 1 for o in out)


def test_dask_unchanged_model_is_neither_written_nor_sent(client):
    model = matern_poisson(side=5, seed=6)
    first, again = {}, {}
    parallel.map_model(objective_task, model, [model.theta0], executor=client, stats=first)
    # the objective ran on a worker's copy: the caller's model is unchanged
    parallel.map_model(objective_task, model, [model.theta0], executor=client, stats=again)
    assert first["model_file"] and not again["model_file"]
    assert again["network_copies"] == 0


def test_dask_tasks_go_to_the_first_free_worker(client):
    # one task in flight per worker thread: a worker never holds a second task that another,
    # idle worker could run
    out = parallel.map_model(tasks_held, None, list(range(8)), executor=client)
    assert out == [1] * 8


def test_dask_large_items_go_by_file(client):
    items = [np.full(50_000 + k, float(k)) for k in range(4)]
    stats = {}
    out = parallel.map_model(
        item_size, None, items, executor=client, scatter_items=True, stats=stats
    )
    assert out == [item.nbytes for item in items]
    # each item pickled once, compactly (constant arrays: one value and uint8 codes)
    assert stats["item_bytes"] == sum(len(parallel._dumps(item)) for item in items)
    assert stats["item_bytes"] < sum(item.nbytes for item in items) / 4
    assert stats["task_bytes"] < 1000  # a task carries the file's path, not the item


def test_dask_worker_without_the_model_gets_it_once(model, client, monkeypatch):
    # as if every worker had joined after the model was installed: each task first finds no
    # model, is sent again with the model as a dependency, and the worker keeps it
    monkeypatch.setattr(parallel, "_INSTALL_ON_WORKERS", False)
    parallel.release(client)
    stats = {}
    out = parallel.map_model(
        probe, CountingModel(matern_poisson(seed=2)), list(range(8)), executor=client, stats=stats
    )
    assert stats["late_installs"] >= 1
    assert [o["item"] for o in out] == list(range(8))
    counts = {}
    for o in out:
        counts.setdefault(o["pid"], set()).add(o["unpickled"])
    assert all(len(c) == 1 for c in counts.values())
    assert stats["retries"] == 0


def test_model_threads_are_honoured_in_a_worker(pool, client):
    threaded = matern_poisson(side=6)
    threaded = gm.LatentGaussianModel(threaded.prior, threaded.likelihood, X=threaded.X, threads=2)
    for executor in (pool, client):
        out = parallel.map_model(model_threads, threaded, [0, 1], executor=executor)
        assert out == [2, 2]


def test_dask_workers_reuse_freed_memory(client):
    # Dask's nanny sets MALLOC_TRIM_THRESHOLD_, which pins glibc's mmap threshold at 128 KiB:
    # untuned, each 4 MiB array is a fresh mapping (measured: 25700 page faults for the 50
    # with GMRF_CORE_WORKER_MALLOC=keep; tuned: 5-50)
    out = parallel.map_model(allocation_faults, None, [0, 1, 2, 3], executor=client)
    for faults, trimmed in out:
        if trimmed:
            assert faults < 2500


def test_allocator_left_alone_outside_dask_or_when_asked(monkeypatch):
    monkeypatch.setattr(parallel, "_allocator_configured", None)
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    assert parallel._configure_allocator() is False
    monkeypatch.setattr(parallel, "_allocator_configured", None)
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "65536")
    monkeypatch.setenv("GMRF_CORE_WORKER_MALLOC", "keep")
    assert parallel._configure_allocator() is False


def test_thread_pool_gives_each_thread_its_own_copy(model):
    theta = model.theta0 + 0.1
    points = [theta + 0.01 * k for k in range(6)]
    serial = [model.objective(t) for t in points]
    with ThreadPoolExecutor(3) as executor:
        threaded = parallel.map_model(objective_task, model, points, executor=executor)
    np.testing.assert_allclose(threaded, serial, rtol=1e-12)


# -- the Hessian -----------------------------------------------------------------------------
def test_hessian_matches_references(executor, model):
    theta = model.theta0 + np.array([0.2, -0.1])
    # a model's state (the inner Newton's warm start, its work space) moves the gradients at
    # the 1e-13 level, which central differences turn into 1e-9: the run and the reference
    # start from the same state, two copies of the model
    blob = pickle.dumps(model)
    stats = {}
    hess = parallel.hessian(pickle.loads(blob), theta, executor=executor, stats=stats)
    assert stats["tasks"] == 2 * theta.size
    reference = hessian_from_gradient(pickle.loads(blob).gradient, theta)
    np.testing.assert_allclose(hess, reference, rtol=1e-10, atol=1e-10 * np.abs(reference).max())
    # independent check: second differences of the objective itself
    h = 1e-3
    second = second_difference_hessian(model.objective, theta, h)
    np.testing.assert_allclose(hess, second, rtol=1e-4, atol=1e-5 * np.abs(second).max())


def test_hessian_same_on_every_executor(model, pool, client):
    theta = model.theta0 - 0.15
    # every run starts from the same warm-start state (copies of the model)
    blob = pickle.dumps(model)
    results = [
        parallel.hessian(pickle.loads(blob), theta, executor=e) for e in (None, pool, client)
    ]
    scale = np.abs(results[0]).max()
    for other in results[1:]:
        np.testing.assert_allclose(other, results[0], rtol=1e-10, atol=1e-10 * scale)


def test_hessian_bad_input(model):
    with pytest.raises(gm.InputError, match="theta"):
        parallel.hessian(model, [0.0])
    with pytest.raises(gm.InputError, match="step"):
        parallel.hessian(model, model.theta0, step=0.0)


def test_workers_load_kernels_from_the_numba_cache(model, client):
    theta = model.theta0
    model.gradient(theta)  # compiles here (or loads), writing the on-disk cache
    out = parallel.map_model(kernel_cache_stats, model, [theta, theta], executor=client)
    for hits, misses in out:
        # kernels were loaded from the on-disk cache (hits), none compiled afresh (misses)
        assert hits > 0 and misses == 0


# -- gm.inla's θ-level work --------------------------------------------------------------------
def test_inla_same_on_every_executor(pool, client):
    from tests.inference.rw1_gaussian import model as rw1_gaussian

    # a fresh model per run: each starts from the same warm-start state
    results = [
        gm.inla(rw1_gaussian(), integration="ccd", progress=False, executor=e)
        for e in (None, pool, client)
    ]
    reference = results[0]
    for other in results[1:]:
        assert other.log_marginal_likelihood == pytest.approx(
            reference.log_marginal_likelihood, rel=1e-10
        )
        np.testing.assert_allclose(other.theta_mode, reference.theta_mode, rtol=1e-10)
        np.testing.assert_allclose(
            other.theta_covariance, reference.theta_covariance, rtol=1e-9, atol=1e-12
        )
        for name in ("latent_mean", "latent_sd", "predictor_mean", "predictor_sd"):
            np.testing.assert_allclose(
                getattr(other, name), getattr(reference, name), rtol=1e-9, atol=1e-10
            )


def cached_tokens(model, item):
    return sorted(parallel.worker_cache_info())


def test_release_frees_the_cached_models(model, client):
    with ThreadPoolExecutor(2) as executor:
        parallel.map_model(objective_task, model, [model.theta0], executor=executor)
    assert parallel.worker_cache_info()  # this process ran the threads: it holds a copy
    parallel.release()
    assert parallel.worker_cache_info() == {}
    parallel.map_model(objective_task, model, [model.theta0] * 2, executor=client)
    parallel.release(client)
    # only the probe's own model (None) is cached now, on each worker
    for tokens in parallel.map_model(cached_tokens, None, [0, 1, 2, 3], executor=client):
        assert len(tokens) == 1


# -- the compact pickle ------------------------------------------------------------------------
def _arrays(obj, path="", seen=None, out=None):
    """Every ndarray reachable from ``obj`` through pickled state, by path."""
    seen = set() if seen is None else seen
    out = {} if out is None else out
    if id(obj) in seen:
        return out
    seen.add(id(obj))
    if isinstance(obj, np.ndarray):
        out[path] = obj
    elif isinstance(obj, dict):
        for key, value in obj.items():
            _arrays(value, f"{path}[{key!r}]", seen, out)
    elif isinstance(obj, (list, tuple)):
        for k, value in enumerate(obj):
            _arrays(value, f"{path}[{k}]", seen, out)
    elif hasattr(obj, "__dict__") and not isinstance(obj, type):
        state = obj.__getstate__() if hasattr(obj, "__getstate__") else obj.__dict__
        if isinstance(state, dict):
            _arrays(state, path, seen, out)
    return out


class Holder:
    """Arrays of every kind the compact pickle treats (module level: it pickles)."""

    def __init__(self):
        rng = np.random.default_rng(3)
        base = rng.integers(0, 70_000, size=40_000)  # int64 values that fit in int32
        self.indices = base
        self.prefix = base[:39_000]  # a view of it, pickled as a view
        self.same = base.view()  # another array object on the same memory
        self.equal = base.copy()  # equal contents, own memory
        self.signed = rng.integers(-100, 100, size=30_000).astype(np.int32)  # fits int8
        special = np.array([0.0, -0.0, np.nan, 1.5, -np.inf])
        self.few = special[rng.integers(0, 5, size=(200, 100))]  # few distinct bit patterns
        self.few[7, 3] = 2.5  # one the strided sample misses
        self.fortran = np.asfortranarray(rng.integers(0, 9, size=(300, 70)))
        self.dense = rng.standard_normal(20_000)  # nothing to gain: pickled plainly
        self.readonly = np.arange(20_000)
        self.readonly.flags.writeable = False
        self.small = np.arange(10)


def test_compact_pickle_gives_the_same_arrays_bit_for_bit():
    model = matern_poisson(side=60, seed=3)  # arrays above the 64 KiB the compact form needs
    for obj in (Holder(), model):
        plain = pickle.loads(pickle.dumps(obj, pickle.HIGHEST_PROTOCOL))
        blob = parallel._dumps(obj)
        compact = pickle.loads(blob)
        a, b = _arrays(plain), _arrays(compact)
        assert a.keys() == b.keys() and len(a) > 5
        for path in a:
            x, y = a[path], b[path]
            assert (x.dtype, x.shape, x.strides) == (y.dtype, y.shape, y.strides), path
            assert x.flags.writeable == y.flags.writeable, path
            assert x.tobytes() == y.tobytes(), path  # bit for bit (-0.0, NaN included)
        assert len(blob) < 0.75 * len(pickle.dumps(obj, pickle.HIGHEST_PROTOCOL))
    holder = pickle.loads(parallel._dumps(Holder()))
    # views of one base stay views of one base; equal arrays stay apart
    assert np.shares_memory(holder.indices, holder.prefix)
    assert np.shares_memory(holder.indices, holder.same)
    assert not np.shares_memory(holder.indices, holder.equal)
    holder.equal[0] += 1
    assert holder.indices[0] != holder.equal[0]
    assert holder.fortran.flags.f_contiguous
    assert len(parallel._dumps(holder.few)) < holder.few.nbytes / 4  # stored as codes
    # the model computes the same numbers from either copy
    theta = model.theta0 + 0.1
    plain = pickle.loads(pickle.dumps(model, pickle.HIGHEST_PROTOCOL))
    compact = pickle.loads(parallel._dumps(model))
    assert plain.value_and_grad(theta)[0] == compact.value_and_grad(theta)[0]
    assert np.array_equal(plain.gradient(theta), compact.gradient(theta))


def test_the_warm_start_travels_apart_from_the_model():
    model = matern_poisson(side=6, seed=4)
    blob, token, warm = parallel._pack(model)
    model.objective(model.theta0 + 0.3)  # moves the Newton warm start only
    again, token_again, warm_again = parallel._pack(model)
    assert token_again == token and again == blob
    assert warm_again is not None and not np.array_equal(
        warm_again, warm if warm is not None else 0
    )
    copy = pickle.loads(again)
    assert copy._last_mode is None
    parallel._set_warm_start(copy, warm_again)
    np.testing.assert_array_equal(copy._last_mode, model._last_mode)
    assert copy._last_mode is not warm_again
    # a changed model is a new token
    assert parallel._pack(matern_poisson(side=6, seed=5))[1] != token


def warm_start_of(model, item):
    """The warm start the worker's copy has when the task begins."""
    return np.array(model._last_mode, copy=True)


def _same_as_fresh_pickle(executor, shipment_first):
    """Objectives at 5 θ on the executor: with the model shipped ahead (before its warm
    start moved) or pickled at the map, as before; both start from the same state. Checks
    that every worker's copy started the map from the caller's warm start."""
    model = matern_poisson(side=10, seed=8)
    thetas = [model.theta0 + 0.05 * k for k in range(5)]
    shipment = parallel.ship(model, executor) if shipment_first else None
    model.objective(model.theta0 - 0.2)  # the warm start moves after the shipment started
    stats = {}
    try:
        starts = parallel.map_model(
            warm_start_of, model, [0, 1, 2, 3], executor=executor, shipment=shipment
        )
        for start in starts:
            np.testing.assert_array_equal(start, model._last_mode)
        out = parallel.map_model(
            objective_task, model, thetas, executor=executor, shipment=shipment, stats=stats
        )
    finally:
        if shipment is not None:
            shipment.close()
    return out, stats


@pytest.mark.parametrize("kind", ["pool", "dask"])
def test_shipped_model_gives_the_results_of_a_fresh_pickle(kind, request):
    executor = request.getfixturevalue("pool" if kind == "pool" else "client")
    parallel.release(executor)
    shipped, stats = _same_as_fresh_pickle(executor, True)
    parallel.release(executor)
    fresh, _ = _same_as_fresh_pickle(executor, False)
    np.testing.assert_allclose(shipped, fresh, rtol=1e-12)
    assert stats["warm_bytes"] > 0 and stats["model_bytes"] > 0
    if kind == "dask":
        assert not stats["model_file"] and stats["network_copies"] == 0  # already there


def test_shipment_sends_the_model_once_per_worker(client):
    parallel.release(client)
    wrapped = CountingModel(matern_poisson(seed=9))
    with parallel.ship(wrapped, client) as shipment:
        shipment.wait()
        assert shipment.seconds is not None and shipment.model_bytes > 0
        first = parallel.map_model(
            probe, wrapped, list(range(6)), executor=client, shipment=shipment
        )
        second = parallel.map_model(
            probe, wrapped, list(range(6)), executor=client, shipment=shipment
        )
    counts = {}
    for o in first + second:
        counts.setdefault(o["pid"], set()).add(o["unpickled"])
    # one unpickling per worker process, before its first task
    assert all(len(c) == 1 for c in counts.values())
    tokens = parallel.map_model(cached_tokens, None, [0, 1], executor=client)
    assert all(shipment.token in t for t in tokens)


def test_shipment_for_another_executor_is_refused(pool, client):
    with parallel.ship(np.zeros(3), pool) as shipment:
        with pytest.raises(gm.InputError, match="another executor"):
            parallel.map_model(
                item_size, np.zeros(3), [np.ones(2)], executor=client, shipment=shipment
            )
    with pytest.raises(gm.InputError, match="ship needs"):
        parallel.ship(np.zeros(3), None)


def worker_model_loads(model, item):
    return os.getpid(), sum(parallel.worker_cache_info().values())


def test_inla_ships_the_model_once_per_worker(client):
    from tests.inference.rw1_gaussian import model as rw1_gaussian

    parallel.release(client)
    serial = gm.inla(rw1_gaussian(), integration="ccd", progress=False)
    shipped = gm.inla(rw1_gaussian(), integration="ccd", progress=False, executor=client)
    assert shipped.log_marginal_likelihood == pytest.approx(
        serial.log_marginal_likelihood, rel=1e-10
    )
    np.testing.assert_allclose(shipped.latent_mean, serial.latent_mean, rtol=1e-9, atol=1e-10)
    # the Hessian's and the points' tasks found the model shipped at the start: each worker
    # unpickled one copy (plus the probe's model None of this check)
    loads = dict(parallel.map_model(worker_model_loads, None, [0, 1, 2, 3], executor=client))
    assert loads and all(count == 2 for count in loads.values())


def test_large_warm_start_goes_as_dask_data(client, monkeypatch):
    # as at 10⁶ latent variables (an 8 MB warm start): scattered once, the same results
    parallel.release(client)
    inline, _ = _same_as_fresh_pickle(client, True)
    monkeypatch.setattr(parallel, "_WARM_INLINE_BYTES", 0)
    parallel.release(client)
    scattered, stats = _same_as_fresh_pickle(client, True)
    np.testing.assert_allclose(scattered, inline, rtol=1e-12)
    assert stats["warm_bytes"] > 0


def kernels_loaded_by_warm_up(model, theta):
    """Overloads _warm_kernels loaded in this (fresh) process, and those a gradient of the
    model then still had to load or compile, per kernel."""
    import importlib
    import pkgutil

    from numba.core.registry import CPUDispatcher

    from gmrf_core import kernels

    def counts():
        out = {}
        for info in pkgutil.iter_modules(kernels.__path__):
            module = importlib.import_module(f"{kernels.__name__}.{info.name}")
            for name, value in vars(module).items():
                if isinstance(value, CPUDispatcher):
                    out[f"{info.name}.{name}"] = len(value.overloads)
        return out

    parallel._warm_kernels()
    before = counts()
    model.gradient(theta)
    after = counts()
    return sum(before.values()), {k: n - before[k] for k, n in after.items() if n != before[k]}


def test_warm_up_loads_the_kernels_a_gradient_needs(model):
    theta = model.theta0 + 0.05
    model.gradient(theta)  # every signature the gradient uses is in the on-disk cache
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as fresh:
        loaded, missing = fresh.submit(kernels_loaded_by_warm_up, model, theta).result()
    assert loaded > 0
    assert missing == {}
