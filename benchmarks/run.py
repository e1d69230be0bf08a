"""graphsurgery against raw protobuf, onnx-graphsurgeon and onnx-ir, in one run.

    python benchmarks/run.py [MODELS_DIR] [--runs 3] [--limit 300] [--markdown FILE] [--json FILE]
                             [--sections structural,small,transformer,cli,import,pipeline]
                             [--cnn-blocks 3000,6000,12000] [--pipeline-blocks 3000,6000,12000,24000]
                             [--tools raw,graphsurgery,onnx-graphsurgeon,onnx-ir]

Missing models are generated first (benchmarks/generate.py). Every measurement runs in a fresh
subprocess: the tool is imported, then load → edit → save is timed; peak memory is the growth
of peak resident memory over the process's state after imports. A measurement that exceeds
--limit seconds is stopped and reported as "> limit"; one whose first run takes longer than
--repeat-under seconds is not repeated. Every tool's saved result is checked in a separate
process (see checks.py); a result that differs from raw protobuf's is flagged in the table.
See benchmarks/README.md for what each section and column means.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import generate
import workloads

HERE = os.path.dirname(os.path.abspath(__file__))
SECTIONS = ("structural", "small", "transformer", "cli", "import", "pipeline")
CLI_PASS = "instancenorm-epsilon(epsilon=0.001)"
RAW_CLI = """import sys, onnx
m = onnx.load(sys.argv[1])
for n in m.graph.node:
    if n.op_type == "InstanceNormalization":
        keep = [a for a in n.attribute if a.name != "epsilon"]
        del n.attribute[:]
        n.attribute.extend(keep + [onnx.helper.make_attribute("epsilon", 0.001)])
onnx.save(m, sys.argv[2])
"""


def _loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def _current_rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


# =====================================================================
# children
# =====================================================================
def child_time(job: dict) -> dict:
    """Import the tool, then time one job (in this fresh process)."""
    import resource

    import onnx  # noqa: F401  (every tool needs it; importing it is not the edit)
    import onnx.helper  # noqa: F401
    if job["kind"] == "load-save":  # raw protobuf's load and save: the floor of any pipeline
        return _time_load_save(job)
    if job["tool"] == "graphsurgery":
        import graphsurgery  # noqa: F401
        import graphsurgery.passes  # noqa: F401
    elif job["tool"] == "onnx-graphsurgeon":
        import onnx_graphsurgeon  # noqa: F401
    elif job["tool"] == "onnx-ir":
        import onnx_ir  # noqa: F401
        import onnx_ir.passes.common  # noqa: F401
    base = _current_rss_mib()
    reset = _reset_peak_rss()
    t0 = time.perf_counter()
    workloads.run(job["kind"], job["tool"], job["src"], job["dst"], job["spec"])
    seconds = time.perf_counter() - t0
    peak = _peak_rss_mib() if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": seconds, "peak_mib": peak - base}


def _time_load_save(job: dict) -> dict:
    import onnx

    base = _current_rss_mib()
    reset = _reset_peak_rss()
    t0 = time.perf_counter()
    onnx.save(onnx.load(job["src"]), job["dst"])
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "peak_mib": (_peak_rss_mib() if reset else base) - base}


def _reset_peak_rss() -> bool:
    """Start the peak resident memory afresh (Linux), so what imports allocated and freed does not
    hide the job's own peak. False where the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise OSError("no VmHWM in /proc/self/status")


def child_check(job: dict) -> dict:
    import checks

    spec = workloads.SPECS.get(job["spec"])
    attr = (spec.attr if isinstance(spec, workloads.Structural) else (spec.op, spec.name, spec.value)) if spec else None
    out = {"summary": checks.summary(job["dst"], attr)}
    if job.get("reference"):
        out["max_difference"] = checks.max_difference(job["dst"], job["reference"])
    if job.get("external"):
        import onnx

        onnx.checker.check_model(job["dst"])
        out["external_differences"] = checks.external_data_differences(job["src"], job["dst"])
        out["files"] = sorted(os.listdir(os.path.dirname(job["dst"])))
    return out


