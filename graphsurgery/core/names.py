"""The name authority: which tensor and node names a model already uses, and fresh ones.

One per model. It holds a superset of every tensor name defined anywhere in the model (main
graph, subgraphs, function bodies): names are added as edits define them and never removed,
so "not in it" proves a name is free everywhere, and a name in it is checked precisely by
the scope that asks.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable


class NameAuthority:
    """Unique names across a model's scope chain, built on first use and kept incrementally."""

    __slots__ = ("_collect", "_tensors", "_nodes", "_counter", "_fresh")

    def __init__(self, collect: Callable[[], tuple[set[str], set[str]]]):
        # collect() -> (tensor names, node names) of the whole model, called once, lazily
        self._collect = collect
        self._tensors: set[str] | None = None
        self._nodes: set[str] | None = None
        self._counter = itertools.count(1)
        self._fresh: set[str] = set()  # handed out by unique(), not yet defined by an edit

    def _load(self) -> None:
        if self._tensors is None:
            self._tensors, self._nodes = self._collect()

    def may_exist(self, name: str) -> bool:
        """False only when ``name`` is defined nowhere in the model (a name :meth:`unique` handed
        out stays free until an edit defines it)."""
        self._load()
        return name in self._tensors and name not in self._fresh

    def add(self, names: Iterable[str]) -> None:
        """Record names that an edit defined (tensors)."""
        if self._tensors is not None:
            names = [n for n in names if n]
            self._tensors.update(names)
            self._fresh.difference_update(names)

    def add_nodes(self, names: Iterable[str]) -> None:
        """Record node names an edit introduced."""
        if self._nodes is not None:
            self._nodes.update(n for n in names if n)

    def unique(self, base: str, kind: str = "tensor") -> str:
        """``base``, or ``base_N``, a name no tensor (or node, for ``kind="node"``) of the model has;
        it is reserved at once."""
        self._load()
        taken = self._tensors if kind == "tensor" else self._nodes
        name = base
        while name in taken:
            name = f"{base}_{next(self._counter)}"
        taken.add(name)
        if kind == "tensor":
            self._fresh.add(name)
        return name


__all__ = ["NameAuthority"]
