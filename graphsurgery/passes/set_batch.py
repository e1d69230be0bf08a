"""set-batch: change the batch size of a model, and make the whole model agree — or refuse."""

from __future__ import annotations

import numpy as np

from .. import shapes
from ..core.graph import Graph
from ..core.model import Model
from ._batch.common import _show, _show_dims
from ._batch.protos import _dim, _set_dims
from ._batch.search import _find_batch
from .base import Option, Pass, PassError, PassResult, parse_list
from .set_shape import parse_dim


class SetBatch(Pass):
    """Set the batch dimension of the model's inputs to a number or a symbolic name
    (``set-batch(size=4)``, ``set-batch(size=N)``), and make the rest of the model agree.

    Where the batch is in each input is found, not assumed: axis 0 when it is free (a name or
    unknown) or the model's batch number; otherwise the axis that meets the batch of the other
    inputs in the graph (silero's ``state[2, batch, 128]`` has it on axis 1). A fixed dim that
    is not the batch is never overwritten. ``inputs=x;state:1`` names inputs, and their axes.

    The pass then follows the batch through the graph, operator by operator: elementwise ops
    broadcast it, Conv/Pool keep it on axis 0, Transpose permutes it, MatMul keeps it on its
    batch dims, a Reshape whose target is computed from the input's own shape keeps it, Gather
    and Slice on other axes keep it, LSTM/GRU read it on axis 1 of X and of the initial state,
    both branches of an If must agree, ReverseSequence reads it on batch_axis and sequence_lens.
    A constant Reshape that merges the batch with the axes after it (the batch outermost, each
    sample's elements together: ``[1, 8, 32] -> [-1, 32]``) is followed through row-wise ops to
    the Reshape that splits it back, whose batch entry becomes -1; a Flatten, or a target from
    Shape glue, may merge it with named dims too. Row numbers ``Range(0, batch)`` are followed
    only into a Gather over a batch merged with as many rows per sample as they step (BERT's
    mask indexing); a constant GatherND index that picks row 0 of a batch of 1 becomes a Gather
    along axis 1. It refuses, naming the node and changing nothing, where samples would mix or the batch is dropped (a reduction, softmax, concat or slice over the
    batch axis, a Reshape to a fixed leading dim, NonZero/NonMaxSuppression), and where it
    cannot tell. Where a constant hard-codes the old batch and the trace proves it is the
    batch, it is patched: a ``Reshape`` target's leading old batch becomes ``0`` (copy the
    input's batch), a ``ConstantOfShape`` shape starting with the old batch takes it from the
    input at run time. Declared output dims and ``value_info`` are re-inferred afterwards.
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
        size = parse_dim(size_text, "set-batch size")
        g = model.graph
        old, choices, named = self._candidates(g)
        # the batch is already this size: nothing hard-codes another batch to patch (what
        # hard-codes this one is this batch), and tracing again would only meet the new size
        # where other dims have it too. So a second run changes nothing.
        sure = [(choices[0][0], choices[0][1][0])] + [(n, a) for n, a in named.items() if a is not None]
        if all(_dim(g.value_info(n), a) == size for n, a in sure):
            result.skip(f"the batch is already {size} ({', '.join(f'{n}:{a}' for n, a in sure)})")
            return
        trace, targets = _find_batch(model, old, choices, named, size)
        olds = {(name, axis): _dim(g.value_info(name), axis) for name, axis in targets}
        if all(v == size for v in olds.values()) and not trace.patches:
            return  # already so
        _set_dims(g, targets, size)
        for patch in trace.patches:
            patch.apply(model)
            result.note(patch.describe())
        for name, axis in targets:
            result.note(f"input {name!r}: dim {axis} {_show(olds[(name, axis)])} -> {size}")
        main = trace.main
        output_axes = {o: ([trace.ax(main, o)] if trace.ax(main, o) is not None else []) for o in g.output_names}
        forced = {name: {axis: size} for name, axis in trace.batched_names.items() if name not in trace.merged_names}
        for line in shapes.refresh_declared(model, forced):
            result.note(line)
        result.details["old"] = old
        result.details["size"] = size
        result.details["inputs"] = [list(t) for t in targets]
        result.details["output_axes"] = output_axes

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

    def _candidates(self, g: Graph):
        """The old batch (a number, or None when it is free) and, per input, the axes that may
        carry the batch: ``[(name, [axis, ...]), ...]``, the first input's choice sure."""
        inits = set(g.initializers)
        named: dict[str, int | None] = {}
        if self.opts["inputs"]:
            for item in self.opts["inputs"]:
                name, _, axis = item.partition(":")
                name = name.strip()
                if name not in g.input_names:
                    from ..errors import not_found
                    raise not_found("graph input", name, g.input_names, "the model")
                vi = g.value_info(name)
                rank = len(vi.type.tensor_type.shape.dim) if vi.type.tensor_type.HasField("shape") else None
                if axis.strip():
                    try:
                        a = int(axis)
                    except ValueError:
                        raise PassError(f"set-batch: inputs={item!r}: the axis must be a number") from None
                    if rank is None or not 0 <= a < rank:
                        raise PassError(f"set-batch: input {name!r} has rank {rank}; it has no axis {axis}")
                    named[name] = a
                else:
                    named[name] = None
            names = list(named)
        else:
            names = []
            for name in g.input_names:
                vi = g.value_info(name)
                if name in inits or vi is None or not vi.type.HasField("tensor_type") or \
                        not vi.type.tensor_type.HasField("shape"):
                    continue
                if len(vi.type.tensor_type.shape.dim) >= 1:
                    names.append(name)
        if not names:
            raise PassError("set-batch: no input has a rank to set a batch on")
        # a negative dim_value (some exporters write -1) is no size: it is free; 0 is a size (empty)
        dims = {n: [None if isinstance(x, int) and x < 0 else x for x in shapes.dims(g.value_info(n).type) or []]
                for n in names}
        for n in names:
            if not dims[n]:
                raise PassError(f"set-batch: input {n!r} has no dims to set a batch on")
        # the primary input: one named with an axis, else one whose axis 0 is free, else the first
        primary = next((n for n in names if named.get(n) is not None), None)
        if primary is None:
            primary = next((n for n in names if not isinstance(dims[n][0], int)), names[0])
        p_axis = named.get(primary) or 0
        batch_dim = dims[primary][p_axis]
        old = batch_dim if isinstance(batch_dim, int) else None
        choices = [(primary, [p_axis])]
        for n in names:
            if n == primary:
                continue
            if named.get(n) is not None:
                choices.append((n, [named[n]]))
                continue
            d = dims[n]
            if isinstance(batch_dim, str) and batch_dim in d:  # the same dim name: the same dim
                axes = [d.index(batch_dim)]
            elif (old is None and not isinstance(d[0], int)) or (old is not None and d[0] == old):
                axes = [0]
            else:
                axes = [i for i, x in enumerate(d) if (x == old if old is not None else not isinstance(x, int))]
            if not axes:
                if n in named:
                    raise PassError(f"set-batch: input {n!r} {_show_dims(d)} has no dim that can be the batch "
                                    f"({'free' if old is None else old}, as in {primary!r}); name its axis with "
                                    f"inputs={n}:AXIS or leave it out")
                continue  # a fixed input that cannot carry the batch: it stays as it is
            choices.append((n, axes))
        return old, choices, named


def _samples(feeds: dict, result: PassResult) -> list[dict]:
    """``feeds`` cut into single samples along the batch axes set-batch changed."""
    targets = [(n, a) for n, a in result.details.get("inputs") or [] if n in feeds]
    if not targets:
        return [feeds]
    count = feeds[targets[0][0]].shape[targets[0][1]]
    return [{**feeds, **{n: np.take(feeds[n], [i], axis=a) for n, a in targets}} for i in range(count)]


__all__ = ["SetBatch"]
