"""Test-session set-up: BLAS single-threaded; the shared executors.

On a small shared machine OpenBLAS threads slow the many small dense operations of
the tests by an order of magnitude; the kernels themselves already run BLAS
single-threaded.
"""

import pytest
from threadpoolctl import threadpool_limits

from tests import _executors


@pytest.fixture(autouse=True, scope="session")
def _single_threaded_blas():
    with threadpool_limits(limits=1, user_api="blas"):
        yield


@pytest.fixture(scope="session")
def pool(request):
    """One spawn ProcessPoolExecutor of 2 workers for the session (tests/_executors.py)."""
    return _executors.process_pool(request)


@pytest.fixture(scope="session")
def client(request):
    """One Dask LocalCluster client (2 single-thread workers) for the session."""
    return _executors.dask_client(request)
