"""Executors: the same θ-level work serially, on a process pool or on a Dask cluster.

Work that is independent by construction — the 2·dim θ gradient evaluations of a
central-difference Hessian, the integration points of ``gm.inla``, many independent
fits — goes through :func:`map_model`, which takes one keyword for where it runs:

* ``executor=None``: serially, in this process, on the caller's model;
* any :class:`concurrent.futures.Executor` (``ProcessPoolExecutor``, ``ThreadPoolExecutor``,
  ``mpi4py.futures.MPIPoolExecutor`` on a shared file system);
* a ``dask.distributed.Client`` (LocalCluster, dask-jobqueue, dask-mpi, ...).

How the model travels
---------------------
The model (matrices, symbolic analysis, data) goes to each worker once, never once per
task; a task carries only a token naming the model and its item (θ). The token is a digest
of the pickled model, so a model sent again unchanged (the Hessian and then the integration
points of one ``gm.inla`` run) finds the workers' cached copy, while a changed one is sent
anew; workers keep the last two models (:func:`release` frees them).

* Dask: one install task pinned to each worker first checks whether it holds the token
  already (an unchanged model: nothing is written or sent), else unpickles the model into
  a per-process cache keyed by the token — from a file when the worker sees the client's
  file system (a LocalCluster, a cluster on a shared file system: no network copy), else
  from the bytes scattered to the workers that need them. The tasks carry the token only
  and depend on no Dask data, so the Active Memory Manager dropping replicas
  (ReduceReplicas, on by default, which ``scatter(broadcast=True)`` copies are subject to)
  costs nothing. A worker that joins, or is restarted, later gets the bytes once as a
  dependency of its first task.
* concurrent.futures: the pickled model is written once to a file in a directory the
  workers can read (``tempfile.gettempdir()`` or ``$GMRF_CORE_SHARED_DIR``); each worker
  process reads and unpickles it on its first task and keeps it in a per-process cache
  keyed by the token (the file is removed when :func:`map_model` returns).

Scheduling
----------
On Dask, as many tasks are in flight as the workers have threads; a new one is submitted
as one finishes, so that each task goes to the first worker that is free (submitted all at
once, the scheduler assigns two tasks ahead to each single-thread worker, and one worker
could end with two long tasks while the other sat idle). Large items (``scatter_items``:
whole models for ``fit_many``) go by file too when the workers read the model's file, so
that no task is tied to the worker holding its item; otherwise they are scattered.

Within one worker process, concurrently running tasks (a Dask worker with several threads,
a ``ThreadPoolExecutor``) each check out their own copy of the model, since a model keeps
mutable work space (its factor, the last mode as Newton's warm start).

Threads
-------
Each worker process limits BLAS (threadpoolctl) and Numba (``numba.set_num_threads``) to
``threads_per_worker`` threads once, on its first task, so that workers on one node do not
oversubscribe it. The model's own ``threads=`` (subtree parallelism of its factorizations,
BLAS threads of its big blocks) travels with the model and is honoured inside the worker.

Memory allocator
----------------
Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536`` (to give freed memory back
to the system early). Setting it also fixes glibc's mmap threshold at its 128 KiB minimum:
every array above that is then a fresh ``mmap``, page-faulted in when first written and
unmapped when freed, which made a 200² gradient 40–80 % slower in a worker than in a plain
process (system time). So a worker process that finds the variable set raises the mmap
threshold to 32 MiB (glibc's own upper bound for it) and the trim threshold to 64 MiB
(``mallopt``) once, on its first task: work arrays are reused from the heap, as in a plain
process, at the price of keeping up to that much freed memory. ``GMRF_CORE_WORKER_MALLOC=keep``
in the workers' environment leaves the allocator alone.

Failures
--------
A task that raises is submitted once more; if it fails again :class:`gmrf_core.TaskError`
is raised naming the item (θ) and carrying the original exception (``__cause__`` and
``.original``). A worker process that dies: Dask reschedules its tasks on the remaining
workers by itself (``distributed.scheduler.allowed-failures``, default 3, then
``KilledWorker``, which is reported as a TaskError); a ``ProcessPoolExecutor`` breaks as a
whole (``BrokenProcessPool``), which is reported as a TaskError as well.

Numba compilation: the kernels are compiled with ``cache=True``, so a worker process loads
machine code from the on-disk cache (``__pycache__`` next to the kernels, or
``$NUMBA_CACHE_DIR``) instead of compiling; only the first process on a node whose cache
is cold compiles.
"""

