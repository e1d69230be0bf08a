#!/usr/bin/env python3
"""graphsurgery's optimisation against the peer tools on a corpus of real models.

    python scripts/build_corpus.py corpus/
    python benchmarks/peers.py corpus/                      # every model, every tool
    python benchmarks/peers.py corpus/ --only bert,gpt2 --tools graphsurgery,onnxslim

For each model of the corpus (``MANIFEST.json``; the inputs in ``NAME.onnx.inputs.npz``) every
tool gets the same fixed input shapes, those of the stored inputs, and runs in a subprocess of
its own with a time limit. Its result is checked in another subprocess (a wrong model can crash
onnxruntime): onnx's checker, then onnxruntime (graph optimisations off, so the tool is measured,
not onnxruntime) on the stored inputs against the original's outputs, with graphsurgery's
comparator: equal when ``|a - e| <= 1e-6 + 1e-5 * max|e|`` (float16 outputs: ``1e-3``).

Recorded per model and tool: nodes after (all graphs, subgraphs included), ``If``/``Loop``/``Scan``
left, maximum absolute and relative difference, seconds, and a status: ``ok``, ``wrong``
(outputs differ), ``invalid`` (the checker or onnxruntime rejects the result), ``crash`` (the
tool raised or died), ``timeout``. Results go to a JSON file, written after every model, and a
markdown table is regenerated between markers in the docs page (``--doc``).

Tools: ``graphsurgery`` (``graphsurgery.optimize`` when the package has it, otherwise the
pipeline ``set-shape,fold-constants,remove-if,eliminate-noops,fuse-conv-bn,cleanup``), ``onnxsim``,
``onnxslim``, ``onnxscript`` (``onnxscript.optimizer.optimize``) and ``polygraphy``
(``polygraphy surgeon sanitize --fold-constants``). Install them with ``pip install -e ".[bench]"``.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import subprocess
import sys
import tempfile
import time

TOOLS = ["graphsurgery", "onnxsim", "onnxslim", "onnxscript", "polygraphy"]
PACKAGES = {"graphsurgery": "graphsurgery", "onnxsim": "onnxsim", "onnxslim": "onnxslim",
            "onnxscript": "onnxscript", "polygraphy": "polygraphy", "onnx": "onnx", "onnxruntime": "onnxruntime"}
CHAIN = "fold-constants,remove-if,eliminate-noops,fuse-conv-bn,cleanup"
START, END = "<!-- peers-table:start -->", "<!-- peers-table:end -->"
CONTROL = ("If", "Loop", "Scan")


# ---------------------------------------------------------------- the tools (run in a child process)
def fix_dims(proto, shapes: dict) -> None:
    """Write the fixed shapes into the graph inputs' declared dims and nothing else, for tools
    without an option of their own."""
    for vi in proto.graph.input:
        if vi.name in shapes and vi.type.HasField("tensor_type"):
            dims = vi.type.tensor_type.shape
            dims.ClearField("dim")
            for d in shapes[vi.name]:
                dims.dim.add().dim_value = int(d)


def graphsurgery_optimize(proto, shapes: dict):
    """graphsurgery's best default: ``graphsurgery.optimize`` once it exists, the pass chain
    before that; both after ``set-shape`` fixes the input shapes."""
    import graphsurgery
    from graphsurgery.passes import Pipeline, create

    fixed = {name: "x".join(str(d) for d in dims) for name, dims in shapes.items() if len(dims)}
    if fixed:
        proto = Pipeline([create("set-shape", **fixed)])(proto)
    if hasattr(graphsurgery, "optimize"):
        return graphsurgery.optimize(proto)
    return Pipeline.from_text(CHAIN)(proto)


def run_tool(tool: str, src: str, dst: str, shapes: dict) -> float:
    """Run one tool on ``src``, write ``dst``; return the seconds it took (loading and saving
    included, imports not)."""
    import onnx

    if tool == "polygraphy":
        cmd = [sys.executable, "-c", "import sys; from polygraphy.tools import main; sys.exit(main())",
               "surgeon", "sanitize", src, "--fold-constants", "-o", dst]
        over = [f"{n}:{list(d)}".replace(" ", "") for n, d in shapes.items()]
        if over:
            cmd += ["--override-input-shapes", *over]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode:
            tail = (proc.stderr or proc.stdout).strip().splitlines()
            raise RuntimeError(tail[-1] if tail else f"exit {proc.returncode}")
        return time.perf_counter() - t0
    if tool == "onnxsim":
        import onnxsim
    elif tool == "onnxslim":
        import onnxslim
    elif tool == "onnxscript":
        import onnxscript.optimizer
    elif tool == "graphsurgery":
        import graphsurgery  # noqa: F401
    else:
        raise ValueError(f"unknown tool {tool!r}; tools: {', '.join(TOOLS)}")
    t0 = time.perf_counter()
    proto = onnx.load(src)
    if tool == "onnxsim":
        out, ok = onnxsim.simplify(proto, overwrite_input_shapes={n: list(d) for n, d in shapes.items()})
        if not ok:
            raise RuntimeError("onnxsim's own check failed")
    elif tool == "onnxslim":
        out = onnxslim.slim(proto, input_shapes=[f"{n}:{','.join(map(str, d))}" for n, d in shapes.items() if len(d)])
    elif tool == "onnxscript":
        fix_dims(proto, shapes)
        out = onnxscript.optimizer.optimize(proto)
    else:
        out = graphsurgery_optimize(proto, shapes)
    onnx.save(out, dst)
    return time.perf_counter() - t0


# ---------------------------------------------------------------- checks (child processes)
def _session(path: str):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 4
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def _outputs(path: str, feeds: dict) -> list:
    sess = _session(path)
    names = [o.name for o in sess.get_outputs()]
    wanted = {i.name for i in sess.get_inputs()}
    return list(zip(names, sess.run(None, {k: v for k, v in feeds.items() if k in wanted}), strict=True))


def count(path: str) -> dict:
    import onnx

    proto = onnx.load(path, load_external_data=False)
    nodes, ops = 0, dict.fromkeys(CONTROL, 0)

    def walk(graph):
        nonlocal nodes
        for node in graph.node:
            nodes += 1
            if node.op_type in ops and node.domain in ("", "ai.onnx"):
                ops[node.op_type] += 1
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    walk(attr.g)
                for g in attr.graphs:
                    walk(g)

    walk(proto.graph)
    return {"nodes": nodes, "top_nodes": len(proto.graph.node), **{k.lower(): v for k, v in ops.items()}}


def check(result: str, inputs: str, reference: str) -> dict:
    """The result against the reference outputs: checker, onnxruntime, comparison."""
    import numpy as np
    import onnx

    from graphsurgery.verify import compare

    info = count(result)
    try:
        onnx.checker.check_model(result)
    except Exception as exc:  # the checker's verdict is what is recorded
        return {**info, "status": "invalid", "why": "checker: " + _line(exc)}
    with np.load(inputs) as z:
        feeds = {k: z[k] for k in z.files}
    try:
        got = _outputs(result, feeds)
    except Exception as exc:
        return {**info, "status": "invalid", "why": "onnxruntime: " + _line(exc)}
    with open(reference, "rb") as f:
        want = pickle.load(f)
    names = [n for n, _ in want]
    got_names = [n for n, _ in got]
    if sorted(got_names) != sorted(names) and len(got) == len(want):  # renamed outputs: by position
        got = [(n, v) for (n, _), (_, v) in zip(want, got, strict=True)]
    got_d, max_abs, max_rel, bad = dict(got), 0.0, 0.0, []
    for name, e in want:
        rtol = 1e-3 if np.asarray(e).dtype == np.float16 else 1e-5
        (d,) = compare({name: e}, {name: got_d[name]} if name in got_d else {}, rtol=rtol)
        max_abs, max_rel = max(max_abs, d.max_abs), max(max_rel, d.max_rel)
        if not d.ok:
            bad.append(f"{name}: {d.why or f'max rel {d.max_rel:.2g}'}")
    status = "wrong" if bad else "ok"
    return {**info, "status": status, "max_abs": max_abs, "max_rel": max_rel, "why": "; ".join(bad)[:300]}


def _line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200] if text else ''}"


def _child(argv: list[str]) -> int:
    what = argv[0]
    if what == "run":
        tool, src, dst, shapes = argv[1], argv[2], argv[3], json.loads(argv[4])
        try:
            seconds = run_tool(tool, src, dst, shapes)
        except Exception as exc:  # recorded as the tool's crash
            print(json.dumps({"status": "crash", "why": _line(exc)}))
            return 0
        print(json.dumps({"seconds": seconds}))
    elif what == "reference":
        src, inputs, dst = argv[1:4]
        import numpy as np

        with np.load(inputs) as z:
            feeds = {k: z[k] for k in z.files}
        with open(dst, "wb") as f:
            pickle.dump(_outputs(src, feeds), f)
        print(json.dumps(count(src)))
    elif what == "check":
        print(json.dumps(check(*argv[1:4])))
    return 0


def _call(args: list[str], timeout: float) -> tuple[dict | None, str]:
    try:
        proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", *args], capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, "timeout"
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode or not lines:
        tail = proc.stderr.strip().splitlines()
        return None, f"exit {proc.returncode}: {tail[-1][:200] if tail else ''}"
    return json.loads(lines[-1]), ""


# ---------------------------------------------------------------- driver
def versions() -> dict:
    from importlib import metadata

    out = {}
    for label, dist in PACKAGES.items():
        try:
            out[label] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[label] = "not installed"
    out["python"] = sys.version.split()[0]
    return out


def bench_model(corpus: str, entry: dict, tools: list[str], timeout: float, tmp: str) -> dict:
    import numpy as np

    src = os.path.join(corpus, entry["file"])
    inputs = src + ".inputs.npz"
    row = {"file": entry["file"], "category": entry.get("category", ""), "tools": {}}
    if not os.path.exists(inputs):
        row["skipped"] = "no stored inputs"
        return row
    with np.load(inputs) as z:
        shapes = {k: list(z[k].shape) for k in z.files}
    row["shapes"] = shapes
    ref = os.path.join(tmp, "reference.pkl")
    before, why = _call(["reference", src, inputs, ref], timeout)
    if before is None:
        row["skipped"] = f"the original does not run: {why}"
        return row
    row["before"] = before
    for tool in tools:
        dst = os.path.join(tmp, f"{tool}.onnx")
        if os.path.exists(dst):
            os.remove(dst)
        t0 = time.perf_counter()
        ran, why = _call(["run", tool, src, dst, json.dumps(shapes)], timeout)
        wall = time.perf_counter() - t0
        if ran is None:
            rec = {"status": "timeout" if why == "timeout" else "crash", "why": why, "wall": wall}
        elif "status" in ran:
            rec = {**ran, "wall": wall}
        else:
            rec = {"seconds": ran["seconds"], "wall": wall}
            checked, why = _call(["check", dst, inputs, ref], timeout)
            rec.update(checked if checked is not None else {"status": "invalid", "why": f"check died: {why}"})
            rec["bytes"] = os.path.getsize(dst)
        if rec.get("why"):  # messages name the result by its file name, not by the temporary folder
            rec["why"] = rec["why"].replace(tmp + os.sep, "")
        row["tools"][tool] = rec
        print(f"  {tool:12s} {rec['status']:8s} {rec.get('nodes', '-')!s:>6} nodes  {rec['wall']:6.1f} s  "
              f"{rec.get('why', '')[:100]}", file=sys.stderr, flush=True)
    return row


def cell(rec: dict | None, best: int | None) -> str:
    if rec is None:
        return "–"
    if rec["status"] != "ok":
        extra = f" {rec['max_rel']:.1g}" if rec["status"] == "wrong" and rec.get("max_rel", 0) < float("inf") else ""
        return f"**{rec['status']}**{extra}"
    text = str(rec["nodes"])
    if best is not None and rec["nodes"] == best:
        text = f"**{text}**"
    left = [f"{rec[k.lower()]} {k}" for k in CONTROL if rec.get(k.lower())]
    return text + (f" ({', '.join(left)})" if left else "")


def table(rows: list[dict], tools: list[str], info: dict, missing: list[str] = ()) -> str:
    out = [f"Measured {info['date']} on {len(rows)} models; versions: "
           + ", ".join(f"{k} {v}" for k, v in info["versions"].items()) + f". graphsurgery ran {info['graphsurgery']}.",
           "",
           "Nodes after (all graphs; `If`/`Loop`/`Scan` left in brackets). Bold: fewest nodes among correct "
           "results. **wrong** gives the maximum relative difference.", "",
           "| model | nodes before | " + " | ".join(tools) + " |",
           "|---|---:|" + "---:|" * len(tools)]
    wins = total = 0
    for row in rows:
        if "before" not in row:
            out.append(f"| {row['file']} | {row.get('skipped', '')} |" + " |" * len(tools))
            continue
        b = row["before"]
        left = [f"{b[k.lower()]} {k}" for k in CONTROL if b.get(k.lower())]
        ok = {t: r["nodes"] for t, r in row["tools"].items() if r["status"] == "ok"}
        best = min(ok.values()) if ok else None
        peers = [n for t, n in ok.items() if t != "graphsurgery"]
        if "graphsurgery" in row["tools"]:
            total += 1
            wins += "graphsurgery" in ok and (not peers or ok["graphsurgery"] <= min(peers))
        out.append(f"| {row['file']} | {b['nodes']}" + (f" ({', '.join(left)})" if left else "") + " | "
                   + " | ".join(cell(row["tools"].get(t), best) for t in tools) + " |")
    if missing:
        out += ["", f"Not measured in this run ({len(missing)}; `--resume` measures them): "
                + ", ".join(missing) + "."]
    out += ["", f"graphsurgery correct and at or below the best correct peer's node count: {wins} of {total} models.",
            "", "Seconds (the tool's own run, loading and saving included) and maximum relative difference:", "",
            "| model | " + " | ".join(tools) + " |", "|---|" + "---:|" * len(tools)]
    for row in rows:
        if "before" not in row:
            continue
        cells = []
        for t in tools:
            r = row["tools"].get(t)
            if r is None:
                cells.append("–")
            elif "seconds" not in r:
                cells.append(f"{r['status']} ({r['wall']:.0f} s)")
            elif r["status"] != "ok":
                cells.append(f"{r['seconds']:.1f} s, {r['status']}")
            else:
                cells.append(f"{r['seconds']:.1f} s, {r.get('max_rel', float('nan')):.0e}")
        out.append(f"| {row['file']} | " + " | ".join(cells) + " |")
    failures = [(row["file"], t, r) for row in rows for t, r in row.get("tools", {}).items() if r["status"] != "ok"]
    if failures:
        out += ["", "Failures:", ""]
        out += [f"- {f} — {t}: {r['status']}: {r.get('why', '')}".rstrip(": ").replace("|", "/")
                for f, t, r in failures]
    return "\n".join(out)


def write_doc(doc: str, text: str) -> None:
    with open(doc) as f:
        page = f.read()
    if START not in page or END not in page:
        raise SystemExit(f"{doc}: no {START} ... {END} markers to put the table between")
    head, rest = page.split(START, 1)
    _, tail = rest.split(END, 1)
    with open(doc, "w") as f:
        f.write(f"{head}{START}\n{text}\n{END}{tail}")


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--child":
        return _child(argv[1:])
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("corpus", help="a folder made by scripts/build_corpus.py (with MANIFEST.json)")
    ap.add_argument("--tools", default=",".join(TOOLS), help="comma-separated, from: " + ", ".join(TOOLS))
    ap.add_argument("--only", help="comma-separated substrings of model paths to keep")
    ap.add_argument("--timeout", type=float, default=600, help="seconds per tool and model (default 600)")
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--json", default=os.path.join(here, "..", "docs", "benchmarks.json"), help="results file")
    ap.add_argument("--doc", default=os.path.join(here, "..", "docs", "benchmarks.md"),
                    help="page whose table is regenerated ('' for none)")
    ap.add_argument("--resume", action="store_true", help="keep the results of models already in --json")
    ap.add_argument("--table-only", action="store_true",
                    help="measure nothing: regenerate the table from --json, listing models it lacks as not measured")
    args = ap.parse_args(argv)
    tools = [t for t in args.tools.split(",") if t]
    for t in tools:
        if t not in TOOLS:
            ap.error(f"unknown tool {t!r}; tools: {', '.join(TOOLS)}")
    with open(os.path.join(args.corpus, "MANIFEST.json")) as f:
        manifest = json.load(f)
    if args.only:
        keep = args.only.split(",")
        manifest = [e for e in manifest if any(k in e["file"] for k in keep)]
    import graphsurgery

    info = {"date": time.strftime("%Y-%m-%d"), "versions": versions(),
            "graphsurgery": "graphsurgery.optimize" if hasattr(graphsurgery, "optimize") else f"set-shape,{CHAIN}",
            "timeout": args.timeout}
    done = {}
    if args.resume and os.path.exists(args.json):
        with open(args.json) as f:
            done = {r["file"]: r for r in json.load(f)["models"]}
    if args.table_only:
        with open(args.json) as f:
            saved = json.load(f)
        have = {r["file"] for r in saved["models"]}
        missing = [e["file"] for e in manifest if e["file"] not in have]
        write_doc(args.doc, table(saved["models"], tools, saved["info"], missing))
        return 0
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for entry in manifest:
            if entry["file"] in done:
                rows.append(done[entry["file"]])
                continue
            print(f"{entry['file']}:", file=sys.stderr, flush=True)
            rows.append(bench_model(args.corpus, entry, tools, args.timeout, tmp))
            with open(args.json, "w") as f:
                json.dump({"info": info, "models": rows}, f, indent=1)
    if args.doc:
        write_doc(args.doc, table(rows, tools, info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
