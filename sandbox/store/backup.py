"""A consistent copy of a running instance: its database, datasets and key.

Every table is read in one read-only snapshot transaction (REPEATABLE READ on PostgreSQL, a
WAL snapshot on SQLite), so jobs may be submitted and settled meanwhile and the copy is the
instance as it was at one moment. Tables are written as JSON lines (`tablefile`), so a backup
of one kind of database restores into the other. Datasets never change once registered: the
Parquet files of those in the snapshot are copied after it, and the entity numbers (which
only grow) after them. Everything is written to a hidden directory beside the destination and
renamed into place last, so an interrupted backup leaves no destination behind.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, Table, select
from sqlalchemy.orm import Session

from sandbox.catalog import encryption, entities
from sandbox.common import clock
from sandbox.errors import Conflict, NotFound
from sandbox.settings import Settings
from sandbox.store import tablefile
from sandbox.store.db import make_reader
from sandbox.store.manifest import FileSum, Manifest, dataset_file, table_file

SECRET = 0o600  # the bureau's key, and the directories that hold the data
PRIVATE_DIR = 0o700


@dataclass(frozen=True)
class Snapshot:
    """What was read in the snapshot transaction."""

    revision: str
    taken_at: str
    tables: dict[str, int]
    datasets: dict[str, list[str]]


def take(settings: Settings, engine: Engine, dest: Path) -> Manifest:
    """Back up the instance of `settings` (its database on `engine`) into the new directory
    `dest`; refused if `dest` exists."""
    dest = dest.expanduser().absolute()
    if dest.exists() or dest.is_symlink():
        raise Conflict(f"{dest} already exists; give a new directory for the backup")
    start = clock.now()
    dest.parent.mkdir(parents=True, exist_ok=True)
    with _building(dest) as tmp:
        snapshot = _dump_database(engine, tmp)
        _copy_datasets(settings, snapshot.datasets, tmp)
        entities.Registry(settings.datasets_dir / entities.DIRECTORY).copy_to(
            tmp / _relative(settings, settings.datasets_dir / entities.DIRECTORY)
        )
        key = tmp / _relative(settings, settings.key_path)
        copy_secret(settings.key_path, key)
        # Without the master key the encrypted (L3/L4) partitions of the backup are noise.
        master = settings.data_dir / encryption.MASTER_KEY_FILE
        if master.exists():
            copy_secret(master, tmp / _relative(settings, master))
        files = {
            path.relative_to(tmp).as_posix(): FileSum.of(path)
            for path in sorted(tmp.rglob("*"))
            if path.is_file()
        }
        manifest = Manifest(
            revision=snapshot.revision,
            database=engine.dialect.name,
            taken_at=snapshot.taken_at,
            seconds=round((clock.now() - start).total_seconds(), 3),
            tables=snapshot.tables,
            datasets=snapshot.datasets,
            files=files,
        )
        manifest.write(tmp)
        _sync(tmp)
    return manifest


def key_file(settings: Settings) -> str:
    """Where the bureau's key lies in a backup, as in the instance."""
    return _relative(settings, settings.key_path)


def _relative(settings: Settings, path: Path) -> str:
    return path.relative_to(settings.data_dir).as_posix()


@contextmanager
def _building(dest: Path) -> Iterator[Path]:
    """A private directory beside `dest`, renamed to `dest` when the block succeeds and
    removed when it does not."""
    _sweep_abandoned(dest)
    tmp = dest.parent / f".{dest.name}.partial-{os.getpid()}-{uuid.uuid4().hex[:12]}"
    tmp.mkdir(mode=PRIVATE_DIR)
    try:
        yield tmp
        if dest.exists():
            raise Conflict(f"{dest} was created while the backup ran; give a new directory")
        tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _sweep_abandoned(dest: Path) -> None:
    """Remove what earlier backups to `dest` left when they were killed (a process that dies
    outright cannot clean up after itself): partial directories whose process is gone."""
    for partial in dest.parent.glob(f".{dest.name}.partial-*"):
        pid = partial.name.rsplit(".partial-", 1)[1].split("-", 1)[0]
        if pid.isdigit() and not _running(int(pid)):
            shutil.rmtree(partial, ignore_errors=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _dump_database(engine: Engine, tmp: Path) -> Snapshot:
    tables = tablefile.tables_of(engine)
    (tmp / "tables").mkdir()
    counts: dict[str, int] = {}
    with make_reader(engine)() as session:
        # The first read fixes the snapshot: the revision, then every table, as of one moment.
        revision = MigrationContext.configure(session.connection()).get_current_revision()
        if revision is None:
            raise Conflict(
                "the instance's database records no schema revision; bring it up to date "
                "first with: sandbox db upgrade"
            )
        taken_at = clock.text(clock.now())
        for table in tables:
            with (tmp / table_file(table.name)).open("w", encoding="utf-8") as out:
                counts[table.name] = tablefile.dump(session, table, out)
        datasets = _datasets_in(session, tables)
    return Snapshot(revision, taken_at, counts, datasets)


def _datasets_in(session: Session, tables: list[Table]) -> dict[str, list[str]]:
    """Every dataset version whose files are kept: its directory → its files."""
    named = {t.name: t for t in tables}
    versions = named.get("dataset_versions")
    if versions is None:
        table = named["datasets"]
        query = select(table.c.name, table.c.partitions).order_by(table.c.name)
        return {name: list(parts) for name, parts in session.execute(query)}
    query = (
        select(versions.c.directory, versions.c.partitions, versions.c.revisions)
        .where(versions.c.retired_at.is_(None))
        .order_by(versions.c.directory)
    )
    out: dict[str, list[str]] = {}
    for row in session.execute(query):
        out[str(row.directory)] = [*row.partitions, *([row.revisions] if row.revisions else [])]
    return out


def _copy_datasets(settings: Settings, datasets: dict[str, list[str]], tmp: Path) -> None:
    for name, parts in datasets.items():
        for part in parts:
            source = settings.datasets_dir / name / part
            target = tmp / dataset_file(name, part)
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                # A copy, never a link: a backup must survive the instance's own files.
                shutil.copyfile(source, target)
                # An encrypted partition's wrapped keys lie beside it: without them it is noise.
                material = encryption.key_material(source)
                if material.exists():
                    shutil.copyfile(material, encryption.key_material(target))
            except FileNotFoundError:
                raise NotFound(
                    f"the instance is missing file {part} of dataset {name.split('@')[0]!r} "
                    f"({source}), so "
                    "no backup was written; restore that file (from an earlier backup) first"
                ) from None


def copy_secret(source: Path, target: Path) -> None:
    """Copy a secret file, readable by its owner only from the moment it exists."""
    target.parent.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, SECRET)
    with os.fdopen(fd, "wb") as out:
        out.write(source.read_bytes())


def _sync(root: Path) -> None:
    """Flush every file and directory under `root` to disk before it is renamed into place."""
    for path in [*sorted(root.rglob("*")), root]:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
