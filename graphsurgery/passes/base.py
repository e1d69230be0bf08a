"""What every pass is: a named, documented, idempotent transformation with typed options."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import onnx

from ..core.model import Model, load
from ..errors import PassError

log = logging.getLogger("graphsurgery")


@dataclass
class Option:
    """One option of a pass: its type converts the text given on the command line. A
    ``required`` option has no default: a pass created without it refuses, naming it."""

    type: type | Any
    default: Any = None
    help: str = ""
    required: bool = False


@dataclass
class PassResult:
    """What a pass did. ``changes`` has one human-readable line per change; ``details`` holds
    structured facts (e.g. which If branch was kept) for programs; ``skipped`` says what the pass
    declined to touch and why."""

    name: str
    changed: bool = False
    changes: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    model: Any = None
    #: wall-clock seconds the pass took (its checks included)
    seconds: float = 0.0

    def note(self, line: str) -> None:
        self.changed = True
        self.changes.append(line)
        log.debug("%s: %s", self.name, line)

    def skip(self, line: str) -> None:
        self.skipped.append(line)
        log.debug("%s: skipped: %s", self.name, line)

    def _repr_html_(self) -> str:
        from ..core import hooks
        return hooks.render("result", self)

    def __repr__(self) -> str:
        return f"<PassResult {self.name}: {len(self.changes)} change(s), {len(self.skipped)} skipped>"

    def __str__(self) -> str:
        head = f"{self.name}: " + (f"{len(self.changes)} change(s)" if self.changed else "no change")
        lines = [head] + [f"  - {c}" for c in self.changes] + [f"  · skipped: {s}" for s in self.skipped]
        return "\n".join(lines)


class Pass:
    """Base class. Subclasses set ``name`` and ``options`` and implement :meth:`apply`.

    ``run(model)`` takes a :class:`graphsurgery.Model` or an ``onnx.ModelProto`` and returns a
    :class:`PassResult` whose ``model`` is of the kind given (a ModelProto is edited in place);
    calling the pass returns just that model.
    """

    name: ClassVar[str] = ""
    options: ClassVar[dict[str, Option]] = {}
    #: passes that take arbitrary NAME=VALUE options (e.g. freeze-inputs) set this
    free_options: ClassVar[bool] = False
    #: what the free options mean, for ``graphsurgery passes``
    free_help: ClassVar[str] = "NAME=VALUE for each graph input"
    #: model-level fields this pass may change (see :func:`fidelity_snapshot`); others must stay
    touches: ClassVar[frozenset[str]] = frozenset()
    #: True for passes whose purpose is to change outputs (instancenorm-epsilon): ``--verify``
    #: reports their drift instead of failing on it, and still checks every other pass
    changes_outputs: ClassVar[bool] = False

    def __init__(self, **opts: Any):
        if not self.free_options:
            unknown = set(opts) - set(self.options)
            if unknown:
                known = ", ".join(self.options) or "none"
                raise PassError(f"{self.name}: unknown option(s) {sorted(unknown)}; options are: {known}")
        missing = [k for k, o in self.options.items() if o.required and opts.get(k) is None]
        if missing:
            key = missing[0]
            raise PassError(f"{self.name} needs {key}=VALUE: option {key!r} is required "
                            f"({self.options[key].help}), e.g. {self.name}({key}=...)")
        self.opts = {k: o.default for k, o in self.options.items()}
        for k, v in opts.items():
            self.opts[k] = self._convert(k, v)

    def _convert(self, key: str, value: Any) -> Any:
        opt = self.options.get(key)
        if opt is None or not isinstance(value, str) or opt.type is str:
            return value
        try:
            return opt.type(value)
        except (TypeError, ValueError) as exc:
            raise PassError(f"{self.name}: option {key}={value!r}: {exc}") from None

    def apply(self, model: Model, result: PassResult) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def run(self, model: Model | onnx.ModelProto) -> PassResult:
        wrapped = load(model) if isinstance(model, onnx.ModelProto) else model
        if not isinstance(wrapped, Model):
            raise PassError(f"{self.name}: expected a graphsurgery Model or an onnx.ModelProto, "
                            f"got {type(model).__name__}")
        result = PassResult(self.name)
        start = time.perf_counter()
        before = fidelity_snapshot(wrapped.proto)
        self.apply(wrapped, result)
        after = fidelity_snapshot(wrapped.proto)
        drifted = sorted(k for k in before if before[k] != after[k] and k not in self.touches)
        if drifted:
            raise PassError(f"pass {self.name} changed {', '.join(drifted)}, which it does not own; "
                            "this is a bug in the pass, please report it")
        result.model = wrapped.proto if isinstance(model, onnx.ModelProto) else wrapped
        result.seconds = time.perf_counter() - start
        return result

    def __call__(self, model):
        return self.run(model).model

    def feeds_before(self, feeds: dict, before: onnx.ModelProto, after: Model, result: PassResult) -> list[dict]:
        """Inputs of the model before this pass that correspond to ``feeds``, inputs of the model
        after it: what :meth:`reference` runs. Inputs this pass turned into constants take their
        constant values; inputs the model after it no longer has are generated. Passes that change
        the signature in other ways override this (set-batch: one feed per sample). Raise
        :class:`graphsurgery.verify.NotVerifiable` when there is no such mapping."""
        return [_frozen_feeds(feeds, before, after)]

    def reference(self, before: bytes, after: Model, feeds: dict, result: PassResult, run) -> dict:
        """What the model after this pass should output for ``feeds``, computed from the model
        before it (``run(model_bytes, feeds)`` runs a model). Inputs this pass turned into
        constants are fed their constant values. Passes that change the signature in other
        ways (set-batch) override this."""
        return run(before, _frozen_feeds(feeds, onnx.ModelProto.FromString(before), after))

    def outputs_after(self, after_bytes: bytes, after: Model, feeds: dict, result: PassResult, run) -> dict:
        """What the model after this pass outputs for ``feeds``, to compare with :meth:`reference`
        (split-preprocessing runs its two models in turn)."""
        return run(after_bytes, feeds)

    def reference_noise(self, before: bytes, after: Model, feeds: dict, result: PassResult, run,
                        expected: dict) -> dict[str, float]:
        """How much the reference disagrees with itself, per output (largest absolute
        difference between two ways of computing it that should agree, e.g. a batched run and
        single runs): added to the tolerance, so a pass is not blamed for noise it did not add."""
        return {}

    def input_after(self, name: str, result: PassResult) -> str:
        """The name that input ``name`` of the model before this pass has after it, so arrays
        given for the input model follow the pipeline (rename-io renames inputs)."""
        return name

    def fit_given(self, name: str, arr: np.ndarray, spec, result: PassResult, generated: np.ndarray
                  ) -> np.ndarray | None:
        """An array given for input ``name`` that fits the model before this pass but not
        ``spec``, the input as the pipeline's last model declares it, made to fit ``spec``
        where this pass explains the difference; else None. By default: inputs whose batch
        the pass changed (``result.details["inputs"]``, ``[name, axis]`` pairs, as set-batch
        reports them) take a sample, or fewer samples than the new batch, as the first
        samples of ``generated``, a generated array for ``spec``."""
        from .. import verify

        for target, axis in result.details.get("inputs") or []:
            if target != name or spec.dims is None or arr.ndim != len(spec.dims) or axis >= arr.ndim \
                    or not isinstance(spec.dims[axis], int) or arr.shape[axis] > spec.dims[axis]:
                continue
            shape = list(arr.shape)
            shape[axis] = spec.dims[axis]
            if verify.mismatch(spec, np.empty(shape, arr.dtype)):
                continue
            out = np.array(generated, dtype=arr.dtype)
            index = [slice(None)] * arr.ndim
            index[axis] = slice(0, arr.shape[axis])
            out[tuple(index)] = arr
            return out
        return None

    def describe(self) -> str:
        """The pass in pipeline text form, e.g. ``set-batch(size=3,inputs=input;state:1)``."""
        shown = self.opts.items() if self.free_options else [
            (k, v) for k, v in self.opts.items() if v is not None and v != self.options[k].default]
        opts = ",".join(f"{k}={';'.join(map(str, v)) if isinstance(v, (list, tuple)) else v}" for k, v in shown)
        return f"{self.name}({opts})" if opts else self.name

    def __repr__(self) -> str:
        return f"<pass {self.describe()}>"


class RulePass(Pass):
    """A pass written as rewrite rules (:mod:`graphsurgery.rewrite`): :meth:`rules` gives them,
    the rewriter applies them until none matches, each rewrite is one change line
    (:meth:`change_line`), and each rule that applied nowhere reports why its nearest candidate
    failed in ``skipped``. Subclasses set ``name`` and implement :meth:`rules`; :meth:`after`
    does what follows the rewrites (eliminate-noops merges duplicates there)."""

    #: rewrite only the main graph (default: every graph, subgraphs included)
    main_graph_only: ClassVar[bool] = False
    #: when near misses are reported: "always", "if none applied" or "never"
    near_misses: ClassVar[str] = "always"
    #: ``details[count_key]`` counts the rewrites made, when set
    count_key: ClassVar[str | None] = None

    def rules(self, model: Model) -> list:  # pragma: no cover - abstract
        raise NotImplementedError

    def change_line(self, site) -> str:
        """The change line of one rewrite (``site``: a :class:`graphsurgery.rewrite.Site`)."""
        return f"{site.rule}: rewrote {site.node!r} in {site.graph}"

    def after(self, model: Model, result: PassResult, rewritten) -> None:
        """Called with the :class:`graphsurgery.rewrite.RewriteResult` once the rules are done."""

    def apply(self, model: Model, result: PassResult) -> None:
        out = self.rewrite(model, result, self.rules(model))
        self.after(model, result, out)

    def rewrite(self, model: Model, result: PassResult, rules: list, *, change_line=None,
                near_misses: str | None = None):
        """Apply ``rules`` and record what they did in ``result`` (``change_line`` and
        ``near_misses`` override the pass's own for these rules); returns the RewriteResult."""
        from ..rewrite import rewrite

        out = rewrite(model.graph if self.main_graph_only else model, rules)
        for site in out.sites:
            result.note((change_line or self.change_line)(site))
        report = near_misses or self.near_misses
        if report == "always" or (report == "if none applied" and not out.applied):
            for rule, why in out.near_misses.items():
                result.skip(f"{rule}: {why}")
        if self.count_key:
            result.details[self.count_key] = result.details.get(self.count_key, 0) + len(out.applied)
        return out


def _frozen_feeds(feeds: dict, before: onnx.ModelProto, after: Model) -> dict:
    """``feeds`` plus, for inputs of ``before`` that ``feeds`` lacks, their constant value in
    ``after`` (a frozen input) or else a generated value."""
    inits = after.graph.initializers
    out = dict(feeds)
    missing = []
    for vi in before.graph.input:
        if vi.name in out:
            continue
        if vi.name in inits:
            out[vi.name] = np.asarray(after.graph.initializer(vi.name))
        else:
            missing.append(vi.name)
    if missing:
        from .. import verify

        generated = verify.make_inputs(before, known=verify.symbols_in(before, out))
        out.update({k: generated[k] for k in missing if k in generated})
    return out


def parse_bool(text: str | bool) -> bool:
    if isinstance(text, bool):
        return text
    low = text.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def parse_list(text: str | list) -> list[str]:
    """``a;b;c`` → ``["a", "b", "c"]`` (semicolons, since commas separate passes)."""
    if isinstance(text, (list, tuple)):
        return list(text)
    return [x.strip() for x in text.split(";") if x.strip()]


def fidelity_snapshot(proto: onnx.ModelProto) -> dict[str, Any]:
    """The model-level fields no repair pass should change unless it says so."""
    return {
        "ir_version": proto.ir_version,
        "producer": (proto.producer_name, proto.producer_version),
        "domain": proto.domain,
        "model_version": proto.model_version,
        "doc_string": proto.doc_string,
        "metadata_props": [(p.key, p.value) for p in proto.metadata_props],
        "opset_import": sorted((o.domain, o.version) for o in proto.opset_import),
        "functions": [f.SerializeToString() for f in proto.functions],
        "graph name": proto.graph.name,
        "graph doc_string": proto.graph.doc_string,
        "training_info": [t.SerializeToString() for t in proto.training_info],
    }
