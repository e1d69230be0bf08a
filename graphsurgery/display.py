"""How models, nodes and results look in Jupyter: HTML summaries and a neighbourhood picture
drawn as SVG by graphsurgery itself (no graphviz binary needed)."""

from __future__ import annotations

import html
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .core import Graph, Model, Node

_STYLE = "font-family:sans-serif;font-size:13px"


def model_html(model: Model) -> str:
    from .lint import lint
    from .summary import summarize

    s = summarize(model, check=False)
    findings = lint(model)
    esc = html.escape

    def io(rows):
        return "".join(f"<tr><td><code>{esc(r['name'])}</code></td><td>{esc(r['type'])}</td>"
                       f"<td>{esc(str(r['shape']))}</td></tr>" for r in rows)

    ops = ", ".join(f"{esc(k)}&nbsp;{v}" for k, v in list(s["ops"].items())[:20])
    lint_rows = "".join(f"<li><b>{esc(f.code)}</b> {esc(f.where)}: {esc(f.message)}"
                        + (f" — fix: <code>{esc(f.fix)}</code>" if f.fix else "") + "</li>" for f in findings)
    name = os.path.basename(s["file"]) if s["file"] else "(in memory)"  # not the path: it names a machine
    return (f"<div style='{_STYLE}'><b>ONNX model</b> {esc(name)} — {s['nodes']:,} nodes in "
            f"{s['graphs']} graph(s), {s['parameters']:,} parameters, opsets "
            f"{esc(', '.join(f'{d} {v}' for d, v in s['opsets'].items()))}"
            f"<table><tr><th>inputs</th><th>type</th><th>shape</th></tr>{io(s['inputs'])}"
            f"<tr><th>outputs</th><th></th><th></th></tr>{io(s['outputs'])}</table>"
            f"<p>ops: {ops}</p>"
            + (f"<p>deployment lint:</p><ul>{lint_rows}</ul>" if lint_rows else "<p>deployment lint: nothing found</p>")
            + "</div>")


def graph_html(graph: Graph) -> str:
    ops: dict[str, int] = {}
    for n in graph.nodes:
        ops[n.op_type] = ops.get(n.op_type, 0) + 1
    esc = html.escape
    return (f"<div><b>{esc(graph.describe())}</b>: {len(graph)} nodes; inputs "
            f"{esc(', '.join(graph.input_names))}; outputs {esc(', '.join(graph.output_names))}; "
            f"ops {esc(', '.join(f'{k} {v}' for k, v in ops.items()))}</div>")


def neighbourhood(graph: Graph, center, hops: int = 2) -> Picture:
    return Picture(neighbourhood_svg(graph, center, hops))


def register() -> None:
    """Make the core's objects display through this module (``_repr_html_``, ``Graph.neighbourhood``)."""
    from .core import hooks

    hooks.register_renderer("model", model_html)
    hooks.register_renderer("graph", graph_html)
    hooks.register_renderer("node", node_html)
    hooks.register_renderer("neighbourhood", neighbourhood)
    hooks.register_renderer("result", result_html)


def node_html(node: Node) -> str:
    esc = html.escape
    attrs = "".join(f"<tr><td>{esc(k)}</td><td><code>{esc(_short(node.attrs[k]))}</code></td></tr>"
                    for k in node.attrs)
    return (f"<div style='{_STYLE}'><b>{esc(node.op_type)}</b> <code>{esc(node.name)}</code> in "
            f"{esc(node.graph.describe())}<br>inputs: {esc(', '.join(node.inputs))}<br>outputs: "
            f"{esc(', '.join(node.outputs))}" + (f"<table>{attrs}</table>" if attrs else "")
            + neighbourhood_svg(node.graph, node, hops=1) + "</div>")


def _short(v) -> str:
    import numpy as np

    if isinstance(v, np.ndarray):
        return f"tensor {v.dtype} {list(v.shape)}"
    text = repr(v)
    return text if len(text) < 80 else text[:77] + "..."


