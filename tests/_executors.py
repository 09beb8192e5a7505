"""Executors shared by the executor tests (test_parallel, test_many): one spawn process pool
and one Dask LocalCluster (2 single-thread worker processes) for the whole test session,
started on first use and closed when the session ends."""

import gc
import logging
import multiprocessing
import os
import warnings
from concurrent.futures import ProcessPoolExecutor

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_started = {}


def process_pool(request):
    """A ProcessPoolExecutor of 2 spawn workers (safe next to the cluster's threads)."""
    if "pool" not in _started:
        pool = ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn"))
        _started["pool"] = pool
        request.session.config.add_cleanup(pool.shutdown)
    return _started["pool"]


def start_cluster(allowed_failures=None):
    """A Client of a new LocalCluster(n_workers=2, threads_per_worker=1, processes=True) and
    the function that closes both; ``allowed_failures``: how many worker deaths the
    scheduler absorbs per task before it reports ``KilledWorker`` (Dask's default: 3)."""
    import dask

    distributed = pytest.importorskip("distributed")
    # workers import the test modules by name: make the repository importable in them
    path = os.environ.get("PYTHONPATH", "")
    os.environ["PYTHONPATH"] = REPO + (os.pathsep + path if path else "")
    config = {}
    if allowed_failures is not None:
        config["distributed.scheduler.allowed-failures"] = int(allowed_failures)
    with warnings.catch_warnings(), dask.config.set(config):
        # a LocalCluster on a small machine may warn about its port or memory settings
        warnings.filterwarnings("ignore", category=UserWarning, module="distributed")
        # when port 8787 is taken (another cluster on the machine), the scheduler's HTTP
        # server retries on another port and leaves its probe socket to the collector
        warnings.filterwarnings("ignore", category=ResourceWarning)
        cluster = distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.ERROR,
        )
        client = distributed.Client(cluster)
        gc.collect()  # finalize such sockets here, not later inside some test

    def close():
        client.close()
        cluster.close()
        if path:
            os.environ["PYTHONPATH"] = path
        else:
            os.environ.pop("PYTHONPATH", None)

    return client, close


def dask_client(request):
    """A Client of a LocalCluster(n_workers=2, threads_per_worker=1, processes=True)."""
    if "client" not in _started:
        client, close = start_cluster()
        _started["client"] = client
        request.session.config.add_cleanup(close)
    return _started["client"]
