"""BLAS and LAPACK from the OpenBLAS that SciPy ships, callable from Numba nopython code.

The function pointers come from ``scipy.linalg.cython_blas`` / ``cython_lapack``
(``__pyx_capi__`` capsules). Each address is registered with LLVM under a
package-private symbol name (``llvmlite.binding.add_symbol``) and declared as a
:class:`numba.types.ExternalFunction`. Compiled kernels therefore refer to the
routine *by name*, not by an address baked into the machine code, so Numba's
on-disk cache (``cache=True``) stays valid across processes: the symbol is
registered again at import time, before any cached kernel is loaded.

All routines use the Fortran calling convention: every argument is a pointer.
Pointers are passed as ``voidptr`` (``array.ctypes`` or a slice's ``.ctypes``
in nopython code). Integers are 32-bit (LP64 BLAS); :func:`_check_lp64` fails
clearly at import if SciPy was built against an ILP64 BLAS.
"""

import ctypes

import llvmlite.binding as llvm
import scipy.linalg.cython_blas as _cython_blas
import scipy.linalg.cython_lapack as _cython_lapack
from numba import types

__all__ = [
    "dgemm",
    "dpotrf",
    "dpotri",
    "dsymm",
    "dsyrk",
    "dtrsm",
    "dtrsv",
    "dgemv",
    "dtrtri",
    "dtrmm",
    "blas_threads",
]

_PREFIX = "gmrf_core_"
_vp = types.voidptr

# name: (module, number of pointer arguments)
_ROUTINES = {
    "dgemm": (_cython_blas, 13),
    "dsyrk": (_cython_blas, 10),
    "dsymm": (_cython_blas, 12),
    "dtrsm": (_cython_blas, 11),
    "dtrmm": (_cython_blas, 11),
    "dtrsv": (_cython_blas, 8),
    "dgemv": (_cython_blas, 11),
    "dpotrf": (_cython_lapack, 5),
    "dpotri": (_cython_lapack, 5),
    "dtrtri": (_cython_lapack, 6),
}


def _capsule_address(capsule):
    get_name = ctypes.pythonapi.PyCapsule_GetName
    get_name.restype = ctypes.c_char_p
    get_name.argtypes = [ctypes.py_object]
    get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
    get_pointer.restype = ctypes.c_void_p
    get_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
    return get_pointer(capsule, get_name(capsule))


def _check_lp64():
    """Fail clearly unless the BLAS takes 32-bit integers.

    SciPy's Cython BLAS API declares ``int *`` for every integer argument; a
    64-bit-integer build would change the capsule signatures to ``int64``.
    """
    signature = repr(_cython_blas.__pyx_capi__["dgemm"])
    if "int *" not in signature or "int64" in signature or "long" in signature:
        raise ImportError(
            "gmrf_core needs a BLAS with 32-bit integers (LP64); SciPy's BLAS "
            f"signature is {signature!r}. Install the standard SciPy wheels "
            "(they bundle scipy-openblas32)."
        )


def _register():
    externals = {}
    for name, (module, nargs) in _ROUTINES.items():
        address = _capsule_address(module.__pyx_capi__[name])
        symbol = _PREFIX + name
        llvm.add_symbol(symbol, address)
        externals[name] = types.ExternalFunction(symbol, types.void(*([_vp] * nargs)))
    return externals


_check_lp64()
_EXTERNALS = _register()
dgemm = _EXTERNALS["dgemm"]
dsyrk = _EXTERNALS["dsyrk"]
dsymm = _EXTERNALS["dsymm"]
dtrsm = _EXTERNALS["dtrsm"]
dtrmm = _EXTERNALS["dtrmm"]
dtrsv = _EXTERNALS["dtrsv"]
dgemv = _EXTERNALS["dgemv"]
dpotrf = _EXTERNALS["dpotrf"]
dpotri = _EXTERNALS["dpotri"]
dtrtri = _EXTERNALS["dtrtri"]


def _scipy_openblas():
    """threadpoolctl controller for SciPy's own OpenBLAS (the one the kernels call)."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover - threadpoolctl is a dependency
        return None
    controller = ThreadpoolController()
    import scipy.linalg  # noqa: F401  (loads SciPy's OpenBLAS)

    for lib in ThreadpoolController().lib_controllers:
        if lib.internal_api == "openblas" and "scipy.libs" in lib.filepath.replace("\\", "/"):
            return controller.select(filepath=lib.filepath)
    return None


class blas_threads:
    """Context manager limiting SciPy's OpenBLAS to ``limit`` threads (default 1).

    The kernels call BLAS on many small and medium blocks; OpenBLAS threading on
    those costs more in synchronisation than it gains, so factorizations run
    single-threaded unless they parallelise themselves.
    """

    _controller = None

    def __init__(self, limit=1):
        self.limit = limit
        self._ctx = None

    def __enter__(self):
        if blas_threads._controller is None:
            blas_threads._controller = _scipy_openblas() or False
        if blas_threads._controller:
            self._ctx = blas_threads._controller.limit(limits=self.limit)
            self._ctx.__enter__()
        return self

    def __exit__(self, *exc):
        if self._ctx is not None:
            self._ctx.__exit__(*exc)
        return False
