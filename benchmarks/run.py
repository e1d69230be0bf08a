"""Load → index → set an attribute on every node of one op type → save, per tool.

    python benchmarks/generate.py benchmarks/out
    python benchmarks/run.py benchmarks/out [--runs 3] [--tools raw,graphsurgery,onnx-graphsurgeon,onnx-ir]

Each measurement runs in a fresh subprocess; it reports wall time (median of --runs) and the
peak resident memory growth over the process's state after imports, plus ratios against raw
protobuf (onnx.load / edit the proto / onnx.save) measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

CASES = {
    # name: (file, op type, attribute, value)
    "cnn": ("cnn.onnx", "Conv", "group", 1),
    "small_ops": ("small_ops.onnx", "LeakyRelu", "alpha", 0.02),
    "transformer": ("transformer/model.onnx", "Softmax", "axis", -1),
}


def _rss_mib() -> float:
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _current_rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _onnx_save(m, out: str, external: bool) -> None:
    import onnx

    if external:
        onnx.save(m, out, save_as_external_data=True, location="out.onnx.data")
    else:
        onnx.save(m, out)


def one(tool: str, path: str, op: str, attr: str, value, out_dir: str) -> dict:
    """Run in a child process: import the tool, then time the round."""
    import time

    import onnx

    external = os.path.exists(path + ".data")
    out = os.path.join(out_dir, "out.onnx")
    if tool.startswith("graphsurgery"):
        import graphsurgery as gs
    elif tool == "onnx-graphsurgeon":
        import onnx_graphsurgeon as ogs
    elif tool == "onnx-ir":
        import onnx_ir as ir
    base = _current_rss_mib()
    t0 = time.perf_counter()
    if tool == "raw":
        m = onnx.load(path)
        for n in m.graph.node:
            if n.op_type == op:
                for a in n.attribute:
                    if a.name == attr:
                        a.CopyFrom(onnx.helper.make_attribute(attr, value))
                        break
                else:
                    n.attribute.append(onnx.helper.make_attribute(attr, value))
        _onnx_save(m, out, external)
    elif tool in ("graphsurgery", "graphsurgery+index"):
        m = gs.load(path)
        if tool == "graphsurgery+index":  # pay for the full producer/consumer index, as structural edits do
            m.graph.consumers(m.graph.input_names[0])
        for n in m.graph.find_nodes(op):
            n.attrs[attr] = value
        m.save(out)
    elif tool == "onnx-graphsurgeon":
        g = ogs.import_onnx(onnx.load(path))
        for n in g.nodes:
            if n.op == op:
                n.attrs[attr] = value
        _onnx_save(ogs.export_onnx(g), out, external)
    elif tool == "onnx-ir":
        m = ir.load(path)
        make = ir.AttrInt64 if isinstance(value, int) else ir.AttrFloat32
        for n in m.graph:
            if n.op_type == op:
                n.attributes[attr] = make(attr, value)
        ir.save(m, out, external_data="out.onnx.data" if external else None)
    else:
        raise SystemExit(f"unknown tool {tool}")
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "peak_mib": _rss_mib() - base}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("models", nargs="?", default="benchmarks/out")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--tools", default="raw,graphsurgery,graphsurgery+index,onnx-graphsurgeon,onnx-ir")
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        tool, path, op, attr, value = args.child
        value = json.loads(value)
        with tempfile.TemporaryDirectory(dir=os.path.dirname(path)) as d:
            print(json.dumps(one(tool, path, op, attr, value, d)))
        return
    results = {}
    for case in args.cases.split(","):
        file, op, attr, value = CASES[case]
        path = os.path.join(args.models, file)
        if not os.path.exists(path):
            raise SystemExit(f"{path} is missing: run python benchmarks/generate.py {args.models} first")
        for tool in args.tools.split(","):
            runs = []
            for _ in range(args.runs):
                r = subprocess.run([sys.executable, __file__, "--child", tool, path, op, attr, json.dumps(value)],
                                   capture_output=True, text=True)
                if r.returncode:
                    runs = None
                    print(f"{case:12} {tool:18} failed: {r.stderr.strip().splitlines()[-1:]}", flush=True)
                    break
                runs.append(json.loads(r.stdout))
            if runs:
                res = {"seconds": statistics.median(x["seconds"] for x in runs),
                       "peak_mib": statistics.median(x["peak_mib"] for x in runs)}
                results[(case, tool)] = res
                print(f"{case:12} {tool:18} {res['seconds']:7.2f} s  {res['peak_mib']:8.0f} MiB", flush=True)
    print()
    print("| model | tool | time (s) | peak memory (MiB) | time vs raw | memory vs raw |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for (case, tool), r in results.items():
        raw = results.get((case, "raw"))
        ratio = (f"{r['seconds'] / raw['seconds']:.2f}×", f"{r['peak_mib'] / raw['peak_mib']:.2f}×") if raw else ("-", "-")
        print(f"| {case} | {tool} | {r['seconds']:.2f} | {r['peak_mib']:.0f} | {ratio[0]} | {ratio[1]} |")


if __name__ == "__main__":
    main()
