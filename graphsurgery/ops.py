"""Facts about ONNX operators that several modules need, spelt once. Imports nothing of
graphsurgery, so any layer may use it."""

from __future__ import annotations

import numpy as np
import onnx

#: the two spellings of the default (standard operator) domain
DEFAULT_DOMAINS = ("", "ai.onnx")

#: operators whose results are drawn at random: never folded, and two of them on the same
#: inputs are not duplicates (Dropout is random in training mode)
NONDETERMINISTIC = frozenset({"Bernoulli", "Dropout", "Multinomial", "RandomNormal", "RandomNormalLike",
                              "RandomUniform", "RandomUniformLike"})


def is_default_domain(domain: str) -> bool:
    """Whether ``domain`` names the standard operator set."""
    return domain in DEFAULT_DOMAINS


def is_nondeterministic(op_type: str) -> bool:
    """Whether a node's results may be drawn at random, so it must not be folded or merged: a
    standard random op, or any op named Random* (later opsets, or a custom domain taken at
    its word)."""
    return op_type in NONDETERMINISTIC or op_type.startswith("Random")


def subgraph_protos(node: onnx.NodeProto) -> list[onnx.GraphProto]:
    """The graphs a node holds in its attributes (If branches, Loop and Scan bodies), in
    attribute order: what every walk over a model's nested graphs steps into."""
    out: list[onnx.GraphProto] = []
    for a in node.attribute:
        if a.type == onnx.AttributeProto.GRAPH:
            out.append(a.g)
        elif a.type == onnx.AttributeProto.GRAPHS:
            out.extend(a.graphs)
    return out


def if_branch_taken(condition) -> str | None:
    """The branch an ``If`` runs for a constant ``condition``: ``"then_branch"`` or
    ``"else_branch"``; None when the condition does not hold exactly one element (the If
    would fail at run time, so no branch can be called the one taken)."""
    value = np.asarray(condition)
    if value.size != 1:
        return None
    return "then_branch" if bool(value.reshape(-1)[0]) else "else_branch"
