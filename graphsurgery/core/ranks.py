"""Ranks: a topological order of a scope's nodes, kept by the edits (Pearce and Kelly's dynamic
topological order), and the proto's node list brought into it when it is read. Mixed into
:class:`~.scope.Scope`, whose index (``_nodes``, ``_producer``, readers, holders) it reads."""

from __future__ import annotations

import bisect
import heapq
import operator

from ..errors import InvalidModelError
from .node import Node

_RANK = operator.attrgetter("_rank")


# removals cut out of a node list one by one; more are cut in one pass over the list
_FEW_CUTS = 16

class Ranks:
    """The ordering half of :class:`~.scope.Scope` (``self`` is the Scope)."""

    # =================================================================
    # ranks
    # =================================================================
    @property
    def ranks_valid(self) -> bool:
        """True when node ranks are a topological order (False only for a graph with a cycle)."""
        self._establish_ranks()
        return bool(self._ranks_valid)

    def rank(self, node: Node) -> tuple:
        """A key that orders this scope's nodes topologically (compare, do not store)."""
        self._establish_ranks()
        return node._rank

    def _establish_ranks(self) -> None:
        if self._ranks_valid is not None:
            return
        self._ensure()
        if self._ranks_valid is not None:  # the build found the file order topological
            return
        nodes = list(self._nodes.values())
        pos = {id(n.proto): k for k, n in enumerate(nodes)}
        ordered = True
        # until the first edit, the build has checked the direct inputs: only holders are left
        check = list(self._sub_nodes.values()) if self._inputs_ordered else nodes
        for n in check:
            k = pos[id(n.proto)]
            for name in self.reads(n):
                p = self._producer.get(name)
                if p is not None and pos[id(p.proto)] >= k and p is not n:
                    ordered = False
                    break
            if not ordered:
                break
        if ordered:
            for k, n in enumerate(nodes):
                n._rank = (float(k), 0)
            self._ranks_valid = True
            if self._dead:  # removed nodes still hold places in the list: ranks are not places there
                self._place = None
            else:
                self._places_exact(len(nodes))
            return
        try:
            self.toposort()
        except InvalidModelError:
            self._ranks_valid = False

    def depends_on(self, node: Node, anchor: Node) -> bool:
        """True when ``node`` is computed, directly or not, from ``anchor`` (both of this scope)."""
        return self._ancestors_after(node, anchor) is None

    def _ancestors_after(self, node: Node, anchor: Node) -> list[Node] | None:
        """Nodes ``node`` depends on (itself included) ranked after ``anchor``; None when one of
        them is ``anchor``. Searches only between the two ranks while ranks are valid."""
        self._establish_ranks()
        prune = anchor._rank if self._ranks_valid else None
        if prune is not None and node._rank < prune:
            return [] if node is not anchor else None
        if node is anchor:
            return None
        found = [node]
        stack, seen = [node], {id(node.proto)}
        while stack:
            n = stack.pop()
            for name in self.reads(n):
                p = self._producer.get(name)
                if p is None or id(p.proto) in seen:
                    continue
                if p is anchor:
                    return None
                if prune is None or p._rank > prune:
                    seen.add(id(p.proto))
                    stack.append(p)
                    found.append(p)
        return found

    def _order_edge(self, producer: Node, reader: Node, behind: list[Node] | None = None) -> None:
        """``reader`` now reads ``producer`` (no cycle: checked before). Repair ranks locally when
        the edge goes against them."""
        if not self._ranks_valid:
            self._mark_unsorted()
            return
        lo, hi = reader._rank, producer._rank
        if hi < lo:
            return
        if behind is None:
            behind = self._ancestors_after(producer, reader) or []
        ahead, stack, seen = [], [reader], {id(reader.proto)}
        while stack:  # readers of reader, up to producer's rank
            n = stack.pop()
            ahead.append(n)
            for r in self._readers(n):
                if id(r.proto) not in seen and r._rank < hi:
                    seen.add(id(r.proto))
                    stack.append(r)
        behind.sort(key=lambda n: n._rank)
        ahead.sort(key=lambda n: n._rank)
        slots = sorted([n._rank for n in behind] + [n._rank for n in ahead])
        for n, r in zip(behind + ahead, slots, strict=True):
            n._rank = r
        self._mark_unsorted()

    def _mark_unsorted(self, removed_only: bool = False) -> None:
        """The proto's node order lags the index: restore it before anyone reads the proto.
        ``removed_only``: nodes were removed, none placed out of order (cutting them out is
        enough, see :meth:`_cut_removed`)."""
        self._order_dirty = True
        if not removed_only:
            self._place = None
        self._lags()

    # =================================================================
    # places: where each node sits in the proto's list, so that removed nodes are cut out
    # without rewriting the list. A node's place is its index in the list as it would be had
    # nothing been removed since the list was last written whole: a written node's rank[0]
    # (ranks are (index, 0) then), or the place recorded when it was appended. Its index now
    # is its place less the places removed before it (``_holes``). Placing a node out of
    # order, or reordering ranks, forgets places (``_place = None``) until the next full write.
    # =================================================================
    def _places_exact(self, length: int) -> None:
        """The list holds exactly the live nodes, each at index rank[0]."""
        self._place = {}
        self._holes = []
        self._next_place = length
        self._dead_places = []

    def _appended(self, proto) -> None:
        """A node's proto was appended to the list (call after any _mark_unsorted it needs)."""
        if self._place is not None:
            self._place[id(proto)] = self._next_place
            self._next_place += 1

    def _note_removed(self, node: Node) -> None:
        """``node`` leaves the index (call before its rank is cleared)."""
        if self._place is None:
            return
        at = self._place.pop(id(node.proto), None)
        if at is None:
            rank = node._rank
            if rank is None or rank[1] != 0:
                self._place = None
                return
            at = int(rank[0])
        self._dead_places.append(at)

    def _cut_removed(self) -> bool:
        """Cut the removed nodes out of the proto's list by their places, leaving the rest where
        they are; False (nothing changed) when a place does not hold the node it should."""
        rep = self._proto.node
        holes = self._holes
        dead = self._dead
        at = sorted((p - bisect.bisect_left(holes, p) for p in self._dead_places), reverse=True)
        if len(at) != len(dead) or any(not 0 <= i < len(rep) or id(rep[i]) not in dead for i in at):
            self._place = None
            return False
        if len(at) <= _FEW_CUTS:
            for i in at:
                del rep[i]
        else:  # one pass: each single deletion moves the rest of the list up
            keep = len(rep) - len(at)
            rep.sort(key=lambda q: id(q) in dead)  # stable: the survivors keep their order
            del rep[keep:]
        self._holes = sorted(holes + self._dead_places)  # (timsort merges the sorted holes in linear time)
        self._dead = {}
        self._dead_places = []
        self._order_dirty = False
        return True

    def _lags(self) -> None:
        """This graph's proto lags its index: the model brings it up to date when its proto is
        read (only the graphs that lag, so a read after a small edit costs what the edit cost)."""
        model = self.model
        if model is not None:
            model._unsorted = True
            model._lagging[id(self)] = self

    def toposort(self) -> None:
        """Sort nodes topologically, keeping the current order wherever it is already valid.

        Raises :class:`InvalidModelError` naming the nodes of a cycle.
        """
        self._ensure()
        if self._ranks_valid and not self._order_dirty:
            return  # the proto's list is already the rank order, which is topological
        if self._ranks_valid and self._place is not None and self._cut_removed():
            return  # only removals since the list was in order: cut out, the rest stays
        nodes = list(self._nodes.values())
        if self._ranks_valid:
            ordered = sorted(nodes, key=_RANK)
        else:
            ordered = [nodes[i] for i in self._kahn(nodes)]
        self._write_order(ordered)
        self._ranks_valid = True

    def _kahn(self, nodes: list[Node]) -> list[int]:
        index_of = {id(n.proto): i for i, n in enumerate(nodes)}
        deps: list[set[int]] = []
        for n in nodes:
            d = set()
            for name in self.reads(n):
                p = self._producer.get(name)
                if p is not None and p is not n:
                    d.add(index_of[id(p.proto)])
            deps.append(d)
        indeg = [len(d) for d in deps]
        users: list[list[int]] = [[] for _ in nodes]
        for i, d in enumerate(deps):
            for j in d:
                users[j].append(i)
        heap = [(nodes[i]._rank, i) for i in range(len(nodes)) if indeg[i] == 0]
        heapq.heapify(heap)
        order = []
        while heap:
            _, i = heapq.heappop(heap)
            order.append(i)
            for u in users[i]:
                indeg[u] -= 1
                if indeg[u] == 0:
                    heapq.heappush(heap, (nodes[u]._rank, u))
        if len(order) != len(nodes):
            cycle = _find_cycle([i for i in range(len(nodes)) if indeg[i] > 0], deps)
            names = " -> ".join(repr(nodes[i].name or nodes[i].op_type) for i in cycle)
            raise InvalidModelError(f"the graph has a cycle{self._where()}: {names}", [f"cycle: {names}"])
        return order

    def _write_order(self, ordered: list[Node]) -> None:
        """Make the proto list exactly ``ordered`` (the live nodes), cutting out removed ones."""
        rep = self._proto.node
        dead = self._dead
        if [id(n.proto) for n in ordered] != list(self._nodes) or dead:
            pos = {id(n.proto): k for k, n in enumerate(ordered)}
            end = len(ordered)
            rep.sort(key=lambda p: pos.get(id(p), end))
            del rep[end:]
            self._nodes = {id(n.proto): n for n in ordered}
            self._sub_nodes = {id(n.proto): n for n in ordered if id(n.proto) in self._sub_nodes}
        self._dead = {}
        for k, n in enumerate(ordered):
            n._rank = (float(k), 0)
        self._places_exact(len(ordered))
        self._order_dirty = False

    def _sync(self) -> None:
        """Bring the proto's lists up to date with the index (node order, removed nodes and
        initializers)."""
        if not self._built:
            return
        if self._dead_inits:
            self._compact_initializers()
        if not self._order_dirty:
            return
        try:
            self.toposort()
        except InvalidModelError:  # a cycle: keep the order, cut out removed nodes
            self._write_order(list(self._nodes.values()))


    def _compact_initializers(self) -> None:
        """Cut removed initializers out of the proto's list, in one pass, keeping the order."""
        rep = self._proto.initializer
        dead = self._dead_inits
        keep = len(rep) - len(dead)
        rep.sort(key=lambda t: id(t) in dead)  # stable: the survivors keep their order
        del rep[keep:]
        self._dead_inits = {}


def _find_cycle(candidates: list[int], deps: list[set[int]]) -> list[int]:
    """One cycle among ``candidates`` (nodes left over by Kahn's algorithm), as indices."""
    cand = set(candidates)
    start = candidates[0]
    path: list[int] = []
    on_path: dict[int, int] = {}
    cur = start
    while cur not in on_path:
        on_path[cur] = len(path)
        path.append(cur)
        nxt = next(d for d in sorted(deps[cur]) if d in cand)
        cur = nxt
    cyc = path[on_path[cur]:]
    cyc.reverse()  # producers first
    return cyc + [cyc[0]]


__all__ = ["Ranks"]
