"""The ``graphsurgery`` command line: a thin shell over the library.

Every failure is one line on stderr and exit code 2 (3: ``run --verify`` found drift), with
``--json`` also a JSON object ``{"error": ...}`` on stdout; ``-v`` shows the traceback. A
failed command leaves no output file behind and never touches its input."""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
from importlib import resources

from .errors import GraphSurgeryError, UsageError


def example_path() -> str:
    """Path of the example model bundled with the package."""
    return str(resources.files("graphsurgery").joinpath("data/example.onnx"))


def version() -> str:
    """The installed package's version, from its metadata (see ``graphsurgery.__version__``)."""
    from . import __version__

    return __version__


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _os_error(exc: OSError, doing: str = "") -> str:
    """``cannot write /x/y.onnx: Permission denied`` from an OSError, whatever its form."""
    what = exc.strerror or exc.__class__.__name__
    name = exc.filename if exc.filename is not None else ""
    if doing:
        return f"{doing}: {what}"
    return f"{name}: {what}" if name else _one_line(str(exc) or what)


def _read_npz(path: str, option: str) -> dict:
    """Arrays by name from an .npz file (never pickle), or one clear error naming the option."""
    import zipfile

    import numpy as np

    if not os.path.exists(path):
        raise UsageError(f"{option} {path}: file does not exist")
    if os.path.isdir(path):
        raise UsageError(f"{option} {path} is a folder; give an .npz file (numpy.savez(path, name=array, ...))")
    _not_a_device(path, option)
    try:
        data = np.load(path, allow_pickle=False)
    except ValueError:  # numpy's guess when the file is neither .npy nor .npz: pickle, refused
        raise UsageError(f"{option} {path} is not an .npz file; save arrays by name with "
                         "numpy.savez(path, name=array, ...)") from None
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise UsageError(f"{option} {path} is not a readable .npz file ({_one_line(exc) or 'empty'})") from None
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise UsageError(f"{option} {path} holds a single unnamed array (.npy); save arrays by name with "
                         "numpy.savez(path, name=array, ...)")
    try:
        with data:
            arrays = {k: data[k] for k in data.files}
    except ValueError as exc:
        reason = "it holds object (pickled) arrays, which graphsurgery never loads" if "pickle" in str(exc) \
            else _one_line(exc)
        raise UsageError(f"{option} {path}: cannot read its arrays: {reason}") from None
    except (OSError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise UsageError(f"{option} {path} is not a readable .npz file ({_one_line(exc)})") from None
    if not arrays:
        raise UsageError(f"{option} {path} holds no arrays")
    return arrays


def _check_output(path: str, option: str, inputs: list[str | None], overwrite: bool | None = None) -> str:
    """Refuse, before any work is done, an output that cannot be written or is an input."""
    if not path or not path.strip():
        raise UsageError(f"{option} needs a file name")
    if path == "-":
        raise UsageError(f"{option} -: a model cannot be written to stdout; give a file name")
    if path.endswith(("/", os.sep)):
        raise UsageError(f"{option} {path} ends with a slash, so it names a folder; give a file name")
    if os.path.isdir(path):
        raise UsageError(f"{option} {path} is a folder; give a file name, e.g. {os.path.join(path, 'model.onnx')}")
    if os.path.exists(path) and not os.path.isfile(path):  # /dev/null, a pipe: never replace those
        raise UsageError(f"{option} {path} exists and is not a regular file; give a file name")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.exists(folder):
        raise UsageError(f"{option} {path}: folder {folder} does not exist")
    if not os.path.isdir(folder):
        raise UsageError(f"{option} {path}: {folder} is a file, not a folder")
    for src in inputs:
        if src and not overwrite and os.path.exists(path) and os.path.exists(src) and os.path.samefile(path, src):
            raise UsageError(f"refusing to overwrite the input {src} ({option} {path}); write elsewhere"
                             + (", or pass --overwrite" if overwrite is False else ""))
    import tempfile

    try:  # the only sure test that a file can be created there (permissions, read-only or pseudo file systems)
        fd, probe = tempfile.mkstemp(prefix=".graphsurgery-probe-", dir=folder)
    except OSError as exc:
        raise UsageError(f"{option} {path}: cannot create a file in folder {folder} "
                         f"({exc.strerror or exc.__class__.__name__})") from None
    os.close(fd)
    os.unlink(probe)
    return path


def _save(model, path: str, **kwargs) -> None:
    """Save, turning an operating system error into one line naming the file. A save that fails
    leaves no new file behind (a model file whose external data file was not written, say)."""
    data = path + ".data"
    new = [p for p in (path, data) if not os.path.lexists(p)]
    try:
        model.save(path, **kwargs)
    except BaseException as exc:
        for p in new:
            _remove_quietly(p)
        if isinstance(exc, OSError):
            raise GraphSurgeryError(_os_error(exc, f"cannot write {path}")) from None
        raise


def _not_a_device(path: str, what: str) -> None:
    """A character or block device (/dev/zero, /dev/sda) would be read without end: refuse it."""
    import stat

    try:
        mode = os.stat(path).st_mode
    except OSError:
        return  # the reader names the problem
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        raise UsageError(f"{what} {path} is a device, not a file")


def _load(path: str):
    from .core.model import load

    _not_a_device(path, "model file")
    try:
        return load(path)
    except OSError as exc:
        raise GraphSurgeryError(_os_error(exc, f"cannot read {path}")) from None


def _tolerance(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {text!r}")
    return value


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
    model = _load(path)
    s = summarize(model, check=not args.no_check)
    from .backends.command import add_backend, format_backend

    errors = add_backend(s, model, args)  # inspect --for: that backend's findings replace the lint
    print(json.dumps(s, indent=2, default=str) if args.json else format_text(s) + format_backend(s))
    return 1 if s.get("problems") or errors else 0


def _cmd_fix(args: argparse.Namespace) -> int:
    from .backends.command import run_fix

    return run_fix(args)


def _cmd_run(args: argparse.Namespace) -> int:
    from .passes import Pipeline
    from .verify import VerificationError

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
    _check_output(args.output, "-o", [src], overwrite=args.overwrite)
    model = _load(src)
    if args.inputs:
        inputs = _read_npz(args.inputs, "--inputs")
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
            report = [vars(d) for d in getattr(exc, "report", None) or []]
            raise _Failure(str(exc), 3, report=report) from exc
    if not args.json:  # a pass --verify could not check is said even with -q
        for note in result.notes:
            print(f"graphsurgery: note: {_one_line(note)}", file=sys.stderr)
        for name, report in result.verification:
            for d in report:
                if d.name == "(not verified)":
                    print(f"graphsurgery: note: {name} not verified: {d.note}", file=sys.stderr)
    sides = []
    for r in result.results:  # a pass that split a model of its own off (split-preprocessing)
        extra = r.details.pop("preprocessing_model", None)
        if extra is not None:
            side = os.path.splitext(args.output)[0] + ".preprocessing.onnx"
            _check_output(side, "the preprocessing model", [src])
            sides.append((r, extra, side))
    with Bar("saving", enabled=not args.quiet and not args.json) as bar:
        _save(model, args.output, overwrite=args.overwrite, progress=bar.update)
    for r, extra, side in sides:
        from .core.model import load

        try:
            _save(load(extra), side, overwrite=True)
        except GraphSurgeryError:
            _remove_quietly(args.output)  # all or nothing
            raise
        r.details["preprocessing"] = side
        if not args.quiet and not args.json:
            print(f"wrote {side}")
    if args.json:
        print(json.dumps({"output": args.output, "passes": [
            {"name": r.name, "changed": r.changed, "changes": r.changes, "skipped": r.skipped,
             "details": _jsonable(r.details)} for r in result.results],
            "verification": [{"after": name, "outputs": [_jsonable(vars(d)) for d in rep]}
                             for name, rep in result.verification], "notes": result.notes}, indent=2))
    elif not args.quiet:
        print(_format_run(result.results, result.verification, verbose=args.verbose))
        print(f"wrote {args.output}")
    return 0


def _format_run(results: list, verification: list, verbose: bool) -> str:
    """One line per pass (what it did, in counts); each change and skip under it with -v."""
    lines = []
    for r in results:
        head = f"{r.name}: " + (f"{len(r.changes)} change(s)" if r.changed else "no change")
        if r.skipped:
            head += f", {len(r.skipped)} skipped"
        lines.append(head)
        if verbose:
            lines += [f"  - {c}" for c in r.changes] + [f"  · skipped: {s}" for s in r.skipped]
    for name, report in verification:
        lines.append(f"verified after {name}: " + "; ".join(str(d) for d in report))
    if not verbose and any(r.changes or r.skipped for r in results):
        lines.append("(-v lists each change)")
    return "\n".join(lines)


def _remove_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no inf or nan
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    try:
        return _jsonable(value.tolist())
    except AttributeError:
        return str(value)


def _cmd_debug(args: argparse.Namespace) -> int:
    from .debug import compare, extract_reproducer

    refs = [x for x in (args.against, args.backend, args.arrays) if x]
    if len(refs) != 1:
        raise UsageError("debug needs exactly one reference: --against MODEL, --backend reference|ort-noopt, "
                         "or --arrays REF.npz")
    if args.reproducer and os.path.exists(args.reproducer) and not os.path.isdir(args.reproducer):
        raise UsageError(f"--reproducer {args.reproducer} is a file; give a folder (created if missing)")
    model = _load(args.model)
    reference = refs[0]
    if args.against:
        reference = _load(args.against)
    elif args.arrays:
        reference = _read_npz(args.arrays, "--arrays")
    inputs = _read_npz(args.inputs, "--inputs") if args.inputs else None
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
            raise GraphSurgeryError(_os_error(exc, f"cannot write the reproducer to {args.reproducer}")) from None
    if args.json:
        print(report.to_json(indent=2))
    else:
        print(report.format(limit=None if args.all else 40))
        if args.reproducer and report.culprit:
            print(f"reproducer written to {args.reproducer}")
    return 1 if report.bad or any(not r.ok for r in report.outputs) else 0


def _cmd_diff(args: argparse.Namespace) -> int:
    from .diff import diff

    d = diff(_load(args.a), _load(args.b))
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
    _check_output(args.output, "-o", [args.model])
    model = _load(args.model)
    result = cut.run(model)
    _save(model, args.output)
    if not args.quiet:
        print(_format_run([result], [], verbose=args.verbose))
        print(f"wrote {args.output}")
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    try:
        import netron
    except ImportError:
        raise GraphSurgeryError("show needs Netron: pip install 'graphsurgery[netron]'") from None

    _load(args.model)  # a clear error for a file that is not a model, before starting a server
    try:
        address = netron.start(args.model, address=("127.0.0.1", args.port), browse=not args.no_browser)
    except (OSError, OverflowError) as exc:
        why = _one_line(getattr(exc, "strerror", None) or exc)
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


class _Failure(GraphSurgeryError):
    """A failure with its own exit code and extra JSON fields."""

    def __init__(self, message: str, code: int = 2, **extra):
        super().__init__(message)
        self.code = code
        self.extra = extra


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


def build_parser() -> argparse.ArgumentParser:
    from . import verify  # the tolerances' defaults

    p = _Parser(prog="graphsurgery", description="Inspect and repair ONNX models.")
    p.add_argument("-v", "--verbose", action="count", default=0,
                   help="show every change and, on failure, the traceback; -vv also debug logs")
    p.add_argument("--version", action=_Version, nargs=0, help="show the version and exit")
    # -v after the command too (graphsurgery run ... -v); SUPPRESS keeps the top-level value when absent
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                        help="show every change and, on failure, the traceback; -vv also debug logs")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    ins = sub.add_parser("inspect", parents=[common],
                         help="inputs, outputs, opsets, op counts, and the problems check() finds")
    ins.add_argument("model", nargs="?", help="path of an .onnx file")
    ins.add_argument("--example", action="store_true", help="inspect the example model bundled with graphsurgery")
    ins.add_argument("--json", action="store_true", help="machine-readable output")
    ins.add_argument("--no-check", action="store_true", help="skip onnx's checker and the invariant checks")
    ins.add_argument("--for", dest="backend", choices=_backends(),
                     help="lint for one backend: what it will refuse, per node, and the pass that fixes it")
    ins.add_argument("--legacy", action="store_true",
                     help="with --for tensorrt: also what TensorRT parsers before 10 did differently")
    ins.set_defaults(func=_cmd_inspect)
    run = sub.add_parser("run", parents=[common], help="apply a pipeline of passes and save the result")
    run.add_argument("model", nargs="*", help="path of an .onnx file (several: -o names a folder)")
    run.add_argument("--example", action="store_true", help="use the bundled example model")
    run.add_argument("-o", "--output", help="where to write the result")
    run.add_argument("-p", "--pipeline", required=True,
                     help='passes, e.g. "freeze-inputs(sr=16000),fold-constants,remove-if,cleanup"')
    run.add_argument("--verify", action="store_true",
                     help="run onnxruntime before and after each pass; stop at the first that changes outputs, "
                          "or when the result no longer loads in onnxruntime with its default optimizations")
    run.add_argument("--inputs", help="inputs for --verify, as a .npz file (default: generated from the signature)")
    run.add_argument("--rtol", type=_tolerance, default=verify.RTOL)
    run.add_argument("--atol", type=_tolerance, default=verify.ATOL)
    run.add_argument("--overwrite", action="store_true", help="allow OUT to be the input file")
    run.add_argument("--json", action="store_true", help="machine-readable report")
    run.add_argument("-q", "--quiet", action="store_true")
    run.add_argument("--jobs", type=_positive, default=1, help="models processed at once, in worker processes")
    run.set_defaults(func=_cmd_run)
    from .cli_optimize import add_parser

    add_parser(sub, common)
    dbg = sub.add_parser("debug", parents=[common],
                         help="compare a model with a reference tensor by tensor; name the first node that differs")
    dbg.add_argument("model")
    dbg.add_argument("--against", help="another ONNX model over the same tensor names")
    dbg.add_argument("--backend", choices=["reference", "ort-noopt"],
                     help="the same model on onnx's reference evaluator, or onnxruntime without optimizations")
    dbg.add_argument("--arrays", help="reference values by tensor name, as .npz")
    dbg.add_argument("--inputs", help="model inputs as .npz (default: generated from the signature)")
    dbg.add_argument("--rtol", type=_tolerance, default=verify.ACROSS_BACKENDS_RTOL,
                     help="relative to each tensor's largest value")
    dbg.add_argument("--atol", type=_tolerance, default=verify.ACROSS_BACKENDS_ATOL)
    dbg.add_argument("--chunk", type=_positive, help="tensors compared per run (bounds memory on large models)")
    dbg.add_argument("--reproducer", metavar="DIR", help="write the culprit node alone, with its inputs, to DIR")
    dbg.add_argument("--all", action="store_true", help="show every row")
    dbg.add_argument("--json", action="store_true")
    dbg.set_defaults(func=_cmd_debug)
    df = sub.add_parser("diff", parents=[common],
                        help="structural difference of two models: a summary, every change with -v "
                             "(exit 1 when they differ)")
    df.add_argument("a")
    df.add_argument("b")
    df.add_argument("--json", action="store_true")
    df.set_defaults(func=_cmd_diff)
    ex = sub.add_parser("extract", parents=[common], help="keep the subgraph between tensors (the cut pass)")
    ex.add_argument("model")
    ex.add_argument("-o", "--output", required=True)
    ex.add_argument("--inputs", help="tensors that become graph inputs, comma separated")
    ex.add_argument("--outputs", help="tensors that become graph outputs, comma separated")
    ex.add_argument("-q", "--quiet", action="store_true")
    ex.set_defaults(func=_cmd_extract)
    sh = sub.add_parser("show", parents=[common],
                        help="open the model in Netron, served on loopback (needs graphsurgery[netron])")
    sh.add_argument("model")
    sh.add_argument("--port", type=_port, default=8080)
    sh.add_argument("--no-browser", action="store_true")
    sh.add_argument("--no-wait", action="store_true", help=argparse.SUPPRESS)
    sh.set_defaults(func=_cmd_show)
    fx = sub.add_parser("fix", parents=[common],
                        help="apply the passes a backend needs (from its lint), verified; refuse what none fixes")
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
    fx.add_argument("--rtol", type=_tolerance, default=1e-5)
    fx.add_argument("--atol", type=_tolerance, default=1e-6)
    fx.add_argument("--overwrite", action="store_true", help="allow OUT to be the input file")
    fx.add_argument("--json", action="store_true", help="machine-readable report")
    fx.add_argument("-q", "--quiet", action="store_true")
    fx.set_defaults(func=_cmd_fix)
    ps = sub.add_parser("passes", parents=[common], help="every pass, its options and what it does")
    ps.add_argument("--json", action="store_true")
    ps.set_defaults(func=_cmd_passes)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit code (0 success, 1 a difference or problem found,
    or ``fix --partial`` left errors, 2 failure, 3 verification failed)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    want_json = "--json" in argv
    verbose = any(a == "--verbose" or (a.startswith("-v") and set(a[1:]) == {"v"}) for a in argv)
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, --version
        return exc.code if isinstance(exc.code, int) else 0
    except UsageError as exc:
        return _report(exc, want_json)
    except KeyboardInterrupt:
        print("graphsurgery: interrupted", file=sys.stderr)
        return 130
    want_json = bool(getattr(args, "json", False))
    logging.basicConfig(level=logging.DEBUG if args.verbose >= 2 else logging.WARNING, format="%(message)s")
    try:
        return args.func(args)
    except BrokenPipeError:  # output piped into a command that stopped reading (| head)
        _silence_stdout()
        return 0
    except KeyboardInterrupt:
        print("graphsurgery: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the one place that turns every failure into one line
        if verbose or args.verbose:
            import traceback

            traceback.print_exc()
        return _report(exc, want_json)


def _report(exc: BaseException, want_json: bool) -> int:
    """One line on stderr, and with --json an error object on stdout; returns the exit code."""
    code = getattr(exc, "code", 2) if isinstance(exc, _Failure) else 2
    extra = getattr(exc, "extra", {}) if isinstance(exc, _Failure) else {}
    if isinstance(exc, GraphSurgeryError):
        message = _one_line(exc)
        kind = "usage" if isinstance(exc, UsageError) else type(exc).__name__
        if isinstance(exc, _Failure) and exc.__cause__ is not None:
            kind = type(exc.__cause__).__name__
    elif isinstance(exc, OSError):
        message, kind = _os_error(exc), type(exc).__name__
    elif isinstance(exc, MemoryError):
        message, kind = "out of memory", "MemoryError"
    else:
        message = (f"unexpected {type(exc).__name__}: {_one_line(exc)}; this is a bug in graphsurgery, "
                   "please report it with the output of the same command run with -v")
        kind = "internal"
    print(f"graphsurgery: error: {message}", file=sys.stderr)
    if want_json:
        try:
            print(json.dumps({"error": message, "type": kind, "exit_code": code, **_jsonable(extra)}, indent=2))
        except BrokenPipeError:  # the error object piped into a command that stopped reading
            _silence_stdout()
    return code


def _silence_stdout() -> None:
    """Nothing more may reach a closed pipe, not even Python's flush at exit."""
    try:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - lives until the process ends
    except OSError:
        pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
