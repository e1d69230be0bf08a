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
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(message)s")
    try:
        return args.func(args)
    except GraphSurgeryError as exc:
        if args.verbose:
            raise
        print(f"graphsurgery: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
