"""A throw-away sandbox instance served over real HTTP, with the synthetic city ingested.

The API runs under uvicorn in a background thread on a free loopback port; everything the
benchmark does to it (principals, datasets, fees, the contract, jobs) goes through HTTP.
"""

from __future__ import annotations

import base64
import functools
import json
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
import uvicorn
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select

from benchmarks.queries import SMALL_DATASET
from operators.keys import generate_private_key, public_key_b64, sign
from operators.roles import Role
from sandbox.api.app import create_app
from sandbox.catalog.synthetic import CityDataset, generate_city, write_city
from sandbox.cli.demo import PRICES
from sandbox.context import Context, ensure_ray
from sandbox.records import registry
from sandbox.records.principals import Actor, bootstrap
from sandbox.settings import Settings
from sandbox.store.models import Principal

SCHEDULE = PRICES
CITY_DATASETS = ("population", "enterprises", "social_insurance")
ALL_USES = ["group_by", "filter", "aggregate", "join"]
HTTP_TIMEOUT = 600.0
STARTUP_SECONDS = 60.0


@dataclass(frozen=True)
class Options:
    residents: int
    small_rows: int
    seed: int
    executor: str
    partition_rows: int
    ingest: str  # "http" or "direct"
    datasets: frozenset[str]  # the datasets the chosen queries scan
    cache_dir: Path | None = None  # keeps the generated city between runs


@dataclass(frozen=True)
class Seat:
    """An operator's token, key and contract: what a job client needs."""

    url: str
    operator_token: str
    operator_key: Ed25519PrivateKey
    contract_id: str


@dataclass(frozen=True)
class Instance:
    url: str
    ctx: Context
    operator_token: str
    operator_key: Ed25519PrivateKey
    contract_id: str
    ingest_seconds: dict[str, float]
    # q5's operator: its own contract on the sample only. One operator's releases are audited
    # together, so the large queries' fine cells and a sample of the same people would hide
    # each other (and a job asked for again and again, then hidden, is flagged).
    small: Seat | None = None

    def partitions(self, dataset: str) -> list[str]:
        with self.ctx.reading() as s:
            return list(registry.get(self.ctx, s, dataset).partitions)

    def row_count(self, dataset: str) -> int:
        with self.ctx.reading() as s:
            return registry.get(self.ctx, s, dataset).row_count


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _check(r: httpx.Response) -> dict[str, Any]:
    if r.status_code not in (200, 201):
        raise RuntimeError(f"{r.request.method} {r.request.url.path} → {r.status_code}: {r.text}")
    return r.json()  # type: ignore[no-any-return]


