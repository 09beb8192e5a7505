"""The only code in gmrf_core that touches C: BLAS/LAPACK symbols for Numba kernels."""
