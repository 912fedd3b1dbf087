"""Whether a released table equals DuckDB's answer in every cell that was not suppressed."""

from __future__ import annotations

import datetime as dt
import decimal
import math
from dataclasses import dataclass
from typing import Any

from benchmarks.duck import DuckResult

MAX_SHOWN = 5


@dataclass(frozen=True)
class Check:
    cells: int  # compared cells
    suppressed: int  # cells the sandbox withheld, not compared
    mismatches: tuple[str, ...]  # the first few differences, described
    left_out: int = 0  # DuckDB's groups the release left out (too small)
    total: int = 0  # DuckDB's cells (groups × aggregates): what could be known

    @property
    def ok(self) -> bool:
        return not self.mismatches

    @property
    def released_share(self) -> float:
        """Utility: the share of DuckDB's cells the sandbox released."""
        return self.cells / self.total if self.total else 1.0

    def summary(self) -> str:
        if self.ok:
            return (
                f"equal in {self.cells} cells ({self.suppressed} suppressed, "
                f"{self.left_out} small groups left out; {self.released_share:.1%} of "
                "cells released)"
            )
        return f"MISMATCH: {'; '.join(self.mismatches)}"


def _plain(v: Any) -> Any:
    if isinstance(v, (dt.date, dt.datetime)):
        return v.isoformat()
    if isinstance(v, decimal.Decimal):
        return float(v)
    if isinstance(v, dict):  # DuckDB MAP as a histogram: its values in key order
        return [v[k] for k in sorted(v)]
    return v


def same(a: Any, b: Any, rel_tol: float) -> bool:
    a, b = _plain(a), _plain(b)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y, rel_tol) for x, y in zip(a, b))
    numbers = (int, float)
    if isinstance(a, numbers) and isinstance(b, numbers) and not isinstance(a, bool):
        if isinstance(a, int) and isinstance(b, int):
            return a == b
        return math.isclose(float(a), float(b), rel_tol=rel_tol, abs_tol=1e-12)
    return bool(a == b)


def compare(body: dict[str, Any], duck: DuckResult, keys: tuple[str, ...], rel_tol: float) -> Check:
    names = [c["name"] for c in body["columns"]]
    if sorted(names) != sorted(duck.columns):
        return Check(0, 0, (f"columns differ: sandbox {names}, DuckDB {list(duck.columns)}",))
    expected = {tuple(_plain(r[duck.columns.index(k)]) for k in keys): r for r in duck.rows}
    suppressed = {(int(i), str(c)) for i, c in body.get("suppressed", [])}
    problems: list[str] = []
    cells, seen = 0, set()
    for i, row in enumerate(body["rows"]):
        key = tuple(_plain(row[names.index(k)]) for k in keys)
        seen.add(key)
        want = expected.get(key)
        if want is None:
            problems.append(f"group {key} is not in DuckDB's answer")
            continue
        for j, name in enumerate(names):
            if name in keys or (i, name) in suppressed:
                continue
            cells += 1
            theirs = want[duck.columns.index(name)]
            if not same(row[j], theirs, rel_tol):
                problems.append(f"{key} {name}: sandbox {row[j]!r} ≠ DuckDB {_plain(theirs)!r}")
    # Groups too small in every cell are left out of a release, key and all.
    left_out = sum(1 for k in expected if k not in seen)
    total = len(expected) * (len(names) - len(keys))
    return Check(
        cells,
        len(suppressed),
        tuple(problems[:MAX_SHOWN])
        + ((f"… {len(problems) - MAX_SHOWN} more",) if len(problems) > MAX_SHOWN else ()),
        left_out,
        total,
    )
