"""Test-session set-up: BLAS single-threaded.

On a small shared machine OpenBLAS threads slow the many small dense operations of
the tests by an order of magnitude; the kernels themselves already run BLAS
single-threaded.
"""

import pytest
from threadpoolctl import threadpool_limits


@pytest.fixture(autouse=True, scope="session")
def _single_threaded_blas():
    with threadpool_limits(limits=1, user_api="blas"):
        yield
