"""The result of a comparison: one row per tensor, the culprit, and three renderings."""

from __future__ import annotations

import html
import json
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Row:
    """How one tensor compares. ``ok`` is False when shapes disagree or any element is beyond
    ``atol + rtol * max|reference|``; ``skipped`` explains rows that were not compared."""

    tensor: str
    node: str | None
    op_type: str | None
    graph: str
    shape: list | None = None
    ref_shape: list | None = None
    dtype: str | None = None
    max_abs: float | None = None
    max_rel: float | None = None
    cosine: float | None = None
    beyond: float | None = None  # share of elements beyond tolerance
    ok: bool = True
    skipped: str | None = None


@dataclass
class Report:
    """Per-tensor comparison of a model against a reference, in execution order."""

    rows: list[Row] = field(default_factory=list)
    culprit: str | None = None
    culprit_reason: str | None = None
    first_bad: str | None = None
    outputs: list[Row] = field(default_factory=list)
    rtol: float = 1e-4
    atol: float = 1e-5
    reference: str = ""

    @property
    def bad(self) -> list[Row]:
        return [r for r in self.rows if not r.ok and r.skipped is None]

    def to_dict(self) -> dict[str, Any]:
        return {"culprit": self.culprit, "culprit_reason": self.culprit_reason, "first_bad_tensor": self.first_bad,
                "reference": self.reference, "rtol": self.rtol, "atol": self.atol,
                "outputs": [asdict(r) for r in self.outputs], "rows": [asdict(r) for r in self.rows]}

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    def __str__(self) -> str:
        return self.format()

    def format(self, limit: int | None = 40) -> str:
        """The report as text. With more than ``limit`` compared rows, only the rows around the
        first tensor beyond tolerance (or the first rows, when all agree) are shown."""
        head = (f"compared {sum(1 for r in self.rows if r.skipped is None)} tensors against {self.reference} "
                f"(rtol={self.rtol:g}, atol={self.atol:g}); {len(self.bad)} beyond tolerance")
        lines = [head]
        if self.culprit:
            lines.append(f"culprit: node {self.culprit!r} — {self.culprit_reason}")
        else:
            lines.append("culprit: none — every compared tensor is within tolerance" if not self.bad else
                         f"culprit: none found — {self.culprit_reason}")
        cols = ("tensor", "op", "shape", "max abs", "max rel", "cosine", "beyond", "")
        table = [cols]
        shown = [r for r in self.rows if not r.skipped]
        if limit is not None and len(shown) > limit:
            at = next((i for i, r in enumerate(shown) if not r.ok), 0)
            lo = max(0, at - limit // 4)
            lines.append(f"(showing rows {lo + 1}-{min(lo + limit, len(shown))} of {len(shown)}; "
                         "to_dict()/--json has them all)")
            shown = shown[lo:lo + limit]
        for r in shown:
            table.append((_cut(r.tensor, 48), r.op_type or "-", "x".join(map(str, r.shape or [])) or "()",
                          _num(r.max_abs), _num(r.max_rel), _num(r.cosine, 6), _pct(r.beyond),
                          "" if r.ok else "BAD"))
        widths = [max(len(str(row[i])) for row in table) for i in range(len(cols))]
        for row in table:
            lines.append("  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        esc = html.escape
        culprit = (f"<b>culprit:</b> <code>{esc(self.culprit)}</code> — {esc(self.culprit_reason or '')}"
                   if self.culprit else "<b>culprit:</b> none")
        rows = "".join(
            f"<tr style='background:{'#fdd' if not r.ok else 'none'}'><td><code>{esc(r.tensor)}</code></td>"
            f"<td>{esc(r.op_type or '-')}</td><td>{esc(str(r.shape))}</td><td>{_num(r.max_abs)}</td>"
            f"<td>{_num(r.max_rel)}</td><td>{_num(r.cosine, 6)}</td><td>{_pct(r.beyond)}</td></tr>"
            for r in self.rows if not r.skipped)
        return (f"<div><p>Compared against {esc(self.reference)} (rtol={self.rtol:g}, atol={self.atol:g}); "
                f"{len(self.bad)} tensor(s) beyond tolerance.</p><p>{culprit}</p>"
                "<table><tr><th>tensor</th><th>op</th><th>shape</th><th>max abs</th><th>max rel</th>"
                f"<th>cosine</th><th>beyond</th></tr>{rows}</table></div>")


def _num(v: float | None, digits: int = 3) -> str:
    return "-" if v is None else f"{v:.{digits}g}"


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def _cut(s: str, n: int) -> str:
    return s if len(s) <= n else "…" + s[-(n - 1):]
