"""The core: a model, its graphs, nodes, tensors and attributes over the live protos, and the
scope index every other module asks (who defines a name, who reads it, what a subgraph
captures, which node holds it, topological ranks, fresh names).

Nothing here imports the layers above it (display, summaries, lint, diff, interop, passes).
"""

from .attributes import AttributeRef, Attributes
from .graph import Graph
from .model import Model, load
from .names import NameAuthority
from .node import Node, check_is_node
from .scope import Scope, Use
from .values import Value

__all__ = ["AttributeRef", "Attributes", "Graph", "Model", "NameAuthority", "Node", "Scope", "Use", "Value",
           "check_is_node", "load"]
