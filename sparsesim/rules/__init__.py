"""Counting rules every level shares: the N:M rule (:mod:`.nm`), the keep count (:mod:`.keep`).

They sit below the workload and the arch (only :mod:`sparsesim.errors` and the kernels under
them) because every level needs them: the SCALE-Sim topology reader parses an N:M column, the
formats store N:M slots, the masks and the pruning front-end count what they keep, the PEs
compress K. One definition each, so that the same question gets the same number everywhere.
"""
