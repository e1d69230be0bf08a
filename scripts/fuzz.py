"""Mutation fuzzer for graphsurgery's own file handling: load -> check -> inspect -> save ->
reload -> read every tensor, on mutated real models (byte flips, truncation, field-level and
structure-aware mutations of models with subgraphs, functions and external data).

Every try runs in a worker subprocess, many tries per worker; a worker is restarted only after
it dies (an abort) or stops answering (a hang). Outcomes:

- ``refused``: graphsurgery raised one of its own errors (fine);
- ``accepted``: the model went through every step (fine);
- ``foreign``: an exception that is not a ``GraphSurgeryError`` escaped;
- ``abort``: the worker process died (a signal, e.g. SIGABRT inside onnx's C++ code);
- ``hang``: one try took longer than ``--timeout`` seconds;
- ``saved-invalid``: ``save()`` wrote a model that ``check()`` rejects once reloaded.

Usage::

    python scripts/fuzz.py --tries 20000 --seed 1 --jobs 2      # the long run, prints figures
    python scripts/fuzz.py --replay 1234 --seed 1               # one try, in process, with traceback
    python scripts/fuzz.py --write 1234 --seed 1 --out DIR      # the mutated files of one try

Try ``i`` of seed ``s`` is the same mutation on every run, so figures before and after a fix
compare like with like.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(os.path.dirname(HERE), "tests", "data")
NODE_TESTS = ["test_loop11", "test_scan9_sum", "test_if_seq", "test_if_opt", "test_loop13_seq",
              "test_sequence_map_add_2_sequences_expanded", "test_range_float_type_positive_delta_expanded",
              "test_softmax_axis_0_expanded", "test_layer_normalization_2d_axis0_expanded"]
INTERESTING_INTS = [0, 1, -1, 2, 3, 7, 8, 16, 17, 25, 64, 127, 255, 256, 2**31 - 1, 2**31, -2**31, 2**32,
                    2**62, 2**63 - 1, -2**63]

# ---- seed models -------------------------------------------------------------------------


def _function_model() -> onnx.ModelProto:
    """A model calling a local function whose body holds an If with a subgraph, plus a Loop."""
    then_g = helper.make_graph([helper.make_node("Neg", ["fx"], ["t"], name="f_neg")], "then", [],
                               [helper.make_tensor_value_info("t", TensorProto.FLOAT, None)])
    else_g = helper.make_graph([helper.make_node("Abs", ["fx"], ["e"], name="f_abs")], "else", [],
                               [helper.make_tensor_value_info("e", TensorProto.FLOAT, None)])
    fn = helper.make_function(
        "local", "Flip", ["fx", "fc"], ["fy"],
        [helper.make_node("If", ["fc"], ["fy"], name="f_if", then_branch=then_g, else_branch=else_g)],
        [helper.make_opsetid("", 17)])
    body = helper.make_graph(
        [helper.make_node("Add", ["acc_in", "step"], ["acc_out"], name="body_add"),
         helper.make_node("Identity", ["cond_in"], ["cond_out"], name="body_id")],
        "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("acc_in", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("acc_out", TensorProto.FLOAT, [2])],
        [numpy_helper.from_array(np.array([1, 2], np.float32), "step")])
    g = helper.make_graph(
        [helper.make_node("Flip", ["x", "c"], ["f"], name="call", domain="local"),
         helper.make_node("Loop", ["n", "c", "f"], ["y"], name="loop", body=body)],
        "fn_model",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2]),
         helper.make_tensor_value_info("c", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
        [numpy_helper.from_array(np.array(3, np.int64), "n")])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("local", 1)],
                             functions=[fn], ir_version=8)


def _external_model() -> tuple[bytes, bytes]:
    """A small Conv model with two initializers in an external data file: (model, data)."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal((2, 3, 3, 3)).astype(np.float32)
    b = np.arange(2, dtype=np.float32).reshape(1, 2, 1, 1)
    inits = []
    data = b""
    for name, arr in (("w", w), ("b", b)):
        t = numpy_helper.from_array(arr, name)
        t.ClearField("raw_data")
        t.data_location = TensorProto.EXTERNAL
        for k, v in (("location", "m.onnx.data"), ("offset", str(len(data))), ("length", str(arr.nbytes))):
            t.external_data.add(key=k, value=v)
        data += arr.tobytes()
        inits.append(t)
    g = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
         helper.make_node("Add", ["c", "b"], ["y"], name="add")],
        "ext",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 4, 4])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    return m.SerializeToString(), data


