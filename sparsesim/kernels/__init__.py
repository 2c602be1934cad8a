"""Numba kernels on plain arrays: the lowest layer (numpy and numba only)."""
