"""convert-opset: onnx's version converter, with the result checked."""

from __future__ import annotations

import numpy as np
import onnx

from .. import external_data
from ..core.model import Model
from .base import Option, Pass, PassError, PassResult


class ConvertOpset(Pass):
    """Convert the default-domain opset with ``onnx.version_converter``, then check that the
    converted model passes onnx's full checker (with shape inference, so output shapes the new
    opset computes differently are caught) and, where onnxruntime is installed, runs and gives
    the same outputs as before on inputs generated from its signature (within 1e-5). Refuses,
    leaving the model as it was, when either check fails. Tensors kept in external data files
    stay there (the converter reads them, validated like every external reference)."""

    name = "convert-opset"
    options = {"version": Option(int, help="the target opset of the default domain", required=True)}
    touches = frozenset({"opset_import", "ir_version"})

    def apply(self, model: Model, result: PassResult) -> None:
        target = self.opts["version"]
        current = model.opset("")
        if current == target:
            return
        from onnx import version_converter

        source, kept = _with_data_inline(model)
        try:
            converted = version_converter.convert_version(source, target)
        except Exception as exc:  # the converter raises bare RuntimeErrors for unsupported ops
            raise PassError(f"convert-opset: onnx cannot convert opset {current} to {target}: "
                            f"{_first_line(exc)}") from None
        del source
        _restore_external(converted, kept)
        candidate = Model(converted, base_dir=model.base_dir, source_path=model.source_path)
        found = candidate.problems(full=True)
        if found and not model.problems(full=True):
            raise PassError(f"convert-opset: the model converted from opset {current} to {target} is invalid "
                            f"({found[0]}); the model was left as it was")
        drift = _check_numerics(model, converted, result)
        if drift:
            raise PassError(f"convert-opset: the converted model gives different outputs ({drift}); "
                            "the model was left as it was")
        model.proto.CopyFrom(converted)
        Model.__init__(model, model.proto, base_dir=model.base_dir, source_path=model.source_path)
        result.note(f"opset {current} -> {target}")


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _with_data_inline(model: Model) -> tuple[onnx.ModelProto, dict[str, tuple[onnx.TensorProto, bytes]]]:
    """A copy of the model with external tensor data read in (the converter reads initializers
    and cannot find files), and, by tensor name, each external tensor as it was with its bytes."""
    from ..serialization import iter_model_tensors
    from ..tensors import to_numpy

    if not any(external_data.is_external(t) for t in iter_model_tensors(model.proto)):
        return model.proto, {}
    copy = onnx.ModelProto()
    copy.CopyFrom(model.proto)
    kept: dict[str, tuple[onnx.TensorProto, bytes]] = {}
    for t in iter_model_tensors(copy):
        if not external_data.is_external(t):
            continue
        original = onnx.TensorProto()
        original.CopyFrom(t)
        raw = np.ascontiguousarray(to_numpy(t, model.base_dir)).tobytes()  # resolve() checks the location
        del t.external_data[:]
        t.ClearField("data_location")
        t.raw_data = raw
        if t.name:
            kept[t.name] = (original, raw)
    return copy, kept


def _restore_external(converted: onnx.ModelProto, kept: dict[str, tuple[onnx.TensorProto, bytes]]) -> None:
    """Point tensors the converter left unchanged back at their external data."""
    if not kept:
        return
    from ..serialization import iter_model_tensors

    for t in iter_model_tensors(converted):
        old = kept.get(t.name)
        if old is None:
            continue
        original, raw = old
        if (t.data_type == original.data_type and list(t.dims) == list(original.dims)
                and t.HasField("raw_data") and t.raw_data == raw):
            t.CopyFrom(original)


def _check_numerics(model: Model, converted: onnx.ModelProto, result: PassResult) -> str | None:
    from .. import runner, verify

    if not runner.available():
        result.skip("outputs not compared: onnxruntime is not installed")
        return None
    try:  # sequences and optionals included
        feeds = verify.make_inputs(model.proto, batch=2, containers=True)
    except verify.NotVerifiable as exc:
        result.skip(f"outputs not compared: {exc}")
        return None
    try:
        before = runner.EXACT.run(model.to_bytes(), feeds, base_dir=model.base_dir)
    except verify.RuntimeFailure as exc:  # nothing to compare against
        result.skip(f"outputs not compared: the original does not run on generated inputs ({exc})")
        return None
    try:
        after = runner.EXACT.run(converted.SerializeToString(), feeds, base_dir=model.base_dir)
    except verify.RuntimeFailure as exc:
        return f"it does not run: {exc}"
    bad = [str(d) for d in verify.compare(before, after) if not d.ok]
    return "; ".join(bad) or None
