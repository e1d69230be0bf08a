"""Moved to :mod:`graphsurgery.core.model`; kept for compatibility."""

from .core.model import Model, load

__all__ = ["Model", "load"]
