"""fix-prelu-slope: reshape a [C] PRelu slope to [C, 1, ..., 1] when the graph shows C is the channel axis."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import shapes
from ..core.model import Model
from ..ops import is_default_domain
from .base import Option, Pass, PassError, PassResult

# Ops whose output is laid out channel-first (N, C, ...): a [C] slope right after one of them
# is a per-channel slope. Ops whose output's last axis is the feature axis: a [C] slope right
# after one of them means the last axis, as written.
_CHANNEL_FIRST = {"Conv", "ConvTranspose", "ConvInteger", "QLinearConv", "BatchNormalization",
                  "InstanceNormalization", "MaxPool", "AveragePool", "LpPool", "GlobalAveragePool",
                  "GlobalMaxPool", "GlobalLpPool", "LRN", "DeformConv"}
_LAST_AXIS = {"MatMul", "Gemm", "MatMulInteger", "QLinearMatMul", "LayerNormalization"}
# What passes the layout through unchanged, so the producer before it still tells
_SAME_LAYOUT = {"Relu", "LeakyRelu", "Sigmoid", "Tanh", "Clip", "Identity", "Dropout", "Elu", "Selu",
                "HardSigmoid", "HardSwish", "Softplus", "Mish", "Gelu", "Neg", "Abs", "PRelu"}


@dataclass
class SlopeVerdict:
    """What the graph says about one PRelu's 1-D slope."""

    node: object
    slope: str
    length: int
    dims: list | None
    verdict: str  # "channel", "last-axis", "ambiguous", "unknown-shape", "mismatch", "computed"
    why: str
    by_shape: bool = False  # settled by the input's shape alone


def _producer_kind(g, name: str) -> tuple[str | None, str | None]:
    """("channel"|"last-axis", op) from the nearest real producer of ``name``, or (None, None)."""
    seen = 0
    p = g.producer(name)
    while p is not None and seen < 16 and is_default_domain(p.domain):
        if p.op_type in _CHANNEL_FIRST:
            return "channel", p.op_type
        if p.op_type in _LAST_AXIS:
            return "last-axis", p.op_type
        if p.op_type not in _SAME_LAYOUT or not p.inputs or not p.inputs[0]:
            return None, None
        p = g.producer(p.inputs[0])
        seen += 1
    return None, None


def classify(model: Model, types=None) -> list[SlopeVerdict]:
    """A verdict for every PRelu whose slope is a constant of shape [C] with C > 1 (or computed).

    Evidence, strongest first: the input's shape (C matches only the channel axis, or only
    the last axis); the op producing the input (Conv, BatchNormalization, pooling... are
    channel-first; MatMul, Gemm, LayerNormalization act on the last axis); the model's other
    slopes (when every slope the shapes settle is per channel, and none per last axis).
    """
    out: list[SlopeVerdict] = []
    for g in list(model.graphs()):
        if g.is_function:
            continue
        for node in g.find_nodes("PRelu"):
            if len(node.inputs) < 2:
                continue
            x, slope_name = node.inputs[0], node.inputs[1]
            t = g.tensor(slope_name)
            if not t.is_constant:
                out.append(SlopeVerdict(node, slope_name, 0, None, "computed", "the slope is computed, not a constant"))
                continue
            shape = np.shape(t.numpy())
            if len(shape) != 1 or shape[0] == 1:
                continue  # scalar-like or already shaped: broadcasts as written
            C = shape[0]
            if types is None:
                types = shapes.infer(model)
            dims = shapes.dims(types.get(g, x))
            if dims is None or len(dims) < 3 or not isinstance(dims[1], int):
                out.append(SlopeVerdict(node, slope_name, C, dims, "unknown-shape",
                                        f"the shape of input {x!r} is unknown"))
            elif dims[1] != C:
                if dims[-1] == C:
                    out.append(SlopeVerdict(node, slope_name, C, dims, "last-axis",
                                            f"slope [{C}] matches only the last axis of {dims}", True))
                else:
                    out.append(SlopeVerdict(node, slope_name, C, dims, "mismatch",
                                            f"slope length {C} is not the channel count {dims[1]}"))
            elif dims[-1] != C:
                out.append(SlopeVerdict(node, slope_name, C, dims, "channel",
                                        f"slope [{C}] matches only the channel axis of {dims}", True))
            else:
                kind, op = _producer_kind(g, x)
                if kind is not None:
                    out.append(SlopeVerdict(node, slope_name, C, dims, kind,
                                            f"slope [{C}] matches axis 1 and the last axis of {dims}; the input comes "
                                            f"from {op}, so it is {'per channel' if kind == 'channel' else 'per last axis'}"))
                else:
                    out.append(SlopeVerdict(node, slope_name, C, dims, "ambiguous",
                                            f"slope [{C}] matches axis 1 and the last axis of {dims}"))
    by_shape = [v for v in out if v.by_shape]
    if by_shape and all(v.verdict == "channel" for v in by_shape):
        for v in out:
            if v.verdict == "ambiguous":
                v.verdict = "channel"
                v.why += f"; the model's {len(by_shape)} other [C] slope(s) that shapes settle are all per channel"
    return out