def seeds() -> list[tuple[str, bytes, bytes | None]]:
    """(name, model bytes, external data bytes or None) of every seed model."""
    out = []
    for name in ("silero_vad.onnx", "silero_vad_16k_op15.onnx", "magika_standard_v3_3.onnx"):
        with open(os.path.join(DATA, name), "rb") as f:
            out.append((name, f.read(), None))
    import warnings

    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cases = {c.name: c.model for c in collect_testcases(None) if c.name in NODE_TESTS}
    for name in NODE_TESTS:
        out.append((name, cases[name].SerializeToString(), None))
    out.append(("function_model", _function_model().SerializeToString(), None))
    model, data = _external_model()
    out.append(("external_model", model, data))
    return out


# Small seeds are tried more often: they are fast, and their structure is as rich.
def _weights(seed_list) -> list[float]:
    return [1.0 if len(m) > 200_000 else 4.0 for _, m, _ in seed_list]


# ---- mutations ---------------------------------------------------------------------------
_MARK = "\u00ff\u00fe"  # 4 bytes in UTF-8, replaced by invalid UTF-8 of the same length after serializing
_BAD_UTF8 = b"\xff\xfe\xc3\x28"


def _repeated(fd) -> bool:
    is_repeated = getattr(fd, "is_repeated", None)
    return bool(is_repeated) if is_repeated is not None else fd.label == fd.LABEL_REPEATED


def _messages(msg, out, depth=0):
    """Every (message, field descriptor) pair of the tree, for field-level mutations."""
    if depth > 60:
        return
    for fd in msg.DESCRIPTOR.fields:
        out.append((msg, fd))
        if fd.type == fd.TYPE_MESSAGE:
            if _repeated(fd):
                for sub in getattr(msg, fd.name):
                    _messages(sub, out, depth + 1)
            elif msg.HasField(fd.name):
                _messages(getattr(msg, fd.name), out, depth + 1)


def _all_graphs(g, out):
    from graphsurgery.ops import subgraph_protos

    out.append(g)
    for n in g.node:
        for s in subgraph_protos(n):
            _all_graphs(s, out)
    return out


def _all_tensors(m):
    from graphsurgery.serialization import iter_model_tensors
    return list(iter_model_tensors(m))


def _rand_str(rng: random.Random) -> str:
    return rng.choice(["", "x", "y", "a/b", "../up", "/abs", "m.onnx.data", "nul\0byte", _MARK, "w", "b", "c",
                       "If_0", "ai.onnx", "com.microsoft", "local", "\u00e9\u00e8", "x" * 300])


def _field_mutation(m: onnx.ModelProto, rng: random.Random) -> str:
    pairs: list = []
    _messages(m, pairs)
    msg, fd = rng.choice(pairs)
    name = fd.name
    if _repeated(fd):
        seq = getattr(msg, name)
        if len(seq) and rng.random() < 0.5:
            i = rng.randrange(len(seq))
            if rng.random() < 0.5:
                del seq[i]
                return f"del {msg.DESCRIPTOR.name}.{name}[{i}]"
            if fd.type == fd.TYPE_MESSAGE:
                seq.add().CopyFrom(seq[i])
            else:
                seq.append(seq[i])
            return f"dup {msg.DESCRIPTOR.name}.{name}[{i}]"
        if fd.type == fd.TYPE_MESSAGE:
            if len(seq):
                seq.add().CopyFrom(seq[rng.randrange(len(seq))])
            else:
                seq.add()
            return f"add {msg.DESCRIPTOR.name}.{name}"
        value = _scalar(fd, rng)
        try:
            if len(seq) and rng.random() < 0.7:
                i = rng.randrange(len(seq))
                seq[i] = value
                return f"set {msg.DESCRIPTOR.name}.{name}[{i}]={value!r}"
            seq.append(value)
        except ValueError:
            return f"kept {msg.DESCRIPTOR.name}.{name}"
        return f"append {msg.DESCRIPTOR.name}.{name}={value!r}"
    if fd.type == fd.TYPE_MESSAGE:
        if msg.HasField(name) and rng.random() < 0.5:
            msg.ClearField(name)
            return f"clear {msg.DESCRIPTOR.name}.{name}"
        getattr(msg, name).SetInParent()
        return f"touch {msg.DESCRIPTOR.name}.{name}"
    value = _scalar(fd, rng)
    try:
        setattr(msg, name, value)
    except ValueError:  # a closed enum refuses numbers it does not define
        return f"kept {msg.DESCRIPTOR.name}.{name}"
    return f"set {msg.DESCRIPTOR.name}.{name}={value!r}"[:200]