import collections
import concurrent.futures
import hashlib
import os
import pickle
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures.process import BrokenProcessPool

import numpy as np

from .errors import InputError, TaskError
from .optimize import central_difference_hessian, central_difference_points

__all__ = ["map_model", "hessian", "release", "is_dask_client", "worker_cache_info"]

# -- worker side -----------------------------------------------------------------------------
# Per process: token -> {"free": [model copies not in use], "blob": pickled bytes or None,
# "loads": copies made}; the last few tokens only (one map_model call at a time needs one).
_CACHE_SIZE = 2
_cache = collections.OrderedDict()
_cache_lock = threading.Lock()
_threads_configured = None  # the thread limit this process applied, once
_allocator_configured = None  # whether this process's allocator was tuned (None: not tried)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters
_MMAP_THRESHOLD = 32 << 20  # glibc's upper bound for its dynamic mmap threshold (64-bit)
_TRIM_THRESHOLD = 2 * _MMAP_THRESHOLD


def worker_cache_info():
    """Models this process holds for :func:`map_model` tasks: ``{token: copies loaded}``.

    A copy is loaded once per worker process (plus one per extra thread that runs a task of
    the same model concurrently); the tests count these to check that the model was not
    sent per task.
    """
    with _cache_lock:
        return {token: entry["loads"] for token, entry in _cache.items()}


def _checkout(token, load):
    """A model copy for this task: a free one from the cache, else a new one.

    ``load()`` returns ``(model, blob)``: the first copy and, where copies could be needed
    (several threads), bytes to make more from, taken before the first task touches the
    model; ``blob=None`` means more copies come from calling ``load()`` again.
    """
    with _cache_lock:
        entry = _cache.get(token)
        if entry is None:
            entry = _cache[token] = {
                "free": [],
                "blob": None,
                "loads": 0,
                "source": None,
                "ready": threading.Event(),
            }
            while len(_cache) > _CACHE_SIZE:
                _cache.popitem(last=False)
        else:
            _cache.move_to_end(token)
        if entry["free"]:
            return entry["free"].pop()
        first = entry["loads"] == 0
        entry["loads"] += 1
    if first:
        try:
            model, blob = load()
        except BaseException:
            with _cache_lock:
                _cache.pop(token, None)
            entry["ready"].set()  # waiting threads then fail over to their own load
            raise
        entry["source"], entry["blob"] = model, blob
        entry["ready"].set()
        return model
    # a second thread running a task of the same model: its own copy, so that nothing
    # mutable (factor, warm start) is shared between threads
    entry["ready"].wait()
    if entry["blob"] is not None:
        return pickle.loads(entry["blob"])
    return load()[0]


def _checkin(token, model):
    with _cache_lock:
        entry = _cache.get(token)
        if entry is not None:
            entry["free"].append(model)


def _configure_threads(threads):
    """Limit BLAS and Numba threads of this worker process (once; again if it changes)."""
    global _threads_configured
    if threads is None or _threads_configured == threads:
        return
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=int(threads))
    try:
        import numba

        numba.set_num_threads(max(1, min(int(threads), numba.config.NUMBA_NUM_THREADS)))
    except (ImportError, ValueError):  # pragma: no cover - numba is a dependency
        pass
    _threads_configured = threads


def _configure_allocator():
    """Undo the fixed 128 KiB mmap threshold that ``MALLOC_TRIM_THRESHOLD_`` (set by Dask's
    nanny) implies, once per process (see the module docstring). Returns whether it did."""
    global _allocator_configured
    if _allocator_configured is not None:
        return _allocator_configured
    _allocator_configured = False
    if "MALLOC_TRIM_THRESHOLD_" not in os.environ:
        return False
    if os.environ.get("GMRF_CORE_WORKER_MALLOC", "").lower() == "keep":
        return False
    try:
        import ctypes

        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # pragma: no cover - not glibc
        return False
    _allocator_configured = bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)
    )
    return _allocator_configured


