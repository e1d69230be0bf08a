"""Find the first layer that goes wrong: compare runs tensor by tensor, bisect pipelines,
cut a reproducer. See :func:`compare`, :func:`bisect_pipeline`, :func:`extract_reproducer`,
and :mod:`graphsurgery.debug.torch_map` for PyTorch activations."""

from .bisect import BisectResult, bisect_pipeline
from .compare import DEFAULT_ATOL, DEFAULT_RTOL, compare
from .report import Report, Row
from .reproducer import Reproducer, extract_reproducer

__all__ = ["BisectResult", "DEFAULT_ATOL", "DEFAULT_RTOL", "Report", "Reproducer", "Row", "bisect_pipeline",
           "compare", "extract_reproducer"]
