"""Numba kernels on raw arrays (CSC indptr/indices/data, ints, floats).

Kernels take only arrays and scalars, do not allocate in hot loops, never raise
and never import the Python layer. A kernel that can fail returns a status pair
``(code, where)`` in the one encoding of :mod:`._status` (0 = ok, negative codes
= kinds, ``where`` the column, pivot or entry concerned); the wrappers in
:mod:`gmrf_core.linalg` and :mod:`gmrf_core.ordering` validate input before any
kernel runs and turn statuses into exceptions through one table.
"""
