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
import threading

import llvmlite.binding as llvm
import scipy.linalg.cython_blas as _cython_blas
import scipy.linalg.cython_lapack as _cython_lapack
from numba import types

__all__ = [
    "dgemm",
    "dgemv",
    "dpotrf",
    "dpotri",
    "dsymm",
    "dsyrk",
    "dtrsm",
    "dtrsv",
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
    "dgemv": (_cython_blas, 11),
    "dtrsv": (_cython_blas, 8),
    "dpotrf": (_cython_lapack, 5),
    "dpotri": (_cython_lapack, 5),
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
dgemv = _EXTERNALS["dgemv"]
dtrsv = _EXTERNALS["dtrsv"]
dpotrf = _EXTERNALS["dpotrf"]
dpotri = _EXTERNALS["dpotri"]


def _openblas_libraries():
    """threadpoolctl's controllers of every OpenBLAS in the process: SciPy's own (the one the
    kernels call) and NumPy's (the one behind ``@`` on the glue's long vectors, which OpenBLAS
    splits over threads above 10,000 entries: on a loaded machine a 10⁴-long dot product then
    waits milliseconds for a second thread instead of taking microseconds)."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover - threadpoolctl is a dependency
        return []
    import scipy.linalg  # noqa: F401  (loads SciPy's OpenBLAS)

    return [lib for lib in ThreadpoolController().lib_controllers if lib.internal_api == "openblas"]


# Process-wide state of the limits: OpenBLAS's thread count is global, so concurrent
# contexts (factorizations on several Python threads) share one setting. While any context
# is open the smallest limit asked for applies; the count found before the first one is
# restored when the last one closes (restoring per context would let one thread's exit undo
# another's limit, or leave the user's own BLAS calls on one thread for good).
# While contexts are open the limit last applied is remembered ("applied"): a nested context
# that changes nothing (a kernel's one thread inside a model's evaluation on one thread) then
# makes no call into the libraries (their get_num_threads, twice per context for each
# library, cost about 0.2 ms per evaluation of a 100² Laplace objective). The last context's
# exit sets it back to None with the original counts.
_limits_lock = threading.Lock()
_active_limits = {}
_state = {"libraries": None, "original": None, "applied": None}


def _apply_limit(libraries):
    target = min(_active_limits.values()) if _active_limits else None
    if target is not None and target == _state["applied"]:
        return
    for library, original in zip(libraries, _state["original"] or [None] * len(libraries)):
        wanted = original if target is None else target
        if wanted is not None and library.get_num_threads() != wanted:
            library.set_num_threads(wanted)
    _state["applied"] = target


class blas_threads:
    """Context manager limiting every OpenBLAS of the process (SciPy's and NumPy's) to
    ``limit`` threads (default 1).

    The kernels call BLAS on many small and medium blocks; OpenBLAS threading on
    those costs more in synchronisation than it gains, so factorizations run
    single-threaded unless they parallelise themselves. Safe to use from several
    threads at once: the smallest open limit applies, and the thread count found
    before the first context is restored after the last one.
    """

    def __init__(self, limit=1):
        self.limit = int(limit)

    def __enter__(self):
        with _limits_lock:
            if _state["libraries"] is None:
                _state["libraries"] = _openblas_libraries()
            libraries = _state["libraries"]
            if libraries:
                if not _active_limits:
                    _state["original"] = [lib.get_num_threads() for lib in libraries]
                _active_limits[id(self)] = self.limit
                _apply_limit(libraries)
        return self

    def __exit__(self, *exc):
        with _limits_lock:
            libraries = _state["libraries"]
            if libraries and _active_limits.pop(id(self), None) is not None:
                _apply_limit(libraries)
                if not _active_limits:
                    _state["original"] = None
        return False
