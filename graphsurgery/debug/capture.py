"""Run a model and record intermediate tensors: :mod:`graphsurgery.capture`, under its
former name."""

from ..capture import BACKENDS, capture, run_backend, run_outputs, tensor_order

__all__ = ["BACKENDS", "capture", "run_backend", "run_outputs", "tensor_order"]
