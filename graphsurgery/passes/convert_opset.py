"""convert-opset: onnx's version converter, with the result checked."""

from __future__ import annotations

import onnx

from ..model import Model
from .base import Option, Pass, PassError, PassResult


class ConvertOpset(Pass):
    """Convert the default-domain opset with ``onnx.version_converter``, then check that the
    converted model passes onnx's checker and, where onnxruntime is installed, runs and gives
    the same outputs as before on inputs generated from its signature (within 1e-5). Refuses,
    leaving the model as it was, when either check fails."""

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

        try:
            converted = version_converter.convert_version(model.proto, target)
            onnx.checker.check_model(converted)
        except Exception as exc:  # the converter raises bare RuntimeErrors for unsupported ops
            raise PassError(f"convert-opset: onnx cannot convert opset {current} to {target}: "
                            f"{str(exc).strip().splitlines()[0]}") from None
        drift = _check_numerics(model, converted)
        if drift:
            raise PassError(f"convert-opset: the converted model gives different outputs ({drift}); "
                            "the model was left as it was")
        model.proto.CopyFrom(converted)
        Model.__init__(model, model.proto, base_dir=model.base_dir, source_path=model.source_path)
        result.note(f"opset {current} -> {target}")


def _check_numerics(model: Model, converted: onnx.ModelProto) -> str | None:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return None
    from .. import verify

    feeds = verify.make_inputs(model.proto)
    try:
        before = verify.run(model.to_bytes(), feeds, optimize=False, base_dir=model.base_dir)
    except verify.RuntimeFailure:
        return None  # the original does not run on generated inputs: nothing to compare
    try:
        after = verify.run(converted.SerializeToString(), feeds, optimize=False, base_dir=model.base_dir)
    except verify.RuntimeFailure as exc:
        return f"it does not run: {exc}"
    bad = [str(d) for d in verify.compare(before, after) if not d.ok]
    return "; ".join(bad) or None
