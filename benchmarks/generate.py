"""Deterministic large models for benchmarks (same bytes on every run).

    python benchmarks/generate.py OUT_DIR [cnn] [small_ops] [transformer]

Models that exist already are kept.

- cnn_12k.onnx, cnn_24k.onnx, cnn_48k.onnx: CNN-like chains of Conv → PRelu →
  InstanceNormalization → Add (residual) blocks, the same generator at n, 2n and 4n nodes
  (and cnn_96k.onnx, 8n, for the pipeline section).
- small_ops.onnx: a 200k-node graph of small elementwise ops (Mul/Add/LeakyRelu/Neg).
- transformer/model.onnx (+ model.onnx.data): a transformer-like stack with 2.3 GB (over
  2 GiB) of external float32 weights and a few If nodes whose condition is a constant.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def _model(nodes, name, inputs, outputs, inits, ir_version=10):
    g = helper.make_graph(nodes, name, inputs, outputs, inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=ir_version,
                             producer_name="graphsurgery-benchmarks")


def cnn(blocks: int = 12_000, channels: int = 8, hw: int = 16) -> onnx.ModelProto:
    """``blocks`` blocks of Conv → PRelu → InstanceNormalization → Add (the PRelu's output is read
    twice: by the norm and by the residual Add), 4 nodes each: 12,000 blocks make 48k nodes."""
    rng = np.random.default_rng(0)
    C = channels
    nodes, inits = [], []
    x = "x"
    for i in range(blocks):
        w, sl, s, b = (f"w{i}", f"slope{i}", f"s{i}", f"b{i}")
        inits += [numpy_helper.from_array(rng.standard_normal((C, C, 3, 3)).astype(np.float32) * 0.05, w),
                  numpy_helper.from_array(rng.uniform(0.05, 0.3, (C, 1, 1)).astype(np.float32), sl),
                  numpy_helper.from_array(np.ones(C, np.float32), s), numpy_helper.from_array(np.zeros(C, np.float32), b)]
        nodes += [helper.make_node("Conv", [x, w], [f"c{i}"], name=f"conv{i}", pads=[1, 1, 1, 1]),
                  helper.make_node("PRelu", [f"c{i}", sl], [f"p{i}"], name=f"prelu{i}"),
                  helper.make_node("InstanceNormalization", [f"p{i}", s, b], [f"n{i}"], name=f"norm{i}",
                                   epsilon=1e-5),
                  helper.make_node("Add", [f"n{i}", f"p{i}"], [f"a{i}"], name=f"add{i}")]
        x = f"a{i}"
    return _model(nodes, "cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, C, hw, hw])],
                  [helper.make_tensor_value_info(x, TensorProto.FLOAT, [1, C, hw, hw])], inits)


def small_ops(n: int = 200_000) -> onnx.ModelProto:
    ops = ["Mul", "Add", "LeakyRelu", "Neg"]
    nodes = []
    x = "x"
    inits = [numpy_helper.from_array(np.array([1.0001], np.float32), "k")]
    for i in range(n):
        op = ops[i % 4]
        ins = [x, "k"] if op in ("Mul", "Add") else [x]
        attrs = {"alpha": 0.01} if op == "LeakyRelu" else {}
        nodes.append(helper.make_node(op, ins, [f"t{i}"], name=f"{op.lower()}{i}", **attrs))
        x = f"t{i}"
    return _model(nodes, "small_ops", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
                  [helper.make_tensor_value_info(x, TensorProto.FLOAT, [4])], inits)


def transformer(folder: str, layers: int = 31, d: int = 1024, ff: int = 4096) -> str:
    """50 MB of weights a layer (at the default widths), written straight to external data, one
    tensor at a time."""
    os.makedirs(folder, exist_ok=True)
    data_name = "model.onnx.data"
    rng = np.random.default_rng(0)
    nodes, inits = [], []
    offset = 0
    with open(os.path.join(folder, data_name), "wb") as f:
        def weight(name, shape):
            nonlocal offset
            arr = (rng.standard_normal(shape[-1], dtype=np.float32) * 0.02)
            row = arr.tobytes()
            count = int(np.prod(shape[:-1]))
            for _ in range(count):  # deterministic and cheap: rows repeat
                f.write(row)
            t = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=shape, data_location=TensorProto.EXTERNAL)
            for k, v in (("location", data_name), ("offset", str(offset)), ("length", str(len(row) * count))):
                t.external_data.add(key=k, value=v)
            offset += len(row) * count
            inits.append(t)
            return name

        x = "x"
        for i in range(layers):
            q, k, v, o = (weight(f"l{i}.W{n}", [d, d]) for n in "qkvo")
            w1, w2 = weight(f"l{i}.Wff1", [d, ff]), weight(f"l{i}.Wff2", [ff, d])
            inits += [numpy_helper.from_array(np.ones(d, np.float32), f"l{i}.ln_s"),
                      numpy_helper.from_array(np.zeros(d, np.float32), f"l{i}.ln_b")]
            p = f"l{i}"
            nodes += [
                helper.make_node("LayerNormalization", [x, f"{p}.ln_s", f"{p}.ln_b"], [f"{p}.ln"], name=f"{p}.ln", axis=-1),
                helper.make_node("MatMul", [f"{p}.ln", q], [f"{p}.q"], name=f"{p}.mq"),
                helper.make_node("MatMul", [f"{p}.ln", k], [f"{p}.k"], name=f"{p}.mk"),
                helper.make_node("MatMul", [f"{p}.ln", v], [f"{p}.v"], name=f"{p}.mv"),
                helper.make_node("Transpose", [f"{p}.k"], [f"{p}.kt"], name=f"{p}.kt", perm=[0, 2, 1]),
                helper.make_node("MatMul", [f"{p}.q", f"{p}.kt"], [f"{p}.s"], name=f"{p}.ms"),
                helper.make_node("Softmax", [f"{p}.s"], [f"{p}.a"], name=f"{p}.softmax", axis=-1),
                helper.make_node("MatMul", [f"{p}.a", f"{p}.v"], [f"{p}.av"], name=f"{p}.mav"),
                helper.make_node("MatMul", [f"{p}.av", o], [f"{p}.o"], name=f"{p}.mo"),
                helper.make_node("Add", [x, f"{p}.o"], [f"{p}.r1"], name=f"{p}.r1"),
                helper.make_node("MatMul", [f"{p}.r1", w1], [f"{p}.f1"], name=f"{p}.mf1"),
                helper.make_node("Relu", [f"{p}.f1"], [f"{p}.f1r"], name=f"{p}.relu"),
                helper.make_node("MatMul", [f"{p}.f1r", w2], [f"{p}.f2"], name=f"{p}.mf2"),
            ]
            out = f"{p}.out"
            if i % 6 == 0:  # a constant-condition If, as exporters leave behind
                then_g = helper.make_graph([helper.make_node("Add", [f"{p}.r1", f"{p}.f2"], [f"{p}.t"])], "then", [],
                                           [helper.make_tensor_value_info(f"{p}.t", TensorProto.FLOAT, None)])
                else_g = helper.make_graph([helper.make_node("Identity", [f"{p}.r1"], [f"{p}.e"])], "else", [],
                                           [helper.make_tensor_value_info(f"{p}.e", TensorProto.FLOAT, None)])
                nodes += [helper.make_node("Constant", [], [f"{p}.cond"], name=f"{p}.cond",
                                           value=helper.make_tensor("c", TensorProto.BOOL, [], [True])),
                          helper.make_node("If", [f"{p}.cond"], [out], name=f"{p}.if", then_branch=then_g,
                                           else_branch=else_g)]
            else:
                nodes.append(helper.make_node("Add", [f"{p}.r1", f"{p}.f2"], [out], name=f"{p}.r2"))
            x = out
    m = _model(nodes, "transformer", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16, d])],
               [helper.make_tensor_value_info(x, TensorProto.FLOAT, [1, 16, d])], inits)
    path = os.path.join(folder, "model.onnx")
    with open(path, "wb") as f:
        f.write(m.SerializeToString())
    return path


# the sizes the benchmark runs: CNN blocks for n, 2n, 4n (4 nodes a block: 12k, 24k, 48k nodes),
# small-op nodes, and transformer layers (46 layers of 1024-wide weights: 2.3 GB, over 2 GiB)
CNN_BLOCKS = (3_000, 6_000, 12_000)
# the pipeline section adds 8n (96k nodes): one more doubling shows the trend
PIPELINE_BLOCKS = CNN_BLOCKS + (24_000,)
SMALL_OPS = 200_000
TRANSFORMER_LAYERS = 46


def cnn_path(out: str, blocks: int) -> str:
    return os.path.join(out, f"cnn_{blocks * 4 // 1000}k.onnx")


def small_ops_path(out: str) -> str:
    return os.path.join(out, "small_ops.onnx")


def transformer_path(out: str) -> str:
    return os.path.join(out, "transformer", "model.onnx")


def ensure(out: str, which=("cnn", "small_ops", "transformer"), cnn_blocks=CNN_BLOCKS) -> None:
    """Write the models in ``which`` that ``out`` does not hold yet."""
    os.makedirs(out, exist_ok=True)
    if "cnn" in which:
        for b in cnn_blocks:
            if not os.path.exists(cnn_path(out, b)):
                onnx.save(cnn(b), cnn_path(out, b))
    if "small_ops" in which and not os.path.exists(small_ops_path(out)):
        onnx.save(small_ops(SMALL_OPS), small_ops_path(out))
    if "transformer" in which and not os.path.exists(transformer_path(out)):
        transformer(os.path.dirname(transformer_path(out)), layers=TRANSFORMER_LAYERS)


def main(argv: list[str]) -> None:
    out = argv[0] if argv else "benchmarks/out"
    ensure(out, argv[1:] or ("cnn", "small_ops", "transformer"))
    print("models in", out)


if __name__ == "__main__":
    main(sys.argv[1:])
