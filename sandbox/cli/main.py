"""The `sandbox` command line."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from operators.suite import Suite
from sandbox.cli.backup import backup, restore
from sandbox.cli.contracts import contracts_app
from sandbox.cli.datakey import rotate_data_key
from sandbox.cli.db import db_app
from sandbox.cli.demands import demands_app, objections_app
from sandbox.cli.dev import datasets_dummy, dev_app
from sandbox.cli.jobs import jobs_app, keys_app
from sandbox.cli.ledger import ledger_app
from sandbox.cli.options import DataDir, settings_for
from sandbox.cli.products import products_app
from sandbox.cli.reviews import reviews_app
from sandbox.cli.statistics import statistics_app
from sandbox.cli.templates import templates_app
from sandbox.settings import Settings

app = typer.Typer(
    help="Public Data Sandbox: analyse public data without seeing it.",
    no_args_is_help=True,
    add_completion=False,
)
datasets_app = typer.Typer(
    help="The catalog of datasets (acts as the bureau on a local instance).", no_args_is_help=True
)
app.add_typer(datasets_app, name="datasets")
prices_app = typer.Typer(
    help="Published fees (acts as the bureau on a local instance).", no_args_is_help=True
)
app.add_typer(prices_app, name="prices")
app.add_typer(ledger_app, name="ledger")
app.add_typer(contracts_app, name="contracts")
app.add_typer(keys_app, name="keys")
app.add_typer(jobs_app, name="jobs")
app.add_typer(db_app, name="db")
app.add_typer(statistics_app, name="statistics")
app.add_typer(demands_app, name="demands")
app.add_typer(objections_app, name="objections")
app.add_typer(reviews_app, name="reviews")
app.add_typer(products_app, name="products")
app.add_typer(templates_app, name="templates")
app.add_typer(dev_app, name="dev")
datasets_app.command("dummy")(datasets_dummy)
keys_app.command("rotate-data-key")(rotate_data_key)
principals_app = typer.Typer(
    help="Who takes part (acts as the bureau on a local instance).", no_args_is_help=True
)
app.add_typer(principals_app, name="principals")
app.command()(backup)
app.command()(restore)

console = Console()
err = Console(stderr=True)


def _fail(message: str, code: int = 1) -> None:
    # Unwrapped: a message ends with the command to run, copied whole from the terminal.
    err.print(f"[bold red]error:[/] {message}", soft_wrap=True)
    raise typer.Exit(code)


def _domain_errors() -> tuple[type[Exception], ...]:
    from sandbox.records.failures import DOMAIN_ERRORS

    return DOMAIN_ERRORS


@app.command()
def init(
    data_dir: Path | None = DataDir,
    as_json: bool = typer.Option(False, "--json", help="Print {data_dir, token} as JSON."),
    bureau_name: str = typer.Option("数据局", help="Name of the bureau principal."),
    crypto_suite: Suite = typer.Option(
        Suite.international,
        "--crypto-suite",
        help="international: Ed25519 and SHA-256. sm: SM2 and SM3 (GB/T 39786). Fixed for "
        "the instance's life.",
    ),
) -> None:
    """Create a new instance: database, the bureau's signing key, the bureau principal."""
    from sandbox.records.principals import bootstrap

    settings = settings_for(data_dir)
    try:
        ctx, token = bootstrap(settings, bureau_name, crypto_suite)
    except _domain_errors() as e:
        _fail(getattr(e, "message", str(e)))
    ctx.close()
    where = str(settings.data_dir.resolve())
    if as_json:
        print(json.dumps({"data_dir": where, "token": token}, ensure_ascii=False))
        return
    console.print(
        f"Created an instance in [bold]{where}[/] (crypto suite {crypto_suite.value}: "
        f"{crypto_suite.signature_name}, {crypto_suite.hash_name})"
    )
    console.print("The bureau's API token (shown once; keep it safe):")
    console.print(f"  [bold green]{token}[/]")
    console.print(f"Run the API with: sandbox serve --data-dir {where}")


