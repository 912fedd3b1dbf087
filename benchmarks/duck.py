"""The DuckDB side: views over the very Parquet partitions the sandbox ingested."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import duckdb


@dataclass(frozen=True)
class DuckResult:
    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


class DuckSide:
    """One in-memory DuckDB connection; each dataset is a view, so every run reads Parquet."""

    def __init__(self, partitions: Mapping[str, Sequence[str]]) -> None:
        self._con = duckdb.connect(":memory:")
        for name, files in partitions.items():
            listing = ", ".join(_quoted(f) for f in files)
            self._con.execute(f'CREATE VIEW "{name}" AS SELECT * FROM read_parquet([{listing}])')

    def run(self, sql: str) -> DuckResult:
        cursor = self._con.execute(sql)
        columns = tuple(d[0] for d in cursor.description)
        return DuckResult(columns, tuple(cursor.fetchall()))

    def timed(self, sql: str) -> tuple[float, DuckResult]:
        started = time.perf_counter()
        result = self.run(sql)
        return time.perf_counter() - started, result

    @property
    def threads(self) -> int:
        return int(self._con.execute("SELECT current_setting('threads')").fetchone()[0])  # type: ignore[index]

    def close(self) -> None:
        self._con.close()