def _child(mode: str, job: dict, timeout: float | None) -> dict:
    """Run a child; returns its JSON, {"timeout": True} or {"error": last line of stderr}."""
    cmd = [sys.executable, os.path.abspath(__file__), "--" + mode, json.dumps(job)]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"timeout": True}
    if r.returncode:
        lines = [x for x in r.stderr.strip().splitlines() if x.strip()]
        return {"error": lines[-1] if lines else f"exit code {r.returncode}"}
    return json.loads(r.stdout.strip().splitlines()[-1])


def _nodes(path: str) -> str:
    import onnx

    return f"{len(onnx.load(path, load_external_data=False).graph.node):,} nodes"


# =====================================================================
# the driver
# =====================================================================
class Bench:
    def __init__(self, args):
        self.args = args
        self.models = args.models
        self.tools = args.tools.split(",")
        self.results: list[dict] = []  # one row per (section, case, tool)
        self.notes: list[str] = []
        self.scratch = tempfile.mkdtemp(prefix="bench-", dir=os.path.dirname(os.path.abspath(self.models)))

    def log(self, text: str) -> None:
        print(text, flush=True)

    def measure(self, section: str, case: str, kind: str, tool: str, src: str, spec: str,
                check: dict | None = None) -> dict:
        """--runs timed runs of one job; the first run's result is checked."""
        row = {"section": section, "case": case, "tool": tool, "loadavg_before": _loadavg()}
        runs = []
        for i in range(self.args.runs):
            d = tempfile.mkdtemp(dir=self.scratch)
            try:
                job = {"kind": kind, "tool": tool, "src": src, "dst": os.path.join(d, "out.onnx"), "spec": spec}
                r = _child("time", job, self.args.limit)
                if "timeout" in r:
                    row["timeout"] = True
                    break
                if "error" in r:
                    row["error"] = r["error"]
                    break
                runs.append(r)
                if i == 0 and check is not None:
                    row["check"] = _child("check", {**job, **check}, None)
                if r["seconds"] > self.args.repeat_under:
                    break
            finally:
                shutil.rmtree(d, ignore_errors=True)
        if runs:
            row["runs"] = runs
            row["seconds"] = statistics.median(x["seconds"] for x in runs)
            row["peak_mib"] = statistics.median(x["peak_mib"] for x in runs)
        row["loadavg_after"] = _loadavg()
        self.results.append(row)
        self.log(f"{section:11} {case:28} {tool:18} {self._time(row):>10} {self._mem(row):>8}  "
                 f"load {row['loadavg_before']} -> {row['loadavg_after']}"
                 + (f"  {row['error']}" if "error" in row else ""))
        return row

    def skipped(self, section: str, case: str, tool: str, why: str) -> None:
        self.results.append({"section": section, "case": case, "tool": tool, "skipped": why})
        self.log(f"{section:11} {case:28} {tool:18} skipped: {why}")

    def _time(self, row: dict) -> str:
        if "timeout" in row:
            return f"> {self.args.limit:g}"
        if "skipped" in row or "error" in row:
            return "-"
        return f"{row['seconds']:.2f}" + ("" if len(row["runs"]) == self.args.runs else "¹")

    @staticmethod
    def _mem(row: dict) -> str:
        return f"{row['peak_mib']:.0f}" if "peak_mib" in row else "-"

    # -----------------------------------------------------------------
    def tool_matrix(self, section: str, cases: list[tuple[str, str, str, str, dict]]) -> None:
        """cases: (case name, kind, source, spec, check); a tool that exceeds the limit on a case
        is not run on the cases after it in the same list (they are larger)."""
        for tool in self.tools:
            over = None
            for case, kind, src, spec, check in cases:
                if over:
                    self.skipped(section, case, tool, f"exceeded the limit on {over}")
                    continue
                row = self.measure(section, case, kind, tool, src, spec, check)
                if "timeout" in row:
                    over = case

    def structural(self) -> None:
        blocks = self.args.cnn_blocks
        generate.ensure(self.models, ("cnn",), blocks)
        ref = os.path.join(self.scratch, "reference.onnx")
        import checks

        src0 = generate.cnn_path(self.models, blocks[0])
        checks.with_attribute(src0, ref, workloads.PRELU.attr)
        cases = [(f"cnn {_nodes(generate.cnn_path(self.models, b))}", "structural", generate.cnn_path(self.models, b), "prelu",
                  {"reference": ref} if b == blocks[0] else {}) for b in blocks]
        self.tool_matrix("structural", cases)

    def small(self) -> None:
        generate.ensure(self.models, ("small_ops",))
        src = generate.small_ops_path(self.models)
        label = f"small ops {_nodes(src)}"
        for tool in self.tools:
            self.measure("small", f"{label}: structural", "structural", tool, src, "leaky-relu", {})
            self.measure("small", f"{label}: attribute", "attribute", tool, src, "leaky-relu-alpha", {})

    def transformer(self) -> None:
        generate.ensure(self.models, ("transformer",))
        src = generate.transformer_path(self.models)
        size = os.path.getsize(src + ".data") / 2**30
        label = f"transformer {_nodes(src)}, {size:.2f} GiB"
        for tool in self.tools:
            for case, kind, spec in ((f"{label}: attribute", "attribute", "softmax-axis"),
                                     (f"{label}: structural", "structural", "relu-max")):
                self.measure("transformer", case, kind, tool, src, spec, {"external": True})

    def cli(self) -> None:
        blocks = self.args.cnn_blocks[-1]
        generate.ensure(self.models, ("cnn",), (blocks,))
        src = generate.cnn_path(self.models, blocks)
        exe = os.path.join(os.path.dirname(sys.executable), "graphsurgery")
        case = f"cnn {_nodes(src)}"
        tools = (("raw", [sys.executable, "-c", RAW_CLI, src]),
                 ("graphsurgery", [exe, "run", src, "-p", CLI_PASS, "-o"]))
        rows = {tool: {"section": "cli", "case": case, "tool": tool, "loadavg_before": _loadavg()}
                for tool, _ in tools}
        runs: dict[str, list] = {tool: [] for tool, _ in tools}
        # the tools take turns, run after run, so a change in the machine's load falls on both alike
        for _ in range(self.args.runs):
            for tool, cmd in tools:
                row = rows[tool]
                if "error" in row:
                    continue
                d = tempfile.mkdtemp(dir=self.scratch)
                try:
                    t0 = time.perf_counter()
                    p = subprocess.Popen(cmd + [os.path.join(d, "out.onnx")], stdout=subprocess.DEVNULL,
                                         stderr=subprocess.PIPE)
                    _, status, usage = os.wait4(p.pid, 0)
                    seconds = time.perf_counter() - t0
                    p.returncode = os.waitstatus_to_exitcode(status)
                    err = p.stderr.read().decode(errors="replace")
                    p.stderr.close()
                    if p.returncode:
                        row["error"] = (err.strip().splitlines() or ["?"])[-1]
                        continue
                    runs[tool].append({"seconds": seconds, "peak_mib": usage.ru_maxrss / 1024})
                finally:
                    shutil.rmtree(d, ignore_errors=True)
        for tool, _ in tools:
            row = rows[tool]
            if runs[tool] and "error" not in row:
                row.update(runs=runs[tool], seconds=statistics.median(x["seconds"] for x in runs[tool]),
                           peak_mib=statistics.median(x["peak_mib"] for x in runs[tool]))
            row["loadavg_after"] = _loadavg()
            self.results.append(row)
            self.log(f"cli         {case:28} {tool:18} {self._time(row):>10} {self._mem(row):>8}")

    def imports(self) -> None:
        code = ("import time; t = time.perf_counter(); import {m}; "
                "print(time.perf_counter() - t)")
        # the package's names load on first use: the last row is what a script pays before its
        # first call (the core, onnx and numpy)
        for label, pre, mod in (("import onnx", "", "onnx"), ("import graphsurgery", "", "graphsurgery"),
                                ("import graphsurgery (onnx already imported)", "import onnx; ", "graphsurgery"),
                                ("import graphsurgery, then its first name (gs.Model)", "",
                                 "graphsurgery; graphsurgery.Model")):
            row = {"section": "import", "case": label, "tool": "graphsurgery", "loadavg_before": _loadavg()}
            times = []
            for _ in range(max(self.args.runs, 7)):
                r = subprocess.run([sys.executable, "-c", pre + code.format(m=mod)], capture_output=True,
                                   text=True, check=True)
                times.append(float(r.stdout))
            row.update(runs=[{"seconds": t} for t in times], seconds=statistics.median(times),
                       loadavg_after=_loadavg())
            self.results.append(row)
            self.log(f"import      {label:45} {row['seconds']:.3f} s")

    def pipeline(self) -> None:
        """The pipeline at each size, beside raw protobuf's load and save of the same file (the
        "raw" row: the floor any pipeline pays), measured one after the other at each size."""
        blocks = self.args.pipeline_blocks
        generate.ensure(self.models, ("cnn",), blocks)
        over = None
        for b in blocks:
            src = generate.cnn_path(self.models, b)
            case = f"cnn {_nodes(src)}"
            if over:
                self.skipped("pipeline", case, "graphsurgery", f"exceeded the limit on {over}")
                continue
            self.measure("pipeline", case, "load-save", "raw", src, "")
            if "timeout" in self.measure("pipeline", case, "pipeline", "graphsurgery", src, workloads.PIPELINE, {}):
                over = case

    # -----------------------------------------------------------------
    def table(self) -> str:
        import report

        return report.markdown(self.results, self.args, self.notes)