class _ItemFile:
    """An item pickled to a file the workers can read (large items on a LocalCluster or a
    shared file system: no data dependency, so the scheduler hands each task to whichever
    worker is free)."""

    def __init__(self, path):
        self.path = path

    def load(self):
        with open(self.path, "rb") as handle:
            return pickle.load(handle)


def _run(function, token, load, item, threads):
    _configure_allocator()
    _configure_threads(threads)
    if isinstance(item, _ItemFile):
        item = item.load()
    model = _checkout(token, load)
    try:
        return function(model, item)
    finally:
        _checkin(token, model)


def _load_file(path):
    with open(path, "rb") as handle:
        return pickle.load(handle)


def _futures_task(function, token, path, item, threads):
    """What a concurrent.futures worker runs: the model from the cache or from ``path``."""
    return _run(function, token, lambda: (_load_file(path), None), item, threads)


def _worker_threads():
    try:
        from distributed import get_worker

        return get_worker().state.nthreads
    except (ImportError, ValueError, AttributeError):  # pragma: no cover
        return 1


def _dask_task(function, token, blob, item, threads):
    """What a Dask worker runs when the pickled model came as a task dependency (a worker
    that joined late): unpickled once, then cached like an installed one."""
    nthreads = _worker_threads()

    def load():
        # with several worker threads, copies for the others come from these bytes
        return pickle.loads(blob), (blob if nthreads > 1 else None)

    return _run(function, token, load, item, nthreads if threads is None else threads)


class _ModelMissing(Exception):
    """Raised by a Dask task on a worker that does not hold the model (it joined, or was
    restarted, after the model was installed); the client resubmits the task with the
    model as a dependency, which is not counted as a failure."""


def _dask_cached_task(function, token, item, threads):
    """What a Dask worker runs when the model was installed on it by :func:`_install`."""

    def load():
        raise _ModelMissing(token)

    nthreads = _worker_threads()
    return _run(function, token, load, item, nthreads if threads is None else threads)


def _install(token, path, blob, probe=None):
    """Unpickle the model once on this Dask worker and cache it under ``token`` (a task
    pinned to the worker): from the file ``path`` where this worker sees it, else from
    ``blob`` (the scattered bytes). Returns ``(installed, sees)``: installed is False when
    the model is neither cached nor available; sees, whether the file ``probe`` exists
    here (the worker sees the caller's file system)."""
    _configure_allocator()
    nthreads = _worker_threads()
    sees = probe is not None and os.path.exists(probe)
    with _cache_lock:
        if token in _cache:
            return True, sees
    if blob is None:
        if path is None or not os.path.exists(path):
            return False, sees
        with open(path, "rb") as handle:
            blob = handle.read()
    model = pickle.loads(blob)
    entry = {
        "free": [model],
        # with several worker threads, copies for the others come from these bytes
        "blob": blob if nthreads > 1 else None,
        "loads": 1,
        "source": model,
        "ready": threading.Event(),
    }
    entry["ready"].set()
    with _cache_lock:
        _cache[token] = entry
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return True, sees


def _drop_all():
    """Forget every cached model in this process."""
    with _cache_lock:
        _cache.clear()
    return True


# -- client side -----------------------------------------------------------------------------
def is_dask_client(executor):
    """True for a ``dask.distributed.Client`` (checked without importing Dask)."""
    cls = type(executor)
    return cls.__module__.split(".")[0] == "distributed" and hasattr(executor, "scatter")


def _describe(item):
    if isinstance(item, np.ndarray):
        return np.array2string(item, precision=6, separator=", ")
    text = repr(item)
    return text if len(text) <= 200 else text[:197] + "..."


