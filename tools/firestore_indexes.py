"""Index coverage: does `infra/firestore.indexes.json` serve every query the code issues?

The emulator runs any query; production refuses one that no index serves (FAILED_PRECONDITION "The query requires
an index"). The store adapter records the shape of every query it runs (`Store.queries`: collection, whether it is
a collection-group query, the filters' fields and operators, the order); this module says what each shape needs
under Firestore's rules and whether the index file provides it:

- Automatic single-field indexes (ascending, descending, array-contains on every field, COLLECTION scope only)
  serve: equality / array-contains filters on any number of fields with no order (index merging), and a filter
  or order on one field alone. A single-field exemption in `fieldOverrides` replaces those defaults for its field.
- A collection-group query needs COLLECTION_GROUP-scoped indexes, which are never automatic: a single-field one
  from `fieldOverrides`, or a composite one.
- Anything else (equality on some fields plus an order or range on another, orders on several fields, a
  `__name__` tie-break against the direction of the last order) needs a composite index: the equality fields
  (any order between them; array-contains as CONTAINS), then the order fields in sequence and direction. A
  range filter orders by its field implicitly. A trailing `__name__` in the direction of the last order is
  implicit in every index. Firestore can sometimes merge indexes instead; it is not counted on here, so a
  passing check means no query depends on the planner's choice.

    python -m tools.firestore_indexes      # prints the index file's composite indexes and overrides, checked
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import permutations
from pathlib import Path
from typing import Any

from shared.adapters.firestore import QueryShape

INDEXES_FILE = Path(__file__).resolve().parent.parent / "infra" / "firestore.indexes.json"

EQUALITY_OPS = {"==", "in", "array_contains", "array-contains", "array_contains_any", "array-contains-any"}
ARRAY_OPS = {"array_contains", "array-contains", "array_contains_any", "array-contains-any"}
RANGE_OPS = {"<", "<=", ">", ">=", "!=", "not-in", "not_in"}
NAME = "__name__"
ASC, DESC, CONTAINS = "ASCENDING", "DESCENDING", "CONTAINS"


@dataclass(frozen=True)
class Need:
    """What one query shape needs. `kind`: "automatic", "single" (single-field indexes, one per field) or
    "composite". `equality`: (field, "ORDER" | CONTAINS); `order`: (field, direction), implicit orders included."""

    kind: str
    collection: str
    scope: str
    equality: tuple[tuple[str, str], ...]
    order: tuple[tuple[str, str], ...]

    def suggestion(self) -> dict[str, Any]:
        """The index-file entry that would serve it."""
        if self.kind == "single":
            overrides = []
            for field, mode in (*self.equality, *self.order):
                index = {"arrayConfig": CONTAINS} if mode == CONTAINS else {"order": ASC if mode == "ORDER" else mode}
                overrides.append({"collectionGroup": self.collection, "fieldPath": field,
                                  "indexes": [{**index, "queryScope": self.scope}]})
            return {"fieldOverrides": overrides}
        fields = [{"fieldPath": f, "arrayConfig": CONTAINS} if m == CONTAINS else {"fieldPath": f, "order": ASC}
                  for f, m in self.equality] + [{"fieldPath": f, "order": d} for f, d in self.order]
        return {"indexes": [{"collectionGroup": self.collection, "queryScope": self.scope, "fields": fields}]}


def need(shape: QueryShape) -> Need:
    scope = "COLLECTION_GROUP" if shape.collection_group else "COLLECTION"
    order = [(f, d.upper()) for f, d in shape.order]
    ordered = {f for f, _ in order}
    for field, op in shape.filters:  # a range filter orders by its field (after the explicit orders)
        if op in RANGE_OPS and field not in ordered:
            order.append((field, ASC))
            ordered.add(field)
    if order and order[-1][0] == NAME and (len(order) == 1 or order[-2][1] == order[-1][1]):
        order.pop()  # implicit in every index
    equality = tuple(sorted({(f, CONTAINS if op in ARRAY_OPS else "ORDER") for f, op in shape.filters
                             if op in EQUALITY_OPS and f not in ordered}))
    fields = len(equality) + len(order)
    kind = "automatic" if fields == 0 else "single" if not order or fields == 1 else "composite"
    return Need(kind, shape.collection, scope, equality, tuple(order))


@dataclass(frozen=True)
class IndexFile:
    indexes: list[dict[str, Any]]
    field_overrides: list[dict[str, Any]]

    @classmethod
    def load(cls, path: Path = INDEXES_FILE) -> IndexFile:
        return cls.parse(json.loads(path.read_text()))

    @classmethod
    def parse(cls, data: dict[str, Any]) -> IndexFile:
        return cls(list(data.get("indexes", [])), list(data.get("fieldOverrides", [])))

    def single_field(self, collection: str, field: str) -> list[dict[str, str]]:
        """The single-field indexes of `field` in `collection`: its override's, else the automatic ones."""
        for override in self.field_overrides:
            if override["collectionGroup"] == collection and override["fieldPath"] == field:
                return [{"queryScope": "COLLECTION", **i} for i in override.get("indexes", [])]
        return [{"queryScope": "COLLECTION", "order": ASC}, {"queryScope": "COLLECTION", "order": DESC},
                {"queryScope": "COLLECTION", "arrayConfig": CONTAINS}]

    def composites(self, collection: str, scope: str) -> list[tuple[tuple[str, str], ...]]:
        """Each composite index as (field, ORDER direction | CONTAINS) pairs, implicit `__name__` dropped."""
        out = []
        for index in self.indexes:
            if index["collectionGroup"] != collection or index.get("queryScope", "COLLECTION") != scope:
                continue
            fields = [(f["fieldPath"], f.get("order") or f.get("arrayConfig")) for f in index["fields"]]
            if len(fields) > 1 and fields[-1][0] == NAME and fields[-1][1] == fields[-2][1]:
                fields.pop()
            out.append(tuple(fields))
        return out