def _compile_bytecode() -> None:
    """Compile graphsurgery's modules as installing the package does: every tool is then timed
    reading compiled bytecode (onnx, numpy and the peers come compiled from their wheels), also
    where PYTHONDONTWRITEBYTECODE keeps interpreters from writing it themselves."""
    import compileall
    import importlib.util

    spec = importlib.util.find_spec("graphsurgery")
    if spec is not None and spec.submodule_search_locations:
        for folder in spec.submodule_search_locations:
            compileall.compile_dir(folder, quiet=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="?", default=os.path.join(HERE, "out"))
    ap.add_argument("--runs", type=int, default=3, help="timed runs per measurement (median reported)")
    ap.add_argument("--limit", type=float, default=300, help="seconds before a measurement is stopped")
    ap.add_argument("--repeat-under", type=float, default=60,
                    help="a measurement whose first run takes longer is not repeated (marked ¹)")
    ap.add_argument("--tools", default=",".join(workloads.TOOLS))
    ap.add_argument("--sections", default=",".join(SECTIONS))
    ap.add_argument("--cnn-blocks", default=",".join(map(str, generate.CNN_BLOCKS)),
                    help="CNN sizes in blocks of 4 nodes (n, 2n, 4n)")
    ap.add_argument("--pipeline-blocks", default=",".join(map(str, generate.PIPELINE_BLOCKS)),
                    help="CNN sizes of the pipeline section, in blocks of 4 nodes")
    ap.add_argument("--markdown", help="also write the tables to this file")
    ap.add_argument("--json", help="also write every raw measurement to this file")
    ap.add_argument("--time", help=argparse.SUPPRESS)
    ap.add_argument("--check", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.time:
        print(json.dumps(child_time(json.loads(args.time))))
        return
    if args.check:
        print(json.dumps(child_check(json.loads(args.check))))
        return
    args.cnn_blocks = [int(x) for x in args.cnn_blocks.split(",")]
    args.pipeline_blocks = [int(x) for x in args.pipeline_blocks.split(",")]
    _compile_bytecode()
    bench = Bench(args)
    try:
        for section in args.sections.split(","):
            if section not in SECTIONS:
                raise SystemExit(f"unknown section {section!r}; choose from {', '.join(SECTIONS)}")
            getattr(bench, {"import": "imports"}.get(section, section))()
    finally:
        shutil.rmtree(bench.scratch, ignore_errors=True)
        text = bench.table()
        print()
        print(text)
        if args.markdown:
            with open(args.markdown, "w") as f:
                f.write(text)
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"argv": sys.argv[1:], "results": bench.results}, f, indent=1)


if __name__ == "__main__":
    main()
