"""The ``graphsurgery`` command line: a thin shell over the library.

Every failure is one line on stderr and exit code 2 (3: ``run --verify`` found drift), with
``--json`` also a JSON object ``{"error": ...}`` on stdout; ``-v`` shows the traceback. A
failed command leaves no output file behind and never touches its input."""

from __future__ import annotations

import argparse
import json
import os
import sys

from .cli_common import (
    check_output,
    example_path,
    format_run,
    jsonable,
    load,
    one_line,
    os_error,
    positive,
    read_npz,
    remove_quietly,
    report_error,
    save,
    silence_stdout,
    tolerance,
    verification_failed,
)
from .errors import GraphSurgeryError, UsageError


def version() -> str:
    """The installed package's version, from its metadata (see ``graphsurgery.__version__``)."""
    from . import __version__

    return __version__


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number 0..65535, got {text!r}")
    return value


def _cmd_inspect(args: argparse.Namespace) -> int:
    from .summary import format_text, summarize

    if args.example and args.model:
        raise UsageError("inspect takes a MODEL path or --example, not both")
    path = example_path() if args.example else args.model
    if path is None:
        raise UsageError("inspect needs a MODEL path (or --example for the bundled example)")
    model = load(path)
    s = summarize(model, check=not args.no_check)
    from .cli_fix import add_backend, format_backend

    errors = add_backend(s, model, args)  # inspect --for: that backend's findings replace the lint
    print(json.dumps(s, indent=2, default=str) if args.json else format_text(s) + format_backend(s))
    return 1 if s.get("problems") or errors else 0


def _cmd_fix(args: argparse.Namespace) -> int:
    from .cli_fix import run_fix

    return run_fix(args)


def _cmd_run(args: argparse.Namespace) -> int:
    from .errors import VerificationError
    from .passes import Pipeline

    if args.example and args.model:
        raise UsageError("run takes a MODEL path or --example, not both")
    if isinstance(args.model, list):
        if len(args.model) > 1:
            Pipeline.from_text(args.pipeline)  # a wrong pipeline is one error, not one per model
            from .cli_optimize import many

            return many(args, _cmd_run)
        args.model = args.model[0] if args.model else None
    src = example_path() if args.example else args.model
    if src is None:
        raise UsageError("run needs a MODEL path (or --example)")
    if args.output is None:
        raise UsageError("run needs -o OUT.onnx: graphsurgery never overwrites its input unless asked")
    if args.inputs and not args.verify:
        raise UsageError("--inputs gives the inputs --verify runs the model on; add --verify")
    # everything that can be checked before the work is: the pipeline text, the files
    pipeline = Pipeline.from_text(args.pipeline, verify=args.verify, rtol=args.rtol, atol=args.atol)
    check_output(args.output, "-o", [src], overwrite=args.overwrite)
    model = load(src)
    if args.inputs:
        inputs = read_npz(args.inputs, "--inputs")
        unknown = sorted(set(inputs) - set(model.graph.input_names))
        if unknown:
            raise UsageError(f"--inputs {args.inputs}: {', '.join(map(repr, unknown))} "
                             f"{'is not an input' if len(unknown) == 1 else 'are not inputs'} of the model "
                             f"(its inputs: {', '.join(model.graph.input_names) or 'none'})")
        pipeline.inputs = inputs
    from .progress import Bar

    with Bar("passes", enabled=not args.quiet and not args.json) as bar:
        pipeline.progress = bar.update
        try:
            result = pipeline.run(model)
        except VerificationError as exc:
            bar.close()
            raise verification_failed(exc) from exc
    if not args.json:  # a pass --verify could not check is said even with -q
        for note in result.notes:
            print(f"graphsurgery: note: {one_line(note)}", file=sys.stderr)
        for name, report in result.verification:
            for d in report:
                if d.name == "(not verified)":
                    print(f"graphsurgery: note: {name} not verified: {d.note}", file=sys.stderr)
    sides = []
    for r in result.results:  # a pass that split a model of its own off (split-preprocessing)
        extra = r.details.pop("preprocessing_model", None)
        if extra is not None:
            side = os.path.splitext(args.output)[0] + ".preprocessing.onnx"
            check_output(side, "the preprocessing model", [src])
            sides.append((r, extra, side))
    with Bar("saving", enabled=not args.quiet and not args.json) as bar:
        save(model, args.output, overwrite=args.overwrite, progress=bar.update)
    for r, extra, side in sides:
        from .core.model import load as load_model

        try:
            save(load_model(extra), side, overwrite=True)
        except GraphSurgeryError:
            remove_quietly(args.output)  # all or nothing
            raise
        r.details["preprocessing"] = side
        if not args.quiet and not args.json:
            print(f"wrote {side}")
    if args.json:
        print(json.dumps({"output": args.output, "passes": [
            {"name": r.name, "changed": r.changed, "changes": r.changes, "skipped": r.skipped,
             "details": jsonable(r.details)} for r in result.results],
            "verification": [{"after": name, "outputs": [jsonable(vars(d)) for d in rep]}
                             for name, rep in result.verification], "notes": result.notes}, indent=2))
    elif not args.quiet:
        print(format_run(result.results, result.verification, verbose=args.verbose))
        print(f"wrote {args.output}")
    return 0