@app.command()
def serve(
    data_dir: Path | None = DataDir,
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8000, help="Port to listen on."),
    workers: int = typer.Option(
        1,
        min=1,
        envvar="SANDBOX_WORKERS",
        help="API processes. More than one needs PostgreSQL and the ray executor.",
    ),
) -> None:
    """Run the HTTP API (and a local Ray, unless SANDBOX_RAY_ADDRESS/RAY_ADDRESS is set)."""
    from sandbox.cli.startup import stoppable

    settings = settings_for(data_dir)
    _configure_logs(settings)
    with stoppable():
        import uvicorn

        from sandbox.api.app import create_app

        if workers > 1:
            _check_workers(settings)
        # A missing instance, or one whose schema is behind: refused, with what to run.
        _check_schema(settings)
        if settings.executor == "ray":
            _start_ray(settings)
        api = create_app(settings) if workers == 1 else None
        if api is None:
            _share_with_workers(settings)
    # Neither a log_config nor a level: uvicorn's loggers stay as `logs.configure` set them.
    if api is not None:
        uvicorn.run(api, host=host, port=port, log_config=None)
        return
    # Each worker makes its own app (and its logging), from the environment set above.
    uvicorn.run(
        "sandbox.api.app:worker_app",
        factory=True,
        workers=workers,
        host=host,
        port=port,
        log_config=None,
    )


def _configure_logs(settings: Settings) -> None:
    from sandbox.common import logs

    logs.configure(settings.log_format, settings.log_level)


def _check_workers(settings: Settings) -> None:
    from sqlalchemy.engine import make_url

    if make_url(settings.resolved_database_url).get_backend_name() != "postgresql":
        _fail(
            "several workers need PostgreSQL: SQLite takes one writer at a time from one "
            "process. Set SANDBOX_DATABASE_URL=postgresql+psycopg://… (see the README's "
            "production section), or serve with --workers 1"
        )
    if settings.executor != "ray":
        _fail(
            "several workers need SANDBOX_EXECUTOR=ray: their jobs must share one release "
            "gate, which lives in Ray. Unset SANDBOX_EXECUTOR, or serve with --workers 1"
        )


def _share_with_workers(settings: Settings) -> None:
    """What every worker process must agree on, handed over in their environment: the
    instance, the Ray this process started, and where their counts are summed."""
    import shutil

    from sandbox.common.metrics import MULTIPROCESS_DIR
    from sandbox.context import ray_gcs_address

    os.environ["SANDBOX_DATA_DIR"] = str(settings.data_dir.resolve())
    if not settings.resolved_ray_address:
        os.environ["SANDBOX_RAY_ADDRESS"] = ray_gcs_address()
    counts = settings.run_dir / "metrics"
    shutil.rmtree(counts, ignore_errors=True)  # counts start again with the service
    counts.mkdir(parents=True)
    os.environ[MULTIPROCESS_DIR] = str(counts)


def _check_schema(settings: Settings) -> None:
    from sandbox.context import open_instance

    try:
        open_instance(settings).close()
    except _domain_errors() as e:
        _fail(getattr(e, "message", str(e)))


def _start_ray(settings: Settings) -> None:
    # From the main thread, before uvicorn: Ray's processes are tied to the thread that
    # starts them, and a failure here stops the command before it listens.
    from sandbox.context import ensure_ray, ray_gcs_address
    from sandbox.errors import RayUnavailable

    try:
        ensure_ray(settings)
    except RayUnavailable as e:
        _fail(e.message)
    how = (
        "attached to the cluster at"
        if settings.resolved_ray_address
        else "started a private local Ray at"
    )
    logging.getLogger("sandbox.cli").info("Ray: %s %s", how, ray_gcs_address())


@app.command()
def demo(
    residents: int = typer.Option(30_000, min=1000, help="Synthetic city size."),
    seed: int = typer.Option(2026, help="Seed of the synthetic city."),
    executor: str = typer.Option("ray", help="ray (default) or local."),
    crypto_suite: Suite = typer.Option(
        Suite.international,
        "--crypto-suite",
        help="international (Ed25519, SHA-256) or sm (SM2, SM3).",
    ),
) -> None:
    """The whole story on a throw-away instance with synthetic city data."""
    from sandbox.cli.demo import run_demo
    from sandbox.errors import RayUnavailable

    try:
        run_demo(
            console, residents=residents, seed=seed, executor=executor, crypto_suite=crypto_suite
        )
    except RayUnavailable as e:
        _fail(e.message)


