"""``optimize``: one call, model in, smaller checked model out.

    import graphsurgery as gs
    smaller = gs.optimize(proto)                                  # same kind out as in
    report = Optimizer(set_shape={"input": "1x3x224x224"}).run(proto)
    print(report.table())

The default chain only makes changes that keep what the model computes; it runs until a
round changes nothing (folding, no-op removal and merging duplicates feed each other), and the
result is verified against the input in onnxruntime with the rules of ``run --verify``
(generated inputs that run, tolerance widened by the reference's own noise). Settings unlock
more: fixed input shapes, frozen inputs, a batch size.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx

from .core.model import Model, load
from .passes.base import Pass, PassError, PassResult
from .passes.pipeline import Pipeline, PipelineResult
from .passes.registry import create
from .shapes import copy_field
from .tolerances import ATOL, RTOL

#: the passes one round runs, in order: each keeps what the model computes
CHAIN = ("fold-constants", "remove-if", "eliminate-noops", "eliminate-neutral", "merge-slices",
         "transpose-to-reshape",
         "constant-subgraph-outputs",
         "merge-reshapes",
         "remove-single-piece",
         "rejoin-elements",
         "cancel-reshapes", "fuse-conv-bn", "fold-conv-affine", "matmul-add-to-gemm", "cleanup")
#: how much one fold may grow the file, at least: tiny constants (a [1, 16, 32] embedding lookup
#: of a constant index) are worth a node; large ones stay computed
GROW_BYTES = 4096
#: ... and at most this share of the model's size (a detector's anchor grid, 25 KB in 12 MB)
GROW_SHARE = 0.01
#: rounds after which the loop stops even if the last one still changed something
MAX_ROUNDS = 12


@dataclass
class Stats:
    """What a model is made of: nodes (subgraphs included), op counts, serialized bytes
    (external data included)."""

    nodes: int
    ops: dict[str, int]
    bytes: int

    @classmethod
    def of(cls, model: Model, data: bytes | None = None) -> Stats:
        """``data``: the model serialized, when the caller has it (its length is the size)."""
        from . import external_data, serialization

        ops = model.op_histogram()
        size = len(data) if data is not None else serialized_size(model.proto)
        for t in serialization.iter_model_tensors(model.proto):
            if external_data.is_external(t):
                size += external_data.expected_nbytes(t) or 0
        return cls(sum(ops.values()), ops, size)


def serialized_size(proto: onnx.ModelProto) -> int:
    """``proto.ByteSize()``, without encoding the weights: protobuf's size is a sum over fields,
    so the main graph's raw weights count as their lengths plus framing, and only the rest is
    measured by protobuf (ByteSize encodes everything: 0.25 s on a 77 MB model)."""
    graph = proto.graph
    if not any(len(t.raw_data) > _MEASURED for t in graph.initializer if t.HasField("raw_data")):
        return proto.ByteSize()
    light = onnx.ModelProto()
    for fd, value in proto.ListFields():
        if fd.name != "graph":
            copy_field(light, fd, value)
    light_graph = onnx.GraphProto()
    for fd, value in graph.ListFields():
        if fd.name != "initializer":
            copy_field(light_graph, fd, value)
    g = light_graph.ByteSize()
    for t in graph.initializer:  # GraphProto.initializer is field 5: a one-byte tag
        if t.HasField("raw_data"):
            stub = onnx.TensorProto()
            for fd, value in t.ListFields():
                if fd.name != "raw_data":
                    copy_field(stub, fd, value)
            n = len(t.raw_data)
            size = stub.ByteSize() + 1 + _varint_size(n) + n  # raw_data is field 9: a one-byte tag
        else:
            size = t.ByteSize()
        g += 1 + _varint_size(size) + size
    return light.ByteSize() + 1 + _varint_size(g) + g  # ModelProto.graph is field 7: a one-byte tag


_MEASURED = 1 << 16  # weights smaller than this are left to ByteSize


def _varint_size(n: int) -> int:
    return max(1, (n.bit_length() + 6) // 7)


@dataclass
class OptimizeResult:
    """What :class:`Optimizer` did: the model (same kind as given), its statistics before and
    after, the rounds the chain ran, every pass result, and the verification report
    (``(what was checked, per-output differences)``; empty with ``verify=False``). ``verified``
    is True only when every change was compared in onnxruntime."""

    model: Any
    before: Stats
    after: Stats
    rounds: int
    results: list[PassResult] = field(default_factory=list)
    verification: list[tuple[str, list]] = field(default_factory=list)
    verified: bool = False
    #: with ``careful=True``: each pass left out of a round because it changed the outputs, and why
    left_out: list[str] = field(default_factory=list)
    #: what the checks could not tell, and why the chain was checked pass by pass (if it was)
    notes: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return any(r.changed for r in self.results)

    def op_rows(self) -> list[tuple[str, int, int]]:
        """``(op, before, after)`` for every op whose count changed, most removed first."""
        names = set(self.before.ops) | set(self.after.ops)
        rows = [(op, self.before.ops.get(op, 0), self.after.ops.get(op, 0)) for op in names]
        rows = [r for r in rows if r[1] != r[2]]
        return sorted(rows, key=lambda r: (r[2] - r[1], r[0]))

    def table(self) -> str:
        """The before/after table the command line prints."""
        rows = [(op, str(b), str(a)) for op, b, a in self.op_rows()]
        rows.append(("nodes", str(self.before.nodes), str(self.after.nodes)))
        rows.append(("bytes", _size(self.before.bytes), _size(self.after.bytes)))
        w = max(len(r[0]) for r in rows + [("op", "", "")])
        wb = max(len(r[1]) for r in rows + [("", "before", "")])
        wa = max(len(r[2]) for r in rows + [("", "", "after")])
        lines = [f"{'op':<{w}}  {'before':>{wb}}  {'after':>{wa}}"]
        for i, (name, b, a) in enumerate(rows):
            if i == len(rows) - 2:
                lines.append("-" * (w + wb + wa + 4))
            lines.append(f"{name:<{w}}  {b:>{wb}}  {a:>{wa}}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (f"<OptimizeResult {self.before.nodes} -> {self.after.nodes} nodes in {self.rounds} round(s)"
                f"{', verified' if self.verified else ''}>")


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB"):
        if n < 1024 or unit == "MiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)  # pragma: no cover


class FixedPoint(Pass):
    """The optimize chain, run again and again until a round changes nothing. One step of a
    pipeline, so ``--verify`` compares the model before the first round with the model after the
    last; its result lists every pass result of every round in ``details["results"]``."""

    name = "optimize-chain"

    def __init__(self, passes: Iterable[str] = CHAIN, max_rounds: int = MAX_ROUNDS,
                 progress: Callable[[int, int, str], None] | None = None):
        super().__init__()
        self.chain = list(passes)
        self.max_rounds = max_rounds
        self.progress = progress
        # the model-level fields the chain's passes may change (convert-opset: the opsets)
        self.touches = frozenset().union(*(p.touches for p in Pipeline.from_text(",".join(self.chain)).passes))

    def apply(self, model: Model, result: PassResult) -> None:
        results: list[PassResult] = []
        rounds = 0
        last = _fingerprint(model)
        while rounds < self.max_rounds:
            rounds += 1
            passes = Pipeline.from_text(",".join(self.chain)).passes  # fresh passes each round
            for i, p in enumerate(passes):
                if self.progress:
                    self.progress(i, len(passes), f"round {rounds}: {p.name}")
                results.append(p.run(model))
            now = _fingerprint(model)
            if now == last:
                break
            last = now
        for r in results:
            for line in r.changes:
                result.note(f"{r.name}: {line}")
        result.details["results"] = results
        result.details["rounds"] = rounds

    def describe(self) -> str:
        return self.name


def _shield(step: str, branch: str, light: bool) -> str:
    """One pass of the chain with the shield of ``branch`` (see ``Optimizer._run_shielded``)."""
    name, _, opts = step.partition("(")
    if name == "fold-constants":
        extra = f"keep_shape_operands_in={branch}" if light else f"compute_nothing_in={branch}"
    elif name == "remove-if":
        extra = f"keep_shape_operands_in={branch}" if light else "fold=false"
    else:
        return step
    return f"{name}({opts[:-1]},{extra})" if opts else f"{name}({extra})"


def _fingerprint(model: Model) -> bytes:
    """The graph as bytes: equal bytes, nothing changed (value_info aside, which cleanup and
    shape inference may refresh without changing what the model computes)."""
    g = onnx.GraphProto()
    g.CopyFrom(model.proto.graph)
    g.ClearField("value_info")
    return g.SerializeToString(deterministic=True)


class Optimizer:
    """The settings of one optimisation; :meth:`run` applies them to a model.

    ``set_shape`` (``{"input": "1x3x224x224"}`` or the pass text ``input=1x3x224x224``),
    ``freeze`` (``{"sr": 16000}``) and ``batch`` (a number or a name) run first, as the passes
    ``set-shape``, ``freeze-inputs`` and ``set-batch``; then :data:`CHAIN` to a fixed point
    (``passes`` replaces it; pass text with options is fine). ``grow_bytes`` is how much one
    fold of constants may grow the file (see ``fold-constants``); by default 1% of the model's
    size, at least 4 KiB: an anchor grid folded is worth its bytes, a weight copied is not.
    ``verify`` (default on) runs the model before and after in onnxruntime and raises
    :class:`graphsurgery.verify.VerificationError` when outputs differ beyond ``rtol``/``atol``
    plus the reference's own noise; ``inputs`` (arrays by input name) replace generated ones.
    ``progress(done, total, label)`` is called as the work goes on.

    ``careful=True`` verifies each pass of each round on its own instead of the whole chain at
    the end, and leaves out (undoes) a pass whose change the check refuses, listing it in
    ``OptimizeResult.left_out``: slower, and meant for when the whole chain fails
    verification. A Model given is then not edited; the result's ``model`` is a new one.
    ``careful=None`` (the default) runs the whole chain and, when that fails verification
    because of a pass of the chain (not a setting), starts again from the model given, carefully;
    the model given then holds that result (a Model's earlier node and graph views are stale).

    With verification on, a model that loads in onnxruntime with its default optimizations
    gives a result that does too, else :class:`graphsurgery.verify.LoadFailure`."""

    def __init__(self, *, set_shape: dict[str, Any] | str | None = None, freeze: dict[str, Any] | str | None = None,
                 batch: int | str | None = None, verify: bool = True, inputs: dict[str, np.ndarray] | None = None,
                 rtol: float = RTOL, atol: float = ATOL, passes: Iterable[str] = CHAIN, grow_bytes: int | None = None,
                 max_rounds: int = MAX_ROUNDS, progress: Callable[[int, int, str], None] | None = None,
                 careful: bool | None = None):
        self.settings: list[Pass] = []
        if freeze:
            self.settings.append(create("freeze-inputs", **_named(freeze, "freeze")))
        if set_shape:
            self.settings.append(create("set-shape", **_named(set_shape, "set_shape")))
        if batch is not None and batch != "":
            self.settings.append(create("set-batch", size=str(batch)))
        if grow_bytes is not None and (not isinstance(grow_bytes, int) or grow_bytes < 0):
            raise PassError(f"optimize: grow_bytes={grow_bytes!r}; give a whole number of bytes >= 0")
        self.grow_bytes = grow_bytes
        self.chain = list(passes)
        Pipeline.from_text(",".join(self.chain))  # a misspelt pass fails here, before any work
        if not isinstance(max_rounds, int) or max_rounds < 1:
            raise PassError(f"optimize: max_rounds={max_rounds!r}; give a whole number >= 1")
        self.max_rounds = max_rounds
        self.verify, self.inputs, self.rtol, self.atol = verify, inputs, rtol, atol
        self.progress = progress
        self.careful = careful
        if careful and not verify:
            raise PassError("optimize: careful=True verifies each pass; it cannot go with verify=False")

    def run(self, model: Model | onnx.ModelProto) -> OptimizeResult:
        if not isinstance(model, (Model, onnx.ModelProto)):
            raise PassError(f"optimize: expected a graphsurgery Model or an onnx.ModelProto, "
                            f"got {type(model).__name__}")
        wrapped = load(model) if isinstance(model, onnx.ModelProto) else model
        fallback = self.careful is None and self.verify
        given = wrapped.to_bytes() if fallback or self.careful else None  # what was given, for a retry
        before = Stats.of(wrapped, given)
        grow = self.grow_bytes if self.grow_bytes is not None else max(GROW_BYTES, int(before.bytes * GROW_SHARE))
        chain = [f"fold-constants(grow_bytes={grow})" if p == "fold-constants" and grow else p for p in self.chain]
        if self.careful:
            return self._run_careful(model, wrapped, before, chain, given)
        from .errors import VerificationError

        fixed = FixedPoint(chain, self.max_rounds, self._round_progress)
        pipeline = Pipeline([*self.settings, fixed], verify=self.verify, inputs=self.inputs, rtol=self.rtol,
                            atol=self.atol)
        try:
            out: PipelineResult = pipeline.run(wrapped)
        except VerificationError as exc:
            if not fallback or (exc.pass_index is not None and exc.pass_index < len(self.settings)):
                raise  # no careful retry asked for, or a setting is at fault: no pass to leave out
            result = self._run_shielded(given, wrapped.base_dir, before, chain, exc)
            if result is None:
                original = load(given, base_dir=wrapped.base_dir)
                result = self._run_careful(original, original, before, chain)
                result.notes.insert(0, f"the whole chain failed verification ({_one_line(exc)}); "
                                       "each pass was then checked on its own")
            if isinstance(model, onnx.ModelProto):
                model.CopyFrom(result.model.proto)
                result.model = model
            else:  # the Model given takes the result, as when the whole chain passes
                model.proto.CopyFrom(result.model.proto)
                Model.__init__(model, model.proto, base_dir=model.base_dir, source_path=model.source_path)
                result.model = model
            return result
        chain_result = out.results[-1]
        results = out.results[:-1] + chain_result.details.pop("results", [])
        if self.progress:
            self.progress(1, 1, "done")
        after = Stats.of(wrapped) if out.changed else before  # nothing changed: the same bytes
        return OptimizeResult(model=wrapped.proto if isinstance(model, onnx.ModelProto) else wrapped,
                              before=before, after=after, rounds=chain_result.details.get("rounds", 0),
                              results=results, verification=out.verification,
                              verified=self.verify and bool(out.verification) and not any(
                                  d.name == "(not verified)" for _, rep in out.verification for d in rep),
                              notes=list(out.notes))

    def _run_shielded(self, given: bytes, base_dir, before: Stats, chain: list[str], failure) -> OptimizeResult | None:
        """The whole chain again, shielding one branch of an ``If`` of the main graph: a branch
        that cannot run for the shapes set (silero_vad's 8 kHz branch on 512 samples) no longer
        type-checks once its shapes are folded, so onnxruntime refuses the whole model. First
        the light shield: in that branch the shape operands (Pad's pads, Reshape's shape, ...)
        and what they are computed from stay computed, so its shapes stay as unknown as given,
        and everything else folds (``keep_shape_operands_in``); then the heavy one: nothing is
        computed there (``compute_nothing_in``, ``remove-if(fold=false)``). The first branch and
        shield giving a verified model win; None when none does."""
        from .errors import GraphSurgeryError

        main = load(given, base_dir=base_dir).graph
        text = str(failure)
        candidates = []
        for node in main.find_nodes("If"):
            if not node.name or any(ch in node.name for ch in ",;()[]=") or len(candidates) >= 4:
                continue
            for key, sub in sorted(node.subgraphs().items()):
                named = any(n.name and n.name in text for g in [sub, *_nested(sub)] for n in g.nodes)
                candidates.append((not named, f"{node.name}.{key}"))
        for branch, light in [(b, light) for _, b in sorted(candidates)[:4] for light in (True, False)]:
            shielded = [_shield(p, branch, light) for p in chain]
            model = load(given, base_dir=base_dir)
            fixed = FixedPoint(shielded, self.max_rounds, self._round_progress)
            try:
                out = Pipeline([*self.settings, fixed], verify=True, inputs=self.inputs, rtol=self.rtol,
                               atol=self.atol).run(model)
            except GraphSurgeryError:
                continue
            chain_result = out.results[-1]
            return OptimizeResult(model=model, before=before, after=Stats.of(model),
                                  rounds=chain_result.details.get("rounds", 0),
                                  results=out.results[:-1] + chain_result.details.pop("results", []),
                                  verification=out.verification,
                                  verified=bool(out.verification) and not any(
                                      d.name == "(not verified)" for _, rep in out.verification for d in rep),
                                  notes=[f"the whole chain failed verification ({_one_line(failure)}); run again "
                                         + (f"keeping the shape operands of {branch} computed" if light else
                                            f"computing nothing in {branch}") + ", which cannot run for these shapes",
                                         *out.notes])
        return None

    def _run_careful(self, model, wrapped: Model, before: Stats, chain: list[str],
                     given: bytes | None = None) -> OptimizeResult:
        """Each pass of each round verified on its own; a pass that changes the outputs is left
        out of that round (its change undone) and said in ``left_out``. A Model given is not
        edited: the result is a new Model (a ModelProto given is overwritten with the result)."""
        from .errors import VerificationError
        from .verify import LoadGuard

        base_dir = wrapped.base_dir
        settings = Pipeline(list(self.settings), verify=True, inputs=self.inputs, rtol=self.rtol, atol=self.atol,
                            check_load=False)
        if given is None:
            given = wrapped.to_bytes()
        guard = LoadGuard(given, base_dir)  # whether the model given loads as deployed: checked meanwhile
        first = load(given, base_dir=base_dir)
        out = settings.run(first)  # the settings' own verification: their failure is final
        current = first.to_bytes()
        after_settings = current
        results, left_out, verification = list(out.results), [], list(out.verification)
        rounds = 0
        while rounds < self.max_rounds:
            rounds += 1
            start = _fingerprint(load(current, base_dir=base_dir))
            passes = Pipeline.from_text(",".join(chain)).passes
            for i, p in enumerate(passes):
                self._round_progress(i, len(passes), f"round {rounds}: {p.name} (checked)")
                m = load(current, base_dir=base_dir)
                try:  # the pipeline's own verification, one pass at a time
                    out = Pipeline([p], verify=True, inputs=self.inputs, rtol=self.rtol, atol=self.atol,
                                   check_load=False).run(m)
                    res, diffs, bad = out.results[0], [d for _, rep in out.verification for d in rep], ""
                except VerificationError as exc:
                    res, diffs, bad = None, [], str(exc)
                if res is not None and not res.changed:
                    results.append(res)
                    continue
                after = m.to_bytes()
                if bad:
                    left_out.append(f"{p.describe()} (round {rounds}): {bad}")
                    continue
                current = after
                results.append(res)
                verification.append((f"{p.describe()} (round {rounds})", diffs))
            if _fingerprint(load(current, base_dir=base_dir)) == start:
                break
        steps = [(",".join(p.describe() for p in self.settings), after_settings)] if after_settings != given else []
        note = guard.check(current, steps + [("the optimisation chain", current)])
        final = load(current, base_dir=base_dir)
        if isinstance(model, onnx.ModelProto):
            model.CopyFrom(final.proto)
            final = load(model, base_dir=base_dir)
        if self.progress:
            self.progress(1, 1, "done")
        result = OptimizeResult(model=model if isinstance(model, onnx.ModelProto) else final, before=before,
                                after=Stats.of(final), rounds=rounds, results=results, verification=verification,
                                verified=not any(d.name == "(not verified)" for _, rep in verification for d in rep))
        result.left_out = left_out
        if note:
            result.notes.append(note)
        return result

    def _round_progress(self, done: int, total: int, label: str) -> None:
        if self.progress:
            self.progress(done, total, label)


def _nested(g):
    for n in g.nodes:
        for sub in n.subgraphs().values():
            yield sub
            yield from _nested(sub)


def _one_line(exc: BaseException, limit: int = 300) -> str:
    line = " ".join(str(exc).split())
    return line if len(line) <= limit else line[:limit - 3] + "..."


def _named(value: dict[str, Any] | str, what: str) -> dict[str, str]:
    """``{"a": "1x3"}`` or the text ``a=1x3,b=2`` as options of a pass."""
    if isinstance(value, dict):
        return {str(k): _text(v) for k, v in value.items()}
    out: dict[str, str] = {}
    for part in str(value).split(","):
        if not part.strip():
            continue
        if "=" not in part:
            raise PassError(f"optimize {what}: {part.strip()!r} is not NAME=VALUE")
        k, v = part.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def _text(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return "x".join(str(int(d)) if isinstance(d, (int, np.integer)) else str(d) for d in v)
    return str(v)


def optimize(model: Model | onnx.ModelProto, **settings: Any):
    """Optimise ``model`` (see :class:`Optimizer` for the settings); returns the same kind of
    object, edited in place. :meth:`Optimizer.run` also returns the before/after statistics."""
    return Optimizer(**settings).run(model).model
