"""The `sandbox` command line."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from sandbox.settings import Settings

app = typer.Typer(help="Public Data Sandbox: analyse public data without seeing it.",
                  no_args_is_help=True, add_completion=False)
datasets_app = typer.Typer(help="The catalog of datasets (acts as the bureau on a local instance).",
                           no_args_is_help=True)
app.add_typer(datasets_app, name="datasets")

console = Console()
err = Console(stderr=True)

DataDir = typer.Option(None, "--data-dir", help="Instance directory (default: $SANDBOX_DATA_DIR "
                       "or ./sandbox-data).")


def _settings(data_dir: Optional[Path], **overrides: Any) -> Settings:
    values = {k: v for k, v in overrides.items() if v is not None}
    if data_dir is not None:
        values["data_dir"] = data_dir
    return Settings(**values)


def _fail(message: str, code: int = 1) -> None:
    err.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


def _domain_errors() -> tuple[type[Exception], ...]:
    from sandbox.api.errors import DOMAIN_ERRORS

    return DOMAIN_ERRORS


@app.command()
def init(data_dir: Optional[Path] = DataDir,
         as_json: bool = typer.Option(False, "--json", help="Print {data_dir, token} as JSON."),
         bureau_name: str = typer.Option("数据局", help="Name of the bureau principal.")) -> None:
    """Create a new instance: database, the bureau's signing key, the bureau principal."""
    from sandbox.accounts import bootstrap

    settings = _settings(data_dir)
    try:
        ctx, token = bootstrap(settings, bureau_name)
    except _domain_errors() as e:
        _fail(getattr(e, "message", str(e)))
    ctx.close()
    where = str(settings.data_dir.resolve())
    if as_json:
        print(json.dumps({"data_dir": where, "token": token}, ensure_ascii=False))
        return
    console.print(f"Created an instance in [bold]{where}[/]")
    console.print("The bureau's API token (shown once; keep it safe):")
    console.print(f"  [bold green]{token}[/]")
    console.print(f"Run the API with: sandbox serve --data-dir {where}")


@app.command()
def serve(data_dir: Optional[Path] = DataDir,
          host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
          port: int = typer.Option(8000, help="Port to listen on.")) -> None:
    """Run the HTTP API (and a local Ray, unless SANDBOX_RAY_ADDRESS/RAY_ADDRESS is set)."""
    import uvicorn

    from sandbox.api.app import create_app
    from sandbox.context import is_initialised

    settings = _settings(data_dir)
    if not is_initialised(settings):
        _fail(f"no instance in {settings.data_dir}; create one with: "
              f"sandbox init --data-dir {settings.data_dir}")
    uvicorn.run(create_app(settings), host=host, port=port, log_level="info")


@app.command()
def demo(residents: int = typer.Option(30_000, min=1000, help="Synthetic city size."),
         seed: int = typer.Option(2026, help="Seed of the synthetic city."),
         executor: str = typer.Option("ray", help="ray (default) or local.")) -> None:
    """The whole story on a throw-away instance with synthetic city data."""
    from sandbox.demo import run_demo

    run_demo(console, residents=residents, seed=seed, executor=executor)


@datasets_app.command("ingest")
def datasets_ingest(file: Path = typer.Argument(..., exists=True, dir_okay=False,
                                                help="CSV (UTF-8) or Parquet file."),
                    meta: Path = typer.Option(..., "--meta", exists=True, dir_okay=False,
                                              help="JSON: {name, title, provider_id, level, "
                                                   "columns: {col: {role, lower?, upper?}}}"),
                    data_dir: Optional[Path] = DataDir) -> None:
    """Register a dataset on a local instance, as the bureau."""
    from sandbox.catalog import registry

    ctx = _open(data_dir)
    try:
        info = registry.register(ctx, _bureau(ctx), file.read_bytes(), file.name,
                                 json.loads(meta.read_text(encoding="utf-8")))
    except json.JSONDecodeError as e:
        _fail(f"{meta} is not valid JSON: {e.msg} (line {e.lineno})")
    except _domain_errors() as e:
        _fail(getattr(e, "message", str(e)))
    finally:
        ctx.close()
    console.print(f"Registered [bold]{info.name}[/] ({info.title}): {info.row_count} rows, "
                  f"level {info.level}, {len(info.partitions)} partition(s)")
    _print_columns(info.to_json())


@datasets_app.command("list")
def datasets_list(data_dir: Optional[Path] = DataDir) -> None:
    """List the catalog of a local instance."""
    from sandbox.catalog import registry

    ctx = _open(data_dir)
    with ctx.reading() as s:
        rows = [d.to_json() for d in registry.all_datasets(ctx, s)]
    ctx.close()
    table = Table("name", "title", "level", "rows", "provider")
    for d in rows:
        table.add_row(d["name"], d["title"], d["level"], str(d["row_count"]), d["provider_id"])
    console.print(table)


def _print_columns(dataset: dict[str, Any]) -> None:
    table = Table("column", "type", "role", "bounds")
    for c in dataset["columns"]:
        bounds = f"{c.get('lower', '')}..{c.get('upper', '')}" if "lower" in c or "upper" in c else ""
        table.add_row(c["name"], c["type"], c["role"], bounds)
    console.print(table)


def _open(data_dir: Optional[Path]):  # type: ignore[no-untyped-def]
    from sandbox.context import open_instance

    try:
        return open_instance(_settings(data_dir, executor="local"))
    except _domain_errors() as e:
        _fail(getattr(e, "message", str(e)))


def _bureau(ctx: Any) -> Any:
    from sqlalchemy import select

    from operators.roles import Role
    from sandbox.accounts import Actor
    from sandbox.store.models import Principal

    with ctx.reading() as s:
        p = s.scalar(select(Principal).where(Principal.role == "bureau").order_by(Principal.created_at))
    if p is None:
        _fail("this instance has no bureau principal")
    return Actor(p.id, p.name, Role.bureau)


def main() -> None:
    # Chinese names must print on terminals whose locale is not UTF-8.
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure") and (stream.encoding or "").lower() != "utf-8":
            stream.reconfigure(encoding="utf-8")
    app()


if __name__ == "__main__":
    main()
