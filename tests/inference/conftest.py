import pytest

import gmrf_core as gm
from tests.inference import rw1_gaussian


@pytest.fixture(scope="module")
def grid_result():
    return gm.inla(rw1_gaussian.model(), integration="grid", progress=False, diff_logdens=15.0)
