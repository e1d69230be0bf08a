"""Random sequences of edits on real models: after every step the invariants hold, the
incrementally maintained indexes equal indexes rebuilt from scratch, and a refused edit
changes nothing."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import graphsurgery as gs
from conftest import DATA, if_model, tiny_chain

MODELS = {
    "silero_vad": (DATA / "silero_vad.onnx").read_bytes(),
    "silero_vad_16k_op15": (DATA / "silero_vad_16k_op15.onnx").read_bytes(),
    "magika": (DATA / "magika_standard_v3_3.onnx").read_bytes(),
    "chain": tiny_chain().SerializeToString(),
    "if": if_model().SerializeToString(),
}


def index_signature(model: gs.Model):
    """Producers, uses and free names of every graph, in a form comparable across two loads."""
    sig = []
    for g in model.graphs():
        g._ensure()
        prods = {k: (v.proto.op_type, tuple(v.proto.output)) for k, v in g._producer.items()}
        uses = {k: sorted((n.proto.op_type, tuple(n.proto.output), i) for n, i in g._direct_uses(k)) for k in g._uses}
        sig.append((g.describe(), len(g._nodes), len(g._sub_nodes), prods, uses, sorted(g.captured()),
                    sorted(g._inputs), sorted(g._inits)))
    return sig


def assert_ranks_topological(model: gs.Model):
    """While a graph's ranks are valid, every node ranks after the producers of what it reads
    (its inputs and its subgraphs' captured names)."""
    for g in model.graphs():
        if not g.built or not g.ranks_valid:
            continue
        for n in g.nodes_in_file_order():
            for name in g.reads(n):
                p = g.producer(name) if g.defines(name) else None
                if p is not None and p is not n:
                    assert g.rank(p) < g.rank(n), f"{p.name} feeds {n.name} but ranks after it"


def assert_consistent(model: gs.Model):
    assert_ranks_topological(model)
    assert model.problems(onnx_checker=False) == []
    data = model.to_bytes()  # restores order, like a save
    fresh = gs.load(data)
    assert index_signature(model) == index_signature(fresh)


def pick(data, seq, label):
    seq = list(seq)
    return data.draw(st.sampled_from(seq), label=label) if seq else None


EDITS = ["insert_rewire", "bypass", "rename", "add_output", "remove_output", "set_attr", "set_init", "dead_node",
         "remove_node", "remove_unused", "toposort"]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data(), which=st.sampled_from(sorted(MODELS)))
def test_random_edit_sequences_keep_invariants(data, which):
    model = gs.load(MODELS[which])
    graphs = list(model.graphs())
    for _ in range(data.draw(st.integers(1, 8), label="steps")):
        g = pick(data, graphs, "graph")
        g._ensure()
        edit = data.draw(st.sampled_from(EDITS), label="edit")
        before = model.to_bytes()
        try:
            if edit == "insert_rewire":
                name = pick(data, sorted(g._producer) or sorted(g.visible_names()), "tensor")
                if name:
                    ident = g.make_node("Identity", [name], after=g._producer.get(name))
                    g.rewire(name, ident.outputs[0])
            elif edit == "bypass":
                n = pick(data, [n for n in g.nodes if n.op_type == "Identity"], "identity")
                if n is not None:
                    g.bypass(n)
            elif edit == "rename":
                name = pick(data, sorted(g._producer), "tensor")
                if name:
                    g.rename(name, g.unique_name(name + "_renamed"))
            elif edit == "add_output":
                name = pick(data, sorted(g._producer), "tensor")
                if name and name not in g.output_names:
                    g.add_output(name, dtype=np.float32)
            elif edit == "remove_output":
                if len(g.output_names) > 1:
                    g.remove_output(pick(data, g.output_names, "output"))
            elif edit == "set_attr":
                n = pick(data, [n for n in g.nodes if len(n.attrs)], "node")
                if n is not None:
                    key = pick(data, list(n.attrs), "attr")
                    if n.attrs.proto(key).type in (1, 2, 3, 6, 7):  # FLOAT, INT, STRING, FLOATS, INTS
                        n.attrs[key] = n.attrs[key]  # same value through the typed setter
            elif edit == "set_init":
                name = pick(data, sorted(g._inits), "initializer")
                if name:
                    g.set_initializer(name, np.array(g.initializer(name)))
            elif edit == "dead_node":
                name = pick(data, sorted(g.visible_names()), "tensor")
                if name:
                    g.make_node("Identity", [name])
            elif edit == "remove_node":
                n = pick(data, g.nodes, "node")
                if n is not None:
                    g.remove_node(n)
            elif edit == "remove_unused":
                if g.output_names:
                    g.remove_unused()
                    graphs = list(model.graphs())
            elif edit == "toposort":
                g.toposort()
        except gs.EditError:
            assert model.to_bytes() == before, f"refused {edit} changed the model"
        assert_consistent(model)
        graphs = list(model.graphs())


@pytest.mark.parametrize("which", ["silero_vad", "magika"])
def test_every_tensor_renamed_keeps_models_running(which):
    """Rename every node output of the main graph; outputs computed by onnxruntime stay equal."""
    from conftest import assert_close, run_ort

    model = gs.load(MODELS[which])
    feeds = ({"input": np.random.default_rng(0).uniform(-1, 1, (1, 512)).astype(np.float32),
              "state": np.zeros((2, 1, 128), np.float32), "sr": np.array(16000, np.int64)}
             if which == "silero_vad" else
             {"bytes": np.random.default_rng(0).integers(0, 257, (2, 2048)).astype(np.int32)})
    expected = run_ort(MODELS[which], feeds)
    outputs = set(model.graph.output_names)
    model.graph._ensure()
    for name in list(model.graph._producer):
        if name not in outputs:
            model.graph.rename(name, model.graph.unique_name("t"))
    assert_consistent(model)
    assert_close(run_ort(model.to_bytes(), feeds), expected, rtol=0, atol=0)
