"""A new instance from a backup (`sandbox.store.backup`).

The backup is checked whole first (its manifest, then every file's size and sha256), so a
corrupt or truncated one is refused before anything is created. The schema is made at the
backup's revision by the migrations, the rows go in parents first in one transaction, and the
schema is then upgraded to this version's newest. The data directory is built beside its
final place and renamed last; on any failure it is removed, and the tables made in a
separate database are dropped, so nothing half-made stays.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Connection, Integer, MetaData, Table, func, inspect, select, text

from sandbox.catalog import encryption, entities
from sandbox.errors import BadRequest, Conflict, NotFound
from sandbox.settings import Settings
from sandbox.store import schema, tablefile
from sandbox.store.backup import copy_secret, key_file
from sandbox.store.db import make_engine
from sandbox.store.manifest import Manifest, table_file


def check(src: Path) -> Manifest:
    """The manifest of the backup in `src`, once every file it lists has been checked."""
    if not src.is_dir():
        raise NotFound(f"no backup at {src}; give the directory 'sandbox backup' wrote")
    manifest = Manifest.read(src)
    if not schema.known(manifest.revision):
        raise BadRequest(
            f"the backup's schema is at revision {manifest.revision}, which this version of "
            "the service does not know; restore it with the version that made it (or a newer one)"
        )
    manifest.check_files(src)
    return manifest


def restore(src: Path, settings: Settings) -> Manifest:
    """Make a new instance in `settings.data_dir` (and `settings.database_url`, if given)
    from the backup in `src`."""
    src = src.expanduser().absolute()
    manifest = check(src)
    if key_file(settings) not in manifest.files:
        raise BadRequest(
            f"the backup in {src} holds no bureau key ({key_file(settings)}); it is "
            "incomplete, restore from a complete copy"
        )
    _refuse_occupied(settings)
    with _building(settings) as tmp:
        building = settings.model_copy(update={"data_dir": tmp})
        _load_database(src, manifest, building)
        _copy_files(src, manifest, building)
    return manifest


def _refuse_occupied(settings: Settings) -> None:
    if settings.key_path.exists():
        raise Conflict(
            f"an instance already exists in {settings.data_dir}; restore into a new --data-dir"
        )
    if settings.data_dir.exists() and any(settings.data_dir.iterdir()):
        raise Conflict(f"{settings.data_dir} is not empty; restore into a new or empty --data-dir")
    if settings.database_url is None:
        return
    engine = make_engine(settings.database_url)
    try:
        tables = inspect(engine).get_table_names()
    finally:
        engine.dispose()
    if tables:
        where = engine.url.render_as_string(hide_password=True)
        raise Conflict(
            f"the database {where} already has {len(tables)} table(s); restore into an empty "
            "database (create a new one, or drop what is in it first)"
        )


@contextmanager
def _building(settings: Settings) -> Iterator[Path]:
    final = settings.data_dir
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.restoring-{uuid.uuid4().hex[:12]}"
    tmp.mkdir()
    try:
        yield tmp
        # Over an empty directory, or none: rename replaces an empty one.
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if settings.database_url is not None:
            _drop_everything(settings.database_url)
        raise


def _load_database(src: Path, manifest: Manifest, settings: Settings) -> None:
    engine = make_engine(settings.resolved_database_url)
    try:
        schema.upgrade(engine, manifest.revision)
        tables = tablefile.tables_of(engine)
        names = {t.name for t in tables}
        if names != set(manifest.tables):
            raise BadRequest(
                f"the backup's tables do not match its schema revision {manifest.revision} "
                f"(missing: {sorted(names - set(manifest.tables))}, unknown: "
                f"{sorted(set(manifest.tables) - names)}); the manifest is damaged"
            )
        with engine.begin() as conn:
            for table in tables:
                with (src / table_file(table.name)).open(encoding="utf-8") as lines:
                    loaded = tablefile.load(conn, table, lines)
                if loaded != manifest.tables[table.name]:
                    raise BadRequest(
                        f"the backup's table {table.name} holds {loaded} rows, its manifest "
                        f"says {manifest.tables[table.name]}; the backup is damaged"
                    )
            _continue_sequences(conn, tables)
        schema.upgrade(engine)
    finally:
        engine.dispose()


def _continue_sequences(conn: Connection, tables: list[Table]) -> None:
    """On PostgreSQL, ids taken from a sequence continue after the restored rows (SQLite
    takes the next id from the rows themselves)."""
    if conn.dialect.name != "postgresql":
        return
    for table in tables:
        (key, *more) = table.primary_key.columns
        if more or not isinstance(key.type, Integer):
            continue
        top = conn.scalar(select(func.max(key)))
        if top is not None:
            # NULL (no sequence behind the column) makes setval do nothing.
            conn.execute(
                text("SELECT setval(pg_get_serial_sequence(:tbl, :col), :top)"),
                {"tbl": table.name, "col": key.name, "top": top},
            )


def _copy_files(src: Path, manifest: Manifest, settings: Settings) -> None:
    secrets = {key_file(settings), encryption.MASTER_KEY_FILE.as_posix()}
    for relative in sorted(manifest.files):
        if relative.startswith("tables/"):
            continue
        target = settings.data_dir / relative
        if relative in secrets or relative.endswith(f"/{entities.DIRECTORY}/{entities.KEY}"):
            copy_secret(src / relative, target)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src / relative, target)
    settings.datasets_dir.mkdir(parents=True, exist_ok=True)


def _drop_everything(url: str) -> None:
    """Drop every table of the database at `url`: it was empty before the restore began."""
    engine = make_engine(url)
    try:
        metadata = MetaData()
        metadata.reflect(engine)
        metadata.drop_all(engine)
    finally:
        engine.dispose()