class FixPReluSlope(Pass):
    """Reshape a per-channel PRelu slope stored as ``[C]`` to ``[C, 1, ..., 1]`` where the graph
    shows the channel was meant. Exporters such as MXNet store it as ``[C]``; ONNX broadcasts it
    against the *last* axis of an NCHW input, so runtimes fail ("Attempting to broadcast an
    axis by a dimension other than 1") or, when W == C, silently scale the wrong axis.

    For each PRelu whose slope is a 1-D constant of length C > 1 and whose input has rank ≥ 3
    with axis 1 equal to C, the slope becomes ``[C, 1, ..., 1]`` when the graph shows the
    channel was meant: the last axis is not C; or it is, and the input comes from a
    channel-first op (Conv, BatchNormalization, pooling, possibly through activations); or
    every other slope the shapes settle in the model is per channel. A slope whose input
    comes from MatMul/Gemm/LayerNormalization is left as written.

    When some slope stays ambiguous, the pass refuses, naming the nodes and changing nothing,
    unless ``axis`` says which axis such slopes mean (``axis=1``: channel; ``axis=-1``: as
    written). A node whose input shape is unknown is left alone and reported (fix the input
    shapes first, e.g. with ``set-shape``).
    """

    name = "fix-prelu-slope"
    options = {"axis": Option(int, None, "for slopes the graph cannot settle: 1 = per channel, -1 = last axis")}

    def apply(self, model: Model, result: PassResult) -> None:
        axis = self.opts["axis"]
        if axis not in (None, 1, -1):
            raise PassError(f"fix-prelu-slope: option axis={axis} is not supported; use axis=1 (per channel) "
                            "or axis=-1 (the last axis, as written)")
        verdicts = classify(model)
        ambiguous = [v for v in verdicts if v.verdict == "ambiguous"]
        if ambiguous and axis is None:
            names = ", ".join(repr(v.node.name) for v in ambiguous[:5]) + (", ..." if len(ambiguous) > 5 else "")
            raise PassError(f"fix-prelu-slope: {len(ambiguous)} PRelu slope(s) match both the channel axis and the "
                            f"last axis and nothing in the graph says which is meant ({names}, e.g. "
                            f"{ambiguous[0].dims}); nothing changed; rerun with axis=1 (per channel) or axis=-1 "
                            "(as written)")
        for v in ambiguous:
            v.verdict = "channel" if axis == 1 else "last-axis"
            v.why += f"; axis={axis} given"
        final = {id(v.node.proto): v for v in verdicts}
        for v in verdicts:
            node = v.node
            if v.verdict == "computed":
                result.skip(f"PRelu {node.name!r}: slope {v.slope!r} is computed, not a constant")
            elif v.verdict == "unknown-shape":
                result.skip(f"PRelu {node.name!r}: {v.why}, so the channel axis cannot be proven; fix the input "
                            "shapes (set-shape) first")
            elif v.verdict == "mismatch":
                result.skip(f"PRelu {node.name!r}: {v.why}")
            elif v.verdict == "last-axis":
                if v.dims is not None and v.dims[1] == v.length:  # only report what could have gone either way
                    result.skip(f"PRelu {node.name!r}: left as written ({v.why})")
            else:
                self._reshape(node, v, result, final)
        result.details["verdicts"] = {v.node.name: v.verdict for v in verdicts}

    @staticmethod
    def _reshape(node, v: SlopeVerdict, result: PassResult, final: dict) -> None:
        g = node.graph
        slope_name = v.slope
        t = g.tensor(slope_name)
        slope = t.numpy()
        if slope.ndim != 1:  # reshaped already, through another PRelu sharing it
            return
        shaped = slope.reshape((v.length,) + (1,) * (len(v.dims) - 2))
        readers = g.consumers(slope_name)
        others = [final.get(id(r.proto)) if r.op_type == "PRelu" and r.inputs[1:2] == (slope_name,) and
                  r.inputs[0] != slope_name else None for r in readers]
        if t.is_initializer and t.graph is g and all(
                o is not None and o.verdict == "channel" and len(o.dims) == len(v.dims) for o in others):
            g.set_initializer(slope_name, np.ascontiguousarray(shaped))
            result.note(f"slope {slope_name!r} reshaped [{v.length}] -> {list(shaped.shape)} "
                        f"(read by {len(readers)} PRelu node(s)): {v.why}")
        else:
            new = g.unique_name(f"{slope_name}_per_channel")
            g.set_initializer(new, np.ascontiguousarray(shaped))
            node.set_input(1, new)
            result.note(f"PRelu {node.name!r}: slope {slope_name!r} [{v.length}] -> new initializer {new!r} "
                        f"{list(shaped.shape)}: {v.why}")
