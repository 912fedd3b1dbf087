"""`sandbox backup` and `sandbox restore`: a consistent copy of a running instance, and a new
instance made from one."""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn

import typer
from rich.console import Console

from sandbox.cli.options import DataDir, settings_for
from sandbox.errors import SandboxError
from sandbox.store.manifest import Manifest

console = Console()
err = Console(stderr=True)


def _fail(message: str) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(1)


def backup(
    dest: Path = typer.Argument(..., help="A new directory to write the backup into."),
    data_dir: Path | None = DataDir,
) -> None:
    """Copy the instance (database, datasets, the bureau's key) while it runs."""
    from sandbox.context import check_initialised
    from sandbox.store import backup as backups
    from sandbox.store.db import make_engine

    settings = settings_for(data_dir)
    try:
        check_initialised(settings)
        engine = make_engine(settings.resolved_database_url)
        try:
            manifest = backups.take(settings, engine, dest)
        finally:
            engine.dispose()
    except SandboxError as e:
        _fail(e.message)
    except OSError as e:
        _fail(f"could not write the backup to {dest} ({e.strerror or e}); nothing was written")
    _summary("Backed up", settings.data_dir, dest.absolute(), manifest)
    key = dest.absolute() / backups.key_file(settings)
    console.print(
        f"It holds the bureau's secret key ({key}, mode 0600) and the datasets' raw data: "
        "keep it where only the bureau can read it."
    )


def restore(
    src: Path = typer.Argument(..., help="A directory 'sandbox backup' wrote."),
    data_dir: Path | None = DataDir,
    database_url: str | None = typer.Option(
        None,
        "--database-url",
        help="An empty database to restore into (default: $SANDBOX_DATABASE_URL, else a "
        "SQLite file in the data directory).",
    ),
) -> None:
    """Make a new instance from a backup; the backup is checked whole first."""
    from sandbox.store.restore import restore as restore_backup

    settings = settings_for(data_dir, database_url=database_url)
    try:
        manifest = restore_backup(src, settings)
    except SandboxError as e:
        _fail(e.message)
    except OSError as e:
        _fail(f"could not restore into {settings.data_dir} ({e.strerror or e}); nothing was kept")
    _summary("Restored", src, settings.data_dir, manifest)
    console.print(f"Run it with: sandbox serve --data-dir {settings.data_dir}")


def _summary(done: str, source: Path, target: Path, manifest: Manifest) -> None:
    rows = sum(manifest.tables.values())
    files = sum(len(parts) for parts in manifest.datasets.values())
    console.print(
        f"{done} {source} to [bold]{target}[/]: {rows} rows in {len(manifest.tables)} tables "
        f"(schema revision {manifest.revision}, as of {manifest.taken_at}), "
        f"{len(manifest.datasets)} dataset(s) in {files} file(s), the bureau's key.",
        highlight=False,
    )