def _scalar(fd, rng: random.Random):
    t = fd.type
    if t == fd.TYPE_STRING:
        return _rand_str(rng)
    if t == fd.TYPE_BYTES:
        return bytes(rng.randrange(256) for _ in range(rng.choice([0, 1, 3, 4, 8, 12, 64])))
    if t == fd.TYPE_BOOL:
        return rng.random() < 0.5
    if t in (fd.TYPE_FLOAT, fd.TYPE_DOUBLE):
        return rng.choice([0.0, -1.0, 1e30, float("nan"), float("inf")])
    if t == fd.TYPE_ENUM:
        return rng.choice([0, 1, 2, 3, 4, 5, 7, 8, 10, 11, 13, 16, 17, 19, 20, 21, 22, 23, 24, 25, 26, 40, 99])
    v = rng.choice(INTERESTING_INTS + [rng.randrange(-5, 40)])
    if t in (fd.TYPE_UINT32, fd.TYPE_FIXED32):
        return v % 2**32
    if t in (fd.TYPE_UINT64, fd.TYPE_FIXED64):
        return v % 2**64
    if t in (fd.TYPE_INT32, fd.TYPE_SINT32, fd.TYPE_SFIXED32):
        return ((v + 2**31) % 2**32) - 2**31
    return ((v + 2**63) % 2**64) - 2**63


