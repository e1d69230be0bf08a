"""fold-preprocessing and split-preprocessing: input normalisation, folded into the first
Conv or moved into a model of its own."""

from __future__ import annotations

import numpy as np
from onnx import helper

from .. import shapes
from ..core.model import Model
from ..rewrite import ANY, Const, Op, Rule, const_init
from .base import Option, Pass, PassResult, RulePass


def _per_channel(value: np.ndarray, channels: int | None, rank: int = 4) -> np.ndarray | None:
    """``value`` as one number per channel (axis 1) of an input of rank ``rank``, or None when
    it does not broadcast that way: a [C] vector broadcasts against the last axis, a [C, 1, 1]
    one against axis 1 of an NCHW input but against the depth of an NCDHW one."""
    v = np.asarray(value, np.float64)
    if v.size == 1 and v.ndim <= rank:
        return np.full(channels or 1, float(v.reshape(-1)[0]))
    axis = v.ndim - (rank - 1)  # the axis of ``v`` that lines up with the input's axis 1
    if axis < 0 or v.ndim > rank or any(d != 1 for i, d in enumerate(v.shape) if i != axis):
        return None
    if channels is None or v.shape[axis] == channels:
        return v.reshape(-1)
    return None


def _chain_rules() -> list[tuple[str, Op]]:
    """(name, pattern) for normalisation at an input feeding a Conv; bindings: x, mean, std/inv."""
    conv = lambda inner: Op("Conv", [inner, Const("w"), ANY], name="conv", min_inputs=2)  # noqa: E731
    return [
        ("sub-div", conv(Op("Div", [Op("Sub", ["x", Const("mean")], name="sub"), Const("std")], name="div"))),
        ("sub-mul", conv(Op("Mul", [Op("Sub", ["x", Const("mean")], name="sub"), Const("inv")], name="mul",
                            commutative=True))),
        ("div", conv(Op("Div", ["x", Const("std")], name="div"))),
        ("mul", conv(Op("Mul", ["x", Const("inv")], name="mul", commutative=True))),
        ("sub", conv(Op("Sub", ["x", Const("mean")], name="sub"))),
    ]


def _fold_rules(types: shapes.Types) -> list[Rule]:
    def condition(m, g):
        if m["x"] not in g.input_names:
            return "the normalised tensor is not a graph input"
        conv = m.root
        if conv.attrs.get("group", 1) != 1:
            return "the Conv is grouped"
        pads = conv.attrs.get("pads", [0])
        if any(pads) or conv.attrs.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
            return "the Conv pads its input: padded zeros would not be zeros after folding, so it is not exact"
        if len(conv.inputs) > 2 and conv.inputs[2] and not g.tensor(conv.inputs[2]).is_constant:
            return "the Conv bias is computed"
        c = m["w"].shape[1]
        for key in ("mean", "std", "inv"):
            if key in m.consts and _per_channel(m.consts[key], c, m["w"].ndim) is None:
                return f"{key} {list(m.consts[key].shape)} is not one value per channel"
        return True

    def build(m, g):
        conv = m.root
        w = m["w"].astype(np.float64)
        c = w.shape[1]
        rank = w.ndim
        mean = _per_channel(m.consts["mean"], c, rank) if "mean" in m.consts else np.zeros(c)
        if "std" in m.consts:
            scale = 1.0 / _per_channel(m.consts["std"], c, rank)
        elif "inv" in m.consts:
            scale = _per_channel(m.consts["inv"], c, rank)
        else:
            scale = np.ones(c)
        shape = (1, -1) + (1,) * (w.ndim - 2)
        w2 = w * scale.reshape(shape)
        b = np.asarray(g.tensor(conv.inputs[2]).numpy(), np.float64) if len(conv.inputs) > 2 and conv.inputs[2] \
            else np.zeros(w.shape[0])
        b2 = b - (w2 * mean.reshape(shape)).sum(axis=tuple(range(1, w.ndim)))
        wi = const_init(g, f"{conv.inputs[1]}_folded", w2.astype(m["w"].dtype))
        bi = const_init(g, f"{conv.name or 'conv'}_folded_bias", b2.astype(m["w"].dtype))
        node = helper.make_node("Conv", [m["x"], wi.name, bi.name], list(conv.outputs),
                                name=conv.name or g.unique_name("Conv", kind="node"))
        node.attribute.extend(conv.proto.attribute)
        return [node], [wi, bi]

    return [Rule(f"normalise-{name}-conv", pattern, build, condition) for name, pattern in _chain_rules()]