def _cmd_debug(args: argparse.Namespace) -> int:
    from .debug import compare, extract_reproducer

    refs = [x for x in (args.against, args.backend, args.arrays) if x]
    if len(refs) != 1:
        raise UsageError("debug needs exactly one reference: --against MODEL, --backend reference|ort-noopt, "
                         "or --arrays REF.npz")
    if args.reproducer and os.path.exists(args.reproducer) and not os.path.isdir(args.reproducer):
        raise UsageError(f"--reproducer {args.reproducer} is a file; give a folder (created if missing)")
    model = load(args.model)
    reference = refs[0]
    if args.against:
        reference = load(args.against)
    elif args.arrays:
        reference = read_npz(args.arrays, "--arrays")
    inputs = read_npz(args.inputs, "--inputs") if args.inputs else None
    from .progress import Bar

    with Bar("comparing", enabled=not args.json) as bar:
        report = compare(model, reference, inputs, rtol=args.rtol, atol=args.atol, chunk=args.chunk,
                         progress=bar.update)
    if args.reproducer and report.culprit:
        from . import verify

        feeds = inputs if inputs is not None else verify.make_inputs(model.proto, batch=1)
        try:
            extract_reproducer(model, report.culprit, feeds, args.reproducer)
        except OSError as exc:
            raise GraphSurgeryError(os_error(exc, f"cannot write the reproducer to {args.reproducer}")) from None
    if args.json:
        print(report.to_json(indent=2))
    else:
        print(report.format(limit=None if args.all else 40))
        if args.reproducer and report.culprit:
            print(f"reproducer written to {args.reproducer}")
    return 1 if report.bad or any(not r.ok for r in report.outputs) else 0


def _cmd_diff(args: argparse.Namespace) -> int:
    from .diff import diff

    d = diff(load(args.a), load(args.b))
    if args.json:
        print(json.dumps(d.to_dict(), indent=2))
    else:
        print(d.format(details=args.verbose))
        if not args.verbose and not d.empty:
            print(f"({len(d.details())} detail line(s): -v lists them)")
    return 0 if d.empty else 1


def _names(text: str | None, option: str) -> list[str] | None:
    if text is None:
        return None
    names = [x.strip() for x in text.split(",") if x.strip()]
    if not names:
        raise UsageError(f"{option} {text!r} names no tensor; give tensor names, comma separated")
    return names


