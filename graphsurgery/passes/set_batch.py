"""set-batch: change the batch size of a model, and make the whole model agree — or refuse."""

from __future__ import annotations

import numpy as np

from .. import shapes
from ..graph import Graph
from ..model import Model
from .base import Option, Pass, PassError, PassResult, parse_list

# Two probe batch sizes: an axis carries the batch when it reads B1 in one probe and B2 in the
# other, which no constant dimension can do by accident.
B1, B2 = 11, 13
# ops that read a shape as data: their output shape never carries the batch
_READS_SHAPE = {"Shape", "Size"}


class SetBatch(Pass):
    """Set the batch dimension of the model's inputs to a number or a symbolic name
    (``set-batch(size=4)``, ``set-batch(size=N)``), and make the rest of the model agree.

    The batch is axis 0 of every non-constant input (``inputs=x;state:1`` names inputs and
    axes). The pass follows the batch through the graph with shape inference, using a probe
    dimension. Where a constant hard-codes the old batch and the shapes prove it is the
    batch, it is patched: a ``Reshape`` target's leading old batch becomes ``0`` (copy the
    input's batch), a ``ConstantOfShape`` shape starting with the old batch takes it from the
    input at run time. Output dims that carry the batch are updated, and so are ``value_info``
    entries. Where a node still loses the batch (for example a Reshape whose target cannot be
    tied to the batch), the pass refuses, names the node and changes nothing: it never returns
    a model that runs with the wrong shapes.
    """

    name = "set-batch"
    options = {
        "size": Option(str, None, "the new batch: a number, or a name for a dynamic batch"),
        "inputs": Option(parse_list, None, "inputs to change, NAME or NAME:AXIS, separated by ';'"),
    }

    def apply(self, model: Model, result: PassResult) -> None:
        size_text = self.opts["size"]
        if size_text is None:
            raise PassError("set-batch needs size=N (a number) or size=NAME (dynamic)")
        size: int | str = int(size_text) if str(size_text).isdigit() else str(size_text)
        if isinstance(size, int) and size < 1:
            raise PassError(f"set-batch: size must be at least 1, got {size}")
        g = model.graph
        targets = self._targets(g)
        olds = {(name, axis): _dim(g.value_info(name), axis) for name, axis in targets}
        numeric = {v for v in olds.values() if isinstance(v, int)}
        if len(numeric) > 1:
            raise PassError(f"set-batch: the inputs disagree on the batch ({olds}); name the inputs to change "
                            "with inputs=NAME;NAME")
        old = numeric.pop() if numeric else None
        if all(v == size for v in olds.values()):
            return  # already so
        # 1. probe two copies with different batch sizes: where does the batch go, where is it lost?
        patches = _plan_patches(_probe_copy(model, targets, B1), old, targets)
        probes = []
        for value in (B1, B2):
            probe = _probe_copy(model, targets, value)
            for patch in patches:
                patch.apply(probe)
            probes.append((probe, shapes.infer(probe)))
        problem = _first_loss(probes)
        if problem is not None:
            raise PassError(f"set-batch: {problem}. Changing the batch would give a model that runs with wrong "
                            "shapes; nothing was changed")
        # 2. the proof holds: apply the same changes to the model itself
        _set_dims(g, targets, size)
        for patch in patches:
            patch.apply(model)
            result.note(patch.describe())
        for name, axis in targets:
            result.note(f"input {name!r}: dim {axis} {olds[(name, axis)]} -> {size}")
        (p1, t1), (p2, t2) = probes
        for vi in list(g.proto.output) + list(g.proto.value_info):
            axes = _batch_axes(shapes.dims(t1.get(p1.graph, vi.name)), shapes.dims(t2.get(p2.graph, vi.name)))
            tt = vi.type.tensor_type
            if not axes or not tt.HasField("shape") or len(tt.shape.dim) <= max(axes):
                continue
            for axis in axes:
                _set_one(tt.shape.dim[axis], size)
            if any(vi is o for o in g.proto.output):
                result.note(f"output {vi.name!r}: dim {', '.join(map(str, axes))} -> {size}")
        result.details["old"] = old
        result.details["size"] = size
        result.details["inputs"] = [list(t) for t in targets]
        result.details["output_axes"] = {
            o: _batch_axes(shapes.dims(t1.get(p1.graph, o)), shapes.dims(t2.get(p2.graph, o)))
            for o in g.output_names}

    def feeds_before(self, feeds, before, after, result):
        """One feed per sample: the batch axes sliced, as :meth:`reference` runs them."""
        return [f for s in _samples(feeds, result) for f in super(SetBatch, self).feeds_before(s, before, after, result)]

    def reference(self, before: bytes, after: Model, feeds: dict, result: PassResult, run) -> dict:
        """The model before the pass, run one sample at a time, stacked along the batch axes."""
        samples = _samples(feeds, result)
        if len(samples) == 1 and samples[0] is feeds:
            return super().reference(before, after, feeds, result, run)
        runs = [super(SetBatch, self).reference(before, after, s, result, run) for s in samples]
        stacked = {}
        for name in runs[0]:
            axes = result.details["output_axes"].get(name) or []
            stacked[name] = np.concatenate([r[name] for r in runs], axis=axes[0]) if axes else runs[0][name]
        return stacked

    def reference_noise(self, before, after, feeds, result, run, expected):
        """Where the model before the pass also takes the whole batch, how far its batched run
        is from its single runs: kernels that depend on the batch size round differently, and
        that is not this pass's doing."""
        from .. import verify

        if len(_samples(feeds, result)) < 2:
            return {}
        try:
            batched = super().reference(before, after, feeds, result, run)
        except verify.RuntimeFailure:
            return {}
        return {k: float(np.nan_to_num(np.abs(batched[k].astype(np.float64) - v.astype(np.float64)), nan=0.0).max(
                    initial=0.0))
                for k, v in expected.items() if k in batched and batched[k].shape == v.shape
                and np.issubdtype(v.dtype, np.number)}

    def _targets(self, g: Graph) -> list[tuple[str, int]]:
        inits = set(g.initializers)
        if self.opts["inputs"]:
            out = []
            for item in self.opts["inputs"]:
                name, _, axis = item.partition(":")
                if name not in g.input_names:
                    from ..errors import not_found
                    raise not_found("graph input", name, g.input_names, "the model")
                out.append((name, int(axis) if axis else 0))
            return out
        out = []
        for name in g.input_names:
            vi = g.value_info(name)
            if name in inits or vi is None or not vi.type.tensor_type.HasField("shape"):
                continue
            if len(vi.type.tensor_type.shape.dim) >= 1:
                out.append((name, 0))
        if not out:
            raise PassError("set-batch: no input has a rank to set a batch on")
        return out