class FoldPreprocessing(RulePass):
    """Fold input normalisation — ``(x - mean) / std``, ``(x - mean) * scale``, or either half —
    into the first Conv's weights and bias, so the model runs end to end on raw input. Only
    where exact: mean and std one value per channel, the Conv unpadded and ungrouped (with
    padding, the zeros padded around a normalised image are not zeros of the raw one). Other
    cases are reported with the reason; ``split-preprocessing`` handles them instead."""

    name = "fold-preprocessing"

    main_graph_only = True
    near_misses = "if none applied"
    count_key = "folded"

    def rules(self, model: Model) -> list[Rule]:
        return _fold_rules(shapes.infer(model))

    def change_line(self, site) -> str:
        return f"{site.rule}: normalisation folded into Conv {site.node!r}"


class SplitPreprocessing(Pass):
    """Move elementwise normalisation at a graph input (Sub/Div/Mul by constants, in any order)
    into a model of its own, written to ``path``, and make the main model start from the
    normalised tensor (its input keeps the original input's name and takes the normalised
    type). The NPU runs the main model; the host runs the small one. Without ``path`` the small
    model is returned in ``result.details["preprocessing_model"]``."""

    name = "split-preprocessing"
    options = {"path": Option(str, None, "where to write the preprocessing model (default: kept in the result; "
                                         "'graphsurgery run' writes OUT.preprocessing.onnx)")}

    def outputs_after(self, after_bytes, after, feeds, result, run):
        """The two models in turn: ``feeds`` are raw inputs, the preprocessing model normalises
        them, the main model takes the result: their composition must equal the model before."""
        from ..core.model import load

        split = result.details.get("split") or {}
        if not split:
            return run(after_bytes, feeds)
        pre = result.details.get("preprocessing_model")
        if pre is None:
            pre = load(result.details["preprocessing"]).proto
        pre_bytes = pre if isinstance(pre, bytes) else pre.SerializeToString()
        normalised = run(pre_bytes, feeds)
        return run(after_bytes, {**feeds, **{inp: normalised[end] for inp, end in split.items()}})

    def apply(self, model: Model, result: PassResult) -> None:
        from .cut import Cut

        g = model.graph
        chains = []
        for name in g.input_names:
            if name in g.initializers:
                continue
            end = _elementwise_chain(g, name)
            if end != name:
                chains.append((name, end))
        if not chains:
            return
        pre = model.copy()
        Cut(outputs=[end for _, end in chains]).run(pre)
        where = self.opts["path"]
        if where:
            pre.save(where, overwrite=True)
        else:  # kept for the caller ('graphsurgery run' writes it beside its output)
            result.details["preprocessing_model"] = pre.proto
        Cut(inputs=[end for _, end in chains]).run(model)
        result.details["split"] = {inp: end for inp, end in chains}  # main input <- preprocessing output
        for inp, end in chains:
            model.graph.rename(end, inp)
            result.note(f"normalisation of {inp!r} moved to {where or 'a model of its own'}; the model now starts "
                        "after it")
        result.details["preprocessing"] = where


def _elementwise_chain(g, name: str) -> str:
    """Follow Sub/Div/Mul/Add by constants from ``name`` while each step has one reader."""
    current = name
    while True:
        readers = g.consumers(current)
        if len(readers) != 1 or current in g.output_names:
            return current
        node = readers[0]
        if node.op_type not in ("Sub", "Div", "Mul", "Add") or node.graph is not g:
            return current
        other = [x for x in node.inputs if x != current]
        if len(other) != 1 or not g.tensor(other[0]).is_constant:
            return current
        if node.op_type in ("Sub", "Div") and node.inputs[0] != current:
            return current  # c - x or c / x is not a normalisation
        current = node.outputs[0]


__all__ = ["FoldPreprocessing", "SplitPreprocessing"]