@principals_app.command("create")
def principals_create(
    name: str = typer.Argument(..., help="Its name, e.g. 市公安局."),
    role: str = typer.Option(..., "--role", help="bureau, provider, operator or regulator."),
    license_no: str | None = typer.Option(None, "--license-no", help="An operator's licence."),
    public_key: str | None = typer.Option(
        None,
        "--public-key",
        help="An operator's public key (sandbox keys generate; SM2 on an sm instance).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print {id, name, role, token} as JSON."),
    data_dir: Path | None = DataDir,
) -> None:
    """Register a principal on a local instance, as the bureau; prints its token once."""
    from sandbox.records.principals import create_principal

    ctx = _open(data_dir)
    try:
        made, token = create_principal(ctx, _bureau(ctx), name, role, license_no, public_key)
        who = {"id": made.id, "name": made.name, "role": made.role, "token": token}
    except _domain_errors() as e:
        _fail(getattr(e, "message", str(e)))
    finally:
        ctx.close()
    if as_json:
        print(json.dumps(who, ensure_ascii=False))
        return
    console.print(f"Created {who['role']} [bold]{who['name']}[/] ({who['id']})")
    console.print("Its API token (shown once; hand it over safely):")
    console.print(f"  [bold green]{token}[/]")


@app.command()
def city(
    out: Path = typer.Option(..., "--out", help="A directory to write the files into."),
    residents: int = typer.Option(30_000, min=1000, help="Synthetic city size."),
    seed: int = typer.Option(2026, help="Seed of the synthetic city."),
    provider: str = typer.Option(
        "", "--provider", help="The provider_id to put in each meta file (edit it later if empty)."
    ),
) -> None:
    """Write the synthetic city (the demo's data) as files: per dataset, a Parquet file and
    the meta to register it with (`sandbox datasets ingest X.parquet --meta X.meta.json`)."""
    import pyarrow.parquet as pq

    from sandbox.catalog.synthetic import generate_city

    if out.exists() and any(out.iterdir()):
        _fail(f"{out} is not empty; choose a new directory, nothing is overwritten")
    out.mkdir(parents=True, exist_ok=True)
    for name, ds in generate_city(residents, seed=seed).items():
        pq.write_table(ds.table, out / f"{name}.parquet")
        meta = {
            "name": name,
            "title": ds.title,
            "provider_id": provider,
            "level": ds.level,
            "topic": ds.topic,
            "description": ds.description,
            "columns": ds.columns,
        }
        (out / f"{name}.meta.json").write_text(
            json.dumps(meta, ensure_ascii=False, indent=2), encoding="utf-8"
        )
        console.print(f"  {name}.parquet  {ds.table.num_rows:>7} rows, level {ds.level}")
    console.print(f"Wrote the synthetic city (seed {seed}) to {out}")


@datasets_app.command("ingest")
def datasets_ingest(
    file: Path = typer.Argument(
        ..., exists=True, dir_okay=False, help="CSV (UTF-8) or Parquet file."
    ),
    meta: Path = typer.Option(
        ...,
        "--meta",
        exists=True,
        dir_okay=False,
        help="JSON: {name, title, provider_id, level, columns: {col: {role, lower?, upper?}}}",
    ),
    data_dir: Path | None = DataDir,
) -> None:
    """Register a dataset on a local instance, as the bureau."""
    from sandbox.records import registry

    ctx = _open(data_dir)
    try:
        info = registry.register(ctx, _bureau(ctx), file.read_bytes(), file.name, _read_json(meta))
    except _domain_errors() as e:
        _fail(getattr(e, "message", str(e)))
    finally:
        ctx.close()
    console.print(
        f"Registered [bold]{info.name}[/] ({info.title}): {info.row_count} rows, "
        f"level {info.level}, {len(info.partitions)} partition(s)"
    )
    _print_columns(info.to_json())


@datasets_app.command("publish")
def datasets_publish(
    name: str = typer.Argument(..., help="The dataset."),
    file: Path = typer.Argument(
        ..., exists=True, dir_okay=False, help="CSV (UTF-8) or Parquet file."
    ),
    mode: str = typer.Option("replace", help="replace (the file is the new rows) or append."),
    columns: Path | None = typer.Option(
        None, exists=True, dir_okay=False, help="JSON: {column: {role, …}} for new columns."
    ),
    data_dir: Path | None = DataDir,
) -> None:
    """Publish a new version of a dataset on a local instance, as the bureau."""
    from sandbox.records import versions

    meta: dict[str, Any] = {"mode": mode}
    if columns is not None:
        meta["columns"] = _read_json(columns)
    ctx = _open(data_dir)
    try:
        done = versions.publish_upload(ctx, _bureau(ctx), name, file.read_bytes(), file.name, meta)
    except _domain_errors() as e:
        _fail(getattr(e, "message", str(e)))
    finally:
        ctx.close()
    console.print(
        f"Published [bold]{done.dataset}[/] version {done.version} ({done.mode}): "
        f"{done.row_count} rows, quality {done.quality_status}"
    )
    for label, names in (
        ("added columns", done.added_columns),
        ("removed columns", done.removed_columns),
        ("contracts affected", done.affected_contracts),
    ):
        if names:
            console.print(f"  {label}: {', '.join(names)}")


