"""Moved to :mod:`graphsurgery.core.graph` (and :mod:`graphsurgery.core.values` for ``Value``);
kept for compatibility."""

from .core.graph import Graph
from .core.node import Node
from .core.scope import Use
from .core.values import Value

__all__ = ["Graph", "Node", "Use", "Value"]
