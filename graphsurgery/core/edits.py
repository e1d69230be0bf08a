"""Graph verbs on tensors rather than nodes: names, graph inputs and outputs, initializers,
bypassing a node, and removing what nothing reads. Mixed into :class:`~.graph.Graph`.

Each verb checks before it changes anything, and costs time in proportion to the change.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx
from onnx import helper

from .. import tensors
from ..errors import EditError, not_found
from .node import check_is_node
from .scope import add_reader, drop_reader


def _dtype_code(dtype: Any) -> int:
    if isinstance(dtype, int):
        return dtype
    return helper.np_dtype_to_tensor_dtype(np.dtype(dtype))


class TensorEdits:
    """Verbs of :class:`~.graph.Graph` that edit tensors (``self`` is the Graph)."""

    # ---- value_info and quantization annotations by name (kept while the list is untouched)
    def _annotations(self, name: str) -> list:
        """value_info entries and quantization annotations of this graph naming ``name``."""
        proto = self._proto
        vis = proto.value_info
        qas = () if self.is_function else proto.quantization_annotation
        idx = getattr(self, "_ann_index", None)
        if idx is None or idx[0] != len(vis) or idx[1] != len(qas):
            table: dict[str, list] = {}
            for vi in vis:
                table.setdefault(vi.name, []).append(vi)
            for qa in qas:
                table.setdefault(qa.tensor_name, []).append(qa)
            idx = self._ann_index = (len(vis), len(qas), table)
        found = idx[2].get(name, ())
        return [a for a in found if (a.name if isinstance(a, onnx.ValueInfoProto) else a.tensor_name) == name]

    def _annotations_renamed(self, old: str, new: str) -> None:
        idx = getattr(self, "_ann_index", None)
        if idx is not None:
            moved = idx[2].pop(old, [])
            idx[2].setdefault(new, []).extend(moved)

    # =================================================================
    # nodes that only pass a tensor through
    # =================================================================
    def bypass(self, node, input_index: int = 0, output_index: int = 0) -> None:
        """Remove a pass-through node (Identity, Dropout, ...): its readers read its input instead.

        When the output is a graph output, the input tensor takes the output's name instead,
        so the model's interface does not change.
        """
        self._check_alive(check_is_node(node))
        src = node.proto.input[input_index]
        out = node.proto.output[output_index]
        if out in self._output_set():
            renamable = (src in self._producer and src not in self._output_set()
                         and [c.proto for c in self.consumers(src)] == [node.proto])
            if not renamable:
                raise EditError(f"cannot bypass node {node.name!r}: its output {out!r} is a graph output and its "
                                f"input {src!r} is not a node output read only by this node; keep the node")
            self._detach([node])
            vis = self._proto.value_info
            if any(isinstance(a, onnx.ValueInfoProto) for a in self._annotations(src)):
                for i in range(len(vis) - 1, -1, -1):
                    if vis[i].name == src:
                        del vis[i]
            self.rename(src, out)
            return
        others = [o for i, o in enumerate(node.proto.output) if i != output_index and o and self.is_used(o)]
        if others:
            raise EditError(f"node {node.name!r} has other outputs still read: {others}")
        self.rewire(out, src)
        self._detach([node])

    def add_node_output(self, node, name: str | None = None) -> str:
        """Give ``node`` one more output (for ops with variadic outputs: If, Loop, Scan, Split);
        returns its name. Refused when ``name`` is already defined."""
        self._check_alive(node)
        name = name or self.unique_name(f"{node.name or node.op_type}_out")
        if self.is_taken(name):
            raise EditError(f"cannot add output {name!r} to node {node.name!r}: the name is already defined")
        node.proto.output.append(name)
        self._producer[name] = node
        self._names_add([name])
        self._invalidate_free((name,))
        self._definitions_changed((name,))
        return name

    def replace_with_constants(self, values: dict[str, Any], nodes=()) -> None:
        """Turn tensors into initializers: ``values`` maps tensor names to their values.

        ``nodes`` are removed in the same step (they may produce some of those tensors); a graph
        input named in ``values`` stops being an input. Refused, with nothing changed, when a
        removed node's output is still read and has no value here.
        """
        self._ensure()
        if self.is_function:
            raise EditError("functions have no initializers; use Constant nodes")
        nodes = self._check_removable(nodes, provided=values)
        produced_here = {o for n in nodes for o in n.proto.output if o}
        for name in values:
            if name not in produced_here and name not in self._input_set and name not in self._inits:
                raise EditError(f"{name!r} is neither produced by a removed node nor an input or initializer "
                                f"of {self.describe()}")
        protos = {name: tensors.from_numpy(v, name) if not isinstance(v, onnx.TensorProto) else v
                  for name, v in values.items()}
        # all checks passed
        self._detach(nodes)
        was = {name for name in protos if self.defines(name)}
        for name, t in protos.items():
            if name in self._input_set:
                self._drop_input(name)
            if name in self._inits:
                self._inits[name].CopyFrom(t)
            else:
                self._proto.initializer.append(t)
                self._inits[name] = self._proto.initializer[len(self._proto.initializer) - 1]
        self._invalidate_free(list(values))
        self._definitions_changed([name for name in protos if name not in was])

    # =================================================================
    # names
    # =================================================================
    def unique_name(self, base: str, kind: str = "tensor") -> str:
        """A name not used anywhere in the model, derived from ``base``."""
        if self.model is not None:
            return self.model.names.unique(base, kind)
        taken = self.visible_names() | self.names_below() if kind == "tensor" else {n.name for n in self.nodes}
        if base not in taken:
            return base
        for i in itertools.count(1):
            if f"{base}_{i}" not in taken:
                return f"{base}_{i}"
        raise AssertionError("unreachable")

    def rename(self, old: str, new: str) -> None:
        """Rename tensor ``old`` to ``new`` everywhere: its definition, every reader (subgraphs
        included), graph inputs/outputs, value_info and quantization annotations."""
        g = self.resolve(old)
        if g is None:
            raise not_found("tensor", old, self.visible_names(), self.describe())
        if old == new:
            return
        if not new:
            raise EditError("a tensor name cannot be empty")
        if g.is_taken(new):
            raise EditError(f"cannot rename {old!r} to {new!r}: {new!r} is already defined in {g.describe()} "
                            "or a graph it encloses")
        uses = g.uses(old)
        refs = g.output_refs(old)
        # definition
        prod = g._producer.pop(old, None)
        if prod is not None:
            outs = prod.proto.output
            for i, o in enumerate(outs):
                if o == old:
                    outs[i] = new
            g._producer[new] = prod
        if old in g._input_set:
            g._input_set.discard(old)
            g._input_set.add(new)
            g._inputs = [new if x == old else x for x in g._inputs]
            if g.is_function:
                for i, x in enumerate(g._proto.input):
                    if x == old:
                        g._proto.input[i] = new
            else:
                for vi in g._proto.input:
                    if vi.name == old:
                        vi.name = new
        if old in g._inits:
            t = g._inits.pop(old)
            t.name = new
            g._inits[new] = t
        if old in g._sparse:
            s = g._sparse.pop(old)
            s.values.name = new
            g._sparse[new] = s
        # readers
        touched = {id(g): g}
        for node, idx in uses:
            ng = node._graph
            touched[id(ng)] = ng
            drop_reader(ng._uses, old, node)  # every index of it reading old is in uses
            node.proto.input[idx] = new
            add_reader(ng._uses, new, node)
        for og, i in refs:
            touched[id(og)] = og
            og._set_output_name(i, new)
        # annotations in every graph that can see it
        stack = [g]
        while stack:
            h = stack.pop()
            for a in h._annotations(old):
                if isinstance(a, onnx.ValueInfoProto):
                    a.name = new
                else:
                    a.tensor_name = new
            h._annotations_renamed(old, new)
            stack.extend(h.subgraphs())
        for h in touched.values():
            h._invalidate_free()
            h._captures = None
        g._definitions_changed((new,), (old,))
        self._names_add([new])

    # =================================================================
    # inputs, outputs, initializers
    # =================================================================
    def add_input(self, name: str, dtype: Any = np.float32, shape: Sequence[int | str | None] | None = None,
                  *, index: int | None = None) -> None:
        """Add a graph input (dtype as numpy dtype or ONNX element type; dims as int, name or None)."""
        self._ensure()
        if self.is_taken(name):
            raise EditError(f"cannot add input {name!r}: the name is already defined in {self.describe()}")
        at = len(self._proto.input) if index is None else index
        if self.is_function:
            self._proto.input.insert(at, name)
        else:
            self._proto.input.insert(at, helper.make_tensor_value_info(name, _dtype_code(dtype), shape))
        if at == len(self._inputs):
            self._inputs.append(name)
        else:
            self._inputs = list(self._proto.input) if self.is_function else [v.name for v in self._proto.input]
        self._input_set.add(name)
        self._invalidate_free((name,))
        self._names_add([name])
        self._definitions_changed((name,))

    def remove_input(self, name: str) -> None:
        """Remove a graph input nobody reads (an input that is also an initializer stays an initializer)."""
        self._ensure()
        if name not in self._input_set:
            raise not_found("graph input", name, self._inputs, self.describe())
        if name not in self._inits and self.is_used(name):
            readers = ", ".join(repr(n.name) for n in self.consumers(name)[:5]) or "a graph output"
            raise EditError(f"cannot remove input {name!r}: it is read by {readers}; rewire or freeze it first")
        self._drop_input(name)
        self._invalidate_free((name,))
        if not self.defines(name):
            self._definitions_changed(lost=(name,))

    def _drop_input(self, name: str) -> None:
        field = self._proto.input
        i = self._inputs.index(name)
        if len(field) == len(self._inputs) and (field[i] if self.is_function else field[i].name) == name:
            del field[i]
            del self._inputs[i]
        else:  # the proto's list was changed behind the index: find it the slow way
            for k in range(len(field) - 1, -1, -1):
                if (field[k] if self.is_function else field[k].name) == name:
                    del field[k]
            self._inputs = [x for x in self._inputs if x != name]
        self._input_set.discard(name)

    def add_output(self, name: str, dtype: Any = None, shape: Sequence[int | str | None] | None = None) -> None:
        """Expose tensor ``name`` as a graph output; its type comes from value_info when not given."""
        self._require_visible(name, f"new output of {self.describe()}")
        if name in self._output_set():
            raise EditError(f"{name!r} is already an output of {self.describe()}")
        if self.owner is not None and not self.defines(name):  # the holder will read it
            self._admit_read_from_outside(name, f"new output {name!r} of {self.describe()}")
        if self.is_function:
            self._proto.output.append(name)
        else:
            if dtype is not None:
                vi = helper.make_tensor_value_info(name, _dtype_code(dtype), shape)
            else:
                known = self.known_type(name)
                if known is None:
                    raise EditError(f"the type of {name!r} is unknown (no value_info, and shape inference could "
                                    "not tell); pass dtype= (and shape=) to add_output")
                vi = onnx.ValueInfoProto()
                vi.CopyFrom(known)
            self._proto.output.append(vi)
        self._outputs = None
        self._invalidate_free((name,))
        self._repair_outer([name])

    def remove_output(self, name: str) -> None:
        """Stop exposing ``name`` as a graph output (its producer stays)."""
        names = self.output_names
        if name not in names:
            raise not_found("graph output", name, names, self.describe())
        field = self._proto.output
        for i in range(len(field) - 1, -1, -1):
            if (field[i] if self.is_function else field[i].name) == name:
                del field[i]
        self._outputs = None
        self._invalidate_free((name,))

    def set_initializer(self, name: str, value: Any) -> None:
        """Add initializer ``name``, or replace its value (numpy array, scalar, list or TensorProto)."""
        self._ensure()
        if self.is_function:
            raise EditError("functions have no initializers; use a Constant node")
        old = self._inits.get(name)
        if old is None and name not in self._input_set and self.is_taken(name):
            raise EditError(f"cannot add initializer {name!r}: the name is already defined in {self.describe()}")
        if isinstance(value, onnx.TensorProto):
            t = onnx.TensorProto()
            t.CopyFrom(value)
            t.name = name
        else:
            t = tensors.from_numpy(value, name, old)
        if old is not None:
            old.CopyFrom(t)
        else:
            self._proto.initializer.append(t)
            self._inits[name] = self._proto.initializer[len(self._proto.initializer) - 1]
            self._invalidate_free((name,))
            self._names_add([name])
            if name not in self._input_set:
                self._definitions_changed((name,))

    def remove_initializer(self, name: str) -> None:
        """Remove an initializer nobody reads (or that is also a graph input, which stays).

        Constant time: the proto's list drops it when next read (``graph.proto``,
        ``model.proto``, a save), with every other removal since, in one pass."""
        self._ensure()
        if name not in self._inits:
            raise not_found("initializer", name, self._inits, self.describe())
        if name not in self._input_set and self.is_used(name):
            readers = ", ".join(repr(n.name) for n in self.consumers(name)[:5]) or "a graph output"
            raise EditError(f"cannot remove initializer {name!r}: it is read by {readers}")
        self._drop_initializers({name})

    def remove_initializers(self, names) -> None:
        """Remove several initializers nobody reads. All are checked before any is removed."""
        self._ensure()
        names = set(names)
        for name in sorted(names):
            if name not in self._inits:
                raise not_found("initializer", name, self._inits, self.describe())
            if name not in self._input_set and self.is_used(name):
                readers = ", ".join(repr(n.name) for n in self.consumers(name)[:5]) or "a graph output"
                raise EditError(f"cannot remove initializer {name!r}: it is read by {readers}")
        if names:
            self._drop_initializers(names)

    def _drop_initializers(self, names: set[str]) -> None:
        """Take ``names`` out of the index; the proto's list drops them when next read (held
        here until then, so their ids stay theirs)."""
        dead = self._dead_inits
        for n in names:
            t = self._inits.pop(n)
            dead[id(t)] = t
        self._lags()  # the model's proto lags: sync before it is read
        self._invalidate_free(names)
        self._definitions_changed(lost=[n for n in names if not self.defines(n)])

    # =================================================================
    # cleanup
    # =================================================================
    def remove_unused(self, *, nodes: bool = True, initializers: bool = True, value_info: bool = True,
                      recursive: bool = True) -> dict[str, int]:
        """Remove nodes that feed no output, initializers nobody reads, and value_info of
        tensors that no longer exist. Returns counts of what was removed.

        Refused for a graph without outputs, where it would delete everything.
        """
        self._ensure()
        counts = {"nodes": 0, "initializers": 0, "value_info": 0}
        if nodes and not self.output_names:
            raise EditError(f"{self.describe()} has no outputs; removing unused nodes would delete every node. "
                            "Add the outputs you want to keep first")
        if nodes:
            live: set[int] = set()
            needed = [o for o in self.output_names if o]
            seen: set[str] = set()
            while needed:
                name = needed.pop()
                if name in seen:
                    continue
                seen.add(name)
                p = self._producer.get(name)
                if p is None or id(p.proto) in live:
                    continue
                live.add(id(p.proto))
                needed.extend(p.proto.input)
                if id(p.proto) in self._sub_nodes:
                    needed.extend(self.reads(p))
            dead = [n for n in self._nodes.values() if id(n.proto) not in live]
            if dead:
                self._detach(dead)
            counts["nodes"] = len(dead)
        if recursive:
            for g in self.subgraphs():
                sub = g.remove_unused(nodes=nodes, initializers=initializers, value_info=value_info, recursive=True)
                for k, v in sub.items():
                    counts[k] += v
        if initializers and not self.is_function:
            # is_used, asked of this scope directly: initializers are defined here
            reads, outputs, captures = self._uses, self._output_set(), self._capture_index()
            unused = {name for name in self._inits if name not in self._input_set and name not in reads
                      and name not in outputs and name not in captures}
            if unused:
                self._drop_initializers(unused)
            counts["initializers"] += len(unused)
        if value_info:
            below: set[str] | None = None
            vis = self._proto.value_info
            stale = []
            for i in range(len(vis)):
                name = vis[i].name
                if self.resolve(name) is not None:
                    continue
                if below is None:
                    below = self.names_below()
                if name not in below:
                    stale.append(i)
            if stale:
                held = [vis[i] for i in stale]  # alive, so their ids stay theirs during the sort
                gone = {id(v) for v in held}
                vis.sort(key=lambda v: id(v) in gone)
                del vis[len(vis) - len(gone):]
            counts["value_info"] += len(stale)
        return counts


__all__ = ["TensorEdits"]