def _cmd_extract(args: argparse.Namespace) -> int:
    from .passes import create

    if args.inputs is None and args.outputs is None:
        raise UsageError("extract needs --inputs and/or --outputs (tensor names, comma separated)")
    opts = {}
    if args.inputs is not None:
        opts["inputs"] = _names(args.inputs, "--inputs")
    if args.outputs is not None:
        opts["outputs"] = _names(args.outputs, "--outputs")
    cut = create("cut", **opts)
    check_output(args.output, "-o", [args.model])
    model = load(args.model)
    result = cut.run(model)
    save(model, args.output)
    if not args.quiet:
        print(format_run([result], [], verbose=args.verbose))
        print(f"wrote {args.output}")
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    try:
        import netron
    except ImportError:
        raise GraphSurgeryError("show needs Netron: pip install 'graphsurgery[netron]'") from None

    load(args.model)  # a clear error for a file that is not a model, before starting a server
    try:
        address = netron.start(args.model, address=("127.0.0.1", args.port), browse=not args.no_browser)
    except (OSError, OverflowError) as exc:
        why = one_line(getattr(exc, "strerror", None) or exc)
        raise GraphSurgeryError(f"cannot serve on 127.0.0.1:{args.port}: {why}; try another --port") from None
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
            value = "(required)" if opt["required"] else opt["default"]
            print(f"{'':<{width}}    {key}={value}: {opt['help']}")
        if p["free_options"]:
            print(f"{'':<{width}}    {p['free_help']}")
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse, but a wrong command line is one line (and JSON with --json), not usage text,
    and options are spelt in full (``--over`` is not taken for ``--overwrite``)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        import re

        from .errors import did_you_mean

        m = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)$", message)
        if m:  # argument COMMAND: invalid choice: 'inspectt' (choose from 'inspect', ...)
            choices = re.findall(r"'([^']*)'", m.group(2))
            hint = did_you_mean(m.group(1), choices, n=1).removeprefix("; ")
            hint = f"{hint} " if hint else ""
            what = message[:m.start()]
            what = "unknown command" if what == "argument COMMAND: " else f"{what}unknown value"
            message = f"{what} {m.group(1)!r}; {hint}choose from {', '.join(choices)}"
        raise UsageError(f"{message} (see {self.prog} --help)")


class _Version(argparse.Action):
    """``--version``: the version is read from the package metadata only when asked for."""

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"{parser.prog} {version()}")
        parser.exit()


def _backends() -> tuple[str, ...]:
    from .backends import BACKENDS

    return BACKENDS


def _inspect_args(ins: argparse.ArgumentParser) -> None:
    ins.add_argument("model", nargs="?", help="path of an .onnx file")
    ins.add_argument("--example", action="store_true", help="inspect the example model bundled with graphsurgery")
    ins.add_argument("--json", action="store_true", help="machine-readable output")
    ins.add_argument("--no-check", action="store_true", help="skip onnx's checker and the invariant checks")
    ins.add_argument("--for", dest="backend", choices=_backends(),
                     help="lint for one backend: what it will refuse, per node, and the pass that fixes it")
    ins.add_argument("--legacy", action="store_true",
                     help="with --for tensorrt: also what TensorRT parsers before 10 did differently")
    ins.set_defaults(func=_cmd_inspect)


def _run_args(run: argparse.ArgumentParser) -> None:
    from .tolerances import ATOL, RTOL

    run.add_argument("model", nargs="*", help="path of an .onnx file (several: -o names a folder)")
    run.add_argument("--example", action="store_true", help="use the bundled example model")
    run.add_argument("-o", "--output", help="where to write the result")
    run.add_argument("-p", "--pipeline", required=True,
                     help='passes, e.g. "freeze-inputs(sr=16000),fold-constants,remove-if,cleanup"')
    run.add_argument("--verify", action="store_true",
                     help="run onnxruntime before and after each pass; stop at the first that changes outputs, "
                          "or when the result no longer loads in onnxruntime with its default optimizations")
    run.add_argument("--inputs", help="inputs for --verify, as a .npz file (default: generated from the signature)")
    run.add_argument("--rtol", type=tolerance, default=RTOL)
    run.add_argument("--atol", type=tolerance, default=ATOL)
    run.add_argument("--overwrite", action="store_true", help="allow OUT to be the input file")
    run.add_argument("--json", action="store_true", help="machine-readable report")
    run.add_argument("-q", "--quiet", action="store_true")
    run.add_argument("--jobs", type=positive, default=1, help="models processed at once, in worker processes")
    run.set_defaults(func=_cmd_run)