def _samples(feeds: dict, result: PassResult) -> list[dict]:
    """``feeds`` cut into single samples along the batch axes set-batch changed."""
    targets = [(n, a) for n, a in result.details.get("inputs") or [] if n in feeds]
    if not targets:
        return [feeds]
    count = feeds[targets[0][0]].shape[targets[0][1]]
    return [{**feeds, **{n: np.take(feeds[n], [i], axis=a) for n, a in targets}} for i in range(count)]


def _dim(vi, axis):
    d = vi.type.tensor_type.shape.dim[axis]
    return d.dim_value if d.HasField("dim_value") else (d.dim_param or None)


def _set_one(dim, value) -> None:
    if isinstance(value, int):
        dim.ClearField("dim_param")
        dim.dim_value = value
    else:
        dim.ClearField("dim_value")
        dim.dim_param = value


def _set_dims(g: Graph, targets, value) -> None:
    for name, axis in targets:
        dims = g.value_info(name).type.tensor_type.shape.dim
        if axis >= len(dims):
            raise PassError(f"set-batch: input {name!r} has rank {len(dims)}; it has no axis {axis}")
        _set_one(dims[axis], value)


def _probe_copy(model: Model, targets, value: int) -> Model:
    """A copy with the batch set to ``value`` and nothing that would pin the old shapes:
    declared output dims and value_info are cleared, so inference derives every shape."""
    probe = model.copy()
    _set_dims(probe.graph, targets, value)
    for vi in probe.proto.graph.output:
        vi.type.tensor_type.ClearField("shape")
    del probe.proto.graph.value_info[:]
    return probe


def _batch_axes(d1, d2) -> list[int]:
    if d1 is None or d2 is None or len(d1) != len(d2):
        return []
    return [i for i, (a, b) in enumerate(zip(d1, d2, strict=True)) if a == B1 and b == B2]


