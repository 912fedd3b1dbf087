"""python -m benchmarks.connector [--rows N] [--compare M] [--batch-rows B] [--pg-url URL]

Each size is pulled twice: by the connector alone into one Parquet file, and through the
service as `sandbox datasets refresh` does it (a new version of a dataset: people numbered,
quality profiled, partitions written, revisions found), each in a process of its own.

How fast the connector (`sandbox.catalog.sources.stream`) pulls a department's table out of
PostgreSQL into Parquet, and that its memory stays bounded: a pull of N rows should peak at
about the same resident memory as one of M rows (default 1 M), since it never holds more than
a batch. In a database made for the run (dropped at the end) it creates, with generate_series,
a table of resident-like rows for each size — id (text, 18 characters), district (Chinese
text), birth (date), income (numeric(12,2), a few NULL) — then pulls each in a fresh Python
process of its own, writing the batches with `pyarrow.parquet.ParquetWriter` as they come, and
reports rows, seconds, rows/s and the process's peak RSS (`resource.getrusage` ru_maxrss),
beside its RSS before the pull began. Creating the tables is set-up, not measured. Benchmarks
are not tests: nothing here asserts a time.

The URL names an account without a password (trust, or libpq's PGPASSWORD/.pgpass): a source's
URL never holds one.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine

# ru_maxrss survives exec: a measuring process started by a large one would report its
# parent's size as its own peak. So this process stays small while it starts them (SQLAlchemy
# only; no pyarrow, no rich, none of the service benchmarks' helpers, which bring much of the
# service along), and what a pull needs is imported by the process that measures it.
DEFAULT_PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
DISTRICTS = ("城关区", "七里河区", "西固区", "安宁区", "红古区", "永登县", "皋兰县", "榆中县")


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def parser() -> argparse.ArgumentParser:
    a = argparse.ArgumentParser(
        prog="python -m benchmarks.connector",
        description="Pull a PostgreSQL table into Parquet with the connector: time and memory.",
    )
    a.add_argument("--rows", type=_positive, default=10_000_000, help="rows (default 10000000)")
    a.add_argument(
        "--compare",
        type=int,
        default=1_000_000,
        help="also pull this many rows, for comparison (default 1000000; 0 for none)",
    )
    a.add_argument(
        "--batch-rows", type=_positive, default=50_000, help="rows per batch (default 50000)"
    )
    a.add_argument(
        "--pg-url",
        default=DEFAULT_PG_ADMIN_URL,
        help=f"PostgreSQL server to use (default {DEFAULT_PG_ADMIN_URL})",
    )
    a.add_argument("--json", type=Path, default=None, help="also write the numbers to this file")
    # Internal: one pull, in the process that measures it.
    a.add_argument(
        "--measure", nargs=3, metavar=("URL", "TABLE", "PARQUET"), help=argparse.SUPPRESS
    )
    a.add_argument(
        "--measure-service", nargs=3, metavar=("URL", "TABLE", "DIR"), help=argparse.SUPPRESS
    )
    return a


@contextmanager
def postgres_database(admin_url: str) -> Iterator[str]:
    """A database of its own for the run, dropped at the end (as `benchmarks.served` makes
    them; that module is not imported here, see above)."""
    name = f"bench_connector_{os.getpid()}_{secrets.token_hex(4)}"
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as con:
            con.exec_driver_sql(f'CREATE DATABASE "{name}"')
        try:
            yield engine.url.set(database=name).render_as_string(hide_password=False)
        finally:
            with engine.connect() as con:
                con.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        engine.dispose()


def create_residents(url: str, name: str, rows: int) -> float:
    """A table of `rows` resident-like rows; the seconds it took."""
    districts = ", ".join(f"'{d}'" for d in DISTRICTS)
    sql = f"""
        CREATE TABLE {name} AS
        SELECT '6201' || lpad(i::text, 14, '0') AS id,
               (ARRAY[{districts}])[1 + mod(i, {len(DISTRICTS)})::int] AS district,
               DATE '1940-01-01' + mod(i * 7919, 29000)::int AS birth,
               CASE WHEN mod(i, 97) = 0 THEN NULL
                    ELSE round(1500 + mod(i * 104729, 9000000) / 100.0, 2) END::numeric(12, 2)
                   AS income
        FROM generate_series(1::bigint, {rows}) AS i
    """
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    started = time.perf_counter()
    try:
        with engine.connect() as con:
            con.exec_driver_sql(sql)
            con.exec_driver_sql(f"ANALYZE {name}")
    finally:
        engine.dispose()
    return time.perf_counter() - started


def _rss_mib() -> float:
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(url: str, table: str, parquet: Path, batch_rows: int) -> dict[str, Any]:
    """Pull `table` into `parquet` with the connector, in this process."""
    import pyarrow.parquet as pq

    from sandbox.catalog.sources import parse_source, stream

    spec = parse_source({"url": url, "table": table, "batch_rows": batch_rows})
    rss_before = _rss_mib()
    started = time.perf_counter()
    rows = batches = 0
    writer = None
    try:
        for batch in stream(spec):
            if writer is None:
                writer = pq.ParquetWriter(parquet, batch.schema)
            writer.write_batch(batch)
            rows += batch.num_rows
            batches += 1
    finally:
        if writer is not None:
            writer.close()
    seconds = time.perf_counter() - started
    return {
        "rows": rows,
        "batches": batches,
        "seconds": seconds,
        "rows_per_s": rows / seconds if seconds else 0.0,
        "rss_before_mib": rss_before,
        "peak_rss_mib": _rss_mib(),
        "parquet_mib": parquet.stat().st_size / 2**20,
        "schema": str(pq.read_schema(parquet)).splitlines(),
    }


def measure_service(url: str, table: str, directory: Path, batch_rows: int) -> dict[str, Any]:
    """The whole pull as the service makes it (`sandbox datasets refresh`): the connector's
    batches numbered by person, profiled for quality, compared with the previous version for
    revisions and written as the dataset's next version, on an instance of its own."""
    import pyarrow as pa

    from sandbox.catalog.sources import parse_source, stream
    from sandbox.records import principals, refresh, registry
    from sandbox.settings import Settings

    ctx, token = principals.bootstrap(Settings(data_dir=directory, executor="local"))
    try:
        bureau = principals.authenticate(ctx, token)
        provider, _ = principals.create_principal(ctx, bureau, "市公安局", "provider")
        first = parse_source({"url": url, "query": f"SELECT * FROM {table} LIMIT 1000"})
        sample = pa.Table.from_batches(list(stream(first)))
        meta = {
            "name": "常住人口",
            "title": "常住人口",
            "provider_id": provider.id,
            "level": "L3",
            "columns": {
                "id": {"role": "identifier"},
                "district": {"role": "attribute"},
                "birth": {"role": "quasi_identifier"},
                "income": {"role": "sensitive", "lower": 0, "upper": 1_000_000},
            },
        }
        import io

        import pyarrow.parquet as pq

        buffer = io.BytesIO()
        pq.write_table(sample, buffer)
        registry.register(ctx, bureau, buffer.getvalue(), "sample.parquet", meta)
        refresh.set_source(
            ctx, bureau, "常住人口", {"url": url, "table": table, "batch_rows": batch_rows}
        )
        rss_before = _rss_mib()
        started = time.perf_counter()
        done = refresh.refresh(ctx, bureau, "常住人口", "command")
        seconds = time.perf_counter() - started
    finally:
        ctx.close()
    if done["status"] != "published":
        raise SystemExit(f"the pull failed: {done['error']}")
    rows = int(done["rows"])
    return {
        "rows": rows,
        "batches": -(-rows // batch_rows),
        "seconds": seconds,
        "rows_per_s": rows / seconds if seconds else 0.0,
        "rss_before_mib": rss_before,
        "peak_rss_mib": _rss_mib(),
        "parquet_mib": sum(
            p.stat().st_size for p in (directory / "datasets").glob("常住人口@2/*.parquet")
        )
        / 2**20,
        "schema": [],
    }


def _measured(
    url: str, table: str, parquet: Path, batch_rows: int, service: bool = False
) -> dict[str, Any]:
    # A fresh process per size: ru_maxrss is the peak of the whole process's life.
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.connector",
            "--batch-rows",
            str(batch_rows),
            "--measure-service" if service else "--measure",
            url,
            table,
            str(parquet),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"the pull of {table} failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.measure:
        url, table, parquet = args.measure
        print(json.dumps(measure(url, table, Path(parquet), args.batch_rows)))
        return 0
    if args.measure_service:
        url, table, directory = args.measure_service
        print(json.dumps(measure_service(url, table, Path(directory), args.batch_rows)))
        return 0
    return run(args)


def run(args: argparse.Namespace) -> int:
    sizes = sorted({args.rows, *([args.compare] if args.compare > 0 else [])})
    results: list[dict[str, Any]] = []
    with postgres_database(args.pg_url) as url, tempfile.TemporaryDirectory() as tmp:
        for rows in sizes:
            name = f"residents_{rows}"
            print(f"creating {name} ({rows:,} rows) …", flush=True)
            created = create_residents(url, name, rows)
            print(f"  created in {created:,.1f} s; pulling …", flush=True)
            parquet = Path(tmp) / f"{name}.parquet"
            results.append(
                {
                    **_measured(url, name, parquet, args.batch_rows),
                    "create_s": created,
                    "path": "connector → Parquet",
                }
            )
            parquet.unlink()
            print("  and through the service (a new version) …", flush=True)
            results.append(
                {
                    **_measured(url, name, Path(tmp) / f"instance-{rows}", args.batch_rows, True),
                    "create_s": created,
                    "path": "sandbox datasets refresh",
                }
            )
    report(args, results)
    return 0


def report(args: argparse.Namespace, results: list[dict[str, Any]]) -> None:
    # Only now, every pull measured (see the imports).
    from rich.console import Console
    from rich.table import Table

    from benchmarks.report import machine

    console = Console()
    table = Table(title=f"connector: PostgreSQL → Arrow batches of {args.batch_rows:,} → Parquet")
    table.add_column("path")
    for column in ("rows", "batches", "seconds", "rows/s", "RSS at start", "peak RSS", "Parquet"):
        table.add_column(column, justify="right")
    for r in results:
        table.add_row(
            r["path"],
            f"{r['rows']:,}",
            f"{r['batches']:,}",
            f"{r['seconds']:,.1f}",
            f"{r['rows_per_s']:,.0f}",
            f"{r['rss_before_mib']:,.0f} MiB",
            f"{r['peak_rss_mib']:,.0f} MiB",
            f"{r['parquet_mib']:,.0f} MiB",
        )
    console.print(table)
    console.print("schema: " + "; ".join(results[0]["schema"]))
    info = machine()
    console.print(
        f"machine: {info['cpu']}, {info['usable_cores']} usable cores, {info['memory_gib']} GiB; "
        f"Python {info['python']}, pyarrow {info['pyarrow']}"
    )
    if args.json:
        numbers = {"batch_rows": args.batch_rows, "results": results, "machine": info}
        args.json.write_text(json.dumps(numbers, indent=2), encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
