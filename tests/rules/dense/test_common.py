"""Tests of the validation and factorization errors every dense rule shares (_common)."""

import importlib

import numpy as np
import pytest
import scipy.sparse as sp

from gmrf_core.errors import InputError, NotPositiveDefiniteError, NotSymmetricError
from gmrf_core.rules import dense

MODULES = ["inverse", "linear_solve", "log_determinant", "cholesky_factor"]
MODULES += ["matrix_exponential", "lyapunov"]


def test_every_public_name_is_re_exported_from_its_module():
    """gm.rules.dense.<op>_jvp/_vjp is the public path; each name lives in one module."""
    homes = {}
    for name in MODULES:
        module = importlib.import_module(f"gmrf_core.rules.dense.{name}")
        for public in module.__all__:
            assert public not in homes, (public, homes.get(public), name)
            homes[public] = name
            assert getattr(dense, public) is getattr(module, public)
    assert sorted([*homes, "SYMMETRY_RTOL"]) == sorted(dense.__all__)


@pytest.mark.parametrize(
    "call",
    [
        lambda: dense.inv(np.ones((2, 3))),
        lambda: dense.inv(np.ones(3)),
        lambda: dense.inv(np.zeros((0, 0))),
        lambda: dense.inv(np.array([[1.0, np.nan], [0.0, 1.0]])),
        lambda: dense.inv(np.array([[1.0, np.inf], [0.0, 1.0]])),
        lambda: dense.inv(np.eye(2) * (1 + 1j)),
        lambda: dense.inv(np.array([["a", "b"], ["c", "d"]])),
        lambda: dense.inv(sp.eye(3, format="csc")),
    ],
)
def test_bad_input_raises_input_error(call):
    with pytest.raises(InputError):
        call()


def test_error_messages_name_the_problem():
    with pytest.raises(InputError, match=r"square 2-D array, got shape \(2, 3\)"):
        dense.inv(np.ones((2, 3)))
    with pytest.raises(InputError, match=r"NaN or inf \(first at index \(0, 1\)\)"):
        dense.expm(np.array([[1.0, np.nan], [0.0, 1.0]]))
    with pytest.raises(InputError, match="A_dot has shape"):
        dense.expm_jvp(np.eye(2), np.eye(3))
    with pytest.raises(InputError, match="toarray"):
        dense.logdet(sp.eye(2, format="csr"))


@pytest.mark.parametrize("op", [dense.inv, dense.slogdet, lambda a: dense.solve(a, np.ones(3))])
def test_singular_matrix_raises(op):
    singular = np.array([[1.0, 2.0, 3.0], [2.0, 4.0, 6.0], [0.0, 1.0, 1.0]])
    with pytest.raises(InputError, match="singular"):
        op(singular)


@pytest.mark.parametrize("op", [dense.logdet, dense.cholesky, dense.logdet_vjp])
def test_not_positive_definite_reports_column(op):
    matrix = np.diag([2.0, 1.0, -1.0, 3.0])
    matrix[0, 1] = matrix[1, 0] = 0.5
    with pytest.raises(NotPositiveDefiniteError) as info:
        op(matrix)
    assert info.value.column == 2
    assert "column 2" in str(info.value)


@pytest.mark.parametrize("op", [dense.logdet, dense.cholesky, dense.cholesky_vjp])
def test_not_symmetric_raises(op):
    with pytest.raises(NotSymmetricError, match="symmetric"):
        op(np.array([[2.0, 1.0], [0.0, 2.0]]))