# --- the server ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serving(ctx: Context) -> Iterator[str]:
    """The API of ``ctx`` under uvicorn on a loopback port, for as long as the block runs."""
    port = free_port()
    config = uvicorn.Config(
        create_app(context=ctx), host="127.0.0.1", port=port, log_level="warning", access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + STARTUP_SECONDS
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(
                "the API server did not start; run with the executor 'local' to "
                "rule out Ray, and check that loopback ports are free"
            )
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


# --- the city --------------------------------------------------------------------------------


def city_files(opts: Options, workdir: Path) -> dict[str, Path]:
    """Parquet files of the datasets the queries need, generated once (or found in the cache)."""
    where = opts.cache_dir or workdir / "city"
    paths: dict[str, Path] = {}
    if opts.datasets - {SMALL_DATASET}:
        city = where / f"city-{opts.residents}-seed{opts.seed}"
        paths = {name: city / f"{name}.parquet" for name in CITY_DATASETS}
        if not all(p.exists() for p in paths.values()):
            write_city(city, opts.residents, seed=opts.seed)
    if SMALL_DATASET in opts.datasets:
        small = where / f"{SMALL_DATASET}-{opts.small_rows}-seed{opts.seed + 1}.parquet"
        if not small.exists():
            # A separate draw, not a slice of the city: a sample registered as its own dataset.
            small.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(
                generate_city(opts.small_rows, seed=opts.seed + 1)["population"].table, small
            )
        paths[SMALL_DATASET] = small
    return {name: path for name, path in paths.items() if name in opts.datasets}


@functools.lru_cache(maxsize=1)
def _policies() -> dict[str, CityDataset]:
    # A tiny city, only for each dataset's title, level and column policy.
    return generate_city(100, seed=0)


def _meta(name: str, provider_id: str) -> dict[str, Any]:
    ds = _policies()["population" if name == SMALL_DATASET else name]
    title = ds.title + ("（抽样）" if name == SMALL_DATASET else "")
    return {
        "name": name,
        "title": title,
        "provider_id": provider_id,
        "level": ds.level,
        "columns": ds.columns,
    }


def ingest(
    client: httpx.Client,
    ctx: Context,
    bureau: str,
    method: str,
    name: str,
    path: Path,
    provider_id: str,
) -> float:
    """Register one dataset from its Parquet file; returns the seconds it took."""
    meta = _meta(name, provider_id)
    data = path.read_bytes()
    started = time.perf_counter()
    if method == "http":
        _check(
            client.post(
                "/v1/datasets",
                headers=auth(bureau),
                files={"file": (path.name, data, "application/vnd.apache.parquet")},
                data={"meta": json.dumps(meta, ensure_ascii=False)},
            )
        )
    else:
        registry.register(ctx, _bureau(ctx), data, path.name, meta)
    return time.perf_counter() - started


def _bureau(ctx: Context) -> Actor:
    with ctx.reading() as s:
        row = s.scalar(select(Principal).where(Principal.role == Role.bureau))
        assert row is not None
        return Actor(row.id, row.name, Role(row.role))


# --- principals, fees, contract --------------------------------------------------------------


def principal(
    client: httpx.Client, bureau: str, name: str, role: str, key: Ed25519PrivateKey | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"name": name, "role": role}
    if key is not None:
        body |= {"public_key": public_key_b64(key), "license_no": "授权运营-2026-100"}
    return _check(client.post("/v1/principals", headers=auth(bureau), json=body))


def active_contract(
    client: httpx.Client,
    bureau: str,
    provider: str,
    operator: str,
    key: Ed25519PrivateKey,
    datasets: dict[str, list[str]],
) -> str:
    """Apply (every column, every use), approve, sign by the bureau, then by the operator."""
    grants = {name: {c: ALL_USES for c in columns} for name, columns in datasets.items()}
    cid = _check(
        client.post(
            "/v1/contracts",
            headers=auth(operator),
            json={
                "datasets": grants,
                "purpose": "公共数据平台性能基准",
                "purpose_class": "commercial",
                "valid_from": "2026-01-01T00:00:00Z",
                "valid_to": "2030-01-01T00:00:00Z",
            },
        )
    )["id"]
    _check(client.post(f"/v1/contracts/{cid}/approve", headers=auth(provider)))
    _check(client.post(f"/v1/contracts/{cid}/sign", headers=auth(bureau)))
    canonical = base64.b64decode(
        _check(client.get(f"/v1/contracts/{cid}", headers=auth(operator)))["canonical"]
    )
    signed = _check(
        client.post(
            f"/v1/contracts/{cid}/sign",
            headers=auth(operator),
            json={"signature": sign(key, canonical)},
        )
    )
    if signed["status"] != "active":
        raise RuntimeError(f"contract {cid} is {signed['status']} after both signatures")
    return cid


@contextmanager
def running_instance(opts: Options) -> Iterator[Instance]:
    """A fresh instance in a temporary directory, served over HTTP, torn down afterwards."""
    with tempfile.TemporaryDirectory(prefix="sandbox-bench-") as tmp:
        workdir = Path(tmp)
        settings = Settings(
            data_dir=workdir / "instance",
            executor=opts.executor,
            partition_rows=opts.partition_rows,
            job_wall_seconds=600,
        )
        if opts.executor == "ray":
            ensure_ray(settings)  # from the main thread, so Ray installs its signal handlers
        files = city_files(opts, workdir)
        ctx, bureau = bootstrap(settings)
        try:
            with serving(ctx) as url, httpx.Client(base_url=url, timeout=HTTP_TIMEOUT) as client:
                yield _populate(client, ctx, bureau, opts, url, files)
        finally:
            ctx.close()
            if opts.executor == "ray":
                import ray

                ray.shutdown()


def _populate(
    client: httpx.Client, ctx: Context, bureau: str, opts: Options, url: str, files: dict[str, Path]
) -> Instance:
    provider = principal(client, bureau, "市大数据中心", "provider")
    key = generate_private_key()
    operator = principal(client, bureau, "智城数据科技有限公司", "operator", key)
    seconds = {}
    for name in sorted(opts.datasets):
        seconds[name] = ingest(client, ctx, bureau, opts.ingest, name, files[name], provider["id"])
    _check(client.post("/v1/price-schedules", headers=auth(bureau), json=SCHEDULE))
    columns = {name: list(_meta(name, provider["id"])["columns"]) for name in seconds}
    small = {name: cols for name, cols in columns.items() if name == SMALL_DATASET}
    large = {name: cols for name, cols in columns.items() if name != SMALL_DATASET}
    cid = active_contract(client, bureau, provider["token"], operator["token"], key, large or small)
    seat = None
    if small and large:
        small_key = generate_private_key()
        other = principal(client, bureau, "小微数据服务有限公司", "operator", small_key)
        small_cid = active_contract(
            client, bureau, provider["token"], other["token"], small_key, small
        )
        seat = Seat(url, other["token"], small_key, small_cid)
    return Instance(url, ctx, operator["token"], key, cid, seconds, seat)
