"""The ``optimize`` command, and any command on several models at once (``-o FOLDER``,
``--jobs N``): the command-line side of :mod:`graphsurgery.optimize` and :mod:`graphsurgery.many`."""

from __future__ import annotations

import argparse
import json
import os
import sys

from .cli_common import (
    check_output,
    format_run,
    jsonable,
    load,
    positive,
    read_npz,
    save,
    tolerance,
    verification_failed,
)
from .errors import UsageError


def cmd_optimize(args: argparse.Namespace) -> int:
    from .errors import VerificationError
    from .optimize import Optimizer

    if len(args.model) > 1:
        _settings(args)  # wrong settings are one error, not one per model
        return many(args, cmd_optimize)
    src = args.model[0]
    if args.output is None:
        raise UsageError("optimize needs -o OUT.onnx: graphsurgery never overwrites its input unless asked")
    if args.inputs and args.no_verify:
        raise UsageError("--inputs gives the inputs verification runs the model on; drop --no-verify")
    optimizer = Optimizer(**_settings(args), verify=not args.no_verify, rtol=args.rtol, atol=args.atol)
    check_output(args.output, "-o", [src], overwrite=args.overwrite)
    model = load(src)
    if args.inputs:
        optimizer.inputs = read_npz(args.inputs, "--inputs")
    from .progress import Bar

    with Bar("optimizing", enabled=not args.quiet and not args.json) as bar:
        optimizer.progress = bar.update
        try:  # a chain that fails verification is retried pass by pass (Optimizer's default)
            result = optimizer.run(model)
        except VerificationError as exc:
            bar.close()
            raise verification_failed(exc) from exc
    for line in result.notes:
        print(f"graphsurgery: note: {_short(line)}", file=sys.stderr)
    for line in result.left_out:
        print(f"graphsurgery: note: left out {_short(line)}", file=sys.stderr)
    with Bar("saving", enabled=not args.quiet and not args.json) as bar:
        save(result.model, args.output, overwrite=args.overwrite, progress=bar.update)
    if args.json:
        print(json.dumps({"output": args.output, "rounds": result.rounds, "verified": result.verified,
                          "left_out": result.left_out, "notes": result.notes,
                          "before": vars(result.before), "after": vars(result.after),
                          "passes": [{"name": r.name, "changes": len(r.changes), "skipped": r.skipped}
                                     for r in result.results if r.changed or r.skipped],
                          "verification": [{"after": name, "outputs": [jsonable(vars(d)) for d in rep]}
                                           for name, rep in result.verification]}, indent=2))
        return 0
    for name, report in result.verification:
        for d in report:
            if d.name == "(not verified)":
                print(f"graphsurgery: note: {name} not verified: {d.note}", file=sys.stderr)
    if not args.quiet:
        print(result.table())
        if result.verified:
            worst = max((d.max_rel for _, rep in result.verification for d in rep), default=0.0)
            print(f"verified in onnxruntime: outputs equal within rtol={args.rtol} (largest relative "
                  f"difference {worst:.1e}); {result.rounds} round(s)")
        elif not result.changed:
            print(f"no change, nothing to verify; {result.rounds} round(s)")
        elif args.no_verify:
            print(f"not verified (--no-verify); {result.rounds} round(s)")
        else:
            print(f"not verified (see the notes above); {result.rounds} round(s)")
        if args.verbose:
            print(format_run([r for r in result.results if r.changed or r.skipped], [], verbose=True))
        print(f"wrote {args.output}")
    return 0


def _short(text, limit: int = 300) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[:limit - 3] + "..."


def _settings(args: argparse.Namespace) -> dict:
    """The optimize settings the command line gives, checked."""
    out: dict = {}
    for option, key in (("--set-shape", "set_shape"), ("--freeze", "freeze")):
        values = getattr(args, key) or []
        named = {}
        for text in values:
            for part in text.split(",") if key == "set_shape" else [text]:
                if "=" not in part or not part.split("=", 1)[0].strip():
                    raise UsageError(f"{option} {text!r}: expected NAME=VALUE, e.g. "
                                     + ("input=1x3x224x224" if key == "set_shape" else "sr=16000"))
                k, v = part.split("=", 1)
                if k.strip() in named:
                    raise UsageError(f"{option}: input {k.strip()!r} is given twice")
                named[k.strip()] = v.strip()
        if named:
            out[key] = named
    if args.batch is not None:
        out["batch"] = args.batch
    from .optimize import Optimizer

    Optimizer(**out, verify=False)  # a wrong setting fails here, before any file is read
    return out