def _optimize_args(opt: argparse.ArgumentParser) -> None:
    from .cli_optimize import add_arguments

    add_arguments(opt)


def _debug_args(dbg: argparse.ArgumentParser) -> None:
    from .tolerances import ACROSS_BACKENDS_ATOL, ACROSS_BACKENDS_RTOL

    dbg.add_argument("model")
    dbg.add_argument("--against", help="another ONNX model over the same tensor names")
    dbg.add_argument("--backend", choices=["reference", "ort-noopt"],
                     help="the same model on onnx's reference evaluator, or onnxruntime without optimizations")
    dbg.add_argument("--arrays", help="reference values by tensor name, as .npz")
    dbg.add_argument("--inputs", help="model inputs as .npz (default: generated from the signature)")
    dbg.add_argument("--rtol", type=tolerance, default=ACROSS_BACKENDS_RTOL,
                     help="relative to each tensor's largest value")
    dbg.add_argument("--atol", type=tolerance, default=ACROSS_BACKENDS_ATOL)
    dbg.add_argument("--chunk", type=positive, help="tensors compared per run (bounds memory on large models)")
    dbg.add_argument("--reproducer", metavar="DIR", help="write the culprit node alone, with its inputs, to DIR")
    dbg.add_argument("--all", action="store_true", help="show every row")
    dbg.add_argument("--json", action="store_true")
    dbg.set_defaults(func=_cmd_debug)


def _diff_args(df: argparse.ArgumentParser) -> None:
    df.add_argument("a")
    df.add_argument("b")
    df.add_argument("--json", action="store_true")
    df.set_defaults(func=_cmd_diff)


def _extract_args(ex: argparse.ArgumentParser) -> None:
    ex.add_argument("model")
    ex.add_argument("-o", "--output", required=True)
    ex.add_argument("--inputs", help="tensors that become graph inputs, comma separated")
    ex.add_argument("--outputs", help="tensors that become graph outputs, comma separated")
    ex.add_argument("-q", "--quiet", action="store_true")
    ex.set_defaults(func=_cmd_extract)


def _show_args(sh: argparse.ArgumentParser) -> None:
    sh.add_argument("model")
    sh.add_argument("--port", type=_port, default=8080)
    sh.add_argument("--no-browser", action="store_true")
    sh.add_argument("--no-wait", action="store_true", help=argparse.SUPPRESS)
    sh.set_defaults(func=_cmd_show)


def _fix_args(fx: argparse.ArgumentParser) -> None:
    from .tolerances import ATOL, RTOL

    fx.add_argument("model", nargs="?", help="path of an .onnx file")
    fx.add_argument("--example", action="store_true", help="use the bundled example model")
    fx.add_argument("--for", dest="backend", required=True, choices=_backends())
    fx.add_argument("-o", "--output", help="where to write the result")
    fx.add_argument("--set-shape", metavar="NAME=DIMS,...", help="input shapes, e.g. input=1x3x224x224")
    fx.add_argument("--freeze", metavar="NAME=VALUE,...", help="inputs that are settings, e.g. sr=16000")
    fx.add_argument("--legacy", action="store_true",
                    help="with --for tensorrt: also fix for parsers before TensorRT 10 (InstanceNorm epsilon)")
    fx.add_argument("--partial", action="store_true",
                    help="write the result even when errors remain (listed; exit code 1)")
    fx.add_argument("--no-verify", action="store_true", help="skip running onnxruntime before and after")
    fx.add_argument("--inputs", help="inputs for verification, as a .npz file")
    fx.add_argument("--rtol", type=tolerance, default=RTOL)
    fx.add_argument("--atol", type=tolerance, default=ATOL)
    fx.add_argument("--overwrite", action="store_true", help="allow OUT to be the input file")
    fx.add_argument("--json", action="store_true", help="machine-readable report")
    fx.add_argument("-q", "--quiet", action="store_true")
    fx.set_defaults(func=_cmd_fix)


