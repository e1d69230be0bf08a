"""The ``graphsurgery`` command line: a thin shell over the library."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from importlib import resources

from .errors import GraphSurgeryError


def example_path() -> str:
    """Path of the example model bundled with the package."""
    return str(resources.files("graphsurgery").joinpath("data/example.onnx"))


def _cmd_inspect(args: argparse.Namespace) -> int:
    from .model import load
    from .summary import format_text, summarize

    path = example_path() if args.example else args.model
    if path is None:
        raise GraphSurgeryError("inspect needs a MODEL path (or --example for the bundled example)")
    s = summarize(load(path), check=not args.no_check)
    print(json.dumps(s, indent=2) if args.json else format_text(s))
    return 1 if s.get("problems") else 0


def _cmd_run(args: argparse.Namespace) -> int:
    import os

    from .model import load
    from .passes import Pipeline
    from .verify import VerificationError

    src = example_path() if args.example else args.model
    if src is None:
        raise GraphSurgeryError("run needs a MODEL path (or --example)")
    if args.output is None:
        raise GraphSurgeryError("run needs -o OUT.onnx: graphsurgery never overwrites its input unless asked")
    inputs = None
    if args.inputs:
        import numpy as np

        with np.load(args.inputs, allow_pickle=False) as data:
            inputs = {k: data[k] for k in data.files}
    from .progress import Bar

    with Bar("passes", enabled=not args.quiet) as bar:
        pipeline = Pipeline.from_text(args.pipeline, verify=args.verify, inputs=inputs, rtol=args.rtol,
                                      atol=args.atol, progress=bar.update)
        model = load(src)
        try:
            result = pipeline.run(model)
        except VerificationError as exc:
            bar.close()
            print(f"graphsurgery: error: {exc}", file=sys.stderr)
            return 3
    if not args.json:  # a pass --verify could not check is said even with -q
        for name, report in result.verification:
            for d in report:
                if d.name == "(not verified)":
                    print(f"graphsurgery: note: {name} not verified: {d.note}", file=sys.stderr)
    same = os.path.exists(args.output) and os.path.samefile(args.output, src)
    with Bar("saving", enabled=not args.quiet) as bar:
        model.save(args.output, overwrite=args.overwrite and same, progress=bar.update)
    for r in result.results:  # a pass that split a model of its own off (split-preprocessing)
        extra = r.details.pop("preprocessing_model", None)
        if extra is not None:
            side = os.path.splitext(args.output)[0] + ".preprocessing.onnx"
            load(extra).save(side, overwrite=True)
            r.details["preprocessing"] = side
            if not args.quiet and not args.json:
                print(f"wrote {side}")
    if args.json:
        print(json.dumps({"output": args.output, "passes": [
            {"name": r.name, "changed": r.changed, "changes": r.changes, "skipped": r.skipped,
             "details": _jsonable(r.details)} for r in result.results],
            "verification": [{"after": name, "outputs": [vars(d) for d in rep]}
                             for name, rep in result.verification]}, indent=2))
    elif not args.quiet:
        print(result)
        print(f"wrote {args.output}")
    return 0


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    try:
        return value.tolist()
    except AttributeError:
        return str(value)


def _cmd_debug(args: argparse.Namespace) -> int:
    from .debug import compare, extract_reproducer
    from .model import load

    refs = [x for x in (args.against, args.backend, args.arrays) if x]
    if len(refs) != 1:
        raise GraphSurgeryError("debug needs exactly one reference: --against MODEL, --backend reference|ort-noopt, "
                                "or --arrays REF.npz")
    model = load(args.model)
    inputs = None
    if args.inputs:
        import numpy as np

        with np.load(args.inputs, allow_pickle=False) as data:
            inputs = {k: data[k] for k in data.files}
    from .progress import Bar

    with Bar("comparing", enabled=not args.json) as bar:
        report = compare(model, refs[0], inputs, rtol=args.rtol, atol=args.atol, chunk=args.chunk,
                         progress=bar.update)
    if args.reproducer and report.culprit:
        from . import verify

        feeds = inputs if inputs is not None else verify.make_inputs(model.proto, batch=1)
        extract_reproducer(model, report.culprit, feeds, args.reproducer)
    if args.json:
        print(report.to_json(indent=2))
    else:
        print(report.format(limit=None if args.all else 40))
        if args.reproducer and report.culprit:
            print(f"reproducer written to {args.reproducer}")
    return 1 if report.bad or any(not r.ok for r in report.outputs) else 0


def _cmd_diff(args: argparse.Namespace) -> int:
    from .diff import diff

    d = diff(args.a, args.b)
    print(json.dumps(d.to_dict(), indent=2) if args.json else str(d))
    return 0 if d.empty else 1


def _cmd_extract(args: argparse.Namespace) -> int:
    from .model import load
    from .passes import create

    if not args.inputs and not args.outputs:
        raise GraphSurgeryError("extract needs --inputs and/or --outputs (tensor names, comma separated)")
    model = load(args.model)
    opts = {}
    if args.inputs:
        opts["inputs"] = [x.strip() for x in args.inputs.split(",") if x.strip()]
    if args.outputs:
        opts["outputs"] = [x.strip() for x in args.outputs.split(",") if x.strip()]
    result = create("cut", **opts).run(model)
    model.save(args.output)
    if not args.quiet:
        print(result)
        print(f"wrote {args.output}")
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    try:
        import netron
    except ImportError:
        raise GraphSurgeryError("show needs Netron: pip install 'graphsurgery[netron]'") from None
    from .model import load

    load(args.model)  # a clear error for a file that is not a model, before starting a server
    address = netron.start(args.model, address=("127.0.0.1", args.port), browse=not args.no_browser)
    host, port = address if isinstance(address, tuple) else ("127.0.0.1", args.port)
    print(f"Netron is serving {args.model} at http://{host}:{port} (loopback only); press Ctrl+C to stop")
    if args.no_wait:
        netron.stop()
        return 0
    try:
        netron.wait()
    except KeyboardInterrupt:
        netron.stop()
    return 0


def _cmd_passes(args: argparse.Namespace) -> int:
    from .passes import describe_all

    info = describe_all()
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return 0
    width = max(len(p["name"]) for p in info)
    for p in info:
        print(f"{p['name']:<{width}}  {p['summary']}")
        for key, opt in p["options"].items():
            print(f"{'':<{width}}    {key}={opt['default']}: {opt['help']}")
        if p["free_options"]:
            print(f"{'':<{width}}    NAME=VALUE for each graph input")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="graphsurgery", description="Inspect and repair ONNX models.")
    p.add_argument("-v", "--verbose", action="store_true", help="show tracebacks and debug logs")
    sub = p.add_subparsers(dest="command", required=True)
    ins = sub.add_parser("inspect", help="inputs, outputs, opsets, op counts, and the problems check() finds")
    ins.add_argument("model", nargs="?", help="path of an .onnx file")
    ins.add_argument("--example", action="store_true", help="inspect the example model bundled with graphsurgery")
    ins.add_argument("--json", action="store_true", help="machine-readable output")
    ins.add_argument("--no-check", action="store_true", help="skip onnx's checker and the invariant checks")
    ins.set_defaults(func=_cmd_inspect)
    run = sub.add_parser("run", help="apply a pipeline of passes and save the result")
    run.add_argument("model", nargs="?", help="path of an .onnx file")
    run.add_argument("--example", action="store_true", help="use the bundled example model")
    run.add_argument("-o", "--output", help="where to write the result")
    run.add_argument("-p", "--pipeline", required=True,
                     help='passes, e.g. "freeze-inputs(sr=16000),fold-constants,remove-if,cleanup"')
    run.add_argument("--verify", action="store_true",
                     help="run onnxruntime before and after each pass; stop at the first that changes outputs")
    run.add_argument("--inputs", help="inputs for --verify, as a .npz file (default: generated from the signature)")
    run.add_argument("--rtol", type=float, default=1e-5)
    run.add_argument("--atol", type=float, default=1e-6)
    run.add_argument("--overwrite", action="store_true", help="allow OUT to be the input file")
    run.add_argument("--json", action="store_true", help="machine-readable report")
    run.add_argument("-q", "--quiet", action="store_true")
    run.set_defaults(func=_cmd_run)
    dbg = sub.add_parser("debug", help="compare a model with a reference tensor by tensor; name the first node "
                                       "that differs")
    dbg.add_argument("model")
    dbg.add_argument("--against", help="another ONNX model over the same tensor names")
    dbg.add_argument("--backend", choices=["reference", "ort-noopt"],
                     help="the same model on onnx's reference evaluator, or onnxruntime without optimizations")
    dbg.add_argument("--arrays", help="reference values by tensor name, as .npz")
    dbg.add_argument("--inputs", help="model inputs as .npz (default: generated from the signature)")
    dbg.add_argument("--rtol", type=float, default=1e-4, help="relative to each tensor's largest value")
    dbg.add_argument("--atol", type=float, default=1e-5)
    dbg.add_argument("--chunk", type=int, help="tensors compared per run (bounds memory on large models)")
    dbg.add_argument("--reproducer", metavar="DIR", help="write the culprit node alone, with its inputs, to DIR")
    dbg.add_argument("--all", action="store_true", help="show every row")
    dbg.add_argument("--json", action="store_true")
    dbg.set_defaults(func=_cmd_debug)
    df = sub.add_parser("diff", help="structural difference of two models (exit 1 when they differ)")
    df.add_argument("a")
    df.add_argument("b")
    df.add_argument("--json", action="store_true")
    df.set_defaults(func=_cmd_diff)
    ex = sub.add_parser("extract", help="keep the subgraph between tensors (the cut pass)")
    ex.add_argument("model")
    ex.add_argument("-o", "--output", required=True)
    ex.add_argument("--inputs", help="tensors that become graph inputs, comma separated")
    ex.add_argument("--outputs", help="tensors that become graph outputs, comma separated")
    ex.add_argument("-q", "--quiet", action="store_true")
    ex.set_defaults(func=_cmd_extract)
    sh = sub.add_parser("show", help="open the model in Netron, served on loopback (needs graphsurgery[netron])")
    sh.add_argument("model")
    sh.add_argument("--port", type=int, default=8080)
    sh.add_argument("--no-browser", action="store_true")
    sh.add_argument("--no-wait", action="store_true", help=argparse.SUPPRESS)
    sh.set_defaults(func=_cmd_show)
    ps = sub.add_parser("passes", help="every pass, its options and what it does")
    ps.add_argument("--json", action="store_true")
    ps.set_defaults(func=_cmd_passes)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(message)s")
    try:
        return args.func(args)
    except BrokenPipeError:  # output piped into a command that stopped reading (| head)
        sys.stderr.close()
        return 0
    except GraphSurgeryError as exc:
        if args.verbose:
            raise
        print(f"graphsurgery: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