def _structure_mutation(m: onnx.ModelProto, rng: random.Random) -> str:
    graphs = _all_graphs(m.graph, [])
    for f in m.functions:
        for n in f.node:
            for a in n.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    _all_graphs(a.g, graphs)
    subs = graphs[1:]
    tensors = _all_tensors(m)
    kind = rng.choice(["dup_init_sub", "redefine_outer", "dtype", "raw_len", "dims", "ext_entries", "ext_two_loc",
                       "rename_input", "swap_nodes", "drop_node", "dup_node", "opset", "bad_utf8_name",
                       "attr_type", "func", "elem_type", "ir", "node_domain", "init_shadow_input"])
    if kind == "dup_init_sub" and subs:
        g = rng.choice(subs)
        src = rng.choice(tensors) if tensors else numpy_helper.from_array(np.zeros(2, np.float32), "z")
        t = g.initializer.add()
        t.CopyFrom(src)
        if g.initializer and rng.random() < 0.7:
            t.name = g.initializer[0].name
        return f"{kind} {t.name!r}"
    if kind == "redefine_outer" and subs:
        g = rng.choice(subs)
        if g.node:
            outer = [n.output[0] for n in m.graph.node if n.output] + [i.name for i in m.graph.input]
            n = rng.choice(list(g.node))
            if n.output and outer:
                n.output[0] = rng.choice(outer)
                return f"{kind} {n.name!r}->{n.output[0]!r}"
    if kind in ("dtype", "raw_len", "dims") and tensors:
        t = rng.choice(tensors)
        if kind == "dtype":
            t.data_type = rng.choice([0, 1, 2, 6, 7, 8, 9, 10, 11, 16, 17, 21, 22, 23, 24, 25, 26, 30, 99, -1])
        elif kind == "raw_len":
            if t.HasField("raw_data"):
                cut = rng.choice([0, 1, 3, len(t.raw_data) // 2, len(t.raw_data) + 1])
                t.raw_data = (t.raw_data + b"\0\0\0\0")[:cut]
            else:
                t.raw_data = b"\1\2\3"
        else:
            if t.dims and rng.random() < 0.5:
                t.dims[rng.randrange(len(t.dims))] = rng.choice([0, -1, 2**40, 3, 1000])
            else:
                t.dims.append(rng.choice([0, 2, 7, -3]))
        return f"{kind} {t.name!r}"
    if kind in ("ext_entries", "ext_two_loc") and tensors:
        t = rng.choice(tensors)
        if kind == "ext_two_loc":
            if not any(e.key == "location" for e in t.external_data):
                t.data_location = TensorProto.EXTERNAL
                t.external_data.add(key="location", value="m.onnx.data")
            t.external_data.add(key="location", value=rng.choice(["other.data", "m.onnx.data", "m.onnx"]))
            return f"{kind} {t.name!r}"
        t.data_location = TensorProto.EXTERNAL
        key = rng.choice(["location", "offset", "length", "checksum", "bogus"])
        val = rng.choice(["m.onnx.data", "m.onnx", "nul\0.data", "../m.onnx.data", "/etc/passwd", "", "0", "-1",
                          "8", "99999999", "1e3", "abc", str(2**64), "108"])
        for e in t.external_data:
            if e.key == key:
                e.value = val
                break
        else:
            t.external_data.add(key=key, value=val)
        return f"{kind} {t.name!r} {key}={val!r}"
    all_nodes = [(g, n) for g in graphs for n in g.node]
    if kind in ("rename_input", "swap_nodes", "drop_node", "dup_node", "attr_type", "node_domain") and all_nodes:
        g, n = rng.choice(all_nodes)
        if kind == "rename_input" and n.input:
            n.input[rng.randrange(len(n.input))] = rng.choice(["nope", "", _MARK, "x"])
        elif kind == "swap_nodes" and len(g.node) > 1:
            i, j = rng.randrange(len(g.node)), rng.randrange(len(g.node))
            a, b = onnx.NodeProto(), onnx.NodeProto()
            a.CopyFrom(g.node[i])
            b.CopyFrom(g.node[j])
            g.node[i].CopyFrom(b)
            g.node[j].CopyFrom(a)
        elif kind == "drop_node":
            g.node.remove(n)
        elif kind == "dup_node":
            g.node.add().CopyFrom(n)
        elif kind == "attr_type" and n.attribute:
            a = rng.choice(list(n.attribute))
            a.type = rng.choice([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 99])
        elif kind == "node_domain":
            n.domain = rng.choice(["", "ai.onnx", "com.microsoft", "local", "nope", _MARK])
            n.op_type = rng.choice([n.op_type, n.op_type, "Nope", "", _MARK])
        return f"{kind} {n.name!r}"
    if kind == "opset":
        op = m.opset_import[rng.randrange(len(m.opset_import))] if m.opset_import else m.opset_import.add()
        op.domain = rng.choice([op.domain, _MARK, "local", "ai.onnx", ""])
        op.version = rng.choice([op.version, 0, -1, 1, 6, 99, 2**40])
        return f"{kind} {op.domain!r}:{op.version}"
    if kind == "bad_utf8_name":
        target = rng.choice(["node", "tensor", "graph", "func", "metadata", "vi"])
        if target == "node" and all_nodes:
            rng.choice(all_nodes)[1].name = _MARK
        elif target == "tensor" and tensors:
            rng.choice(tensors).name = _MARK
        elif target == "graph":
            rng.choice(graphs).name = _MARK
        elif target == "func" and m.functions:
            m.functions[0].domain = _MARK
        elif target == "metadata":
            m.metadata_props.add(key=_MARK, value=_MARK)
        elif m.graph.input:
            m.graph.input[0].name = _MARK
        return f"{kind} {target}"
    if kind == "func" and m.functions:
        f = m.functions[0]
        what = rng.choice(["input", "output", "drop", "dup", "opset"])
        if what == "input" and f.input:
            f.input[0] = rng.choice(["", "nope", f.input[-1]])
        elif what == "output" and f.output:
            f.output[0] = rng.choice(["", "nope", f.input[0] if f.input else "x"])
        elif what == "drop":
            del m.functions[0]
        elif what == "dup":
            m.functions.add().CopyFrom(f)
        else:
            f.opset_import.add(domain=rng.choice(["", "local"]), version=rng.choice([1, 17]))
        return f"{kind} {what}"
    if kind == "elem_type":
        vis = [vi for g in graphs for vi in list(g.input) + list(g.output) + list(g.value_info)]
        if vis:
            vi = rng.choice(vis)
            vi.type.tensor_type.elem_type = rng.choice([0, 1, 7, 9, 30, 99, -5])
            return f"{kind} {vi.name!r}"
    if kind == "ir":
        m.ir_version = rng.choice([1, 2, 3, 4, 7, 8, 10, 11, 12, 99, 2**40])
        return f"{kind} {m.ir_version}"
    if kind == "init_shadow_input" and subs:
        g = rng.choice(subs)
        outer = [i.name for i in m.graph.input] or ["x"]
        t = g.initializer.add()
        t.CopyFrom(numpy_helper.from_array(np.zeros(2, np.float32), rng.choice(outer)))
        return f"{kind} {t.name!r}"
    return _field_mutation(m, rng)


def _byte_mutation(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    buf = bytearray(data)
    kind = rng.choice(["flip", "flip", "truncate", "insert", "delete", "splice"])
    if kind == "flip":
        k = rng.choice([1, 1, 2, 4, 8, 32])
        for _ in range(k):
            i = rng.randrange(len(buf))
            buf[i] ^= 1 << rng.randrange(8) if rng.random() < 0.7 else rng.randrange(1, 256)
        return bytes(buf), f"flip {k}"
    if kind == "truncate":
        cut = rng.randrange(len(buf))
        return bytes(buf[:cut]), f"truncate {cut}"
    if kind == "insert":
        i = rng.randrange(len(buf))
        chunk = bytes(rng.randrange(256) for _ in range(rng.choice([1, 2, 5, 16])))
        return bytes(buf[:i] + chunk + buf[i:]), f"insert {len(chunk)}@{i}"
    if kind == "delete":
        i = rng.randrange(len(buf))
        n = rng.choice([1, 2, 5, 16, 100])
        return bytes(buf[:i] + buf[i + n:]), f"delete {n}@{i}"
    i, j = sorted(rng.randrange(len(buf)) for _ in range(2))
    k = rng.randrange(len(buf))
    return bytes(buf[:k] + buf[i:j] + buf[k:]), f"splice {i}:{j}@{k}"


def mutate(seed_list, base_seed: int, index: int) -> tuple[str, str, bytes, bytes | None]:
    """Try ``index``: (seed name, mutation description, model bytes, data bytes or None)."""
    rng = random.Random(base_seed * 1_000_003 + index)
    only = os.environ.get("GS_FUZZ_ONLY")
    if only:
        seed_list = [s for s in seed_list if s[0].startswith(only)]
    name, model, data = rng.choices(seed_list, weights=_weights(seed_list))[0]
    kind = rng.choice(["bytes", "field", "field", "structure", "structure", "structure", "data"])
    if kind == "data" and data is None:
        kind = "structure"
    if kind == "bytes":
        out, desc = _byte_mutation(model, rng)
        return name, desc, out, data
    if kind == "data":
        buf = bytearray(data)
        what = rng.choice(["truncate", "extend", "empty"])
        if what == "truncate":
            buf = buf[:rng.randrange(len(buf))]
        elif what == "extend":
            buf += b"\0" * rng.choice([1, 8, 64])
        else:
            buf = bytearray()
        return name, f"data {what}", model, bytes(buf)
    proto = onnx.ModelProto()
    proto.ParseFromString(model)
    steps = []
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        try:
            steps.append(_field_mutation(proto, rng) if kind == "field" else _structure_mutation(proto, rng))
        except ValueError:  # protobuf refused the value (a closed enum): no change
            steps.append("refused by protobuf")
    out = proto.SerializeToString()
    mark = _MARK.encode()
    if mark in out:
        out = out.replace(mark, _BAD_UTF8)
    return name, f"{kind}: " + "; ".join(steps), out, data


# ---- one try -----------------------------------------------------------------------------
def pipeline(folder: str) -> str:
    """load -> save (no check before: the save's own checks) -> load -> check -> inspect ->
    fidelity snapshot -> read tensors -> save (after a check: what it remembers) -> reload,
    check, read. Returns "accepted" or "refused"; raises what escaped; returns
    "saved-invalid: ..." when a saved model fails check()."""
    import graphsurgery as gs
    from graphsurgery import serialization, summary, tensors
    from graphsurgery.passes.base import fidelity_snapshot

    path = os.path.join(folder, "m.onnx")
    out_dir = os.path.join(folder, "out")
    direct = os.path.join(folder, "direct")
    os.mkdir(out_dir)
    os.mkdir(direct)
    try:
        gs.load(path).save(os.path.join(direct, "saved.onnx"))
    except gs.GraphSurgeryError:
        pass
    try:
        model = gs.load(path)
        model.problems()
        summary.format_text(summary.summarize(model, check=False))
        fidelity_snapshot(model.proto)
        for t in list(serialization.iter_model_tensors(model.proto)):
            tensors.to_numpy(t, model.base_dir)
        out = os.path.join(out_dir, "saved.onnx")
        model.save(out)
    except gs.GraphSurgeryError:
        out = None
    outcome = "refused"
    for saved in (os.path.join(direct, "saved.onnx"), out):
        if saved is None or not os.path.exists(saved):
            continue
        again = gs.load(saved)
        found = again.problems()
        if found:
            return "saved-invalid: " + found[0][:300]
        for t in list(serialization.iter_model_tensors(again.proto)):
            tensors.to_numpy(t, again.base_dir)
        if saved == out:
            outcome = "accepted"
    return outcome


def _write_try(folder: str, model: bytes, data: bytes | None) -> None:
    with open(os.path.join(folder, "m.onnx"), "wb") as f:
        f.write(model)
    if data is not None:
        with open(os.path.join(folder, "m.onnx.data"), "wb") as f:
            f.write(data)


def worker(base_seed: int, seed_file: str) -> None:
    """Read try indices on stdin, answer one JSON line per try on stdout."""
    import pickle
    import warnings
    warnings.simplefilter("ignore")
    with open(seed_file, "rb") as f:
        seed_list = pickle.load(f)
    scratch = tempfile.mkdtemp(prefix="gs-fuzz-")
    out = sys.stdout
    for line in sys.stdin:
        index = int(line)
        folder = os.path.join(scratch, str(index))
        os.mkdir(folder)
        name = desc = ""
        try:
            name, desc, model, data = mutate(seed_list, base_seed, index)
            _write_try(folder, model, data)
            outcome = pipeline(folder)
            detail = ""
            if outcome.startswith("saved-invalid"):
                outcome, detail = "saved-invalid", outcome.split(": ", 1)[1]
        except Exception as exc:  # noqa: BLE001 - classifying what escaped is the point
            outcome = "foreign"
            detail = f"{type(exc).__module__}.{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
        shutil.rmtree(folder, ignore_errors=True)
        out.write(json.dumps({"i": index, "seed": name, "mutation": desc[:300], "outcome": outcome,
                              "detail": detail}) + "\n")
        out.flush()
    shutil.rmtree(scratch, ignore_errors=True)


# ---- the driver ----------------------------------------------------------------------------
class Runner:
    """One worker subprocess answering tries one at a time, restarted after it dies or hangs."""

    def __init__(self, base_seed: int, timeout: float, seed_file: str):
        self.base_seed, self.timeout, self.seed_file = base_seed, timeout, seed_file
        self.proc = None

    def _start(self):
        env = dict(os.environ, PYTHONHASHSEED="0", OMP_NUM_THREADS="1")
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--worker", "--seed",
                                      str(self.base_seed), "--seed-file", self.seed_file], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, env=env, start_new_session=True)

    def run(self, index: int, seed_list) -> dict:
        extra = 0.0
        if self.proc is None or self.proc.poll() is not None:
            self._start()
            extra = 60.0  # a fresh worker imports onnx and reads the seeds first
        self.proc.stdin.write(f"{index}\n".encode())
        self.proc.stdin.flush()
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + self.timeout + extra
        line = b""
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            ready, _, _ = select.select([fd], [], [], max(left, 0))
            if not ready:
                self._kill()
                name, desc, _, _ = mutate(seed_list, self.base_seed, index)
                return {"i": index, "seed": name, "mutation": desc[:300], "outcome": "hang",
                        "detail": f"no answer in {self.timeout:.0f} s"}
            chunk = os.read(fd, 65536)
            if not chunk:
                code = self.proc.wait()
                self.proc = None
                name, desc, _, _ = mutate(seed_list, self.base_seed, index)
                sig = -code if code < 0 else None
                what = signal.Signals(sig).name if sig else f"exit status {code}"
                return {"i": index, "seed": name, "mutation": desc[:300], "outcome": "abort", "detail": what}
            line += chunk
        return json.loads(line)

    def _kill(self):
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()
            self.proc = None

    def close(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._kill()
        self.proc = None


def run(tries: int, base_seed: int = 1, jobs: int = 1, timeout: float = 20.0, start: int = 0,
        on_result=None) -> list[dict]:
    """Run tries ``start .. start+tries-1`` on ``jobs`` workers; every result, in index order."""
    import pickle

    seed_list = seeds()
    scratch = tempfile.mkdtemp(prefix="gs-fuzz-seeds-")
    seed_file = os.path.join(scratch, "seeds.pickle")
    with open(seed_file, "wb") as f:
        pickle.dump(seed_list, f)
    results: list[dict] = []
    lock = threading.Lock()
    indices = list(range(start, start + tries))

    def drive(chunk):
        r = Runner(base_seed, timeout, seed_file)
        try:
            for i in chunk:
                res = r.run(i, seed_list)
                with lock:
                    results.append(res)
                    if on_result is not None:
                        on_result(res)
        finally:
            r.close()

    threads = [threading.Thread(target=drive, args=(indices[k::jobs],)) for k in range(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    shutil.rmtree(scratch, ignore_errors=True)
    return sorted(results, key=lambda r: r["i"])


BAD = ("foreign", "abort", "hang", "saved-invalid")


def report(results: list[dict], examples: int = 5) -> str:
    counts: dict[str, int] = {}
    for r in results:
        counts[r["outcome"]] = counts.get(r["outcome"], 0) + 1
    lines = [f"{len(results)} tries: " + ", ".join(f"{k} {counts.get(k, 0)}" for k in
                                                   ("accepted", "refused", *BAD))]
    for kind in BAD:
        bad = [r for r in results if r["outcome"] == kind]
        if not bad:
            continue
        by_detail: dict[str, list[dict]] = {}
        for r in bad:
            key = r["detail"].split(":")[0] if kind == "foreign" else r["detail"][:80]
            by_detail.setdefault(key, []).append(r)
        lines.append(f"{kind}: {len(bad)}")
        for key, rs in sorted(by_detail.items(), key=lambda kv: -len(kv[1]))[:examples * 3]:
            r = rs[0]
            lines.append(f"  {len(rs):5d} x {key}  (e.g. try {r['i']}, {r['seed']}, {r['mutation'][:90]}: "
                         f"{r['detail'][:160]})")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tries", type=int, default=2000)
    p.add_argument("--start", type=int, default=0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--timeout", type=float, default=20.0)
    p.add_argument("--only", help="fuzz only the seed models whose name starts with this")
    p.add_argument("--json", help="write every result to this file, one JSON object a line")
    p.add_argument("--replay", type=int, help="run one try in this process and show what escaped")
    p.add_argument("--write", type=int, help="write the mutated files of one try to --out")
    p.add_argument("--out", default=".")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--seed-file", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.only:
        os.environ["GS_FUZZ_ONLY"] = a.only
    if a.worker:
        worker(a.seed, a.seed_file)
        return 0
    if a.replay is not None or a.write is not None:
        index = a.replay if a.replay is not None else a.write
        name, desc, model, data = mutate(seeds(), a.seed, index)
        print(f"try {index}: {name}: {desc}")
        if a.write is not None:
            os.makedirs(a.out, exist_ok=True)
            _write_try(a.out, model, data)
            return 0
        with tempfile.TemporaryDirectory() as folder:
            _write_try(folder, model, data)
            try:
                print(pipeline(folder))
            except Exception:  # noqa: BLE001
                traceback.print_exc()
                return 1
        return 0
    t0 = time.monotonic()
    results = run(a.tries, a.seed, a.jobs, a.timeout, a.start)
    if a.json:
        with open(a.json, "w") as f:
            for r in results:
                f.write(json.dumps(r) + "\n")
    print(report(results))
    print(f"{time.monotonic() - t0:.0f} s, seed {a.seed}, tries {a.start}..{a.start + a.tries - 1}")
    return 1 if any(r["outcome"] in BAD for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
