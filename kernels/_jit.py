"""The one place where Numba options are set.

Every kernel in :mod:`gmrf_core.kernels` is compiled through :func:`jit`, so the
caching, error model and fastmath policy are uniform:

- ``cache=True``: compiled machine code is reused across processes (BLAS
  routines are referenced by registered symbol names, see
  :mod:`gmrf_core.bindings.blas`, which keeps caching valid);
- ``error_model="numpy"``: division by zero gives inf/nan instead of raising,
  since kernels report problems through status codes, never exceptions;
- ``fastmath=False``: reassociation would change rounding in the reductions
  that log-determinants and tests compare to 1e-10;
- ``nogil=True``: kernels can run in threads (e.g. distributed executors).
"""

import numba

_OPTIONS = dict(cache=True, nogil=True, error_model="numpy", fastmath=False, boundscheck=False)


def jit(signature=None, **overrides):
    """Return a Numba ``njit`` decorator with the package's options.

    Parameters
    ----------
    signature : str or numba signature, optional
        Eager compilation signature; lazy compilation when omitted.
    **overrides
        Options that differ from the package defaults (e.g. ``parallel=True``).
    """
    options = dict(_OPTIONS, **overrides)
    if callable(signature):  # used as a bare @jit
        return numba.njit(**options)(signature)
    if signature is None:
        return numba.njit(**options)
    return numba.njit(signature, **options)