@datasets_app.command("versions")
def datasets_versions(
    name: str = typer.Argument(..., help="The dataset."), data_dir: Path | None = DataDir
) -> None:
    """The versions of a dataset, newest first."""
    from sandbox.records import versions

    ctx = _open(data_dir)
    try:
        rows = versions.view_history(ctx, _bureau(ctx), name)
    except _domain_errors() as e:
        _fail(getattr(e, "message", str(e)))
    finally:
        ctx.close()
    table = Table("version", "mode", "source", "rows", "quality", "published", "retired")
    for v in rows:
        table.add_row(
            str(v["version"]),
            v["mode"],
            v["source"],
            str(v["row_count"]),
            v["quality_status"],
            v["created_at"],
            v["retired_at"] or "",
        )
    console.print(table)


@datasets_app.command("rules")
def datasets_rules(
    name: str = typer.Argument(..., help="The dataset."),
    file: Path = typer.Argument(
        ...,
        exists=True,
        dir_okay=False,
        help="JSON: {not_null, unique, max_null_rate, within_bounds, check_digits, min_rows, "
        "on_failure: refuse|flag}",
    ),
    data_dir: Path | None = DataDir,
) -> None:
    """Set the quality rules every later version of a dataset is checked against."""
    from sandbox.records import versions

    ctx = _open(data_dir)
    try:
        rules = versions.set_rules(ctx, _bureau(ctx), name, _read_json(file))
    except _domain_errors() as e:
        _fail(getattr(e, "message", str(e)))
    finally:
        ctx.close()
    console.print_json(json.dumps(rules, ensure_ascii=False))


@datasets_app.command("source")
def datasets_source(
    name: str = typer.Argument(..., help="The dataset."),
    url: str = typer.Option(
        ..., help="SQLAlchemy URL of the department's database, without the password."
    ),
    password_ref: str | None = typer.Option(
        None, help="env:NAME or file:/path (readable by the service's user only)."
    ),
    table: str | None = typer.Option(None, help="The table to pull (or --query)."),
    query: str | None = typer.Option(None, help="A SELECT query to pull (or --table)."),
    mode: str = typer.Option("replace", help="replace or append."),
    schedule: str | None = typer.Option(
        None, help='When to pull by itself, e.g. "daily 02:00 Asia/Shanghai".'
    ),
    data_dir: Path | None = DataDir,
) -> None:
    """Set where a dataset is pulled from (a department's PostgreSQL or MySQL/MariaDB)."""
    from sandbox.records import refresh

    raw = {
        k: v
        for k, v in (
            ("url", url),
            ("password_ref", password_ref),
            ("table", table),
            ("query", query),
            ("mode", mode),
            ("schedule", schedule),
        )
        if v is not None
    }
    ctx = _open(data_dir)
    try:
        source = refresh.set_source(ctx, _bureau(ctx), name, raw)
    except _domain_errors() as e:
        _fail(getattr(e, "message", str(e)))
    finally:
        ctx.close()
    console.print(f"Source of [bold]{name}[/] set: {source['url']}")
    if source["next_run_at"]:
        console.print(f"  next scheduled pull: {source['next_run_at']}")


@datasets_app.command("refresh")
def datasets_refresh(
    name: str = typer.Argument(..., help="The dataset."), data_dir: Path | None = DataDir
) -> None:
    """Pull a dataset from its source now into a new version (nothing changes if it fails)."""
    from sandbox.records import refresh

    ctx = _open(data_dir)
    try:
        done = refresh.refresh(ctx, _bureau(ctx), name, "command")
    except _domain_errors() as e:
        _fail(getattr(e, "message", str(e)))
    finally:
        ctx.close()
    if done["status"] != "published":
        _fail(f"the pull of {name!r} failed and nothing changed: {done['error']}")
    console.print(f"Pulled [bold]{name}[/]: version {done['version']}, {done['rows']} rows")


@datasets_app.command("list")
def datasets_list(data_dir: Path | None = DataDir) -> None:
    """List the catalog of a local instance."""
    from sandbox.records import registry

    ctx = _open(data_dir)
    with ctx.reading() as s:
        rows = [d.to_json() for d in registry.all_datasets(ctx, s)]
    ctx.close()
    table = Table("name", "title", "level", "rows", "provider")
    for d in rows:
        table.add_row(d["name"], d["title"], d["level"], str(d["row_count"]), d["provider_id"])
    console.print(table)


