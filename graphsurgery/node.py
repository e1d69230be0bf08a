"""Moved to :mod:`graphsurgery.core.node`; kept for compatibility."""

from .core.node import Node, check_is_node

__all__ = ["Node", "check_is_node"]
