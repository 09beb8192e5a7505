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
import io
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

__all__ = [
    "map_model",
    "hessian",
    "release",
    "ship",
    "Shipment",
    "is_dask_client",
    "worker_cache_info",
]

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


def _checkout(token, load, warm_key=None, warm=None):
    """A model copy for this task: a free one from the cache, else a new one.

    ``load()`` returns ``(model, blob)``: the first copy and, where copies could be needed
    (several threads), bytes to make more from, taken before the first task touches the
    model; ``blob=None`` means more copies come from calling ``load()`` again.
    ``warm_key``/``warm()``: the Newton warm start the caller's model had when this map
    began (shipped apart from the model, see :func:`_warm_start`); the first task of a map
    that brings a new one sets it on every copy here, later tasks continue from where this
    worker's previous task left Newton's start, as in a serial run.
    """
    with _cache_lock:
        entry = _cached(token, _cache.get(token) or _new_entry())
    _update_warm(entry, warm_key, warm)
    with _cache_lock:
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
        return _set_warm_start(model, entry["warm"])
    # a second thread running a task of the same model: its own copy, so that nothing
    # mutable (factor, warm start) is shared between threads
    entry["ready"].wait()
    copy = pickle.loads(entry["blob"]) if entry["blob"] is not None else load()[0]
    return _set_warm_start(copy, entry["warm"])


def _new_entry(model=None, blob=None):
    """A cache entry: no copy yet, or the copy ``model`` loaded (``blob``: the bytes further
    copies come from, None: from loading again)."""
    entry = {
        "free": [] if model is None else [model],
        "blob": blob,
        "loads": 0 if model is None else 1,
        "source": model,
        "ready": threading.Event(),
        "warm_key": None,
        "warm": None,
    }
    if model is not None:
        entry["ready"].set()
    return entry


def _cached(token, entry):
    """The entry cached under ``token`` (``entry`` where there was none), made the most
    recently used; the oldest beyond ``_CACHE_SIZE`` dropped. Call with ``_cache_lock``."""
    entry = _cache.setdefault(token, entry)
    _cache.move_to_end(token)
    while len(_cache) > _CACHE_SIZE:
        _cache.popitem(last=False)
    return entry


def _update_warm(entry, warm_key, warm):
    """Give the cached copies of ``entry`` the warm start ``warm_key`` (``warm()`` returns
    it) when it is not the one they started this map with."""
    if warm_key is None or entry.get("warm_key") == warm_key:
        return
    value = warm() if callable(warm) else warm
    with _cache_lock:
        if entry.get("warm_key") == warm_key:
            return
        entry["warm_key"], entry["warm"] = warm_key, value
        for model in entry["free"]:
            _set_warm_start(model, value)


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


def _run(function, token, load, item, threads, warm_key=None, warm=None):
    _configure_allocator()
    _configure_threads(threads)
    if isinstance(item, _ItemFile):
        item = item.load()
    model = _checkout(token, load, warm_key, warm)
    try:
        return function(model, item)
    finally:
        _checkin(token, model)


def _load_file(path):
    with open(path, "rb") as handle:
        return pickle.load(handle)


# -- what travels: the compact pickle ------------------------------------------------------------
# A model's arrays make up its pickle (134 MiB at 300², 1.5 KB per latent variable), and the
# default pickle of an array writes its whole buffer: a view's base once per view, int64 index
# arrays whose values fit in 32 bits, value arrays with a handful of distinct entries (the
# Matérn prior's mass and stiffness values on Q's pattern, unit weights of a projection) and
# equal arrays kept by several objects each in full. _dumps writes arrays of 64 KiB and more
# compactly; _loads is pickle.loads, and the arrays come back bit for bit with their dtype,
# shape and memory order (tested), views of one base again views of one base.
_COMPACT_MIN_BYTES = 1 << 16
_FEW_VALUES = 255  # at most this many distinct values are stored as uint8 codes
_NARROW = {"i": (np.int8, np.int16, np.int32), "u": (np.uint8, np.uint16, np.uint32)}


