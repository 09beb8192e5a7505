"""Shared set-up of the dense rule tests."""

import pytest
from threadpoolctl import threadpool_limits


@pytest.fixture(autouse=True)
def _single_blas_thread():
    # small matrices gain nothing from BLAS threads, and on a loaded machine OpenBLAS
    # threads slowed these tests more than ten-fold
    with threadpool_limits(limits=1, user_api="blas"):
        yield