def many(args: argparse.Namespace, command) -> int:
    """The command on each of several models, into the folder -o names: one line per model that
    failed (naming its file), the others written. Exit code: 0 when every model was written,
    2 when one failed for any reason but verification, else 3 when one failed verification."""
    import functools

    from .many import outputs_for, run_all
    from .progress import Bar

    if getattr(args, "example", False):
        raise UsageError("--example takes no MODEL paths")
    if args.output is None:
        raise UsageError("several models need -o FOLDER to write them into")
    if getattr(args, "inputs", None):
        raise UsageError("--inputs fits one model; give it with a single MODEL")
    existed = os.path.isdir(args.output)
    pairs = outputs_for(list(args.model), args.output, overwrite=args.overwrite)
    results, failed = [], []
    with Bar("models", enabled=not args.quiet and not args.json) as bar:
        for done in run_all(functools.partial(_one_model, args, command), pairs, jobs=args.jobs,
                            progress=bar.update):
            results.append(done)
            if not done.ok:
                failed.append(done)
                bar.close()
                named = done.error if done.src in done.error else f"{done.src}: {done.error}"
                print(f"graphsurgery: error: {named}", file=sys.stderr)
            elif not args.json and not args.quiet:
                bar.close()
                out, err = done.value
                sys.stderr.write(err)
                print(f"== {done.src}\n{out.rstrip()}")
    if args.json:
        print(json.dumps([{"input": d.src, "output": d.dst if d.ok else None, "ok": d.ok, "error": d.error,
                           "exit_code": d.code, **({"report": json.loads(d.value[0])} if d.ok else {})}
                          for d in results], indent=2))
    elif not args.quiet or failed:
        print(f"{len(results) - len(failed)} of {len(results)} model(s) written to {args.output}"
              + (f"; {len(failed)} failed" if failed else ""), file=sys.stderr if failed else sys.stdout)
    if not failed:
        return 0
    if not existed and len(failed) == len(results):  # nothing written: no folder left behind either
        try:
            os.rmdir(args.output)
        except OSError:
            pass
    return 2 if any(d.code != 3 for d in failed) else 3


def _one_model(args: argparse.Namespace, command, src: str, dst: str) -> tuple[str, str]:
    """One model of :func:`many` (in a worker process): what the command printed, as text."""
    import contextlib
    import copy
    import io

    one = copy.copy(args)
    one.model, one.output = [src] if command is cmd_optimize else src, dst
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        command(one)
    return out.getvalue(), err.getvalue()


def add_arguments(opt: argparse.ArgumentParser) -> None:
    """The options of ``optimize`` (the command line lists the command itself)."""
    from .tolerances import ATOL, RTOL

    opt.add_argument("model", nargs="+", help="path of an .onnx file (several: -o names a folder)")
    opt.add_argument("-o", "--output", help="where to write the result (a folder for several models)")
    opt.add_argument("--set-shape", action="append", metavar="NAME=DIMS",
                     help="fix an input's shape, e.g. input=1x3x224x224 (repeatable)")
    opt.add_argument("--freeze", action="append", metavar="NAME=VALUE",
                     help="make an input a constant, e.g. sr=16000 (repeatable)")
    opt.add_argument("--batch", help="set the batch to a number or a name (set-batch)")
    opt.add_argument("--no-verify", action="store_true", help="skip the onnxruntime comparison with the input")
    opt.add_argument("--inputs", help="inputs for the verification, as a .npz file (default: generated)")
    opt.add_argument("--rtol", type=tolerance, default=RTOL)
    opt.add_argument("--atol", type=tolerance, default=ATOL)
    opt.add_argument("--jobs", type=positive, default=1, help="models processed at once, in worker processes")
    opt.add_argument("--overwrite", action="store_true", help="allow OUT to be the input file")
    opt.add_argument("--json", action="store_true", help="machine-readable report")
    opt.add_argument("-q", "--quiet", action="store_true")
    opt.set_defaults(func=cmd_optimize)
