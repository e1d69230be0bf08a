"""cut: keep the part of the model between new inputs and new outputs."""

from __future__ import annotations

from .. import shapes
from ..core.model import Model
from .base import Option, Pass, PassError, PassResult, parse_list


class Cut(Pass):
    """Keep only what computes ``outputs`` (tensor names; default: the current outputs) from
    ``inputs`` (tensor names that become graph inputs; default: the current ones):
    ``cut(outputs=boxes;scores)`` drops a detector's post-processing, ``cut(inputs=features)``
    drops a preprocessing stem. New inputs and outputs take their types and shapes from shape
    inference. Refused, naming the tensor, when the cut does not separate the graph: the kept
    part still reads an original input that ``inputs`` leaves out (a skip connection around
    the cut), or computes a new input by another path; and when a name does not exist.
    """

    name = "cut"
    options = {
        "outputs": Option(parse_list, None, "tensors that become the graph outputs, separated by ';'"),
        "inputs": Option(parse_list, None, "tensors that become graph inputs, separated by ';'"),
    }

    def feeds_before(self, feeds, before, after, result):
        """The same inputs (generated for the ones the cut dropped); none for a cut that adds inputs."""
        from .. import verify

        if self.opts["inputs"]:
            raise verify.NotVerifiable("a cut that adds inputs cannot be run on the model before it")
        return super().feeds_before(feeds, before, after, result)

    def reference(self, before: bytes, after: Model, feeds: dict, result: PassResult, run) -> dict:
        """The new outputs, as the model before the cut computes them."""
        from .. import verify
        from ..capture import capture
        from ..core.model import load

        if self.opts["inputs"]:
            raise verify.NotVerifiable("a cut that adds inputs cannot be run on the model before it")
        previous = load(before, base_dir=after.base_dir)
        got = next(capture(previous, feeds, tensors=after.graph.output_names, backend="ort-noopt"))
        return {k: v for k, v in got.items() if k in after.graph.output_names}

    def apply(self, model: Model, result: PassResult) -> None:
        g = model.graph
        new_outputs = self.opts["outputs"] or g.output_names
        new_inputs = self.opts["inputs"] or []
        for name in list(new_outputs) + list(new_inputs):
            g.tensor(name)  # raises NotFoundError with suggestions
        types = shapes.infer(model)
        # what the outputs need, stopping at the new inputs
        needed, stack, seen = set(), list(new_outputs), set()
        while stack:
            t = stack.pop()
            if t in seen or t in new_inputs:
                continue
            seen.add(t)
            p = g.producer(t)
            if p is None:
                continue
            if id(p.proto) not in needed:
                needed.add(id(p.proto))
                stack.extend(x for x in p.inputs if x)
                if p.has_subgraphs():
                    for sub in p.subgraphs().values():
                        for s in (sub if isinstance(sub, list) else [sub]):
                            stack.extend(s.captured())
        for t in new_inputs:
            p = g.producer(t)
            if p is not None and id(p.proto) in needed:
                raise PassError(f"cut: {t!r} cannot become an input: the kept part still computes it, through node "
                                f"{p.name!r}, for another path to the outputs; add that path's tensors to inputs too")
        if new_inputs:
            originals = (set(g.input_names) - set(g.initializers)) - set(new_inputs)
            for n in g.nodes:
                if id(n.proto) in needed:
                    leak = [t for t in n.inputs if t in originals]
                    if leak:
                        raise PassError(f"cut: the inputs {new_inputs} do not separate the outputs from graph input "
                                        f"{leak[0]!r}, which node {n.name!r} still reads (another path, such as a "
                                        "skip connection); add a tensor on that path to inputs")
        if set(new_outputs) == set(g.output_names) and not new_inputs:
            return
        # every new input and output must be declarable before anything changes: a refusal edits nothing
        outputs_values = {t: _declared(types, g, t, "an output") for t in new_outputs if t not in g.output_names}
        inputs_values = {t: _declared(types, g, t, "an input") for t in new_inputs}
        # new outputs first (their producers are kept), then drop the rest
        for t, (elem, dims) in outputs_values.items():
            g.add_output(t, elem, dims)
            result.note(f"output {t!r} added")
        for t in [o for o in g.output_names if o not in new_outputs]:
            g.remove_output(t)
            result.note(f"output {t!r} removed")
        doomed = [n for n in g.nodes if id(n.proto) not in needed]
        g.detach_nodes(doomed)
        for t, (elem, dims) in inputs_values.items():
            if not g.defines(t):
                g.add_input(t, elem, dims)
                result.note(f"input {t!r} added")
        for name in list(g.input_names):
            if name not in new_inputs and not g.is_used(name) and name not in g.initializers:
                g.remove_input(name)
                result.note(f"input {name!r} removed (nothing kept reads it)")
        counts = g.remove_unused(nodes=False)
        result.note(f"kept {len(g)} node(s), removed {len(doomed)}; {counts['initializers']} unused initializer(s) "
                    "dropped")


def _declared(types: shapes.Types, g, t: str, role: str) -> tuple[int, list]:
    """Element type and dims of ``t`` for declaring it as a graph input or output. ONNX requires
    both of a graph's inputs and outputs, so a tensor whose element type or rank shape inference
    cannot tell is refused."""
    t_type = types.get(g, t)
    if t_type is None or not t_type.HasField("tensor_type") or not t_type.tensor_type.elem_type:
        raise PassError(f"cut: the type of {t!r} is unknown (or not a tensor); it cannot be declared as {role}")
    dims = shapes.dims(t_type)
    if dims is None:
        raise PassError(f"cut: the rank of {t!r} is unknown (shape inference cannot tell it) and ONNX requires "
                        f"{role} to declare one; cut at a tensor whose rank is known, or fix the input shapes "
                        "first (set-shape)")
    return t_type.tensor_type.elem_type, dims
