"""What a backup holds (`manifest.json`): the schema's revision, each table's row count, and
the size and sha256 of every file, so that a restore can refuse a corrupt or incomplete
backup before it creates anything."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sandbox.errors import BadRequest

FORMAT = 1
NAME = "manifest.json"
CHUNK = 1 << 20


@dataclass(frozen=True)
class FileSum:
    size: int
    sha256: str

    @classmethod
    def of(cls, path: Path) -> FileSum:
        digest, size = hashlib.sha256(), 0
        with path.open("rb") as f:
            while chunk := f.read(CHUNK):
                digest.update(chunk)
                size += len(chunk)
        return cls(size, digest.hexdigest())


@dataclass(frozen=True)
class Manifest:
    revision: str  # the Alembic revision of the schema the rows were read at
    database: str  # the dialect they were read from (sqlite, postgresql)
    taken_at: str  # ISO 8601 UTC, when the snapshot was read
    seconds: float  # how long the backup took
    tables: dict[str, int]  # table → rows; its file is tables/<table>.jsonl
    datasets: dict[str, list[str]]  # dataset → its partition files under datasets/<dataset>/
    files: dict[str, FileSum]  # every file of the backup but this one, by relative path

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "revision": self.revision,
            "database": self.database,
            "taken_at": self.taken_at,
            "seconds": self.seconds,
            "tables": self.tables,
            "datasets": self.datasets,
            "files": {p: {"size": s.size, "sha256": s.sha256} for p, s in self.files.items()},
        }

    def write(self, directory: Path) -> None:
        text = json.dumps(self.to_json(), ensure_ascii=False, indent=1, sort_keys=True)
        (directory / NAME).write_text(text + "\n", encoding="utf-8")

    @classmethod
    def read(cls, directory: Path) -> Manifest:
        """The manifest of the backup in `directory`; refused when missing or malformed."""
        path = directory / NAME
        if not path.is_file():
            raise BadRequest(
                f"{directory} is not a backup: it has no {NAME}; give the directory "
                "'sandbox backup' wrote"
            )
        try:
            body = json.loads(path.read_text(encoding="utf-8"))
            return cls._parse(body)
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise BadRequest(
                f"the backup's {NAME} in {directory} is damaged ({type(e).__name__}); "
                "restore from another copy of the backup"
            ) from None

    @classmethod
    def _parse(cls, body: dict[str, Any]) -> Manifest:
        if body["format"] != FORMAT:
            raise BadRequest(
                f"the backup is in format {body['format']!r}; this version of the service "
                f"reads format {FORMAT}. Restore it with the version that made it"
            )
        return cls(
            revision=str(body["revision"]),
            database=str(body["database"]),
            taken_at=str(body["taken_at"]),
            seconds=float(body["seconds"]),
            tables={str(t): int(n) for t, n in body["tables"].items()},
            datasets={str(d): [str(p) for p in parts] for d, parts in body["datasets"].items()},
            files={
                str(p): FileSum(int(s["size"]), str(s["sha256"])) for p, s in body["files"].items()
            },
        )

    def check_files(self, directory: Path) -> None:
        """Refuse the backup unless every file it lists is there, whole and unchanged."""
        expected = {table_file(t) for t in self.tables}
        expected |= {dataset_file(d, p) for d, parts in self.datasets.items() for p in parts}
        unlisted = sorted(expected - set(self.files))
        if unlisted:
            raise BadRequest(
                f"the backup's {NAME} lists no checksum for {unlisted[0]}; the manifest is "
                "damaged, restore from another copy of the backup"
            )
        for relative, expect in sorted(self.files.items()):
            path = directory / relative
            if not _inside(directory, path) or not path.is_file():
                raise BadRequest(
                    f"the backup in {directory} is incomplete: {relative} is missing; "
                    "restore from a complete copy of the backup"
                )
            found = FileSum.of(path)
            if found != expect:
                what = "is truncated" if found.size < expect.size else "does not match its sha256"
                raise BadRequest(
                    f"the backup in {directory} is damaged: {relative} {what} "
                    "(the manifest recorded it when the backup was taken); restore from "
                    "another copy of the backup"
                )


def _inside(directory: Path, path: Path) -> bool:
    return path.resolve().is_relative_to(directory.resolve())


def table_file(table: str) -> str:
    return f"tables/{table}.jsonl"


def dataset_file(dataset: str, part: str) -> str:
    return f"datasets/{dataset}/{part}"
