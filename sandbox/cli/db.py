"""`sandbox db …`: the database schema of a local instance."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from sandbox.cli.options import DataDir, settings_for

db_app = typer.Typer(help="The database schema of an instance.", no_args_is_help=True)
console = Console()
err = Console(stderr=True)


def _engine(data_dir: Path | None):  # type: ignore[no-untyped-def]
    from sandbox.context import check_initialised
    from sandbox.errors import NotFound
    from sandbox.store.db import make_engine

    settings = settings_for(data_dir)
    try:
        check_initialised(settings)
    except NotFound as e:
        err.print(f"[red]error:[/] {e.message}")
        raise typer.Exit(1) from None
    return make_engine(settings.resolved_database_url)


@db_app.command("upgrade")
def upgrade(data_dir: Path | None = DataDir) -> None:
    """Bring the instance's database schema to what this version of the service needs."""
    from sandbox.store import schema

    engine = _engine(data_dir)
    try:
        before = schema.current(engine)
        schema.upgrade(engine)
        after = schema.current(engine)
    finally:
        engine.dispose()
    if before == after:
        console.print(f"the schema is current (revision {after})")
    else:
        console.print(f"upgraded the schema from revision {before or schema.FIRST} to {after}")


@db_app.command("status")
def status(data_dir: Path | None = DataDir) -> None:
    """The schema's revision, and the one this version of the service needs."""
    from sandbox.store import schema

    engine = _engine(data_dir)
    try:
        at = schema.current(engine)
    finally:
        engine.dispose()
    newest = schema.head()
    console.print(
        f"revision {at or '(none)'}; this service needs {newest}"
        + ("" if at == newest else " — run: sandbox db upgrade")
    )
    if at != newest:
        raise typer.Exit(1)
