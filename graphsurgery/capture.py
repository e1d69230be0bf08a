"""Run a model and record intermediate tensors, a bounded number at a time.

Used by the debugging tools (:mod:`graphsurgery.debug`) and by passes that compute a
reference from inner tensors (``cut``), so it sits below both."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from .core.model import Model

BACKENDS = ("ort", "ort-noopt", "reference")


def tensor_order(model: Model) -> list[str]:
    """Every node output of every graph (subgraphs included), in execution order: a node's
    subgraph tensors come right after the tensors it reads."""
    names: list[str] = []
    seen: set[str] = set()
    for node in model.graph.walk():
        for t in node.outputs:
            if t and t not in seen:
                seen.add(t)
                names.append(t)
    return names


def run_backend(model_bytes: bytes, feeds: dict[str, np.ndarray], backend: str, base_dir: str | None = None
                ) -> dict[str, np.ndarray]:
    """Outputs by name from onnxruntime as deployed (``ort``: :data:`graphsurgery.runner.DEPLOYED`),
    onnxruntime without graph optimizations or weight pre-packing (``ort-noopt``:
    :data:`graphsurgery.runner.EXACT`) or onnx's reference evaluator (``reference``)."""
    if backend == "reference":
        import onnx
        from onnx.reference import ReferenceEvaluator

        proto = onnx.ModelProto.FromString(model_bytes)
        ref = ReferenceEvaluator(proto)
        names = [o.name for o in proto.graph.output]
        wanted = {i.name for i in proto.graph.input}
        return dict(zip(names, ref.run(None, {k: v for k, v in feeds.items() if k in wanted}), strict=True))
    if backend not in ("ort", "ort-noopt"):
        from .errors import GraphSurgeryError
        raise GraphSurgeryError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
    from .runner import DEPLOYED, EXACT

    return (DEPLOYED if backend == "ort" else EXACT).run(model_bytes, feeds, base_dir=base_dir)


def capture(model: Model, feeds: dict[str, np.ndarray], *, backend: str = "ort", tensors: list[str] | None = None,
            chunk: int | None = None) -> Iterator[dict[str, np.ndarray]]:
    """Yield ``{tensor: value}`` for ``tensors`` (default: all), ``chunk`` tensors per run, so at
    most that many intermediate values are held at once. Each run marks its tensors as outputs
    on a copy (as ``debug-outputs`` does, reaching inside If/Loop/Scan bodies); tensors of a
    branch that did not run come back empty."""
    from .expose import choose, expose

    names = tensors if tensors is not None else tensor_order(model)
    size = chunk or len(names) or 1
    for start in range(0, len(names), size):
        part = names[start:start + size]
        copy = model.copy()
        carriers, _ = expose(copy, choose(copy, names=part))
        outs = run_backend(copy.to_bytes(), feeds, backend, base_dir=model.base_dir)
        got = {}
        for name in part:
            carrier = carriers.get(name, name)
            if carrier in outs:
                got[name] = outs[carrier]
        yield got


def run_outputs(model: Model, feeds: dict[str, np.ndarray], backend: str = "ort") -> dict[str, np.ndarray]:
    """The model's own outputs, run unmodified (marking tensors can stop fusions)."""
    return run_backend(model.to_bytes(), feeds, backend, base_dir=model.base_dir)