def _widen(narrow, dtype, shape, order, writeable=True):
    """An integer array stored in a narrower type, back in its own."""
    return _flagged(narrow.astype(dtype).reshape(shape, order=order), writeable)


def _decode(values, codes, shape, order, writeable=True):
    """An array of few distinct values, stored as the values and uint8 codes."""
    return _flagged(values[codes].reshape(shape, order=order), writeable)


def _view(base, offset, dtype, shape, strides, writeable=True):
    """A view of ``base`` (pickled once however many views share it)."""
    view = np.ndarray(shape, dtype, buffer=base, offset=offset, strides=strides)
    return _flagged(view, writeable)


def _copy(array, writeable=True):
    """A copy of an array written earlier in the same pickle (equal contents)."""
    return _flagged(np.copy(array), writeable)


def _alias(array, writeable=True):
    """Another array object on the memory of one written earlier in the same pickle."""
    return _flagged(array.view(), writeable)


def _flagged(array, writeable):
    if not writeable:
        array.flags.writeable = False  # as the default pickle gives a read-only array back
    return array


def _root(array):
    """The array owning ``array``'s memory (itself when it owns it), or None if that is not
    a contiguous ndarray."""
    base = array
    while isinstance(base.base, np.ndarray):
        base = base.base
    if base.base is not None or not (base.flags.c_contiguous or base.flags.f_contiguous):
        return None
    return base


def _address(array):
    return array.__array_interface__["data"][0]


def _layout(array):
    return _address(array), array.dtype.str, array.shape, array.strides


