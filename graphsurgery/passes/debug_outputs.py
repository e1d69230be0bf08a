"""debug-outputs: expose intermediate tensors as graph outputs, subgraph tensors included."""

from __future__ import annotations

from ..core.model import Model
from ..expose import choose, expose
from .base import Option, Pass, PassResult, parse_bool, parse_list


class DebugOutputs(Pass):
    """Add intermediate tensors to the graph outputs, after the existing ones (which stay as
    they are): all node outputs by default, or those chosen by ``names`` (``a;b``), ``op_types``
    (``Conv;Relu``), ``pattern`` (shell pattern on node names) or ``first`` (outputs of the first
    N nodes of the main graph, in topological order). Element types and shapes come from shape
    inference; a tensor of unknown rank is carried in an Optional (opset 15 to 27); a tensor
    that cannot be carried (unknown type, not a tensor) is reported in ``skipped`` and left.

    Tensors inside If/Loop/Scan bodies are threaded out through the enclosing node, level by
    level: an extra branch output for If (the other branch returns an empty tensor of the same
    element type), an extra scan output for Loop and Scan (one slice per iteration; only for
    tensors whose shape there is static, as every iteration must give the same shape).
    ``details["outputs"]`` maps each chosen tensor to the graph output that carries it, also
    for tensors exposed already; running the pass again changes nothing.
    """

    name = "debug-outputs"
    options = {
        "names": Option(parse_list, None, "tensor names, separated by ';'"),
        "op_types": Option(parse_list, None, "outputs of nodes of these op types, separated by ';'"),
        "pattern": Option(str, None, "outputs of nodes whose name matches this shell pattern"),
        "first": Option(int, None, "outputs of the first N nodes of the main graph"),
        "subgraphs": Option(parse_bool, True, "include tensors inside If/Loop/Scan bodies"),
    }

    def apply(self, model: Model, result: PassResult) -> None:
        o = self.opts
        chosen = choose(model, names=o["names"], op_types=o["op_types"], pattern=o["pattern"], first=o["first"],
                        subgraphs=o["subgraphs"])
        outputs, added = expose(model, chosen, result.skip)
        result.details["outputs"] = outputs
        if added:
            result.note(f"added {len(added)} graph output(s)")
