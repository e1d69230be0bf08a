"""Where the batch is in each input: the placements the inputs allow, each traced until one holds."""

from __future__ import annotations

import itertools

import onnx

from ...core.model import Model
from ..base import PassError
from .common import B1, B2
from .protos import _only_a_parameter, _probe_copy
from .trace import _Trace

# at most this many ways of placing the batch in the inputs are tried
_MAX_TRIES = 16
# at most this many traces of a model patched in between (each round patches what the last revealed)
_MAX_ROUNDS = 4


def _find_batch(model: Model, old, choices, named, size):
    """Trace the batch with each way of placing it in the inputs (the first that works and
    where every input's batch meets the first input's); returns the trace and the targets."""
    primary = choices[0][0]
    first_error: PassError | None = None
    lonely: str | None = None

    def attempt(combo):
        nonlocal first_error, lonely
        targets = [(name, axis) for (name, _), axis in zip(choices, combo, strict=True) if axis is not None]
        try:
            trace = _trace(model, targets, old, size)
        except PassError as exc:
            if first_error is None:
                first_error = exc
            return None
        root = trace.find(primary)
        apart = [name for name, _ in targets if trace.find(name) != root and named.get(name) is None]
        if not apart:
            return trace, targets
        lonely = lonely or apart[0]
        return None

    for combo in itertools.islice(itertools.product(*[axes for _, axes in choices]), _MAX_TRIES):
        found = attempt(combo)
        if found:
            return found
    if lonely is None and old is not None:
        # Every placement failed in the trace. An input not named that only parameters of ops
        # which take the batch on their data alone read (ConvTranspose's weight [1, C_out, k, k]
        # beside x [1, C_in, h, w]) and whose candidate axis is the old batch's fixed size is a
        # parameter that happens to have that size: leave such inputs as they are, fewest first.
        optional = [i for i, (name, _) in enumerate(choices)
                    if i and named.get(name) is None and _only_a_parameter(model.graph, name)]
        tried = 0
        for k in range(1, len(optional) + 1):
            for out in itertools.combinations(optional, k):
                options = [[None] if i in out else axes for i, (_, axes) in enumerate(choices)]
                for combo in itertools.product(*options):
                    if tried >= _MAX_TRIES:
                        break
                    tried += 1
                    found = attempt(combo)
                    if found:
                        return found
    if first_error is not None and (lonely is None or all(len(a) == 1 for _, a in choices)):
        raise first_error
    axes = dict(choices)[lonely]
    raise PassError(f"set-batch: cannot find the batch axis of input {lonely!r}: with the batch on axis "
                    f"{' or '.join(map(str, axes))} it never meets the batch of {primary!r} in the graph. "
                    f"Name its axis with inputs={primary};{lonely}:AXIS, or leave it out with inputs={primary}; "
                    "nothing was changed")


def _trace(model: Model, targets, old, size) -> _Trace:
    """Trace the batch; where the trace patched constants that hard-code the old batch, trace
    the patched model again: the probes of the first trace still had the old constants, so the
    shapes it read after a patch were the old model's (a ``[1, 8, -1, 16]`` target puts a batch
    of 11 into its -1). The model is accepted only when a trace of the patched model needs no
    further patch; the patches of every round are returned, in order, on the last trace."""
    patches: list = []
    current = model
    for _ in range(_MAX_ROUNDS):
        trace = _probe_trace(current, targets, old, size)
        try:
            trace.run(targets)
        except PassError:
            if not trace.patches:
                raise
        else:
            if not trace.patches:
                trace.patches = patches
                return trace
        if current is model:
            current = model.copy()
        for patch in trace.patches:
            patch.apply(current)
        patches.extend(trace.patches)
    raise PassError("set-batch: the patches for the old batch do not settle: each trace of the patched model "
                    "finds more; nothing was changed")


def _probe_trace(model: Model, targets, old, size) -> _Trace:
    probes = []
    for value in (B1, B2):
        probe = _probe_copy(model, targets, value)
        try:
            inferred = onnx.shape_inference.infer_shapes(probe.proto, strict_mode=False, data_prop=True)
        except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError, ValueError):
            inferred = probe.proto
        probes.append(inferred)
    trace = _Trace(probes[0], probes[1], old, model.opset("") or 1, model.graph)
    trace.source = targets[0]
    if isinstance(size, int):
        trace.limit = size
    return trace
