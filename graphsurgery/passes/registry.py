"""The one place that maps pass names to pass classes (no registration by import side effect)."""

from __future__ import annotations

import re
from collections.abc import Iterator, MutableMapping
from importlib import import_module
from typing import Any

from ..errors import did_you_mean
from .base import Pass, PassError

# name -> "module:Class": a pass module is imported the first time its pass is asked for, so a
# pipeline of one pass does not pay for importing all of them (some import heavy modules)
_WHERE = {
    "freeze-inputs": "freeze_inputs:FreezeInputs",
    "set-shape": "set_shape:SetShape",
    "fold-constants": "fold_constants:FoldConstants",
    "remove-if": "remove_if:RemoveIf",
    "cleanup": "cleanup:Cleanup",
    "prelu-to-relu": "prelu_to_relu:PReluToRelu",
    "fix-prelu-slope": "fix_prelu_slope:FixPReluSlope",
    "instancenorm-epsilon": "instancenorm_epsilon:InstanceNormEpsilon",
    "debug-outputs": "debug_outputs:DebugOutputs",
    "set-batch": "set_batch:SetBatch",
    "cut": "cut:Cut",
    "eliminate-noops": "eliminate_noops:EliminateNoops",
    "fuse-conv-bn": "fuse_conv_bn:FuseConvBn",
    "rename-io": "rename_io:RenameIO",
    "convert-opset": "convert_opset:ConvertOpset",
    "fold-preprocessing": "preprocessing:FoldPreprocessing",
    "split-preprocessing": "preprocessing:SplitPreprocessing",
    "focus-to-conv": "focus_to_conv:FocusToConv",
    "fold-conv-affine": "fold_conv_affine:FoldConvAffine",
    "matmul-add-to-gemm": "matmul_add_to_gemm:MatMulAddToGemm",
    "eliminate-neutral": "eliminate_neutral:EliminateNeutral",
    "merge-slices": "merge_slices:MergeSlices",
    "merge-reshapes": "merge_reshapes:MergeReshapes",
    "cancel-reshapes": "cancel_reshapes:CancelReshapes",
    "remove-single-piece": "remove_single_piece:RemoveSinglePiece",
    "rejoin-elements": "rejoin_elements:RejoinElements",
    "transpose-to-reshape": "transpose_to_reshape:TransposeToReshape",
    "constant-subgraph-outputs": "constant_subgraph_outputs:ConstantSubgraphOutputs",
}


class _Registry(MutableMapping):
    """Pass classes by name, in a fixed order; each class is imported on first access."""

    def __init__(self, where: dict[str, str]):
        self._entries: dict[str, str | type[Pass]] = dict(where)

    def __getitem__(self, name: str) -> type[Pass]:
        entry = self._entries[name]
        if isinstance(entry, str):
            module, cls = entry.split(":")
            entry = getattr(import_module(f"{__package__}.{module}"), cls)
            self._entries[name] = entry
        return entry

    def __setitem__(self, name: str, cls: type[Pass]) -> None:
        self._entries[name] = cls

    def __delitem__(self, name: str) -> None:
        del self._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __repr__(self) -> str:
        return f"PASSES({', '.join(self._entries)})"


PASSES: MutableMapping[str, type[Pass]] = _Registry(_WHERE)


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