@prices_app.command("publish")
def prices_publish(
    file: Path = typer.Argument(
        ...,
        exists=True,
        dir_okay=False,
        help="JSON price schedule: {name, effective_from, items: [{unit, price, per?, level?}]}",
    ),
    data_dir: Path | None = DataDir,
) -> None:
    """Publish a new version of the price schedule."""
    from sandbox.records import money

    ctx = _open(data_dir)
    try:
        published = money.publish(ctx, _bureau(ctx), _read_json(file))
    except _domain_errors() as e:
        _fail(getattr(e, "message", str(e)))
    finally:
        ctx.close()
    console.print(
        f"Published schedule {published['id']}: {published['name']}, in force from "
        f"{published['effective_from']}"
    )
    _print_schedule(published)


@prices_app.command("show")
def prices_show(data_dir: Path | None = DataDir) -> None:
    """Show the schedule in force now."""
    from sandbox.records import money

    ctx = _open(data_dir)
    try:
        with ctx.reading() as s:
            schedule_id, schedule = money.in_force(s)
    except _domain_errors() as e:
        _fail(getattr(e, "message", str(e)))
    finally:
        ctx.close()
    console.print(f"Schedule {schedule_id}: {schedule.name}")
    _print_schedule(schedule.to_json())


@app.command()
def bills(
    period: str = typer.Argument(..., help="Month, YYYY-MM (Beijing time)."),
    operator: str | None = typer.Option(None, help="Only this operator's charges."),
    csv_file: Path | None = typer.Option(
        None, "--csv", help="Also write the statement as CSV (UTF-8) to this file."
    ),
    xlsx_file: Path | None = typer.Option(
        None, "--xlsx", help="Also write the statement as an Excel workbook to this file."
    ),
    data_dir: Path | None = DataDir,
) -> None:
    """Monthly statement of charges on a local instance, as the bureau sees it."""
    from sandbox.common import exports
    from sandbox.records import money

    ctx = _open(data_dir)
    try:
        statement = money.bills(ctx, _bureau(ctx), period, operator)
        sheet = money.statement_table(ctx, statement)
    except _domain_errors() as e:
        _fail(getattr(e, "message", str(e)))
    finally:
        ctx.close()
    table = Table(
        "job",
        "operator",
        "finished",
        "amount",
        "list amount",
        title=f"Statement {period}" + (f" for {operator}" if operator else ""),
    )
    for c in statement["charges"]:
        table.add_row(
            c["job_id"], c["operator_id"], c["finished_at"] or "", c["amount"], c["list_amount"]
        )
    table.add_row("[bold]total", "", "", f"[bold]{statement['total']}", statement["list_total"])
    console.print(table)
    for path, fmt in ((csv_file, "csv"), (xlsx_file, "xlsx")):
        if path is not None:
            path.write_bytes(exports.render(sheet, fmt))
            console.print(f"Wrote {path}")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        _fail(f"{path} is not valid JSON: {e.msg} (line {e.lineno})")


def _print_schedule(schedule: dict[str, Any]) -> None:
    table = Table("unit", "price (yuan)", "per", "level")
    for item in schedule["items"]:
        table.add_row(
            item["unit"],
            item.get("price", "tiered"),
            str(item.get("per", 1)),
            item.get("level", ""),
        )
    console.print(table)


def _print_columns(dataset: dict[str, Any]) -> None:
    table = Table("column", "type", "role", "bounds")
    for c in dataset["columns"]:
        bounds = (
            f"{c.get('lower', '')}..{c.get('upper', '')}" if "lower" in c or "upper" in c else ""
        )
        table.add_row(c["name"], c["type"], c["role"], bounds)
    console.print(table)


def _open(data_dir: Path | None):  # type: ignore[no-untyped-def]
    from sandbox.context import open_instance

    try:
        return open_instance(settings_for(data_dir, executor="local"))
    except _domain_errors() as e:
        _fail(getattr(e, "message", str(e)))


def _bureau(ctx: Any) -> Any:
    from sqlalchemy import select

    from operators.roles import Role
    from sandbox.records.principals import Actor
    from sandbox.store.models import Principal

    with ctx.reading() as s:
        p = s.scalar(
            select(Principal).where(Principal.role == "bureau").order_by(Principal.created_at)
        )
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