def _first_loss(probes) -> str | None:
    """Why the batch cannot be followed through the main graph, or None when it can."""
    (p1, t1), (p2, t2) = probes
    g1, g2 = p1.graph, p2.graph
    for node in g1.nodes:
        if node.op_type in _READS_SHAPE:
            continue
        carried = [x for x in node.inputs if x and _batch_axes(shapes.dims(t1.get(g1, x)), shapes.dims(t2.get(g2, x)))]
        if not carried:
            continue
        outs = [(x, shapes.dims(t1.get(g1, x)), shapes.dims(t2.get(g2, x))) for x in node.outputs if x]
        if any(d1 is None or None in d1 or d2 is None or None in d2 for _, d1, d2 in outs):
            return (f"cannot follow the batch through node {node.name!r} ({node.op_type}): shape inference does not "
                    "know its output shape")
        if not any(_batch_axes(d1, d2) for _, d1, d2 in outs):
            shown = ", ".join(f"{x} {d1}" for x, d1, _ in outs)
            src = shapes.dims(t1.get(g1, carried[0]))
            return (f"node {node.name!r} ({node.op_type}) loses the batch: with batch {B1} its input "
                    f"{carried[0]!r} is {src} but its output is {shown}; fix that node first")
    return None


class _Patch:
    def apply(self, model: Model) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self) -> str:  # pragma: no cover - abstract
        raise NotImplementedError


class _ReshapeTarget(_Patch):
    """Reshape(x, [old, ...]) with x's axis 0 the batch: the leading entry becomes 0 (copy)."""

    def __init__(self, node_name: str, target_name: str, value: np.ndarray):
        self.node_name, self.target_name, self.value = node_name, target_name, value

    def apply(self, model: Model) -> None:
        g = model.graph
        node = g.node(self.node_name)
        new = self.value.copy()
        new[0] = 0
        readers = g.consumers(self.target_name)
        if g.tensor(self.target_name).is_initializer and len(readers) == 1:
            g.set_initializer(self.target_name, new)
        else:
            name = g.unique_name(f"{self.target_name}_batch")
            g.set_initializer(name, new)
            node.set_input(1, name)

    def describe(self) -> str:
        new = self.value.copy()
        new[0] = 0
        return (f"Reshape {self.node_name!r}: target {self.value.tolist()} -> {new.tolist()} "
                "(0 copies the batch from the input)")


class _ConstantOfShapeBatch(_Patch):
    """ConstantOfShape([old, ...]): the leading entry is read from a batch input at run time."""

    def __init__(self, node_name: str, shape_name: str, value: np.ndarray, source: tuple[str, int]):
        self.node_name, self.shape_name, self.value, self.source = node_name, shape_name, value, source

    def apply(self, model: Model) -> None:
        g = model.graph
        node = g.node(self.node_name)
        name, axis = self.source
        batch = g.op.Shape(name, _name=g.unique_name(f"{self.node_name}/batch_shape", kind="node"),
                           start=axis, end=axis + 1)
        rest = g.unique_name(f"{self.shape_name}_rest")
        g.set_initializer(rest, np.ascontiguousarray(self.value[1:]).astype(np.int64))
        shape = g.op.Concat(batch, rest, axis=0, _name=g.unique_name(f"{self.node_name}/batch_concat", kind="node"))
        node.set_input(0, shape)

    def describe(self) -> str:
        return (f"ConstantOfShape {self.node_name!r}: shape {self.value.tolist()} takes its batch from input "
                f"{self.source[0]!r} at run time")


def _plan_patches(probe: Model, old: int | None, targets) -> list[_Patch]:
    """Constants that hard-code the old batch where the shapes prove it is the batch
    (``probe`` has batch ``B1``)."""
    if old is None:
        return []
    g = probe.graph
    types = shapes.infer(probe)
    patches: list[_Patch] = []
    for node in g.nodes:
        if node.domain not in ("", "ai.onnx"):
            continue
        if node.op_type == "Reshape" and len(node.inputs) > 1:
            t = g.tensor(node.inputs[1])
            data = shapes.dims(types.get(g, node.inputs[0]))
            if not t.is_constant or data is None or not data or data[0] != B1:
                continue
            value = np.asarray(t.numpy())
            if node.attrs.get("allowzero", 0) or value.ndim != 1 or not value.size or value[0] != old:
                continue
            patches.append(_ReshapeTarget(node.name, node.inputs[1], value))
        elif node.op_type == "ConstantOfShape" and node.inputs:
            t = g.tensor(node.inputs[0])
            if not t.is_constant:
                continue
            value = np.asarray(t.numpy())
            if value.ndim != 1 or not value.size or value[0] != old:
                continue
            patches.append(_ConstantOfShapeBatch(node.name, node.inputs[0], value, targets[0]))
    return patches


__all__ = ["SetBatch"]