def _passes_args(ps: argparse.ArgumentParser) -> None:
    ps.add_argument("--json", action="store_true")
    ps.set_defaults(func=_cmd_passes)


# every command, in the order --help lists them: its one-line help, and what adds its options
COMMANDS = {
    "inspect": ("inputs, outputs, opsets, op counts, and the problems check() finds", _inspect_args),
    "run": ("apply a pipeline of passes and save the result", _run_args),
    "optimize": ("the safe optimisation chain to a fixed point, verified: a smaller model that computes the same",
                 _optimize_args),
    "debug": ("compare a model with a reference tensor by tensor; name the first node that differs", _debug_args),
    "diff": ("structural difference of two models: a summary, every change with -v (exit 1 when they differ)",
             _diff_args),
    "extract": ("keep the subgraph between tensors (the cut pass)", _extract_args),
    "show": ("open the model in Netron, served on loopback (needs graphsurgery[netron])", _show_args),
    "fix": ("apply the passes a backend needs (from its lint), verified; refuse what none fixes", _fix_args),
    "passes": ("every pass, its options and what it does", _passes_args),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The command line's parser. With ``command``, only that command gets its options (the
    others are still listed, with their help), so running one command builds, and imports,
    nothing the others need: ``run`` does not import the backends' support data."""
    p = _Parser(prog="graphsurgery", description="Inspect and repair ONNX models.")
    p.add_argument("-v", "--verbose", action="count", default=0,
                   help="show every change and, on failure, the traceback; -vv also debug logs")
    p.add_argument("--version", action=_Version, nargs=0, help="show the version and exit")
    # -v after the command too (graphsurgery run ... -v); SUPPRESS keeps the top-level value when absent
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                        help="show every change and, on failure, the traceback; -vv also debug logs")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    for name, (help_text, add_arguments) in COMMANDS.items():
        one = sub.add_parser(name, parents=[common], help=help_text)
        if command is None or name == command:
            add_arguments(one)
    return p


def _command_in(argv: list[str]) -> str | None:
    """The command ``argv`` runs, when its first word that is not an option names one (the
    top-level options take no value)."""
    word = next((a for a in argv if not a.startswith("-")), None)
    return word if word in COMMANDS else None


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit code (0 success, 1 a difference or problem found,
    or ``fix --partial`` left errors, 2 failure, 3 verification failed)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    want_json = "--json" in argv
    verbose = any(a == "--verbose" or (a.startswith("-v") and set(a[1:]) == {"v"}) for a in argv)
    try:
        args = build_parser(_command_in(argv)).parse_args(argv)
    except SystemExit as exc:  # --help, --version
        return exc.code if isinstance(exc.code, int) else 0
    except UsageError as exc:
        return report_error(exc, want_json)
    except KeyboardInterrupt:
        print("graphsurgery: interrupted", file=sys.stderr)
        return 130
    want_json = bool(getattr(args, "json", False))
    import logging

    logging.basicConfig(level=logging.DEBUG if args.verbose >= 2 else logging.WARNING, format="%(message)s")
    try:
        return args.func(args)
    except BrokenPipeError:  # output piped into a command that stopped reading (| head)
        silence_stdout()
        return 0
    except KeyboardInterrupt:
        print("graphsurgery: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the one place that turns every failure into one line
        if verbose or args.verbose:
            import traceback

            traceback.print_exc()
        return report_error(exc, want_json)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