class _Progress:
    def __init__(self, progress, label, total, stream):
        self.callback = progress if callable(progress) else None
        self.enabled = bool(progress)
        self.label, self.total = label, total
        self.stream = sys.stdout if stream is None else stream
        self.done = 0
        self.start = time.perf_counter()

    def step(self):
        self.done += 1
        if self.callback is not None:
            self.callback(self.done, self.total)
        elif self.enabled:
            print(
                f"{self.label} {self.done}/{self.total} done"
                f"  ({time.perf_counter() - self.start:7.1f} s)",
                file=self.stream,
                flush=True,
            )


def _task_error(label, index, item, exc):
    error = TaskError(
        f"{label} {index} failed twice (retried once) at {_describe(item)}: "
        f"{type(exc).__name__}: {exc}",
        item=item,
        index=index,
        original=exc,
    )
    return error


def map_model(
    function,
    model,
    items,
    *,
    executor=None,
    progress=False,
    label="task",
    threads_per_worker=None,
    stream=None,
    stats=None,
    scatter_items=False,
):
    """``[function(model, item) for item in items]``, serially or on workers.

    Parameters
    ----------
    function : callable
        ``function(model, item)``; a module-level function (it is pickled by reference for
        worker processes).
    model : object
        The shared, picklable object every task needs (usually a
        :class:`~gmrf_core.LatentGaussianModel`); sent to each worker once.
    items : iterable
        One task per item (θ vectors, fold indices, models, ...); items are sent with
        their task.
    executor : None, concurrent.futures.Executor or dask.distributed.Client
        Where the tasks run: None runs them serially in this process on ``model`` itself.
    progress : bool or callable
        True prints ``"<label> k/N done"`` as tasks finish; a callable is called as
        ``progress(done, total)`` instead.
    label : str
        Name of a task in progress lines and errors.
    threads_per_worker : int, optional
        BLAS/Numba threads each worker process allows itself (see the module docstring).
        Default: a ``ProcessPoolExecutor``'s share of this machine's cores
        (``cpu_count // max_workers``), a Dask worker's own ``nthreads``; unchanged for
        other executors and for serial runs.
    stream : file-like, optional
        Where progress goes (default sys.stdout).
    stats : dict, optional
        Filled with what was measured: ``tasks``, ``model_bytes`` (the pickled model, sent
        once per worker), ``task_bytes`` (mean bytes a task sends: function, token, item),
        ``retries``, ``wall`` (seconds); Dask: ``model_file`` (whether the model had to be
        written for workers that lacked it), ``network_copies`` (workers that got it over
        the network), ``item_bytes`` (items sent by file).
    scatter_items : bool
        Dask only: large items (whole models) that should not sit in the task graph. When
        every worker read the model from its file, each item is pickled to a file next to
        it and the task carries the path (``item_bytes`` in ``stats``): tasks then have no
        data dependencies and go to whichever worker is free. Otherwise the items are sent
        with ``client.scatter``, which places each on a worker and its task with it.

    Returns
    -------
    list
        ``function(model, item)`` for every item, in the items' order.

    Raises
    ------
    TaskError
        A task raised twice (it is retried once); names the item and carries the error.
    InputError
        ``function`` is not callable or ``executor`` is none of the above.
    """
    if not callable(function):
        raise InputError(f"function must be callable; got {function!r}.")
    items = list(items)
    if threads_per_worker is not None and (
        int(threads_per_worker) != threads_per_worker or threads_per_worker < 1
    ):
        raise InputError(
            f"threads_per_worker must be a positive integer; got {threads_per_worker!r}."
        )
    start = time.perf_counter()
    record = {"tasks": len(items), "model_bytes": 0, "task_bytes": 0.0, "retries": 0}
    tracker = _Progress(progress, label, len(items), stream)
    if executor is None:
        results = _map_serial(function, model, items, label, tracker, record)
    elif is_dask_client(executor):
        results = _map_dask(
            function,
            model,
            items,
            executor,
            label,
            tracker,
            record,
            threads_per_worker,
            scatter_items,
        )
    elif isinstance(executor, concurrent.futures.Executor):
        results = _map_futures(
            function, model, items, executor, label, tracker, record, threads_per_worker
        )
    else:
        raise InputError(
            "executor must be None, a concurrent.futures.Executor or a dask.distributed.Client; "
            f"got {executor!r}."
        )
    record["wall"] = time.perf_counter() - start
    if stats is not None:
        stats.update(record)
    return results


