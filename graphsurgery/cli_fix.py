"""The command line's ``fix`` and ``inspect --for``: formatting and the command itself (kept
out of ``graphsurgery.cli`` so that module stays small; it calls in here, and both share
:mod:`graphsurgery.cli_common`)."""

from __future__ import annotations

import json
import sys

from .cli_common import (
    check_output,
    example_path,
    format_run,
    jsonable,
    load,
    one_line,
    read_npz,
    save,
    verification_failed,
)
from .errors import UsageError


def add_backend(s: dict, model, args) -> bool:
    """``inspect --for``: put the backend's findings in the summary ``s`` in place of the general
    lint; True when one is an error."""
    if not args.backend:
        if args.legacy:
            raise UsageError("--legacy goes with --for tensorrt")
        return False
    from .backends import describe, lint_for
    from .lint import as_dicts

    s.pop("lint", None)
    found = lint_for(model, args.backend, legacy=args.legacy)
    s["backend"] = {"name": args.backend, "support": describe(args.backend), "findings": as_dicts(found)}
    return any(f.severity == "error" for f in found)


def format_backend(s: dict) -> str:
    b = s.get("backend")
    if not b:
        return ""
    counts = {sev: sum(f["severity"] == sev for f in b["findings"]) for sev in ("error", "warning", "info")}
    lines = [f"for        {b['name']}: {b['support']}",
             f"           {counts['error']} error(s), {counts['warning']} warning(s), {counts['info']} note(s)"]
    for f in b["findings"]:
        fix = f"-> {f['fix']}" if f["fix"] else "-> no pass fixes this"
        lines.append(f"  - {f['severity']}: [{f['code']}] {f['where']}: {f['message']} {fix}")
    return "\n" + "\n".join(lines)


def pairs(text: str | None, option: str) -> dict[str, str]:
    """``a=1x3,b=2`` -> {"a": "1x3", "b": "2"}; a list value in brackets may hold commas."""
    if not text:
        return {}
    from .passes.pipeline import split_top

    out = {}
    for item in split_top(text):
        if "=" not in item or not item.split("=", 1)[0].strip():
            raise UsageError(f"{option} {text!r}: expected NAME=VALUE, comma separated")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def run_fix(args) -> int:
    from .errors import FixRefused, VerificationError
    from .fix import fix

    if args.example and args.model:
        raise UsageError("fix takes a MODEL path or --example, not both")
    src = example_path() if args.example else args.model
    if src is None:
        raise UsageError("fix needs a MODEL path (or --example)")
    if args.output is None:
        raise UsageError("fix needs -o OUT.onnx: graphsurgery never overwrites its input unless asked")
    if args.legacy and args.backend != "tensorrt":
        raise UsageError("--legacy goes with --for tensorrt")
    if args.inputs and args.no_verify:
        raise UsageError("--inputs gives the inputs verification runs the model on; drop --no-verify")
    set_shape, freeze = pairs(args.set_shape, "--set-shape"), pairs(args.freeze, "--freeze")
    check_output(args.output, "-o", [src], overwrite=args.overwrite)
    model = load(src)
    inputs = read_npz(args.inputs, "--inputs") if args.inputs else None
    try:
        fixed, report = fix(model, args.backend, set_shape=set_shape, freeze=freeze, legacy=args.legacy,
                            verify=not args.no_verify, inputs=inputs, rtol=args.rtol, atol=args.atol,
                            partial=args.partial)
    except VerificationError as exc:
        raise verification_failed(exc) from exc
    except FixRefused as exc:
        lines = [str(f) for f in exc.report.remaining]
        if args.json:
            print(json.dumps({"error": one_line(exc), "type": "FixRefused", "exit_code": 2,
                              "remaining": jsonable([vars(f) for f in exc.report.remaining])}, indent=2))
        print(f"graphsurgery: error: {one_line(exc)}", file=sys.stderr)
        for line in lines:
            print(f"  {line}", file=sys.stderr)
        return 2
    save(fixed, args.output, overwrite=args.overwrite)
    if args.json:
        print(json.dumps({"output": args.output, "backend": args.backend, "support": report.support,
                          "pipelines": report.pipelines,
                          "before": jsonable([vars(f) for f in report.before]),
                          "after": jsonable([vars(f) for f in report.after]),
                          "verification": [{"after": name, "outputs": [jsonable(vars(d)) for d in rep]}
                                           for name, rep in report.verification]}, indent=2))
    elif not args.quiet:
        print(f"for {args.backend}: {report.support}")
        print(format_run(report.results, report.verification, verbose=args.verbose))
        print(report.summary())
        for f in report.after:
            print(f"  left: {f}")
        print(f"wrote {args.output}")
    return 1 if report.remaining else 0
