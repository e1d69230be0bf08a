"""The markdown tables of a benchmark run (rows as run.py records them)."""

from __future__ import annotations

TITLES = {
    "structural": "Structural edit on the CNN (PRelu → 5 nodes + rewire, InstanceNorm epsilon, remove unused, "
                  "toposort, save)",
    "small": "200k-node small-op graph (structural: LeakyRelu → Mul + Max + rewire; attribute: LeakyRelu alpha)",
    "transformer": "Model over 2 GiB with external data (attribute: Softmax axis; structural: Relu → Max + rewire)",
    "pipeline": "graphsurgery pipeline fold-constants,remove-if,eliminate-noops,cleanup (load → run → save)",
    "cli": "CLI attribute edit including start-up (graphsurgery run -p \"instancenorm-epsilon(epsilon=0.001)\" "
           "against a raw python script)",
    "import": "Import time (median of fresh interpreters)",
}
TOLERANCE = 1e-5


def _time(row: dict, args) -> str:
    if "timeout" in row:
        return f"> {args.limit:g}"
    if "skipped" in row:
        return "not run"
    if "error" in row:
        return "failed"
    return f"{row['seconds']:.2f}" + ("" if len(row["runs"]) >= args.runs else "¹")


def _ratio(row: dict, raw: dict | None, key: str) -> str:
    if raw is None or key not in row or key not in raw or raw[key] <= 0:
        return "-"
    return f"{row[key] / raw[key]:.2f}×"


def _check(row: dict, raw: dict | None) -> str:
    if "skipped" in row:
        return row["skipped"]
    if "error" in row:
        return "failed: " + row["error"][:160].replace("|", "/")
    c = row.get("check")
    if c is None:
        return "-"
    if "error" in c or "timeout" in c:
        return "check failed: " + c.get("error", "timed out")[:160].replace("|", "/")
    notes = []
    s = c["summary"]
    if raw is not None and raw is not row and raw.get("check", {}).get("summary"):
        r = raw["check"]["summary"]
        diff = [k for k in sorted(set(s) | set(r)) if s.get(k) != r.get(k)]
        if diff:
            notes.append("DIFFERS from raw in " + ", ".join(f"{k} ({s.get(k)} vs {r.get(k)})" for k in diff))
    if not s.get("topologically_sorted", True):
        notes.append("NOT SORTED")
    if "max_difference" in c:
        d = c["max_difference"]
        notes.append(f"outputs {'equal' if d <= TOLERANCE else 'DIFFER'} (max rel. diff {d:.1e})")
    if "external_differences" in c:
        bad = c["external_differences"]
        notes.append("external data intact" if not bad else f"EXTERNAL DATA CHANGED: {len(bad)} tensors")
    return "; ".join(notes) or f"{s['nodes']} nodes"


def _tool_table(rows: list[dict], args) -> list[str]:
    out = ["| case | tool | time (s) | peak memory growth (MiB) | time vs raw | memory vs raw | nodes after | "
           "checked | load avg |",
           "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | --- |"]
    for row in rows:
        raw = next((r for r in rows if r["case"] == row["case"] and r["tool"] == "raw"), None)
        nodes = row.get("check", {}).get("summary", {}).get("nodes", "-")
        tool = f"**{row['tool']}**" if row["tool"] == "graphsurgery" else row["tool"]
        mem = f"{row['peak_mib']:.0f}" if "peak_mib" in row else "-"
        out.append(f"| {row['case']} | {tool} | {_time(row, args)} | {mem} | {_ratio(row, raw, 'seconds')} | "
                   f"{_ratio(row, raw, 'peak_mib')} | {nodes} | {_check(row, raw)} | "
                   f"{row.get('loadavg_before', '-')} |")
    return out


def _doubling(rows: list[dict], args) -> list[str]:
    cases = list(dict.fromkeys(r["case"] for r in rows))
    if len(cases) < 2:
        return []
    head = " | ".join(f"t({b}) / t({a})" for a, b in zip(cases, cases[1:]))
    out = ["", f"| tool | {head} |", "| --- |" + " ---: |" * (len(cases) - 1)]
    for tool in dict.fromkeys(r["tool"] for r in rows):
        t = {r["case"]: r for r in rows if r["tool"] == tool}
        cells = []
        for a, b in zip(cases, cases[1:]):
            ra, rb = t.get(a, {}), t.get(b, {})
            if "seconds" in ra and "seconds" in rb:
                cells.append(f"{rb['seconds'] / ra['seconds']:.2f}")
            elif "seconds" in ra and ("timeout" in rb or "skipped" in rb):
                cells.append(f"> {args.limit / ra['seconds']:.1f}")
            else:
                cells.append("-")
        out.append(f"| {tool} | " + " | ".join(cells) + " |")
    return out


def markdown(results: list[dict], args, notes: list[str]) -> str:
    lines = []
    for section in ("structural", "small", "transformer", "pipeline", "cli", "import"):
        rows = [r for r in results if r["section"] == section]
        if not rows:
            continue
        lines += ["", f"### {TITLES[section]}", ""]
        if section == "import":
            lines += ["| what | median (s) | goal | load avg |", "| --- | ---: | --- | --- |"]
            for r in rows:
                goal = "≤ 0.15 s" if r["case"].startswith("import graphsurgery") else ""
                lines.append(f"| {r['case']} | {r['seconds']:.3f} | {goal} | {r['loadavg_before']} |")
        elif section == "cli":
            raw = next((r for r in rows if r["tool"] == "raw"), None)
            lines += ["| case | tool | wall time incl. start-up (s) | peak RSS (MiB) | time vs raw | memory vs raw "
                      "| load avg |", "| --- | --- | ---: | ---: | ---: | ---: | --- |"]
            for r in rows:
                mem = f"{r['peak_mib']:.0f}" if "peak_mib" in r else "-"
                lines.append(f"| {r['case']} | {r['tool']} | {_time(r, args)} | {mem} | "
                             f"{_ratio(r, raw, 'seconds')} | {_ratio(r, raw, 'peak_mib')} | {r['loadavg_before']} |")
        else:
            lines += _tool_table(rows, args)
            if section in ("structural", "pipeline"):
                lines += _doubling(rows, args)
    lines += ["", f"Median of {args.runs} runs, each in a fresh process; ¹ one run only (the first took longer "
              f"than {args.repeat_under:g} s); \"> {args.limit:g}\" stopped at the limit. Load average "
              "(1/5/15 min) as the measurement started."]
    lines += notes
    return "\n".join(lines).lstrip() + "\n"