def _map_serial(function, model, items, label, tracker, record):
    results = []
    for index, item in enumerate(items):
        try:
            value = function(model, item)
        except Exception:
            record["retries"] += 1
            try:
                value = function(model, item)
            except Exception as exc:
                raise _task_error(label, index, item, exc) from exc
        results.append(value)
        tracker.step()
    return results


def _default_pool_threads(executor):
    workers = getattr(executor, "_max_workers", None)
    if not isinstance(executor, concurrent.futures.ProcessPoolExecutor) or not workers:
        return None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) // int(workers))


def _write_shared(blob, token):
    """Write the pickled model where workers on this machine (or a shared file system) can
    read it: ``$GMRF_CORE_SHARED_DIR`` or the temporary directory. Returns the path."""
    directory = os.environ.get("GMRF_CORE_SHARED_DIR") or tempfile.gettempdir()
    handle, path = tempfile.mkstemp(prefix=f"gmrf_core-{token}-", suffix=".pkl", dir=directory)
    with os.fdopen(handle, "wb") as out:
        out.write(blob)
    return path


def _remove(path):
    try:
        os.remove(path)
    except OSError:  # pragma: no cover - already gone
        pass


def _content_token(blob):
    """The model's token: a digest of its pickled bytes, so the same bytes shipped again (the
    stages of one gm.inla run) find the workers' cached copy, and a changed model never does.
    SHA-256 (hardware-accelerated on current x86 and ARM CPUs: 0.08 s for the 135 MiB of a
    300² model, against 0.18 s for BLAKE2b), the first 128 bits."""
    return hashlib.sha256(blob).hexdigest()[:32]


def _map_futures(function, model, items, executor, label, tracker, record, threads):
    if threads is None:
        threads = _default_pool_threads(executor)
    blob = pickle.dumps(model, pickle.HIGHEST_PROTOCOL)
    token = _content_token(blob)
    record["model_bytes"] = len(blob)
    path = _write_shared(blob, token)
    del blob
    try:
        if items:
            record["task_bytes"] = float(
                np.mean(
                    [
                        len(pickle.dumps((function, token, path, item, threads), -1))
                        for item in items
                    ]
                )
            )

        def submit(index):
            return executor.submit(_futures_task, function, token, path, items[index], threads)

        return _collect(
            submit,
            len(items),
            items,
            label,
            tracker,
            record,
            lambda futures: concurrent.futures.as_completed(futures),
        )
    finally:
        _remove(path)


def _collect(submit, count, items, label, tracker, record, as_completed, missing=None, limit=None):
    """Submit the tasks, gather them as they finish, resubmit a failure once.

    ``limit``: at most that many tasks in flight (a new one is submitted as one finishes),
    so that each goes to whichever worker is free first; None submits every task at once.
    """
    results = [None] * count
    attempts = [0] * count
    pending = {}
    waiting = collections.deque(range(count))

    def fill():
        while waiting and (limit is None or len(pending) < limit):
            index = waiting.popleft()
            try:
                pending[submit(index)] = index
            except BrokenProcessPool as exc:
                raise _task_error(label, index, items[index], exc) from exc

    try:
        fill()
        while pending:
            for future in as_completed(list(pending)):
                index = pending.pop(future)
                try:
                    results[index] = future.result()
                except _ModelMissing:
                    # a worker without the model: send the task again with the model
                    pending[missing(index)] = index
                    break
                except Exception as exc:
                    attempts[index] += 1
                    if attempts[index] > 1 or isinstance(exc, BrokenProcessPool):
                        raise _task_error(label, index, items[index], exc) from exc
                    record["retries"] += 1
                    try:
                        pending[submit(index)] = index
                    except BrokenProcessPool as broken:
                        raise _task_error(label, index, items[index], broken) from exc
                    # restart the wait with the resubmitted task included
                    break
                tracker.step()
                if waiting:
                    fill()
                    break  # restart the wait with the new task included
    finally:
        for future in pending:
            future.cancel()
    return results


