"""PyTorch activations as a reference: capture them with forward hooks, then map module
inputs and outputs onto ONNX tensors through the names exporters leave behind.

torch is needed only by :func:`capture_torch`; :func:`map_activations` works on saved arrays.
"""

from __future__ import annotations

import ast
from typing import Any

import numpy as np

from ..core.model import Model

SCOPES_KEY = "pkg.torch.onnx.name_scopes"


def capture_torch(module, *inputs) -> dict[str, np.ndarray]:
    """Run ``module`` (in eval mode, without gradients) and record, for every leaf module, its
    first input (``"<name>:in"``) and its output (``"<name>:out"``). Modules called more than once
    keep only their first call. Returns numpy arrays, ready for :func:`map_activations` or
    ``np.savez``."""
    import torch

    acts: dict[str, np.ndarray] = {}
    handles = []

    def hook(name):
        def record(_mod, args, out):
            if f"{name}:in" in acts or f"{name}:out" in acts:
                return
            if args and isinstance(args[0], torch.Tensor):
                acts[f"{name}:in"] = args[0].detach().cpu().numpy()
            if isinstance(out, torch.Tensor):
                acts[f"{name}:out"] = out.detach().cpu().numpy()
        return record

    for name, sub in module.named_modules():
        if name and not any(True for _ in sub.children()):
            handles.append(sub.register_forward_hook(hook(name)))
    try:
        module.eval()
        with torch.no_grad():
            module(*inputs)
    finally:
        for h in handles:
            h.remove()
    return acts


def map_activations(model: Model, activations: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """ONNX tensor name -> PyTorch value, from activations recorded by :func:`capture_torch`.

    Each node's module comes from the dynamo exporter's ``pkg.torch.onnx.name_scopes`` metadata
    or from TorchScript node names (``/layer1/layer1.0/conv1/Conv``). A tensor that enters a
    module (first input of that module's first node) takes the module's recorded input; else
    the last tensor a module produces takes the module's output. The input of the next module
    is preferred because exporters fold modules together (BatchNorm into Conv): then the value
    between modules is still exact, while a folded module's own output no longer exists.
    """
    modules = {k.rsplit(":", 1)[0] for k in activations}
    g = model.graph
    nodes = g.nodes
    scope = {id(n.proto): _module_of(n, modules) for n in nodes}
    first_of: dict[str, Any] = {}
    last_of: dict[str, Any] = {}
    for n in nodes:
        m = scope[id(n.proto)]
        if m:
            first_of.setdefault(m, n)
            last_of[m] = n
    mapped: dict[str, np.ndarray] = {}
    for n in nodes:
        for t in n.outputs:
            if not t:
                continue
            value = None
            own = scope[id(n.proto)]
            for c in g.consumers(t):
                m = scope.get(id(c.proto))
                if m and m != own and first_of.get(m) is c and c.inputs and c.inputs[0] == t \
                        and f"{m}:in" in activations:
                    value = activations[f"{m}:in"]
                    break
            if value is None and own and last_of.get(own) is n and f"{own}:out" in activations:
                value = activations[f"{own}:out"]
            if value is not None:
                mapped[t] = value
    return mapped


def _module_of(node, modules: set[str]) -> str | None:
    for p in node.proto.metadata_props:
        if p.key == SCOPES_KEY:
            try:
                scopes = ast.literal_eval(p.value)
            except (ValueError, SyntaxError):
                break
            for s in reversed(scopes):
                if s in modules:
                    return s
            return None
    name = node.name
    if not name.startswith("/"):
        return None
    parts = name.strip("/").split("/")[:-1]  # the last part is the op
    current = ""
    for part in parts:
        joined = f"{current}.{part}" if current else part
        if joined in modules or any(m.startswith(joined + ".") for m in modules):
            current = joined
        elif part in modules or any(m.startswith(part + ".") for m in modules):
            current = part
        else:
            return None
    return current if current in modules else None