class _CompactPickler(pickle.Pickler):
    """The pickler of :func:`_dumps` (see above); ``holder``: the object whose warm start
    (``_last_mode``) is written as None (it is shipped apart, see :func:`_warm_start`)."""

    def __init__(self, file, holder=None):
        super().__init__(file, pickle.HIGHEST_PROTOCOL)
        self.holder = holder
        self.keep = []  # arrays made here or looked up later: alive until the end
        self.made = set()  # ids of the arrays made here (stored forms): pickled plainly
        self.layouts = {}  # (address, dtype, shape, strides) -> the first array seen there
        self.contents = collections.defaultdict(list)  # (dtype, shape, order) -> arrays
        self.saved = 0

    def reducer_override(self, obj):
        if obj is self.holder and obj is not None:
            # the model holding the warm start: pickled as if it had none (the same bytes
            # whichever warm start it has)
            reduced = obj.__reduce_ex__(pickle.HIGHEST_PROTOCOL)
            if (
                not isinstance(reduced, tuple)
                or len(reduced) < 3
                or not isinstance(reduced[2], dict)
            ):
                return NotImplemented
            state = dict(reduced[2])
            state["_last_mode"] = None
            return reduced[:2] + (state,) + reduced[3:]
        if type(obj) is not np.ndarray or id(obj) in self.made:
            return NotImplemented
        if obj.nbytes < _COMPACT_MIN_BYTES or obj.dtype.hasobject or obj.size == 0:
            return NotImplemented
        layout = _layout(obj)
        first = self.layouts.get(layout)
        writeable = bool(obj.flags.writeable)
        if first is not None and first is not obj:  # another array object on that memory
            if writeable and not first.flags.writeable:
                return NotImplemented
            self.saved += obj.nbytes
            return _alias, (first, writeable)
        root = _root(obj)
        if (
            root is not None
            and root is not obj
            and root.nbytes <= obj.nbytes + _COMPACT_MIN_BYTES
            and (root.flags.writeable or not writeable)
        ):
            # a view: its base once (compactly), this array as a view of it
            self.keep.append(root)
            first = self.layouts.setdefault(_layout(root), root)
            if _layout(root) == layout:
                return _alias, (first, writeable)
            self.layouts[layout] = obj
            offset = _address(obj) - _address(root)
            return _view, (root, offset, obj.dtype, obj.shape, obj.strides, writeable)
        self.layouts[layout] = obj
        if obj.flags.c_contiguous:
            order = "C"
        elif obj.flags.f_contiguous:
            order = "F"
        else:
            return NotImplemented
        key = (obj.dtype.str, obj.shape, order)
        flat = obj.ravel(order="K")
        for other in self.contents[key]:
            if np.array_equal(flat.view(np.uint8), other.ravel(order="K").view(np.uint8)):
                self.saved += obj.nbytes
                return _copy, (other, writeable)  # equal contents: written once, copied back
        self.contents[key].append(obj)
        stored = self._few_values(obj, flat, order)
        if stored is None and obj.dtype.kind in _NARROW and obj.dtype.itemsize > 1:
            stored = self._narrow(obj, flat, order)
        if stored is None:
            return NotImplemented
        stored = stored[0], stored[1] + (writeable,)
        self.saved += obj.nbytes
        for part in stored[1]:
            if isinstance(part, np.ndarray):
                self.made.add(id(part))
                self.keep.append(part)
                self.saved -= part.nbytes
        return stored

    def _few_values(self, obj, flat, order):
        if obj.dtype.kind not in "iuf" or obj.dtype.itemsize not in (2, 4, 8):
            return None
        bits = flat.view(f"u{obj.dtype.itemsize}")  # bit patterns: -0.0, NaN kept exactly
        sample = np.unique(bits[:: max(1, bits.size // 4096)])
        if sample.size > _FEW_VALUES:
            return None
        codes = np.minimum(np.searchsorted(sample, bits), sample.size - 1)
        missed = sample[codes] != bits
        if missed.any():  # values the sample missed (rare ones): add them, if few
            if np.count_nonzero(missed) > bits.size // 16:
                return None
            sample = np.union1d(sample, bits[missed])
            if sample.size > _FEW_VALUES:
                return None
            codes = np.searchsorted(sample, bits)
        return _decode, (sample.view(obj.dtype), codes.astype(np.uint8), obj.shape, order)

    def _narrow(self, obj, flat, order):
        low, high = flat.min(), flat.max()
        for narrow in _NARROW[obj.dtype.kind]:
            info = np.iinfo(narrow)
            if (
                np.dtype(narrow).itemsize < obj.dtype.itemsize
                and info.min <= low <= high <= info.max
            ):
                return _widen, (flat.astype(narrow), obj.dtype.str, obj.shape, order)
        return None


# The Newton warm start (``_last_mode`` of a LatentGaussianModel: the last mode, where the
# next Laplace approximation starts) is the one part of a model that its own evaluations
# change. It travels apart from the model, so that the model's bytes and token stay the same
# while it moves (gm.inla ships the model before its mode search and finds it on the workers
# afterwards), and each map sets the caller's current warm start on the workers' copies
# (the same start a freshly pickled model would bring: the same results).
def _warm_holder(model):
    """The object holding ``model``'s warm start: the model, or the model a wrapper (the
    default priors of gm.inla) holds as ``_model``; None for other objects."""
    holder = model
    for _depth in range(4):
        state = getattr(holder, "__dict__", None)
        if not isinstance(state, dict):
            return None
        if "_last_mode" in state:
            return holder
        holder = state.get("_model")
    return None


def _warm_start(model):
    """``model``'s warm start (an array) or None."""
    holder = _warm_holder(model)
    warm = None if holder is None else holder.__dict__["_last_mode"]
    return warm if isinstance(warm, np.ndarray) else None


def _set_warm_start(model, warm):
    """Set the warm start ``warm`` (None: none) on a worker's copy; returns the copy."""
    holder = _warm_holder(model)
    if holder is not None:
        holder.__dict__["_last_mode"] = None if warm is None else np.array(warm, copy=True)
        if "_last_linearization" in holder.__dict__:
            holder.__dict__["_last_linearization"] = None  # belongs to the old start
    return model


def _warm_key(warm):
    if warm is None:
        return "none"
    return f"{warm.dtype.str}{warm.shape}" + hashlib.sha256(warm.tobytes()).hexdigest()[:24]


def _pack(model):
    """``(blob, token, warm)``: the model pickled compactly without its warm start, the
    token naming those bytes, and the warm start itself (None if it has none)."""
    blob = _dumps(model, _warm_holder(model))
    return blob, _content_token(blob), _warm_start(model)


def _dumps(obj, holder=None):
    """``pickle.dumps(obj)`` with its large arrays written compactly (see above); loaded by
    ``pickle.loads``. ``holder``: the object in ``obj`` holding its warm start (written
    without it, see :func:`_warm_start`)."""
    out = io.BytesIO()
    _CompactPickler(out, holder).dump(obj)
    return out.getvalue()


def _futures_task(function, token, path, item, threads, warm_key=None, warm_path=None):
    """What a concurrent.futures worker runs: the model from the cache or from ``path``, its
    warm start (when the worker's copies do not have it yet) from ``warm_path``."""

    def warm():
        return None if warm_path is None else _load_file(warm_path)

    return _run(function, token, lambda: (_load_file(path), None), item, threads, warm_key, warm)


def _futures_preload(token, path):
    """A concurrent.futures task that loads the model into this worker's cache (no work)."""
    _configure_allocator()
    model = _checkout(token, lambda: (_load_file(path), None))
    _checkin(token, model)
    _warm_kernels()
    return os.getpid()


def _worker_threads():
    try:
        from distributed import get_worker

        return get_worker().state.nthreads
    except (ImportError, ValueError, AttributeError):  # pragma: no cover
        return 1


def _dask_task(function, token, blob, item, threads, warm_key=None, warm=None):
    """What a Dask worker runs when the pickled model came as a task dependency (a worker
    that joined late): unpickled once, then cached like an installed one."""
    nthreads = _worker_threads()

    def load():
        # with several worker threads, copies for the others come from these bytes
        return pickle.loads(blob), (blob if nthreads > 1 else None)

    threads = nthreads if threads is None else threads
    return _run(function, token, load, item, threads, warm_key, warm)


class _ModelMissing(Exception):
    """Raised by a Dask task on a worker that does not hold the model (it joined, or was
    restarted, after the model was installed); the client resubmits the task with the
    model as a dependency, which is not counted as a failure."""


def _dask_cached_task(function, token, item, threads, warm_key=None):
    """What a Dask worker runs when the model (and the map's warm start) was installed on it
    by :func:`_install`."""

    def load():
        raise _ModelMissing(token)

    nthreads = _worker_threads()
    threads = nthreads if threads is None else threads
    return _run(function, token, load, item, threads, warm_key, load)


def _install(token, path, blob, probe=None, warm_key=None, warm=None, warm_up=False):
    """Unpickle the model once on this Dask worker and cache it under ``token`` (a task
    pinned to the worker): from the file ``path`` where this worker sees it, else from
    ``blob`` (the scattered bytes); give its copies the warm start ``warm`` (``warm_key``).
    ``warm_up``: also load the kernels' machine code (:func:`_warm_kernels`). Returns
    ``(installed, sees)``: installed is False when the model is neither cached nor
    available; sees, whether the file ``probe`` exists here (the worker sees the caller's
    file system)."""
    _configure_allocator()
    nthreads = _worker_threads()
    sees = probe is not None and os.path.exists(probe)
    with _cache_lock:
        entry = _cache.get(token)
    if entry is None:
        if blob is None:
            if path is None or not os.path.exists(path):
                return False, sees
            with open(path, "rb") as handle:
                blob = handle.read()
        model = pickle.loads(blob)
        # with several worker threads, copies for the others come from these bytes
        entry = _new_entry(model, blob if nthreads > 1 else None)
        with _cache_lock:
            entry = _cached(token, entry)
    _update_warm(entry, warm_key, warm)
    if warm_up:
        _warm_kernels()
    return True, sees


_kernels_warm = False


def _warm_kernels():
    """Load the machine code of every kernel signature in Numba's on-disk cache for this
    machine (once per process; about 1 s for 70 signatures), so that a worker's first
    task does not wait for it. Best effort: the cache index is read through Numba's
    caching internals, and anything unexpected leaves the kernels to load on first use."""
    global _kernels_warm
    if _kernels_warm:
        return
    _kernels_warm = True
    try:
        import importlib
        import pkgutil

        from numba.core.registry import CPUDispatcher

        from . import kernels

        for info in pkgutil.iter_modules(kernels.__path__):
            module = importlib.import_module(f"{kernels.__name__}.{info.name}")
            for value in list(vars(module).values()):
                cache = getattr(value, "_cache", None)
                if not isinstance(value, CPUDispatcher) or cache is None:
                    continue
                codegen = value.targetctx.codegen()
                for key in cache._cache_file._load_index():
                    # entries of this machine and of this source only: loaded, not compiled
                    if key == cache._index_key(key[0], codegen):
                        value.compile(key[0])
    except Exception:  # noqa: BLE001 - a warm-up only: the kernels load on first use
        return


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


class Shipment:
    """A model on its way to an executor's workers, started by :func:`ship`.

    The model is pickled (compactly, without its warm start) when the shipment is made; a
    background thread then writes it where the workers read it and, on Dask, installs it
    on every worker and, for models of 16 MiB and more, loads the kernels' machine code
    there (:func:`_warm_kernels`); on a ``concurrent.futures`` executor it submits one load
    per worker. :func:`map_model`
    with ``shipment=`` waits for it instead of pickling the model again.

    Attributes
    ----------
    token : str
        The digest naming the model's bytes.
    model_bytes : int
        Size of the pickled model.
    seconds : float or None
        Wall time the shipment took in the background (None while it runs).
    network_copies : int
        Dask: workers that got the bytes over the network (not from the file).
    """

    def __init__(self, model, executor, label="model"):
        self.executor = executor
        self.label = label
        blob, self.token, _warm = _pack(model)
        self.model_bytes = len(blob)
        self.path = self.probe = None
        self.network_copies = 0
        self.seconds = None
        self._blob = blob
        self._error = None
        self._files = []
        self._thread = threading.Thread(target=self._ship, name="gmrf_core-ship", daemon=True)
        self._thread.start()

    def _ship(self):
        start = time.perf_counter()
        try:
            self.path = _write_shared(self._blob, self.token)
            self._files.append(self.path)
            if is_dask_client(self.executor):
                self.probe = _write_shared(b"", f"{self.token}-probe")
                self._files.append(self.probe)
                self.network_copies, sees_all = _install_everywhere(
                    self.executor,
                    self.token,
                    self.bytes,
                    self.label,
                    lambda: self.path,
                    self.probe,
                    warm_up=self.model_bytes >= _WARM_UP_MIN_BYTES,
                )
                if sees_all:
                    self._blob = None  # every worker reads the file; the bytes are there
            else:
                self._blob = None
                workers = getattr(self.executor, "_max_workers", None) or 1
                loads = [
                    self.executor.submit(_futures_preload, self.token, self.path)
                    for _ in range(int(workers))
                ]
                concurrent.futures.wait(loads)
                for load in loads:
                    load.result()
        except BaseException as exc:  # noqa: BLE001 - reported by wait()
            self._error = exc
        finally:
            self.seconds = time.perf_counter() - start

    def bytes(self):
        """The pickled model (read back from its file where it was let go)."""
        if self._blob is not None:
            return self._blob
        with open(self.path, "rb") as handle:
            return handle.read()

    def wait(self):
        """Block until the shipment is done; raise :class:`TaskError` if it failed."""
        self._thread.join()
        if self._error is not None:
            raise TaskError(
                f"{self.label}: shipping the model to the workers failed "
                f"({type(self._error).__name__}: {self._error})",
                original=self._error,
            ) from self._error
        return self

    def close(self):
        """Wait for the background work and remove the files (the workers keep the model
        until :func:`release` or until newer models push it out of their cache)."""
        self._thread.join()
        for path in self._files:
            _remove(path)
        self._files = []
        self._blob = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def ship(model, executor, *, label="model"):
    """Start sending ``model`` to the workers of ``executor`` in the background.

    For work that will reach the workers only later — ``gm.inla`` ships the model when it
    starts, so that it is unpickled on the workers, and their kernels loaded, while the
    mode search runs in this process — pass the result as ``shipment=`` to
    :func:`map_model`. Use it as a context manager (or call ``close()``).

    Parameters
    ----------
    model : object
        As for :func:`map_model`; pickled before this returns, so later changes to it are
        not shipped (its Newton warm start excepted, which every map sends apart).
    executor : concurrent.futures.Executor or dask.distributed.Client
    label : str
        Name used in errors.

    Returns
    -------
    Shipment

    Raises
    ------
    InputError
        ``executor`` is None or not an executor.
    """
    if executor is None or not (
        is_dask_client(executor) or isinstance(executor, concurrent.futures.Executor)
    ):
        raise InputError(
            "ship needs a concurrent.futures.Executor or a dask.distributed.Client; "
            f"got {executor!r}."
        )
    return Shipment(model, executor, label)


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
    shipment=None,
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
        ``retries``, ``wall`` (seconds), ``warm_bytes`` (the warm start, sent once per
        worker and map); Dask: ``model_file`` (whether the model had to be
        written for workers that lacked it), ``network_copies`` (workers that got it over
        the network), ``item_bytes`` (items sent by file).
    scatter_items : bool
        Dask only: large items (whole models) that should not sit in the task graph. When
        every worker read the model from its file, each item is pickled to a file next to
        it and the task carries the path (``item_bytes`` in ``stats``): tasks then have no
        data dependencies and go to whichever worker is free. Otherwise the items are sent
        with ``client.scatter``, which places each on a worker and its task with it.
    shipment : Shipment, optional
        This model on its way to the same executor's workers, started earlier by
        :func:`ship`: the map waits for it and does not pickle the model again. The model
        must not have changed since, except for its Newton warm start (which each map sends
        apart, so the results are those of shipping the model now).

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
    if shipment is not None and (executor is None or shipment.executor is not executor):
        raise InputError("shipment was started for another executor than this map's.")
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
            shipment,
        )
    elif isinstance(executor, concurrent.futures.Executor):
        results = _map_futures(
            function, model, items, executor, label, tracker, record, threads_per_worker, shipment
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


def _map_futures(function, model, items, executor, label, tracker, record, threads, shipment):
    if threads is None:
        threads = _default_pool_threads(executor)
    files = []  # written here, removed at the end
    try:
        if shipment is None:
            blob, token, warm = _pack(model)
            record["model_bytes"] = len(blob)
            path = _write_shared(blob, token)
            files.append(path)
            del blob
        else:
            shipment.wait()
            token, path, warm = shipment.token, shipment.path, _warm_start(model)
            record["model_bytes"] = shipment.model_bytes
        warm_key, warm_path = _warm_key(warm), None
        if warm is not None:
            warm_path = _write_shared(pickle.dumps(warm, pickle.HIGHEST_PROTOCOL), f"{token}-warm")
            files.append(warm_path)
        record["warm_bytes"] = 0 if warm is None else int(warm.nbytes)

        def arguments(item):
            return function, token, path, item, threads, warm_key, warm_path

        if items:
            record["task_bytes"] = float(
                np.mean([len(pickle.dumps(arguments(item), -1)) for item in items])
            )

        def submit(index):
            return executor.submit(_futures_task, *arguments(items[index]))

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
        for written in files:
            _remove(written)


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


def _install_everywhere(
    client, token, blob, label, write_file, probe, warm_key=None, warm=None, warm_up=False
):
    """Make every worker hold the model and the warm start ``warm`` (``warm_key``). First
    each worker is asked whether it already holds the model (an unchanged model sent again,
    or shipped ahead by :func:`ship`: nothing is written or sent but the warm start); the
    others read it from a file (``write_file()`` writes it and returns the path) where they
    see the caller's file system, the rest get the bytes (``blob()``) scattered.
    ``warm_up``: the workers load the kernels too (:func:`_warm_kernels`). Returns (network
    copies, whether every worker sees the file ``probe``)."""
    from distributed import wait

    def install(addresses, path, data):
        futures = [
            client.submit(
                _install,
                token,
                path,
                data,
                probe,
                warm_key,
                warm,
                warm_up,
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
        data = client.scatter(blob(), workers=remote, broadcast=True, direct=True, hash=False)
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
# Dask: a warm start above this many bytes is scattered once instead of sent in each task
_WARM_INLINE_BYTES = 1 << 20
# ship(): the workers load every cached kernel (about 0.4-1.3 s) only for models of at least
# this size (about 20,000 latent variables), whose mode search outlasts it; at 30² the mode
# search took 0.05 s and the Hessian waited 0.7 s longer for the loads than for those it needed
_WARM_UP_MIN_BYTES = 16 << 20


def _dask_slots(client):
    workers = client.scheduler_info().get("workers", {})
    return max(1, sum(int(w.get("nthreads", 1)) for w in workers.values()))


def _map_dask(
    function, model, items, client, label, tracker, record, threads, scatter_items, shipment
):
    from distributed import as_completed

    files = []  # written here, removed at the end: the model's, a probe, the items'
    if shipment is None:
        blob, token, warm = _pack(model)
        record["model_bytes"] = len(blob)

        def get_blob():
            return blob

        def write_model():
            files.append(_write_shared(blob, token))
            record["model_file"] = True
            return files[-1]

    else:
        shipment.wait()
        token, warm, get_blob = shipment.token, _warm_start(model), shipment.bytes
        record["model_bytes"] = shipment.model_bytes

        def write_model():
            record["model_file"] = True
            return shipment.path

    warm_key = _warm_key(warm)
    record["warm_bytes"] = 0 if warm is None else int(warm.nbytes)
    late = []  # the bytes as Dask data, made only for a worker that joins after the install
    payload = items
    scattered = []  # items (when not by file) and a large warm start as Dask data
    warm_arg = warm
    if warm is not None and warm.nbytes > _WARM_INLINE_BYTES:
        # a large warm start (8 MB at 10⁶ latent variables) goes as Dask data, not inside
        # every install task
        warm_arg = client.scatter(warm, broadcast=True, hash=False)
        scattered.append(warm_arg)
    item_files = {}
    sees_all = False
    record["model_file"] = False
    try:
        if _INSTALL_ON_WORKERS:
            probe = shipment.probe if shipment is not None else None
            if probe is None:
                probe = _write_shared(b"", f"{token}-probe")
                files.append(probe)
            record["network_copies"], sees_all = _install_everywhere(
                client, token, get_blob, label, write_model, probe, warm_key, warm_arg
            )
        by_file = bool(scatter_items and items and _ITEMS_BY_FILE and sees_all)
        if scatter_items and items and not by_file:
            scattered.extend(client.scatter(list(items), hash=False))
            payload = scattered
        sizes = {}

        def item_for(index):
            if by_file and index not in item_files:
                # written when its task is first submitted: the first tasks start without
                # waiting for every item to be pickled
                blob_item = _dumps(items[index])
                item_files[index] = _write_shared(blob_item, f"{token}-{index}")
                record["item_bytes"] = record.get("item_bytes", 0) + len(blob_item)
            item = _ItemFile(item_files[index]) if by_file else payload[index]
            if index not in sizes:  # what the task sends (a scattered item: about a token)
                sent = token if scatter_items and not by_file else item
                sizes[index] = len(pickle.dumps((function, token, sent, threads, warm_key), -1))
                record["task_bytes"] = float(np.mean(list(sizes.values())))
            return item

        def key(index):
            return f"{label}-{token[:12]}-{index}-{uuid.uuid4().hex[:8]}"

        def submit(index):
            return client.submit(
                _dask_cached_task,
                function,
                token,
                item_for(index),
                threads,
                warm_key,
                pure=False,
                key=key(index),
            )

        def missing(index):
            record["late_installs"] = record.get("late_installs", 0) + 1
            if not late:
                late.append(client.scatter(get_blob(), hash=False))
            return client.submit(
                _dask_task,
                function,
                token,
                late[0],
                item_for(index),
                threads,
                warm_key,
                warm_arg,
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
        for written in files + list(item_files.values()):
            _remove(written)
        client.cancel(late + scattered)


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