# Dask: the pickled model goes to every worker once. One install task pinned to each worker
# unpickles it into the per-process cache: from a file when the worker sees the client's file
# system (a LocalCluster, a cluster on a shared file system: no network copy), else from the
# bytes scattered to the workers that need them. The tasks then carry the token only and do
# not depend on any Dask data, so the Active Memory Manager dropping replicas costs nothing.
_INSTALL_ON_WORKERS = True


def _install_everywhere(client, token, blob, label, write_file, probe):
    """Make every worker hold the model. First each worker is asked whether it already
    does (an unchanged model sent again: nothing is written or sent); the others read it
    from a file (``write_file()`` writes it and returns the path) where they see the
    caller's file system, the rest get the bytes scattered. Returns (network copies,
    whether every worker sees the file ``probe``)."""
    from distributed import wait

    def install(addresses, path, data):
        futures = [
            client.submit(
                _install,
                token,
                path,
                data,
                probe,
                workers=[address],
                allow_other_workers=False,
                pure=False,
                key=f"install-{token[:12]}-{uuid.uuid4().hex[:8]}",
            )
            for address in addresses
        ]
        wait(futures)
        done = {}
        for address, future in zip(addresses, futures):
            if future.status == "error":
                error = future.exception()
                raise TaskError(
                    f"{label}: the model could not be unpickled on the Dask worker {address} "
                    f"({type(error).__name__}: {error}); is gmrf_core installed there?",
                    original=error,
                ) from error
            done[address] = future.result()
        client.cancel(futures)
        return done

    workers = list(client.scheduler_info()["workers"])
    done = install(workers, None, None)
    sees_all = all(sees for _ok, sees in done.values())
    lacking = [address for address, (ok, _sees) in done.items() if not ok]
    remote = []
    if lacking:
        done = install(lacking, write_file(), None)
        remote = [address for address, (ok, _sees) in done.items() if not ok]
    if remote:
        data = client.scatter(blob, workers=remote, broadcast=True, direct=True, hash=False)
        install(remote, None, data)
        client.cancel([data])
    return len(remote), sees_all


# Dask: as many tasks in flight as the workers have threads, a new one submitted as one
# finishes, so that each task goes to the first worker that is free. (Submitted all at once,
# the scheduler assigns up to worker-saturation × threads tasks, rounded up — two for a
# single-thread worker — to each worker ahead of time, and a worker can end with several
# long tasks while another sits idle.) Costs one round trip per task (milliseconds).
_THROTTLE_DASK = True
# Dask: large items (scatter_items) go by file when every worker reads the model's file
_ITEMS_BY_FILE = True


def _dask_slots(client):
    workers = client.scheduler_info().get("workers", {})
    return max(1, sum(int(w.get("nthreads", 1)) for w in workers.values()))


