"""The optimisation chain on small models of the real-model corpus (``scripts/build_corpus.py``;
provenance and licences in tests/data/README.md): outputs equal to the original's in onnxruntime,
and node counts no higher than measured when they were added (the ceiling only goes down)."""

import numpy as np
import onnx
import pytest

import graphsurgery
from graphsurgery import verify
from graphsurgery.passes import Pipeline, create
from conftest import DATA

CHAIN = "fold-constants,remove-if,eliminate-noops,fuse-conv-bn,cleanup"

# file: (input shapes, nodes before, ceiling after: nodes in all graphs, measured with the chain above)
MODELS = {
    "ppocrv5_cls.onnx": ({"x": (1, 3, 48, 192)}, 511, 180),  # OCR text-line classifier, paddle2onnx, opset 11
    "ppocrv5_cls_qdq.onnx": ({"x": (1, 3, 48, 192)}, 1058, 637),  # the same, static QDQ int8
    "silero_vad_half.onnx": ({"input": (1, 512), "state": (2, 1, 128)}, 325, 37),  # float16 weights, 12 If on shapes
    "tiny_bert_qdyn.onnx": ({"input_ids": (1, 16), "attention_mask": (1, 16)}, 382, 157),  # dynamic int8 MatMul
}


def optimise(proto: onnx.ModelProto, shapes: dict) -> onnx.ModelProto:
    """What the benchmark runs: the input shapes fixed, then ``graphsurgery.optimize`` where the
    package has it, the pass chain otherwise."""
    proto = Pipeline([create("set-shape", **{k: "x".join(map(str, v)) for k, v in shapes.items()})])(proto)
    if hasattr(graphsurgery, "optimize"):
        return graphsurgery.optimize(proto)
    return Pipeline.from_text(CHAIN)(proto)


def nodes(graph: onnx.GraphProto) -> int:
    return sum(1 + sum(nodes(a.g) for a in n.attribute if a.type == onnx.AttributeProto.GRAPH)
               + sum(nodes(g) for a in n.attribute for g in a.graphs) for n in graph.node)


def feeds_for(proto: onnx.ModelProto, shapes: dict) -> dict:
    rng = np.random.default_rng(0)
    out = {}
    for vi in proto.graph.input:
        dtype = onnx.helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type)
        if np.issubdtype(dtype, np.floating):
            out[vi.name] = rng.uniform(-1, 1, shapes[vi.name]).astype(dtype)
        else:  # token ids and masks
            out[vi.name] = rng.integers(0, 2 if "mask" in vi.name else 100, shapes[vi.name]).astype(dtype)
    return out


@pytest.mark.parametrize("name", sorted(MODELS))
def test_optimised_corpus_model_matches_and_does_not_grow(name):
    shapes, before, ceiling = MODELS[name]
    original = onnx.load(str(DATA / name))
    assert nodes(original.graph) == before  # the file is the one measured
    result = optimise(onnx.ModelProto.FromString(original.SerializeToString()), shapes)  # passes edit in place
    onnx.checker.check_model(result)
    feeds = feeds_for(original, shapes)
    want = verify.run(original, feeds, optimize=False)
    got = verify.run(result, feeds, optimize=False)
    bad = [d for d in verify.compare(want, got) if not d.ok]
    assert not bad, bad
    assert nodes(result.graph) <= ceiling, f"{name}: {nodes(result.graph)} nodes after, the ceiling is {ceiling}"
