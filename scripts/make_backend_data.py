#!/usr/bin/env python3
"""Regenerate the backend support data graphsurgery lints against, from the projects' tables.

``tensorrt_ops.json`` comes from onnx-tensorrt's operator matrix; ``openvino_ops.json`` from
the table of OpenVINO's ONNX frontend (``--backend openvino``, default-domain rows).

onnx-tensorrt publishes, per TensorRT release, ``docs/operators.md``: for each ONNX operator
whether the parser supports it, the data types it supports, and its restrictions. This script
turns that table into the data ``graphsurgery inspect --for tensorrt`` lints against:

    python scripts/make_backend_data.py operators.md --commit COMMIT --date YYYY-MM-DD
    python scripts/make_backend_data.py --fetch COMMIT --date YYYY-MM-DD   # needs network
    python scripts/make_backend_data.py --backend openvino supported_ops.md --commit COMMIT

Each op keeps the row's text; each restriction is one sentence of the row, cited verbatim,
with the machine check graphsurgery runs for it (``check``), or ``null`` when the sentence
cannot be checked from the ONNX file alone. The output is deterministic (sorted keys), so a
regeneration from the same markdown gives the same bytes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
import urllib.request

HERE = os.path.join(os.path.dirname(__file__), "..", "graphsurgery", "backends")
SOURCES = {"tensorrt": ("onnx/onnx-tensorrt", "docs/operators.md"),
           "openvino": ("openvinotoolkit/openvino", "src/frontends/onnx/docs/supported_ops.md")}

# Restriction sentences graphsurgery can check, by (op or "*", sentence prefix) -> check.
# A sentence of the matrix that matches none of these is kept with "check": null.
CHECKS: list[tuple[str, str, dict]] = [
    ("*", "2D or 3D", {"check": "spatial-rank", "in": [2, 3]}),
    ("*", "`dilations` must be empty or all ones", {"check": "attr-all-ones", "attr": "dilations"}),
    ("MaxPool", "`Indices` output tensor unsupported", {"check": "output-absent", "outputs": ["Indices"]}),
    ("CumSum", "`axis` must be", {"check": "constant-input", "inputs": ["axis"]}),
    ("OneHot", "`depth` must be", {"check": "constant-input", "inputs": ["depth"]}),
    ("*", "`axes` must be an initializer", {"check": "constant-input", "inputs": ["axes"]}),
    ("*", "`axes` must be resolvable to a constant", {"check": "constant-input", "inputs": ["axes"]}),
    ("STFT", "`frame_step` and `window` must be", {"check": "constant-input", "inputs": ["frame_step", "window"]}),
    ("Dropout", "`is_training` must be", {"check": "constant-input", "inputs": ["training_mode"], "value": False}),
    ("Constant", "`sparse_value`", {"check": "attr-absent", "attrs": ["sparse_value", "value_string",
                                                                       "value_strings"]}),
    ("EyeLike", "`input` must have static dimensions", {"check": "static-input", "inputs": ["input"]}),
    ("GridSample", "Input must be 4D", {"check": "input-rank", "inputs": ["X"], "rank": 4}),
    ("If", "Output tensors of the two conditional branches", {"check": "if-branch-rank"}),
    ("LayerNormalization", "Only the first output", {"check": "output-absent", "outputs": ["Mean", "InvStdDev"]}),
    ("*", "For bidirectional", {"check": "bidirectional-activations"}),
    ("LSTM", "`input_forget` attribute must be 0", {"check": "attr-equals", "attr": "input_forget", "value": 0}),
    ("LSTM", "`layout` attribute must be 0", {"check": "attr-equals", "attr": "layout", "value": 0}),
    ("QuantizeLinear", "`y_zero_point` must be 0", {"check": "zero-input", "inputs": ["y_zero_point"]}),
    ("DequantizeLinear", "`x_zero_point` must be zero", {"check": "zero-input", "inputs": ["x_zero_point"]}),
    ("Resize", "Supported resize transformation modes", {
        "check": "attr-in", "attr": "coordinate_transformation_mode",
        "values": ["half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn", "asymmetric", "align_corners"]}),
    ("Resize", "Supported resize modes", {"check": "attr-in", "attr": "mode", "values": ["nearest", "linear"]}),
    ("Resize", "Supported nearest modes", {"check": "attr-in", "attr": "nearest_mode",
                                           "values": ["floor", "ceil", "round_prefer_floor", "round_prefer_ceil"]}),
    ("Resize", "Supported aspect ratio policy", {"check": "attr-in", "attr": "keep_aspect_ratio_policy",
                                                 "values": ["stretch"]}),
    ("Resize", "Antialiasing is not supported", {"check": "attr-equals", "attr": "antialias", "value": 0}),
    ("ScatterND", "`reduction` other than `none`", {"check": "attr-in", "attr": "reduction", "values": ["none"]}),
    ("TopK", "`sorted` must be 1", {"check": "attr-equals", "attr": "sorted", "value": 1}),
    ("TopK", "`K` input must be less than", {"check": "input-below", "inputs": ["K"], "limit": 3840}),
    ("RotaryEmbedding", "`position_ids` must be INT64", {"check": "input-dtype", "inputs": ["position_ids"],
                                                         "dtype": "INT64"}),
    ("TensorScatter", "`axis` must be -2", {"check": "attr-equals", "attr": "axis", "value": -2}),
    ("Attention", "`past_key`, `past_value` and `nonpad_kv_seqlen` inputs are unsupported",
     {"check": "input-absent", "inputs": ["past_key", "past_value", "nonpad_kv_seqlen"]}),
    ("Attention", "`Q`, `K`, `V` and `attn_mask ` must be 4D", {"check": "input-rank", "inputs": ["Q", "K", "V", "attn_mask"],
                                                                 "rank": 4}),
    ("Attention", "`qk_matmul_output_mode` and `softcap` attributes are unsupported",
     {"check": "attr-absent", "attrs": ["qk_matmul_output_mode", "softcap"]}),
    ("Attention", "`present_key`, `present_value` and `qk_matmul_output` outputs are unsupported",
     {"check": "output-absent", "outputs": ["present_key", "present_value", "qk_matmul_output"]}),
]

# What onnx-tensorrt's history adds to the matrix of the recorded release: behaviour of older
# parsers that still reaches users (old Jetson images), each with its source.
HISTORY = [
    {"id": "instancenorm-epsilon-clamp", "before": "10.0",
     "text": "The InstanceNormalization importer clamped epsilon to at least 1e-4 "
             "('TensorRT only supports epsilon values >= 1e-4', quoted from the importer in "
             "NVIDIA/TensorRT issue 260); since 10.0 EA the native InstanceNormalization layer is "
             "the default (kNATIVE_INSTANCENORM, onnx-tensorrt changelog)",
     "source": "https://github.com/NVIDIA/TensorRT/issues/260", "minimum": 1e-4},
    {"id": "int64-cast-to-int32", "before": "9.0",
     "text": "There is limited support for INT32, INT64, and DOUBLE types. TensorRT will attempt to cast down "
             "INT64 to INT32 and DOUBLE down to FLOAT, clamping values to `+-INT_MAX` or `+-FLT_MAX` if necessary. "
             "(operators.md up to 8.6; the 9.0 EA changelog: 'The ONNX parser no longer automatically casts "
             "INT64 to INT32')",
     "source": "https://github.com/onnx/onnx-tensorrt/blob/release/8.6-GA/docs/operators.md"},
]

_TYPE_NAMES = {"FP32", "FP16", "BF16", "FP8", "FP4", "INT32", "INT64", "INT8", "INT4", "UINT8", "BOOL", "DOUBLE"}


def parse(text: str) -> dict:
    head = re.search(r"TensorRT\s+([0-9.]+)\s+supports operators in the inclusive range of opset\s+(\d+)\s+to opset\s+(\d+)",
                     text)
    if not head:
        raise SystemExit("not an onnx-tensorrt operators.md of TensorRT 10 or later: no opset range line")
    notes = [" ".join(line[1:].split()) for line in text.splitlines() if line.startswith(">")]
    types_line = re.search(r"TensorRT supports the following ONNX data types: (.*)", text)
    ops: dict[str, dict] = {}
    in_table = False
    for line in text.splitlines():
        if line.startswith("| Operator"):
            in_table = True
            continue
        if not in_table or not line.startswith("|") or set(line) <= set("|-: "):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        name = cells[0]
        flag = cells[1] if len(cells) > 1 else ""
        types = [t.strip() for t in (cells[2] if len(cells) > 2 else "").split(",") if t.strip()]
        while cells and not cells[-1]:
            cells.pop()
        row_text = " | ".join(cells)  # the row as published, padding and trailing empty cells dropped
        entry: dict = {"supported": flag.upper().startswith("Y"), "row": row_text}
        unknown = [t for t in types if t not in _TYPE_NAMES]
        if entry["supported"]:
            if unknown:
                raise SystemExit(f"{name}: unknown type name(s) {unknown} in row {row_text!r}")
            entry["types"] = types
        restriction = cells[3] if len(cells) > 3 else ""
        if restriction and entry["supported"]:
            entry["restrictions"] = [_restriction(name, s) for s in _sentences(restriction)]
        elif not entry["supported"] and any(cells[2:]):  # an unsupported row's text, in whichever column
            entry["note"] = " ".join(c for c in cells[2:] if c)
        if name in ops:
            raise SystemExit(f"operator {name} is listed twice")
        ops[name] = entry
    return {"tensorrt_version": head.group(1), "opset_range": [int(head.group(2)), int(head.group(3))],
            "data_types": types_line.group(1).strip() if types_line else None, "notes": notes, "ops": ops}


def parse_openvino(text: str) -> dict:
    """Default-domain rows of OpenVINO's ONNX frontend table: an op with no supported version
    is unsupported there; a limitation is kept as written."""
    ops: dict[str, dict] = {}
    in_table = False
    for line in text.splitlines():
        if line.startswith("| Domain"):
            in_table = True
            continue
        if not in_table or not line.startswith("|") or set(line) <= set("|-: "):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        cells += [""] * (5 - len(cells))
        domain, name, supported, defined, limitation = cells[:5]
        if domain not in ("", "ai.onnx"):
            continue
        if name in ops:
            raise SystemExit(f"operator {name} is listed twice")
        entry = {"supported": bool(supported), "row": " | ".join(c for c in cells[1:] if c),
                 "supported_versions": [int(v) for v in supported.split(",") if v.strip()],
                 "defined_versions": [int(v) for v in defined.split(",") if v.strip()]}
        if limitation:
            entry["limitation"] = limitation
        ops[name] = entry
    if not ops:
        raise SystemExit("no default-domain rows found: not OpenVINO's supported_ops.md")
    return {"ops": ops}


def _absent(ops: dict, max_opset: int) -> dict:
    """Operators of the default ONNX domain (as the installed onnx knows them, up to the
    matrix's newest opset) that the matrix does not list: unknown to it, not claimed unsupported."""
    import onnx
    from onnx import defs

    names = sorted({s.name for s in defs.get_all_schemas_with_history()
                    if s.domain in ("", "ai.onnx") and s.since_version <= max_opset and not s.deprecated})
    return {"onnx_version": onnx.__version__, "up_to_opset": max_opset,
            "ops": [n for n in names if n not in ops]}


def _sentences(text: str) -> list[str]:
    parts = []
    for chunk in re.split(r"<br\s*/?>", text):
        parts += [s.strip() for s in re.split(r"(?<=\.)\s+(?=[A-Z`])", chunk) if s.strip()]
    return parts


def _restriction(op: str, sentence: str) -> dict:
    for who, prefix, check in CHECKS:
        if who in (op, "*") and sentence.startswith(prefix):
            return {"text": sentence, **check}
    return {"text": sentence, "check": None}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("markdown", nargs="?", help="a local copy of the table (docs/operators.md, supported_ops.md)")
    ap.add_argument("--backend", choices=sorted(SOURCES), default="tensorrt")
    ap.add_argument("--fetch", metavar="COMMIT", help="download the table of this commit (needs network)")
    ap.add_argument("--commit", help="the commit the local copy comes from")
    ap.add_argument("--date", help="the release date of that version (YYYY-MM-DD; required for tensorrt)")
    ap.add_argument("--note", help="how the local copy was made, recorded with the source")
    ap.add_argument("-o", "--output")
    args = ap.parse_args(argv)
    commit = args.fetch or args.commit
    if not commit or bool(args.fetch) == bool(args.markdown):
        ap.error("give a local MARKDOWN with --commit, or --fetch COMMIT")
    if args.backend == "tensorrt" and not args.date:
        ap.error("--date (the TensorRT release date) is required for tensorrt")
    repo, path = SOURCES[args.backend]
    if args.fetch:
        url = f"https://raw.githubusercontent.com/{repo}/{commit}/{path}"
        with urllib.request.urlopen(url, timeout=60) as r:  # a fixed https host
            raw = r.read()
    else:
        with open(args.markdown, "rb") as f:
            raw = f.read()
    source = {"repository": repo, "path": path, "commit": commit, "url": f"https://github.com/{repo}/blob/{commit}/{path}",
              "sha256": hashlib.sha256(raw).hexdigest(), "release_date": args.date,
              "licence": "Apache-2.0 (the project's licence)"}
    if args.note:
        source["note"] = args.note
    text_in = raw.decode("utf-8")
    if args.backend == "tensorrt":
        data = parse(text_in)
        data["absent_from_matrix"] = _absent(data["ops"], data["opset_range"][1])
        data["history"] = HISTORY
    else:
        data = parse_openvino(text_in)
        data["absent_from_matrix"] = _absent(data["ops"], max(v for e in data["ops"].values()
                                                              for v in e["defined_versions"] or [1]))
    out = {"backend": args.backend, "source": source, **data}
    text = json.dumps(out, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    output = args.output or os.path.join(HERE, f"{args.backend}_ops.json")
    with open(output, "w", encoding="utf-8") as f:
        f.write(text)
    supported = sum(1 for e in data["ops"].values() if e["supported"])
    checked = sum(1 for e in data["ops"].values() for r in e.get("restrictions", []) if r["check"])
    print(f"{args.backend}: {len(data['ops'])} operators ({supported} supported), {checked} restriction(s) "
          f"checked; wrote {output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
