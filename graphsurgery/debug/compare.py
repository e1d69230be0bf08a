"""Compare two runs tensor by tensor and find the node where they part."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..capture import BACKENDS, capture, run_outputs, tensor_order
from ..core.model import Model, load
from ..verify import ACROSS_BACKENDS_ATOL, ACROSS_BACKENDS_RTOL, measure
from .report import Report, Row

# comparing across backends (onnxruntime optimized, unoptimized, onnx's reference evaluator):
# the tolerances and the rule are graphsurgery.verify's, the one comparator
DEFAULT_RTOL = ACROSS_BACKENDS_RTOL
DEFAULT_ATOL = ACROSS_BACKENDS_ATOL


def compare(model: Any, reference: Any, inputs: dict[str, np.ndarray] | str | None = None, *,
            backend: str = "ort", rtol: float = DEFAULT_RTOL, atol: float = DEFAULT_ATOL, chunk: int | None = None,
            name_map: dict[str, str] | None = None, tensors: list[str] | None = None,
            progress=None) -> Report:
    """Run ``model`` with ``backend`` and compare every intermediate tensor with ``reference``:

    - a backend name, ``"ort-noopt"`` or ``"reference"`` (onnx's reference evaluator), run on the same model;
    - another model (path, bytes, ModelProto or Model) over the same tensor names (``name_map`` maps this
      model's names to the other's where they differ);
    - arrays by tensor name: a dict, or the path of an ``.npz`` file (never pickle).

    An element is within tolerance when ``|a - b| <= atol + rtol * max|reference tensor|``
    (:func:`graphsurgery.verify.measure`, the comparator ``--verify`` uses): relative to the
    tensor's scale, so kernels that round near-zero values differently are not flagged.

    ``inputs`` is a dict or an ``.npz`` path (default: generated from the input signature).
    ``chunk`` bounds how many intermediate tensors are held at once (default: 256 for models
    with more than that many, else all), trading memory for extra runs. ``progress(done, total,
    label)`` is called after each chunk.
    """
    from .. import verify

    subject = load(model) if not isinstance(model, Model) else model
    if inputs is None:
        feeds = verify.make_inputs(subject.proto, batch=1)
        try:
            run_outputs(subject, feeds, backend)
        except verify.RuntimeFailure as exc:
            raise verify.RuntimeFailure(
                f"{exc}. The inputs were generated from the model's signature (open dims set to 1, values "
                "random); give real ones with inputs= (--inputs X.npz on the command line)") from None
    else:
        feeds = _load_arrays(inputs)
    all_feeds = feeds  # the reference may read inputs the subject froze
    feeds = {k: v for k, v in feeds.items() if k in subject.graph.input_names}
    names = tensors if tensors is not None else tensor_order(subject)
    if chunk is None:
        chunk = 256 if len(names) > 256 else max(len(names), 1)
    name_map = name_map or {}
    report = Report(rtol=rtol, atol=atol)

    ref_model: Model | None = None
    ref_arrays: dict[str, np.ndarray] | None = None
    ref_backend: str | None = None
    if isinstance(reference, str) and reference in BACKENDS:
        ref_model, ref_backend = subject, reference
        report.reference = f"the same model on {reference}"
    elif isinstance(reference, dict) or (isinstance(reference, (str, os.PathLike)) and str(reference).endswith(".npz")):
        ref_arrays = _load_arrays(reference)
        report.reference = "saved arrays" if isinstance(reference, dict) else f"arrays in {reference}"
    else:
        ref_model = load(reference) if not isinstance(reference, Model) else reference
        ref_backend = backend
        report.reference = f"model {ref_model.source_path or ref_model.proto.graph.name!r}"

    where = _producers(subject)
    ref_names = set(tensor_order(ref_model)) | set(ref_model.graph.input_names) if ref_model is not None else None
    for start in range(0, len(names), chunk):
        part = names[start:start + chunk]
        got = next(iter(capture(subject, feeds, backend=backend, tensors=part))) if part else {}
        if ref_arrays is not None:
            ref = {n: ref_arrays[name_map.get(n, n)] for n in part if name_map.get(n, n) in ref_arrays}
        else:
            wanted = [name_map.get(n, n) for n in part if name_map.get(n, n) in ref_names]
            ref_feeds = {k: v for k, v in all_feeds.items() if k in ref_model.graph.input_names}
            raw = next(iter(capture(ref_model, ref_feeds, backend=ref_backend, tensors=wanted))) if wanted else {}
            ref = {n: raw[name_map.get(n, n)] for n in part if name_map.get(n, n) in raw}
        for n in part:
            node = where.get(n)
            report.rows.append(_row(n, node, got.get(n), ref.get(n), rtol, atol))
        del got, ref
        if progress is not None:
            progress(min(start + chunk, len(names)), len(names), "tensors compared")
    # the model's outputs, from unmodified runs (marking tensors can change what a runtime fuses)
    outs = run_outputs(subject, feeds, backend)
    if ref_arrays is not None:
        ref_outs = {k: ref_arrays[name_map.get(k, k)] for k in outs if name_map.get(k, k) in ref_arrays}
    else:
        ref_feeds = {k: v for k, v in all_feeds.items() if k in ref_model.graph.input_names}
        raw = run_outputs(ref_model, ref_feeds, ref_backend)
        ref_outs = {k: raw[name_map.get(k, k)] for k in outs if name_map.get(k, k) in raw}
    report.outputs = [_row(k, where.get(k), outs[k], ref_outs.get(k), rtol, atol) for k in outs]
    _find_culprit(subject, report)
    return report


def _producers(model: Model) -> dict[str, Any]:
    return {t: n for n in model.graph.walk() for t in n.outputs if t}


def _load_arrays(source) -> dict[str, np.ndarray]:
    if isinstance(source, dict):
        return {k: np.asarray(v) for k, v in source.items()}
    with np.load(source, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def _row(name: str, node, a, b, rtol: float, atol: float) -> Row:
    row = Row(tensor=name, node=node.name if node is not None else None,
              op_type=node.op_type if node is not None else None,
              graph=node.graph.describe() if node is not None else "main graph")
    if a is None:
        row.skipped = "not produced by this run"
        return row
    if b is None:
        row.skipped = "no reference value"
        return row
    a, b = np.asarray(a), np.asarray(b)
    row.shape, row.ref_shape, row.dtype = list(a.shape), list(b.shape), str(a.dtype)
    if a.size == 0 and b.size == 0:
        row.skipped = "not executed (a branch that did not run)"
        return row
    if a.shape != b.shape:
        if a.size == b.size and a.size:  # e.g. a squeezed axis: compare the values, say so
            b = b.reshape(a.shape)
        else:
            row.ok = False
            return row
    m = measure(b, a, rtol=rtol, atol=atol)
    row.max_abs, row.max_rel, row.beyond, row.ok = m.max_abs, m.max_rel, m.beyond, m.ok
    if np.issubdtype(a.dtype, np.number) and np.issubdtype(b.dtype, np.number):
        x, y = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
        both = np.isfinite(x) & np.isfinite(y)  # the angle between the finite parts
        x, y = x[both], y[both]
        nx, ny = np.linalg.norm(x), np.linalg.norm(y)
        row.cosine = float(np.dot(x, y) / (nx * ny)) if nx and ny else (1.0 if nx == ny else 0.0)
    return row


def _find_culprit(model: Model, report: Report) -> None:
    """The first node, in execution order, whose outputs are beyond tolerance while every input
    that was compared is within it: where the runs part, not where the damage is first seen.
    Nodes inside a subgraph are examined before the If/Loop/Scan holding them."""
    rows = {r.tensor: r for r in report.rows}
    bad = {r.tensor for r in report.bad}
    if not bad:
        return
    report.first_bad = next(r.tensor for r in report.rows if r.tensor in bad)

    def visit(graph):
        for node in graph.nodes:
            if node.has_subgraphs():
                for sub in _subgraphs(node):
                    found = visit(sub)
                    if found is not None:
                        return found
            outs = [t for t in node.outputs if t in bad]
            if not outs:
                continue
            reads = [t for t in node.inputs if t]
            if node.has_subgraphs():
                for sub in _subgraphs(node):
                    reads.extend(sub.captured())
            if not any(t in bad for t in reads):
                return node, outs, reads
        return None

    found = visit(model.graph)
    if found is None:
        report.culprit_reason = "every tensor beyond tolerance has an input beyond tolerance too: the inputs differ"
        return
    node, outs, reads = found
    worst = max((rows[t] for t in outs), key=lambda r: r.max_abs if r.max_abs is not None else np.inf)
    compared = [t for t in reads if t in rows and rows[t].skipped is None]
    report.culprit = node.name or f"<{node.op_type} producing {outs[0]}>"
    report.culprit_reason = (f"{node.op_type} output {worst.tensor!r} is beyond tolerance (max abs "
                             f"{_fmt(worst.max_abs)}, {_fmt_pct(worst.beyond)} of elements) while its "
                             f"{len(compared)} compared input(s) are within it")


def _subgraphs(node):
    for v in node.subgraphs().values():
        yield from (v if isinstance(v, list) else [v])


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.3g}"


def _fmt_pct(v) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


__all__ = ["compare", "DEFAULT_RTOL", "DEFAULT_ATOL"]
