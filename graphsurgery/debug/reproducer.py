"""Cut a reproducer: the culprit node alone, its inputs recorded, runnable on its own."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import helper

from ..capture import capture, run_backend
from ..core.model import Model, load


@dataclass
class Reproducer:
    model_path: str
    inputs_path: str
    outputs: dict[str, np.ndarray]
    expected_path: str | None = None


def extract_reproducer(model: Any, node_name: str, inputs: dict[str, np.ndarray], out_dir: str, *,
                       reference: dict[str, np.ndarray] | None = None, backend: str = "ort") -> Reproducer:
    """Write ``out_dir/model.onnx`` holding node ``node_name`` alone (its subgraphs included),
    with the tensors it reads from the rest of the model as graph inputs, constants kept as
    initializers; ``inputs.npz`` with the values those inputs had in this run; and, when
    ``reference`` values are given for its outputs, ``expected.npz``. The new model is run once
    to prove it stands on its own; its outputs are returned."""
    src = load(model) if not isinstance(model, Model) else model
    node = src.node(node_name)
    g = node.graph
    reads = [t for t in node.inputs if t]
    if node.has_subgraphs():
        for sub in node.subgraphs().values():
            for s in (sub if isinstance(sub, list) else [sub]):
                reads.extend(sorted(s.captured()))
    reads = list(dict.fromkeys(reads))
    constants = {t: np.asarray(g.tensor(t).numpy()) for t in reads if g.tensor(t).is_constant}
    live = [t for t in reads if t not in constants]
    values = next(iter(capture(src, inputs, backend=backend, tensors=[t for t in live if t not in inputs])))
    values.update({t: inputs[t] for t in live if t in inputs})
    missing = [t for t in live if t not in values]
    if missing:
        from ..errors import GraphSurgeryError
        raise GraphSurgeryError(f"cannot record {missing} for node {node_name!r}: they were not computed in this run")
    copy = onnx.NodeProto()
    copy.CopyFrom(node.proto)
    graph = helper.make_graph(
        [copy], f"reproducer_{node.op_type}",
        [helper.make_tensor_value_info(t, helper.np_dtype_to_tensor_dtype(values[t].dtype), values[t].shape)
         for t in live],
        [helper.make_value_info(t, onnx.TypeProto()) for t in node.outputs if t],
        [onnx.numpy_helper.from_array(v, t) for t, v in constants.items()])
    proto = helper.make_model(graph, opset_imports=list(src.proto.opset_import), ir_version=src.proto.ir_version,
                              producer_name="graphsurgery reproducer")
    proto.functions.extend(src.proto.functions)
    outs = run_backend(proto.SerializeToString(), {t: values[t] for t in live}, backend)
    for vi in proto.graph.output:  # now that the outputs ran, record their types
        arr = outs[vi.name]
        vi.CopyFrom(helper.make_tensor_value_info(vi.name, helper.np_dtype_to_tensor_dtype(arr.dtype), arr.shape))
    os.makedirs(out_dir, exist_ok=True)
    model_path = os.path.join(out_dir, "model.onnx")
    onnx.save(proto, model_path)
    inputs_path = os.path.join(out_dir, "inputs.npz")
    np.savez(inputs_path, **{t: values[t] for t in live})
    expected_path = None
    if reference:
        expected = {t: reference[t] for t in node.outputs if t and t in reference}
        if expected:
            expected_path = os.path.join(out_dir, "expected.npz")
            np.savez(expected_path, **expected)
    return Reproducer(model_path, inputs_path, outs, expected_path)