def _map_dask(function, model, items, client, label, tracker, record, threads, scatter_items):
    from distributed import as_completed

    blob = pickle.dumps(model, pickle.HIGHEST_PROTOCOL)
    token = _content_token(blob)
    record["model_bytes"] = len(blob)
    late = []  # the bytes as Dask data, made only for a worker that joins after the install
    payload = items
    files = []  # written here, removed at the end: the model's, a probe, the items'
    item_files = []
    sees_all = False

    def write_model():
        files.append(_write_shared(blob, token))
        record["model_file"] = True
        return files[-1]

    record["model_file"] = False
    try:
        if _INSTALL_ON_WORKERS:
            files.append(_write_shared(b"", f"{token}-probe"))
            record["network_copies"], sees_all = _install_everywhere(
                client, token, blob, label, write_model, files[-1]
            )
        if scatter_items and items and _ITEMS_BY_FILE and sees_all:
            # every worker sees this file system: the items go by file too
            for index, item in enumerate(items):
                blob_item = pickle.dumps(item, pickle.HIGHEST_PROTOCOL)
                item_files.append(_write_shared(blob_item, f"{token}-{index}"))
                record["item_bytes"] = record.get("item_bytes", 0) + len(blob_item)
            payload = [_ItemFile(p) for p in item_files]
        elif scatter_items and items:
            payload = client.scatter(items, hash=False)
        if items:
            if item_files:
                sent = payload
            elif scatter_items:
                sent = [token] * len(items)  # a future's key: about a token's size
            else:
                sent = items
            record["task_bytes"] = float(
                np.mean([len(pickle.dumps((function, token, i, threads), -1)) for i in sent])
            )

        def key(index):
            return f"{label}-{token[:12]}-{index}-{uuid.uuid4().hex[:8]}"

        def submit(index):
            return client.submit(
                _dask_cached_task,
                function,
                token,
                payload[index],
                threads,
                pure=False,
                key=key(index),
            )

        def missing(index):
            record["late_installs"] = record.get("late_installs", 0) + 1
            if not late:
                late.append(client.scatter(blob, hash=False))
            return client.submit(
                _dask_task,
                function,
                token,
                late[0],
                payload[index],
                threads,
                pure=False,
                key=key(index),
            )

        return _collect(
            submit,
            len(items),
            items,
            label,
            tracker,
            record,
            lambda futures: as_completed(futures),
            missing=missing,
            limit=_dask_slots(client) if _THROTTLE_DASK else None,
        )
    finally:
        for written in files + item_files:
            _remove(written)
        scattered = payload is not items and not item_files
        client.cancel(late + (list(payload) if scattered else []))


def release(executor=None):
    """Free the models cached for :func:`map_model` tasks.

    Workers keep the last two models they were sent (so the stages of one ``gm.inla`` run
    ship the model once); this drops them on every worker of a Dask client, or in this
    process for ``executor=None`` or a ``ThreadPoolExecutor``. A ``ProcessPoolExecutor``'s
    workers free theirs when it shuts down.

    Parameters
    ----------
    executor : None, concurrent.futures.Executor or dask.distributed.Client
    """
    if executor is not None and is_dask_client(executor):
        executor.run(_drop_all)
    else:
        _drop_all()


# -- the Hessian -----------------------------------------------------------------------------
def _gradient_task(model, theta):
    return np.asarray(model.gradient(theta), dtype=float)


def hessian(model, theta, *, executor=None, step=1e-4, progress=False, stream=None, stats=None):
    """Hessian of ``model.objective`` at θ by central differences of the exact gradient.

    ``H[:, k] = (∇f(θ + h_k e_k) − ∇f(θ − h_k e_k)) / (2 h_k)`` with
    ``h_k = step · max(1, |θ_k|)``, symmetrized, ½(H + Hᵀ) — the formula of
    :func:`gmrf_core.optimize.hessian_from_gradient`, here as 2·dim θ independent tasks
    for :func:`map_model`.

    Parameters
    ----------
    model : LatentGaussianModel
        Anything with ``gradient(θ)`` (and ``theta0`` giving the length of θ).
    theta : array_like
        Point, internal scale.
    executor : None, concurrent.futures.Executor or dask.distributed.Client
        See :func:`map_model`.
    step : float
        Relative step.
    progress, stream, stats
        See :func:`map_model`.

    Returns
    -------
    numpy.ndarray, shape (p, p)

    Raises
    ------
    InputError
        θ of the wrong length or not finite, step not positive.
    TaskError
        A gradient evaluation failed twice.
    """
    theta = np.asarray(theta, dtype=float).reshape(-1)
    expected = np.asarray(getattr(model, "theta0", theta)).size
    if theta.size != expected or not np.all(np.isfinite(theta)):
        raise InputError(f"theta must be a finite vector of length {expected}.")
    if not (np.isfinite(step) and step > 0):
        raise InputError(f"step must be positive; got {step!r}.")
    steps, points = central_difference_points(theta, step)
    grads = map_model(
        _gradient_task,
        model,
        points,
        executor=executor,
        progress=progress,
        label="gradient",
        stream=stream,
        stats=stats,
    )
    return central_difference_hessian(grads, steps)
