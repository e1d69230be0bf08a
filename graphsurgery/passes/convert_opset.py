"""convert-opset: onnx's version converter, with the result checked."""

from __future__ import annotations

import numpy as np
import onnx

from .. import external_data
from ..model import Model
from .base import Option, Pass, PassError, PassResult


class ConvertOpset(Pass):
    """Convert the default-domain opset with ``onnx.version_converter``, then check that the
    converted model passes onnx's full checker (with shape inference, so output shapes the new
    opset computes differently are caught) and, where onnxruntime is installed, runs and gives
    the same outputs as before on inputs generated from its signature (within 1e-5). Refuses,
    leaving the model as it was, when either check fails. Tensors kept in external data files
    stay there (the converter reads them, validated like every external reference)."""

    name = "convert-opset"
    options = {"version": Option(int, None, "the target opset of the default domain")}
    touches = frozenset({"opset_import", "ir_version"})

    def apply(self, model: Model, result: PassResult) -> None:
        target = self.opts["version"]
        if target is None:
            raise PassError("convert-opset needs version=N, e.g. convert-opset(version=17)")
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


def _feeds(proto: onnx.ModelProto) -> tuple[dict, str | None]:
    """Inputs generated from the model's signature, tensors inside sequences and optionals
    included; or the reason they cannot be."""
    rng = np.random.default_rng(0)
    inits = {t.name for t in proto.graph.initializer}

    def make(tp: onnx.TypeProto, name: str):
        kind = tp.WhichOneof("value")
        if kind == "tensor_type":
            tt = tp.tensor_type
            try:
                dtype = onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type)
            except (KeyError, ValueError, TypeError):
                raise ValueError(f"input {name!r} has no usable element type") from None
            dims = tt.shape.dim if tt.HasField("shape") else []
            shape = [d.dim_value if d.HasField("dim_value") else (1 if i else 2) for i, d in enumerate(dims)]
            if dtype == np.bool_:
                return rng.integers(0, 2, shape).astype(bool)
            if dtype.kind == "f":
                return rng.uniform(-1, 1, shape).astype(dtype)
            if dtype.kind in "iu":
                return rng.integers(0, 11, shape).astype(dtype)
            raise ValueError(f"input {name!r} has element type {dtype}, which cannot be generated")
        if kind == "sequence_type":
            return [make(tp.sequence_type.elem_type, name) for _ in range(2)]
        if kind == "optional_type":
            return make(tp.optional_type.elem_type, name)
        raise ValueError(f"input {name!r} is a {kind or 'value of unknown type'}, which cannot be generated")

    try:
        return {vi.name: make(vi.type, vi.name) for vi in proto.graph.input if vi.name not in inits}, None
    except ValueError as exc:
        return {}, str(exc)


def _flat(outputs: dict) -> dict[str, np.ndarray]:
    """Outputs as plain arrays: a sequence's items as ``name[i]``, a missing optional as absent."""
    flat = {}
    for name, value in outputs.items():
        if isinstance(value, list):
            for i, item in enumerate(value):
                flat[f"{name}[{i}]"] = np.asarray(item)
            flat[f"{name} (length)"] = np.asarray(len(value))
        elif value is not None:
            flat[name] = np.asarray(value)
    return flat


def _check_numerics(model: Model, converted: onnx.ModelProto, result: PassResult) -> str | None:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        result.skip("outputs not compared: onnxruntime is not installed")
        return None
    from .. import verify

    feeds, why = _feeds(model.proto)
    if why:
        result.skip(f"outputs not compared: {why}")
        return None
    try:
        before = verify.run(model.to_bytes(), feeds, optimize=False, base_dir=model.base_dir)
    except verify.RuntimeFailure as exc:  # nothing to compare against
        result.skip(f"outputs not compared: the original does not run on generated inputs ({exc})")
        return None
    try:
        after = verify.run(converted.SerializeToString(), feeds, optimize=False, base_dir=model.base_dir)
    except verify.RuntimeFailure as exc:
        return f"it does not run: {exc}"
    bad = [str(d) for d in verify.compare(_flat(before), _flat(after)) if not d.ok]
    return "; ".join(bad) or None
