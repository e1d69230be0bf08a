"""Moved to :mod:`graphsurgery.core.attributes`; kept for compatibility."""

from .core.attributes import AttributeRef, Attributes, encode

__all__ = ["AttributeRef", "Attributes", "encode"]
