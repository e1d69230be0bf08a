"""What the benchmark checks on every tool's saved result, so no tool wins by doing less.

- ``summary(path)``: node count, op-type counts, initializer count, the values of the edited
  attribute, whether the nodes are in topological order; must be equal across tools.
- ``max_difference(path, reference)``: onnxruntime outputs of a result against a reference
  model (the original with only the attribute edit applied), on the same seeded inputs.
- ``external_data_differences(src, dst)``: every external tensor of the source compared, byte
  for byte, with the tensor of the same name in the result (wherever it now lives).
"""

from __future__ import annotations

import collections
import hashlib
import mmap
import os
from typing import Any

import numpy as np
import onnx


def summary(path: str, attr: tuple[str, str, Any] | None = None) -> dict:
    m = onnx.load(path, load_external_data=False)
    g = m.graph
    known = {i.name for i in g.input} | {t.name for t in g.initializer} | {""}
    sorted_ = True
    for n in g.node:
        if any(x not in known for x in n.input):
            sorted_ = False
        known.update(n.output)
    out = {"nodes": len(g.node), "ops": dict(sorted(collections.Counter(n.op_type for n in g.node).items())),
           "initializers": len(g.initializer), "topologically_sorted": sorted_,
           "outputs": len(g.output)}
    if attr:
        op, name, _ = attr
        values = collections.Counter()
        for n in g.node:
            if n.op_type == op:
                a = next((a for a in n.attribute if a.name == name), None)
                values[repr(round(onnx.helper.get_attribute_value(a), 6)) if a else "unset"] += 1
        out[f"{op}.{name}"] = dict(values)
    return out


def with_attribute(src: str, dst: str, attr: tuple[str, str, Any] | None) -> None:
    """The reference for numerical checks: ``src`` with only ``attr`` set (plain protobuf)."""
    m = onnx.load(src)
    if attr:
        op, name, value = attr
        for n in m.graph.node:
            if n.op_type == op:
                keep = [a for a in n.attribute if a.name != name]
                del n.attribute[:]
                n.attribute.extend(keep + [onnx.helper.make_attribute(name, value)])
    onnx.save(m, dst)


def _feeds(path: str) -> dict:
    import onnxruntime as ort

    s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1)
    feeds = {}
    for i in s.get_inputs():
        shape = [d if isinstance(d, int) else 1 for d in i.shape]
        feeds[i.name] = rng.standard_normal(shape).astype(np.float32)
    return feeds


def _run(path: str, feeds: dict) -> list[np.ndarray]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    s = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    return s.run(None, feeds)


def max_difference(path: str, reference: str) -> float:
    """Largest |difference| / (1 + |reference|) over every output, on seeded random inputs."""
    feeds = _feeds(reference)
    want, got = _run(reference, feeds), _run(path, feeds)
    if len(want) != len(got):
        return float("inf")
    worst = 0.0
    for w, g in zip(want, got):
        if w.shape != g.shape:
            return float("inf")
        worst = max(worst, float(np.max(np.abs(w.astype(np.float64) - g) / (1 + np.abs(w)), initial=0.0)))
    return worst


def _digest(t: onnx.TensorProto, base: str) -> str:
    h = hashlib.sha256()
    if t.data_location == onnx.TensorProto.EXTERNAL:
        info = {e.key: e.value for e in t.external_data}
        with open(os.path.join(base, info["location"]), "rb") as f, \
                mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            start = int(info.get("offset", 0))
            end = start + int(info["length"]) if "length" in info else len(mm)
            for i in range(start, end, 1 << 24):
                h.update(mm[i:min(end, i + (1 << 24))])
    else:
        h.update(onnx.numpy_helper.to_array(t).tobytes())
    return h.hexdigest()


def external_data_differences(src: str, dst: str) -> list[str]:
    """Names of the source's external tensors whose bytes the result lost or changed."""
    a = onnx.load(src, load_external_data=False)
    b = {t.name: t for t in onnx.load(dst, load_external_data=False).graph.initializer}
    bad = []
    for t in a.graph.initializer:
        if t.data_location != onnx.TensorProto.EXTERNAL:
            continue
        other = b.get(t.name)
        if other is None or _digest(t, os.path.dirname(src)) != _digest(other, os.path.dirname(dst)):
            bad.append(t.name)
    return bad
