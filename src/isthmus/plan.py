"""The plan: entities in foreign-key order, with the FK columns that need a second pass.

Parents come before children (deletes run the other way). A self-reference or a
cycle is broken by loading its nullable FK columns in a second pass, once every
row of the cycle exists; a cycle whose FK columns are all NOT NULL cannot be
broken and is a config error naming it.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from isthmus.entities import Entity
from isthmus.errors import ConfigError, UsageError


@dataclass(frozen=True)
class PlannedEntity:
    entity: Entity
    position: int
    parents: tuple[str, ...]
    deferred: tuple[str, ...]  # FK columns written in the second pass

    @property
    def name(self) -> str:
        return self.entity.name

    def to_dict(self) -> dict[str, Any]:
        e = self.entity
        return {
            "position": self.position,
            "entity": e.name,
            "source_table": e.source_table,
            "target_table": e.target_table,
            "key": e.key,
            "key_columns": list(e.key_columns),
            "target_key": e.target_key,
            "uuid_keyed": e.uuid_keyed,
            "columns": dict(e.columns),
            "references": dict(e.references),
            "deferred_columns": list(self.deferred),
            "parents": list(self.parents),
            "updated_at": e.updated_at,
            "target_updated_at": e.target_updated_at,
            "notes": list(e.notes),
        }


@dataclass(frozen=True)
class Plan:
    entities: tuple[PlannedEntity, ...]
    views: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.entities]

    def __getitem__(self, name: str) -> PlannedEntity:
        for planned in self.entities:
            if planned.name == name:
                return planned
        raise UsageError(f"no entity named {name!r} (entities: {', '.join(self.names)})")

    def select(self, names: Iterable[str] | None) -> list[PlannedEntity]:
        """The named entities in plan order (all when ``names`` is empty)."""
        wanted = list(names or [])
        for name in wanted:
            self[name]
        return [p for p in self.entities if not wanted or p.name in wanted]

    def delete_order(self, names: Iterable[str] | None = None) -> list[PlannedEntity]:
        return list(reversed(self.select(names)))

    def to_dict(self) -> dict[str, Any]:
        return {
            "entities": [p.to_dict() for p in self.entities],
            "views": list(self.views),
            "notes": list(self.notes),
        }


def build_plan(
    entities: list[Entity], *, views: Iterable[str] = (), notes: Iterable[str] = ()
) -> Plan:
    by_name = {e.name: e for e in entities}
    for e in entities:
        for column, parent in e.references.items():
            if parent not in by_name:
                raise ConfigError(
                    f"entities.{e.name}.references.{column} = {parent!r}: no entity named {parent!r}"
                )
    deferred = _edges_to_defer(entities)
    order = _topological(entities, deferred)
    planned = tuple(
        PlannedEntity(
            entity=by_name[name],
            position=i + 1,
            parents=tuple(
                sorted(
                    {p for c, p in by_name[name].references.items() if (name, c) not in deferred}
                )
            ),
            deferred=tuple(c for c in by_name[name].references if (name, c) in deferred),
        )
        for i, name in enumerate(order)
    )
    return Plan(entities=planned, views=tuple(views), notes=tuple(notes))


def _edges_to_defer(entities: list[Entity]) -> set[tuple[str, str]]:
    """(entity, FK column) pairs inside a cycle that are loaded in the second pass."""
    graph = {e.name: {p for p in e.references.values()} for e in entities}
    component = _strongly_connected(graph)
    deferred: set[tuple[str, str]] = set()
    for e in entities:
        for column, parent in e.references.items():
            in_cycle = parent == e.name or (component[parent] == component[e.name])
            if in_cycle and e.nullable(column):
                deferred.add((e.name, column))
    remaining = {
        e.name: {
            p
            for c, p in e.references.items()
            if (e.name, c) not in deferred and component[p] == component[e.name]
        }
        for e in entities
    }
    cycle = _find_cycle(remaining)
    if cycle:
        path = " → ".join(cycle)
        raise ConfigError(
            f"reference cycle {path} cannot be broken: every foreign-key column in it is NOT NULL"
        )
    return deferred


def _topological(entities: list[Entity], deferred: set[tuple[str, str]]) -> list[str]:
    parents = {
        e.name: {p for c, p in e.references.items() if (e.name, c) not in deferred}
        for e in entities
    }
    children: dict[str, set[str]] = {e.name: set() for e in entities}
    for child, ps in parents.items():
        for p in ps:
            children[p].add(child)
    waiting = {name: len(ps) for name, ps in parents.items()}
    ready = [name for name, n in waiting.items() if n == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        name = heapq.heappop(ready)
        order.append(name)
        for child in children[name]:
            waiting[child] -= 1
            if waiting[child] == 0:
                heapq.heappush(ready, child)
    if len(order) != len(entities):  # _edges_to_defer already refused unbreakable cycles
        raise AssertionError("cycle left in plan")
    return order


def _strongly_connected(graph: dict[str, set[str]]) -> dict[str, int]:
    """Tarjan's algorithm, iterative (a legacy schema can have hundreds of tables)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    component: dict[str, int] = {}
    counter = 0
    for root, root_edges in graph.items():
        if root in index:
            continue
        work = [(root, iter(sorted(root_edges)))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            advanced = False
            for nxt in edges:
                if nxt not in graph:
                    continue
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    advanced = True
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component[member] = index[node]
                    if member == node:
                        break
    return component


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    color: dict[str, int] = {}
    for root in sorted(graph):
        if root in color:
            continue
        path: list[str] = []
        work = [(root, iter(sorted(graph[root])))]
        color[root] = 1
        path.append(root)
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if color.get(nxt) == 1:
                    return [*path[path.index(nxt) :], nxt]
                if nxt not in color and nxt in graph:
                    color[nxt] = 1
                    path.append(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    break
            else:
                work.pop()
                color[node] = 2
                path.pop()
    return None