def _single_ok(file: IndexFile, need: Need) -> bool:
    wanted = [(f, m) for f, m in need.equality] + list(need.order)
    for field, mode in wanted:
        have = [i for i in file.single_field(need.collection, field) if i["queryScope"] == need.scope]
        if mode == CONTAINS:
            ok = any(i.get("arrayConfig") == CONTAINS for i in have)
        elif mode == "ORDER":
            ok = any(i.get("order") in (ASC, DESC) for i in have)
        else:
            ok = any(i.get("order") == mode for i in have)
        if not ok:
            return False
    return True


def _equality_matches(index_field: tuple[str, str], wanted: tuple[str, str]) -> bool:
    (field, kind), (want_field, want_mode) = index_field, wanted
    if field != want_field:
        return False
    return kind == CONTAINS if want_mode == CONTAINS else kind in (ASC, DESC)


def _composite_ok(file: IndexFile, need: Need) -> bool:
    indexes = file.composites(need.collection, need.scope)
    suffix = need.order
    n = len(need.equality)
    for index in indexes:
        if len(index) != n + len(suffix) or tuple(index[n:]) != suffix:
            continue
        if any(all(_equality_matches(index[i], eq) for i, eq in enumerate(perm))
               for perm in permutations(need.equality)):
            return True
    return False


def covered(shape: QueryShape, file: IndexFile) -> bool:
    n = need(shape)
    if n.kind == "automatic":
        return True
    if n.kind == "single":
        return _single_ok(file, n)
    return _composite_ok(file, n)


def uncovered(shapes: Iterable[QueryShape], file: IndexFile | None = None) -> list[tuple[QueryShape, Need]]:
    """The distinct shapes no index in `file` serves, with what each needs."""
    file = file or IndexFile.load()
    return [(s, need(s)) for s in sorted(set(shapes), key=repr) if not covered(s, file)]


def explain(missing: list[tuple[QueryShape, Need]]) -> str:
    lines = [f"{len(missing)} query shape(s) would be refused in production (no index in {INDEXES_FILE.name}):"]
    for shape, n in missing:
        lines.append(f"  - {shape}\n    add: {json.dumps(n.suggestion())}")
    return "\n".join(lines)


def main() -> int:
    file = IndexFile.load()
    print(f"{len(file.indexes)} composite indexes, {len(file.field_overrides)} field overrides in {INDEXES_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
