"""Numba kernels on raw arrays (CSC indptr/indices/data, ints, floats).

Kernels take only arrays and scalars, do not allocate in hot loops, and report
failures as integer status codes; the Python wrappers in :mod:`gmrf_core.linalg`
validate input and turn statuses into exceptions.
"""
