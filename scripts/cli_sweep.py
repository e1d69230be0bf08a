"""Run a few hundred malformed ``graphsurgery`` command lines and report the ones that fail badly.

A command line fails well when it exits 2 (or 1/3 where the exit code has a meaning), prints
no traceback, keeps stderr to one line, and leaves no file behind in the output folder. Each
case runs in its own subprocess, as a user would run it:

    python scripts/cli_sweep.py [--jobs 2] [--limit N] [--show] [--accepted] [--newer]

Prints one line per bad case (with --show), each command line that succeeded (with
--accepted: every case is malformed in some way, so each deserves a look) and the totals.
Set PYTHONPATH to sweep another checkout of graphsurgery.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import zipfile

import numpy as np


def fixtures(root: str) -> dict[str, str]:
    """Good and bad files for the cases: a small model, a real one, and every kind of wrong file."""
    from graphsurgery.cli import example_path

    f = {}
    f["good"] = os.path.join(root, "good.onnx")
    shutil.copy(example_path(), f["good"])
    f["empty"] = os.path.join(root, "empty.onnx")
    open(f["empty"], "wb").close()
    f["text"] = os.path.join(root, "text.onnx")
    with open(f["text"], "w") as fh:
        fh.write("this is not a model\n" * 20)
    f["truncated"] = os.path.join(root, "truncated.onnx")
    data = open(example_path(), "rb").read()
    with open(f["truncated"], "wb") as fh:
        fh.write(data[: len(data) // 2])
    f["dir"] = os.path.join(root, "adir")
    os.mkdir(f["dir"])
    f["missing"] = os.path.join(root, "missing.onnx")
    f["under_file"] = os.path.join(f["good"], "x.onnx")  # a file used as a folder
    f["npz_good"] = os.path.join(root, "inputs.npz")
    np.savez(f["npz_good"], image=np.zeros((1, 3, 8, 8), np.float32))
    f["npz_wrongname"] = os.path.join(root, "wrongname.npz")
    np.savez(f["npz_wrongname"], nope=np.zeros(3, np.float32))
    f["npz_wrongshape"] = os.path.join(root, "wrongshape.npz")
    np.savez(f["npz_wrongshape"], image=np.zeros((7,), np.float32))
    f["npz_wrongdtype"] = os.path.join(root, "wrongdtype.npz")
    np.savez(f["npz_wrongdtype"], image=np.array(["a", "b"]))
    f["npz_pickled"] = os.path.join(root, "pickled.npz")
    np.savez(f["npz_pickled"], image=np.array([{"a": 1}], dtype=object))
    f["npz_corrupt"] = os.path.join(root, "corrupt.npz")
    with open(f["npz_corrupt"], "wb") as fh:
        fh.write(b"PK\x03\x04garbage" * 10)
    f["npz_text"] = os.path.join(root, "text.npz")
    with open(f["npz_text"], "w") as fh:
        fh.write("hello")
    f["npz_empty"] = os.path.join(root, "empty.npz")
    open(f["npz_empty"], "wb").close()
    f["npy"] = os.path.join(root, "array.npy")
    np.save(f["npy"], np.zeros(3, np.float32))
    f["npz_badmember"] = os.path.join(root, "badmember.npz")
    with zipfile.ZipFile(f["npz_badmember"], "w") as z:
        z.writestr("image.npy", b"not an npy")
    f["npz_nothing"] = os.path.join(root, "nothing.npz")
    np.savez(f["npz_nothing"])
    f["link"] = os.path.join(root, "link.onnx")  # the input under another name
    os.symlink(f["good"], f["link"])
    f["fifo"] = os.path.join(root, "fifo")  # not a regular file: must not be replaced
    os.mkfifo(f["fifo"])
    f["tiny"] = os.path.join(root, "tiny.onnx")  # runs in onnxruntime, and optimize has work to do
    _save_tiny(f["tiny"])
    os.mkdir(os.path.join(root, "other"))
    f["tiny2"] = os.path.join(root, "other", "tiny2.onnx")
    shutil.copy(f["tiny"], f["tiny2"])
    f["tiny_same_name"] = os.path.join(root, "other", "tiny.onnx")  # the same file name as tiny
    shutil.copy(f["tiny"], f["tiny_same_name"])
    f["existing"] = os.path.join(root, "existing.onnx")  # an output that exists (not an input)
    shutil.copy(f["tiny"], f["existing"])
    f["npz_tiny"] = os.path.join(root, "tiny_inputs.npz")
    np.savez(f["npz_tiny"], x=np.ones((1, 4), np.float32))
    return f


def _save_tiny(path: str) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("Identity", ["x"], ["i"], name="id"),
             helper.make_node("Add", ["i", "zero"], ["a"], name="add"),
             helper.make_node("Relu", ["a"], ["y"], name="relu")]
    g = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
                          [numpy_helper.from_array(np.zeros(4, np.float32), "zero")])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)


def cases(f: dict[str, str], out: str) -> list[list[str]]:
    o = os.path.join(out, "o.onnx")
    models = [f[k] for k in ("empty", "text", "truncated", "dir", "missing", "under_file", "npz_good")] + [
        "/dev/null", "/dev/zero"]
    outs = [out, os.path.join(out, "nofolder", "o.onnx"), os.path.join(f["good"], "o.onnx"), "/proc/o.onnx",
            "/", "", f["dir"], "/dev/null/o.onnx", f["link"], f["fifo"]]
    npzs = [f[k] for k in ("missing", "dir", "npz_wrongname", "npz_wrongshape", "npz_wrongdtype", "npz_pickled",
                           "npz_corrupt", "npz_text", "npz_empty", "npy", "npz_badmember", "good")]
    pipelines = ["", " ", ",", "cleanup,", ",cleanup", "remove-if,,cleanup", "nope", "cleanup(", "cleanup)",
                 "cleanup(x=1)", "cleanup(x)", "(x=1)", "()", "cleanup()()", "freeze-inputs",
                 "freeze-inputs(image='abc')", "freeze-inputs(image={1:2})", "freeze-inputs(image=[1,[2]])",
                 "freeze-inputs(image=1e999)", "freeze-inputs(image=)", "freeze-inputs(image=__import__('os'))",
                 "freeze-inputs(nope=1)", "freeze-inputs(image=[[[[[[[[[[1]]]]]]]]]])", "set-batch(size=abc)",
                 "set-batch(size=-1)", "set-batch(size=0)", "set-batch(size=1e10)", "set-shape(image=axb)",
                 "set-shape(image=1x2)", "set-shape(nope=1x2)", "set-shape(image=-1x3x8x8)", "fold-constants(x=1)",
                 "instancenorm-epsilon(epsilon=abc)", "instancenorm-epsilon(epsilon=-1)",
                 "instancenorm-epsilon(epsilon=nan)", "debug-outputs(names=nope)", "debug-outputs(first=-3)",
                 "cut(outputs=nope)", "cut(inputs=nope)", "rename-io(x=y)", "rename-io(image=)",
                 "convert-opset(version=abc)", "convert-opset(version=999)", "convert-opset(version=1)",
                 "set-batch(size=2,size=3)", "remove-if(fold=maybe)", "cleanup(((", "cleanup]]",
                 "fuse-conv-bn(x=1)", "focus-to-conv(x=1)", "split-preprocessing(x=1)", "Cleanup", "clean_up",
                 "cleanup;remove-if", "cleanup remove-if", "\x00", "é", "cleanup(a=b=c)"]
    c: list[list[str]] = []
    # global
    c += [[], ["--nope"], ["nope"], ["inspectt"], ["-v"], ["--version", "extra"], ["-vv"], ["help"]]
    # inspect
    for m in models:
        c += [["inspect", m], ["inspect", m, "--json"]]
    c += [["inspect"], ["inspect", "--json"], ["inspect", f["good"], f["good"]], ["inspect", "--example", f["good"]],
          ["inspect", f["good"], "--nope"], ["inspect", f["good"], "--jsn"]]
    # run
    for m in models:
        c += [["run", m, "-o", o, "-p", "cleanup"], ["run", m, "-o", o, "-p", "cleanup", "--json"]]
    for x in outs:
        c += [["run", f["good"], "-o", x, "-p", "cleanup"], ["run", f["good"], "-o", x, "-p", "cleanup", "--json"]]
    for p in pipelines:
        c += [["run", f["good"], "-o", o, "-p", p]]
    for p in pipelines[:20]:
        c += [["run", f["good"], "-o", o, "-p", p, "--json"]]
    for n in npzs:
        c += [["run", f["good"], "-o", o, "-p", "cleanup", "--verify", "--inputs", n],
              ["run", f["good"], "-o", o, "-p", "cleanup", "--verify", "--inputs", n, "--json"]]
    c += [["run", f["good"], "-o", o], ["run", f["good"], "-p", "cleanup"], ["run", "-o", o, "-p", "cleanup"],
          ["run", f["good"], "-o", o, "-p", "cleanup", "--rtol", "abc"],
          ["run", f["good"], "-o", o, "-p", "cleanup", "--rtol", "-1", "--verify"],
          ["run", f["good"], "-o", o, "-p", "cleanup", "--atol", "nan", "--verify"],
          ["run", f["good"], "-o", o, "-p", "cleanup", "--verifyy"],
          ["run", f["good"], "-o", f["good"], "-p", "cleanup"],
          ["run", f["good"], "-o", o, "-p", "cleanup", "-p", "remove-if(("],
          ["run", f["good"], "--example", "-o", o, "-p", "cleanup"],
          ["run", f["good"], "-o", o, "-p", "cleanup", "--inputs", f["npz_good"]]]
    # passes
    c += [["passes", "x"], ["passes", "--jsonn"]]
    # debug
    for m in models:
        c += [["debug", m, "--backend", "reference"], ["debug", m, "--backend", "reference", "--json"]]
    for m in models:
        c += [["debug", f["good"], "--against", m], ["debug", f["good"], "--arrays", m]]
    for n in npzs:
        c += [["debug", f["good"], "--backend", "reference", "--inputs", n],
              ["debug", f["good"], "--arrays", n], ["debug", f["good"], "--arrays", n, "--json"]]
    c += [["debug", f["good"]], ["debug", f["good"], "--backend", "nope"],
          ["debug", f["good"], "--backend", "reference", "--against", f["good"]],
          ["debug", f["good"], "--backend", "reference", "--chunk", "0"],
          ["debug", f["good"], "--backend", "reference", "--chunk", "-5"],
          ["debug", f["good"], "--backend", "reference", "--chunk", "x"],
          ["debug", f["good"], "--backend", "reference", "--rtol", "-1"],
          ["debug", f["good"], "--backend", "reference", "--reproducer", f["good"]],
          ["debug", f["good"], "--backend", "reference", "--reproducer", "/proc/x"],
          ["debug", f["good"], "--json"]]
    # diff
    for m in models:
        c += [["diff", m, f["good"]], ["diff", f["good"], m], ["diff", m, f["good"], "--json"]]
    c += [["diff"], ["diff", f["good"]], ["diff", f["good"], f["good"], f["good"]]]
    # extract
    for m in models:
        c += [["extract", m, "-o", o, "--outputs", "logits"]]
    for x in outs:
        c += [["extract", f["good"], "-o", x, "--outputs", "logits"]]
    c += [["extract", f["good"], "-o", o], ["extract", f["good"], "--outputs", "logits"],
          ["extract", f["good"], "-o", o, "--outputs", "nope"], ["extract", f["good"], "-o", o, "--inputs", "nope"],
          ["extract", f["good"], "-o", o, "--outputs", ","], ["extract", f["good"], "-o", o, "--outputs", ""],
          ["extract", f["good"], "-o", f["good"], "--outputs", "logits"],
          ["extract", f["good"], "-o", o, "--outputs", "image"]]
    # show (never with a working model: that would start a server)
    for m in models:
        c += [["show", m, "--no-browser", "--no-wait"]]
    c += [["show"], ["show", f["good"], "--port", "abc"], ["show", f["good"], "--port", "-1", "--no-browser"],
          ["show", f["good"], "--port", "99999", "--no-browser"]]
    return c


def bad_files(f: dict[str, str]) -> tuple[list[str], list[str], list[str]]:
    """The wrong model files, outputs and .npz files the cases try."""
    models = [f[k] for k in ("empty", "text", "truncated", "dir", "missing", "under_file", "npz_good")] + [
        "/dev/null", "/dev/zero"]
    return models, [], [f[k] for k in ("missing", "dir", "npz_wrongname", "npz_wrongshape", "npz_wrongdtype",
                                         "npz_pickled", "npz_corrupt", "npz_text", "npz_empty", "npy",
                                         "npz_badmember", "good")]


BACKENDS = ("tensorrt", "onnxruntime", "openvino")


def newer_cases(f: dict[str, str], out: str) -> list[list[str]]:
    """optimize, fix --for and inspect --for, one model at a time."""
    o = os.path.join(out, "o.onnx")
    models, _, npzs = bad_files(f)
    outs = [out, os.path.join(out, "nofolder", "o.onnx"), os.path.join(f["good"], "o.onnx"), "/proc/o.onnx",
            "/", "", f["dir"], "/dev/null/o.onnx", f["link"], f["fifo"]]
    t = f["tiny"]
    c: list[list[str]] = []
    # optimize
    for m in models:
        c += [["optimize", m, "-o", o], ["optimize", m, "-o", o, "--json"]]
    for x in outs:
        c += [["optimize", t, "-o", x], ["optimize", t, "-o", x, "--json"]]
    for n in npzs + [f["npz_tiny"]]:
        c += [["optimize", t, "-o", o, "--inputs", n], ["optimize", t, "-o", o, "--inputs", n, "--json"]]
    settings = [["--set-shape", "x"], ["--set-shape", "x="], ["--set-shape", "=1x4"], ["--set-shape", "x=axb"],
                ["--set-shape", "x=1x4,x=1x4"], ["--set-shape", "nope=1x4"], ["--set-shape", "x=1x5"],
                ["--set-shape", "x=1x4", "--set-shape", "x=2x4"], ["--set-shape", "x=0x4"], ["--set-shape", "x=-1x4"],
                ["--freeze", "x"], ["--freeze", "nope=1"], ["--freeze", "x=abc"], ["--freeze", "x=[1,2"],
                ["--batch", "abc!"], ["--batch", "0"], ["--batch", "-1"], ["--batch", ""], ["--rtol", "abc"],
                ["--atol", "-1"], ["--rtol", "inf"], ["--jobs", "0"], ["--jobs", "x"], ["--no-verify", "--inputs",
                                                                                        f["npz_tiny"]],
                ["--nope"], ["--set-shape"], ["--no-verify", "--no-verify"], ["--example"]]
    for extra in settings:
        c += [["optimize", t, "-o", o, *extra], ["optimize", t, "-o", o, "--json", *extra]]
    c += [["optimize"], ["optimize", t], ["optimize", "-o", o], ["optimize", t, "-o", t],
          ["optimize", t, "-o", f["existing"], "-q"], ["optimize", t, "-o", o, "-q", "--json"],
          ["optimize", t, "-o", f["link"]], ["optimize", f["link"], "-o", t]]
    # fix --for
    for b in BACKENDS:
        for m in models:
            c += [["fix", m, "--for", b, "-o", o], ["fix", m, "--for", b, "-o", o, "--json"]]
        for x in outs:
            c += [["fix", f["good"], "--for", b, "-o", x]]
        for n in npzs:
            c += [["fix", t, "--for", b, "-o", o, "--inputs", n]]
        c += [["fix", t, "--for", b, "-o", o], ["fix", t, "--for", b, "-o", o, "--json"],
              ["fix", "--example", "--for", b, "-o", o], ["fix", "--example", "--for", b, "-o", o, "--json"],
              ["fix", "--example", "--for", b, "-o", o, "--partial"], ["fix", t, "--for", b],
              ["fix", t, "--for", b, "-o", o, "--set-shape", "x=axb"], ["fix", t, "--for", b, "-o", o, "--freeze", "x"],
              ["fix", t, "--for", b, "-o", o, "--set-shape", "nope=1x4"],
              ["fix", t, "--for", b, "-o", o, "--freeze", "nope=1"],
              ["fix", t, "--for", b, "-o", o, "--no-verify", "--inputs", f["npz_tiny"]],
              ["fix", t, "--for", b, "-o", o, "--legacy"], ["fix", t, "--for", b, "-o", t],
              ["fix", t, "--example", "--for", b, "-o", o], ["fix", t, t, "--for", b, "-o", o]]
    c += [["fix", t, "-o", o], ["fix", t, "--for", "nope", "-o", o], ["fix", t, "--for", "", "-o", o],
          ["fix", t, "--for", "TensorRT", "-o", o], ["fix", t, "--for"], ["fix", "--for", "tensorrt", "-o", o],
          ["fix", t, "--for", "tensorrt", "-o", o, "--rtol", "x"]]
    # inspect --for
    for b in BACKENDS:
        for m in models:
            c += [["inspect", m, "--for", b], ["inspect", m, "--for", b, "--json"]]
        c += [["inspect", f["good"], "--for", b], ["inspect", f["good"], "--for", b, "--json"],
              ["inspect", "--example", "--for", b, "--legacy"], ["inspect", t, "--for", b, "--no-check"],
              ["inspect", f["good"], f["good"], "--for", b]]
    c += [["inspect", f["good"], "--for", "nope"], ["inspect", f["good"], "--for"], ["inspect", f["good"], "--legacy"],
          ["inspect", f["good"], "--for", "tensorrt", "--for", "openvino"]]
    return c


def many_cases(f: dict[str, str], out: str) -> list[tuple[list[str], set[str]]]:
    """Several models at once (-o a folder, --jobs): each case with the file names the output
    folder may hold afterwards (a model that fails is reported; the others are written)."""
    t, t2, same = f["tiny"], f["tiny2"], f["tiny_same_name"]
    d = os.path.join(out, "many")
    both = {"many"}
    c: list[tuple[list[str], set[str]]] = []
    for cmd in (["optimize"], ["run", "-p", "eliminate-noops,cleanup"]):
        for jobs in ("1", "2"):
            c += [([*cmd, t, t2, "-o", d, "--jobs", jobs], both),
                  ([*cmd, t, t2, "-o", d, "--jobs", jobs, "--json"], both),
                  ([*cmd, t, f["empty"], f["text"], "-o", d, "--jobs", jobs], both),
                  ([*cmd, t, f["truncated"], "-o", d, "--jobs", jobs, "--json"], both),
                  ([*cmd, t, f["good"], "-o", d, "--jobs", jobs], both)]
        c += [([*cmd, t, f["missing"], "-o", d], set()), ([*cmd, t, f["dir"], "-o", d], set()),
              ([*cmd, t, t, "-o", d], set()), ([*cmd, t, same, "-o", d], set()),
              ([*cmd, t, t2, "-o", f["good"]], set()), ([*cmd, t, t2, "-o", os.path.join(out, "no", "such")], set()),
              ([*cmd, t, t2, "-o", ""], set()), ([*cmd, t, t2], set()),
              ([*cmd, t, t2, "-o", d, "--inputs", f["npz_tiny"]], set()),
              ([*cmd, t, t2, "-o", d, "--jobs", "0"], set()),
              ([*cmd, t, t2, "-o", os.path.dirname(t)], set()),  # the inputs' own folder: refused
              ([*cmd, t, t2, "-o", "/proc/many"], set()), ([*cmd, t, "/dev/zero", "-o", d], set())]
    c += [(["optimize", t, t2, "-o", d, "--set-shape", "x=axb"], set()),
          (["optimize", t, t2, "-o", d, "--set-shape", "nope=1x4"], both),
          (["run", t, t2, "-o", d, "-p", "nope"], set()),
          (["run", "--example", t, t2, "-o", d, "-p", "cleanup"], set())]
    return c


def _limit_memory() -> None:
    """At most 4 GiB of address space per case: a command that reads /dev/zero must not take the machine."""
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))


def run_case(args: list[str], out: str, guard: tuple[str, bytes], fifo: str, allowed: set[str] | None = None) -> dict:
    """One command line; ``allowed``: with several models, what the output folder may hold
    afterwards even when the command failed, and stderr may then say one line per model."""
    for name in os.listdir(out):  # each case starts with an empty output folder
        p = os.path.join(out, name)
        shutil.rmtree(p) if os.path.isdir(p) else os.unlink(p)
    try:
        r = subprocess.run([sys.executable, "-m", "graphsurgery", *args], capture_output=True, text=True,
                           timeout=120, stdin=subprocess.DEVNULL, preexec_fn=_limit_memory)
    except subprocess.TimeoutExpired:
        return {"args": args, "rc": None, "problems": ["timeout"], "err": ""}
    except ValueError as exc:  # e.g. NUL in an argument: the OS refuses it before graphsurgery runs
        return {"args": args, "rc": "skip", "problems": [], "err": str(exc)}
    err_lines = [x for x in r.stderr.splitlines() if x.strip()]
    problems = []
    if "Traceback" in r.stderr:
        problems.append("traceback")
    if r.returncode not in (0, 1, 2, 3):
        problems.append(f"rc {r.returncode}")
    failed = r.returncode not in (0, 1)
    if failed and allowed is None and len(err_lines) != 1:
        problems.append(f"{len(err_lines)} stderr lines")
    if failed and allowed is not None and (not err_lines or any(
            not x.startswith("graphsurgery: error: ") and " model(s) written to " not in x for x in err_lines)):
        problems.append("stderr lines that are not one error each")
    if not stat.S_ISFIFO(os.lstat(fifo).st_mode):
        problems.append("replaced a fifo")
        os.unlink(fifo)
        os.mkfifo(fifo)
    if failed and set(os.listdir(out)) - (allowed or set()):
        problems.append(f"left {os.listdir(out)}")
    if failed and "--json" in args and '"error"' not in r.stdout:
        problems.append("no JSON error")
    with open(guard[0], "rb") as fh:
        if fh.read() != guard[1]:
            problems.append("input overwritten")
    return {"args": args, "rc": r.returncode, "problems": problems, "err": err_lines[-1] if err_lines else ""}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--limit", type=int)
    ap.add_argument("--show", action="store_true", help="print every bad case")
    ap.add_argument("--accepted", action="store_true", help="print every case that exited 0 or 1")
    ap.add_argument("--newer", action="store_true", help="only optimize, fix --for, inspect --for and several models")
    a = ap.parse_args()
    root = tempfile.mkdtemp(prefix="gs-sweep-")
    try:
        f = fixtures(root)
        with open(f["good"], "rb") as fh:
            guard = (f["good"], fh.read())
        one = ([] if a.newer else cases(f, "OUT")) + newer_cases(f, "OUT")
        all_cases = ([(c, None) for c in one] + many_cases(f, "OUT"))[: a.limit]
        outs = [os.path.join(root, f"out{i}") for i in range(a.jobs)]
        for d in outs:
            os.mkdir(d)

        def job(i_case):
            i, (case, allowed) = i_case
            out = outs[i % a.jobs]
            return run_case([x.replace("OUT", out) if x.startswith("OUT") else x for x in case], out, guard, f["fifo"],
                            allowed)

        # a case list split by worker, so that each worker owns one output folder
        results = []
        with concurrent.futures.ThreadPoolExecutor(a.jobs) as ex:
            chunks = [[(i, c) for i, c in enumerate(all_cases) if i % a.jobs == w] for w in range(a.jobs)]
            for part in ex.map(lambda ch: [job(x) for x in ch], chunks):
                results += part
        bad = [r for r in results if r["problems"]]
        kinds: dict[str, int] = {}
        for r in bad:
            for p in r["problems"]:
                key = ("file left behind" if p.startswith("left") else "stderr not one line"
                       if p.endswith("stderr lines") else p)
                kinds[key] = kinds.get(key, 0) + 1
            if a.show:
                print(f"{r['rc']} {r['problems']} {' '.join(r['args'])!r}: {r['err'][:160]}")
        if a.accepted:
            for r in results:
                if r["rc"] in (0, 1):
                    print(f"accepted rc {r['rc']}: {' '.join(r['args'])!r}")
        tb = sum("traceback" in r["problems"] for r in results)
        print(f"{len(results)} command lines: {len(bad)} bad ({tb} with a traceback); " +
              ", ".join(f"{k}: {n}" for k, n in sorted(kinds.items())))
        return 1 if bad else 0
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
