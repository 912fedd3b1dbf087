"""The DuckDB side: views over the very Parquet partitions the sandbox ingested (plain copies
of the encrypted ones, L3/L4, which only the sandbox holds the key of)."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq

from sandbox.catalog.encryption import decryption_for


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
        self._plain = tempfile.TemporaryDirectory(prefix="duck-plain-")
        for name, files in partitions.items():
            listing = ", ".join(_quoted(self._readable(f)) for f in files)
            self._con.execute(f'CREATE VIEW "{name}" AS SELECT * FROM read_parquet([{listing}])')

    def _readable(self, path: str) -> str:
        """`path`, or a plain copy of it when the sandbox wrote it encrypted."""
        decryption = decryption_for(path)
        if decryption is None:
            return path
        copy = Path(self._plain.name) / f"{len(list(Path(self._plain.name).iterdir()))}.parquet"
        pq.write_table(pq.read_table(path, decryption_properties=decryption), copy)
        return str(copy)

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
