"""The one place that maps pass names to pass classes (no registration by import side effect)."""

from __future__ import annotations

import re
from typing import Any

from ..errors import did_you_mean
from .base import Pass, PassError
from .cancel_reshapes import CancelReshapes
from .cleanup import Cleanup
from .constant_subgraph_outputs import ConstantSubgraphOutputs
from .convert_opset import ConvertOpset
from .cut import Cut
from .debug_outputs import DebugOutputs
from .eliminate_neutral import EliminateNeutral
from .eliminate_noops import EliminateNoops
from .fix_prelu_slope import FixPReluSlope
from .focus_to_conv import FocusToConv
from .fold_constants import FoldConstants
from .fold_conv_affine import FoldConvAffine
from .freeze_inputs import FreezeInputs
from .fuse_conv_bn import FuseConvBn
from .instancenorm_epsilon import InstanceNormEpsilon
from .matmul_add_to_gemm import MatMulAddToGemm
from .merge_reshapes import MergeReshapes
from .merge_slices import MergeSlices
from .prelu_to_relu import PReluToRelu
from .preprocessing import FoldPreprocessing, SplitPreprocessing
from .rejoin_elements import RejoinElements
from .remove_if import RemoveIf
from .remove_single_piece import RemoveSinglePiece
from .rename_io import RenameIO
from .set_batch import SetBatch
from .set_shape import SetShape
from .transpose_to_reshape import TransposeToReshape

PASSES: dict[str, type[Pass]] = {cls.name: cls for cls in (
    FreezeInputs,
    SetShape,
    FoldConstants,
    RemoveIf,
    Cleanup,
    PReluToRelu,
    FixPReluSlope,
    InstanceNormEpsilon,
    DebugOutputs,
    SetBatch,
    Cut,
    EliminateNoops,
    FuseConvBn,
    RenameIO,
    ConvertOpset,
    FoldPreprocessing,
    SplitPreprocessing,
    FocusToConv,
    FoldConvAffine,
    MatMulAddToGemm,
    EliminateNeutral,
    MergeSlices,
    MergeReshapes,
    CancelReshapes,
    RemoveSinglePiece,
    RejoinElements,
    TransposeToReshape,
    ConstantSubgraphOutputs,
)}


def create(name: str, **opts: Any) -> Pass:
    cls = PASSES.get(name)
    if cls is None:
        hint = did_you_mean(name, PASSES) or f"; passes: {', '.join(PASSES)}"
        raise PassError(f"no pass named {name!r}{hint}")
    return cls(**opts)


def describe_all() -> list[dict[str, Any]]:
    """Every pass: name, first docstring line, full docstring, options."""
    out = []
    for name, cls in PASSES.items():
        doc = (cls.__doc__ or "").strip()
        out.append({"name": name, "summary": _first_sentence(doc), "doc": doc,
                    "options": {k: {"default": o.default, "help": o.help, "required": o.required}
                                for k, o in cls.options.items()},
                    "free_options": cls.free_options, "free_help": cls.free_help if cls.free_options else None})
    return out


_ABBREVIATIONS = ("e.g.", "i.e.", "etc.", "vs.", "cf.", "approx.", "resp.")


def _first_sentence(doc: str) -> str:
    """The whole first sentence of the first paragraph: it ends at a full stop followed by the
    end or by a capital letter, never at an abbreviation (``e.g.``) or a decimal point."""
    text = " ".join(doc.split("\n\n")[0].split()).replace("``", "")
    for m in re.finditer(r"[.!?](?=\s+[A-Z(\"']|\s*$)", text):
        end = m.end()
        word = text[:end].rsplit(" ", 1)[-1].lower()
        if word.lstrip("(") in _ABBREVIATIONS:
            continue
        return text[:end]
    return text
