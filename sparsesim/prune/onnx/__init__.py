"""ONNX import: an ``.onnx`` file captured by graph into workload layers (the ``onnx`` extra).

Nothing here is imported by sparsesim's core: the CLI imports :mod:`.capture` on demand and
turns a missing ``onnx`` / ``onnxruntime`` into one line naming the extra.
"""