def neighbourhood_svg(graph: Graph, center, hops: int = 2, max_nodes: int = 40) -> str:
    """An SVG of the nodes within ``hops`` of ``center`` (a Node, or a tensor name), laid out in
    layers from producers (top) to consumers (bottom). The center is highlighted."""
    from .core.node import Node

    if isinstance(center, Node):
        start = [center]
    else:
        start = [n for n in [graph.producer(center)] if n is not None] + graph.consumers(center)
    layer = {id(n.proto): 0 for n in start}
    nodes = {id(n.proto): n for n in start}
    frontier = list(start)
    for _ in range(hops):
        nxt = []
        for n in frontier:
            for p in n.producers():
                if p is not None and id(p.proto) not in nodes and p.graph is graph:
                    nodes[id(p.proto)] = p
                    layer[id(p.proto)] = layer[id(n.proto)] - 1
                    nxt.append(p)
            for c in n.consumers():
                if c.graph is not graph:  # read from inside a subgraph: show the node holding it
                    try:
                        c = graph.holder_of(c)
                    except AttributeError:
                        continue
                if id(c.proto) not in nodes and c is not n:
                    nodes[id(c.proto)] = c
                    layer[id(c.proto)] = layer[id(n.proto)] + 1
                    nxt.append(c)
            if len(nodes) >= max_nodes:
                break
        frontier = nxt
    rows: dict[int, list] = {}
    for key, n in nodes.items():
        rows.setdefault(layer[key], []).append(n)
    levels = sorted(rows)
    box_w, box_h, gap_x, gap_y = 150, 34, 20, 40
    width = max(len(r) for r in rows.values()) * (box_w + gap_x) + gap_x
    height = len(levels) * (box_h + gap_y) + gap_y
    pos = {}
    for yi, lvl in enumerate(levels):
        row = rows[lvl]
        offset = (width - len(row) * (box_w + gap_x) + gap_x) / 2
        for xi, n in enumerate(row):
            pos[id(n.proto)] = (offset + xi * (box_w + gap_x), gap_y / 2 + yi * (box_h + gap_y))
    esc = html.escape
    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width:.0f}' height='{height:.0f}' "
             f"style='{_STYLE}'><defs><marker id='arrow' viewBox='0 0 10 10' refX='10' refY='5' markerWidth='6' "
             "markerHeight='6' orient='auto'><path d='M0,0 L10,5 L0,10 z' fill='#555'/></marker></defs>"]
    for key, n in nodes.items():
        for p in n.producers():
            if p is not None and id(p.proto) in pos:
                (x1, y1), (x2, y2) = pos[id(p.proto)], pos[key]
                parts.append(f"<line x1='{x1 + box_w / 2:.0f}' y1='{y1 + box_h:.0f}' x2='{x2 + box_w / 2:.0f}' "
                             f"y2='{y2:.0f}' stroke='#555' marker-end='url(#arrow)'/>")
    centers = {id(n.proto) for n in start} if isinstance(center, Node) else set()
    for key, n in nodes.items():
        x, y = pos[key]
        fill = "#ffd27f" if key in centers else "#e8eef7"
        label = n.op_type if len(n.op_type) <= 18 else n.op_type[:17] + "…"
        name = n.name if len(n.name) <= 22 else "…" + n.name[-21:]
        parts.append(f"<g><title>{esc(n.name)}: {esc(', '.join(n.inputs))} -> {esc(', '.join(n.outputs))}</title>"
                     f"<rect x='{x:.0f}' y='{y:.0f}' width='{box_w}' height='{box_h}' rx='6' fill='{fill}' "
                     f"stroke='#557'/><text x='{x + box_w / 2:.0f}' y='{y + 14:.0f}' text-anchor='middle' "
                     f"font-weight='bold'>{esc(label)}</text><text x='{x + box_w / 2:.0f}' y='{y + 28:.0f}' "
                     f"text-anchor='middle' font-size='10'>{esc(name)}</text></g>")
    parts.append("</svg>")
    return "".join(parts)


class Picture:
    """An SVG that Jupyter displays inline (``graph.neighbourhood(...)`` returns one)."""

    def __init__(self, svg: str):
        self.svg = svg

    def _repr_svg_(self) -> str:
        return self.svg

    def __str__(self) -> str:
        return self.svg


def result_html(result, limit: int = 10) -> str:
    esc = html.escape

    def listing(lines):
        shown = "".join(f"<li>{esc(c)}</li>" for c in lines[:limit])
        more = len(lines) - limit
        return shown + (f"<li>… and {more} more (<code>.changes</code>/<code>.skipped</code> has them all)</li>"
                        if more > 0 else "")

    items = listing(result.changes)
    skipped = listing(result.skipped)
    return (f"<div style='{_STYLE}'><b>{esc(result.name)}</b>: "
            + (f"{len(result.changes)} change(s)<ul>{items}</ul>" if result.changed else "no change")
            + (f"<details><summary>skipped ({len(result.skipped)})</summary><ul>{skipped}</ul></details>"
               if skipped else "") + "</div>")
