"""Shared fixtures: a real local Ray (once per run), real SQLite instances, real Parquet."""

from __future__ import annotations

import atexit
import base64
import copy
import json
import os
import queue
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import wait
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import plain_terminal  # noqa: F401  (first: see its docstring)
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from databases import BACKENDS, create_database, drop_database, require_server
from factories import parquet_bytes
from fastapi.testclient import TestClient

from operators.keys import generate_private_key, public_key_b64, sign
from sandbox.api.app import create_app
from sandbox.catalog.synthetic import CityDataset, generate_city
from sandbox.cli.demo import PRICES
from sandbox.context import Context, open_instance
from sandbox.pipeline import execution
from sandbox.records.principals import bootstrap
from sandbox.settings import Settings

if TYPE_CHECKING:
    import fleet

# The demo's published fees: tests compute expected charges from the same schedule.
SCHEDULE = PRICES

GRANTS = {
    "population": {
        "district": ["group_by", "filter"],
        "gender": ["group_by", "filter"],
        "birth_date": ["group_by", "filter"],
        "hukou_type": ["group_by", "filter"],
        "income": ["aggregate"],
    },
}

RESIDENTS = 20_000


# Modules that start whole services or clusters, a minute or more each in all (`--durations`):
# handed out first, so that the run does not end with one of them alone on one core. Not
# test_ray_startup: its tests time a start-up, which the others' start-ups would slow.
# pytest-xdist hands out a module at a time in collection order (`--no-loadscope-reorder`);
# the other modules follow, most tests first, as its own reordering would put them.
FIRST = (
    "system/test_workers_killed_service.py",
    "system/test_workers_killed_workers.py",
    "system/test_workers.py",
    "system/test_cli.py",
    "system/test_concurrency.py",
    "system/test_backup.py",
    "system/test_client_live.py",
    "system/test_data_faults.py",
    "system/test_multinode.py",
)


def _module(item: pytest.Item) -> str:
    return item.nodeid.split("::", 1)[0].removeprefix("tests/")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that needs ray_local, however indirectly, is marked `ray`, so that
    `-m "not ray"` selects the part that runs without starting Ray; and the modules are
    ordered for the workers (FIRST)."""
    for item in items:
        if "ray_local" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.ray)
    sizes = Counter(_module(item) for item in items)
    first = {name: i for i, name in enumerate(FIRST)}

    def rank(item: pytest.Item) -> tuple[int, int, str]:
        module = _module(item)
        return (first.get(module, len(first)), -sizes[module], module)

    items.sort(key=rank)


@pytest.fixture(scope="session")
def ray_local() -> Iterator[None]:
    """One local Ray per test process (starting Ray costs seconds): one for the whole run, or one
    per pytest-xdist worker."""
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    if not ray.is_initialized():
        from sandbox.context import start_local_ray

        start_local_ray(num_cpus=2)
    # As the service does (context.ensure_ray): this process owns the scan cache, not the first
    # worker that reads a partition, whose exit would take the cache with it mid-run.
    from sandbox.engine import cache

    cache.actor()
    yield
    ray.shutdown()


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[fleet.Deployment]:
    """A new instance on a PostgreSQL database of its own, to be served by four workers."""
    import fleet  # here: fleet imports live, which imports this module

    with fleet.deployment(tmp_path) as made:
        yield made


@pytest.fixture(scope="session")
def city() -> dict[str, Any]:
    return generate_city(RESIDENTS, seed=7)


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def post_dataset(client: TestClient, bureau: str, provider_id: str, dataset: CityDataset) -> Any:
    """The bureau ingests `dataset` for the provider (the response)."""
    name = dataset.name
    meta = {
        "name": name,
        "title": dataset.title,
        "provider_id": provider_id,
        "level": dataset.level,
        "columns": dataset.columns,
    }
    return client.post(
        "/v1/datasets",
        headers=auth(bureau),
        files={"file": (f"{name}.parquet", parquet_bytes(dataset.table))},
        data={"meta": json.dumps(meta, ensure_ascii=False)},
    )


@dataclass
class World:
    """A running instance with the bureau, a provider, two operators and a regulator."""

    client: TestClient
    ctx: Context
    bureau: str
    provider: dict[str, Any]
    operator: dict[str, Any]
    operator_key: Ed25519PrivateKey
    other_operator: dict[str, Any]
    other_key: Ed25519PrivateKey
    regulator: dict[str, Any]

    def h(self, who: str | dict[str, Any]) -> dict[str, str]:
        return auth(who if isinstance(who, str) else who["token"])

    def ingest(
        self, name: str, table: Any, level: str, columns: dict[str, Any], title: str = "数据集"
    ) -> Any:
        dataset = CityDataset(name, title, level, columns, table)
        return post_dataset(self.client, self.bureau, self.provider["id"], dataset)

    def register_operator(
        self, name: str, license_no: str
    ) -> tuple[dict[str, Any], Ed25519PrivateKey]:
        """A new licensed operator, registered by the bureau with an Ed25519 key of its own."""
        key = generate_private_key()
        r = self.client.post(
            "/v1/principals",
            headers=self.h(self.bureau),
            json={
                "name": name,
                "role": "operator",
                "public_key": public_key_b64(key),
                "license_no": license_no,
            },
        )
        assert r.status_code == 201, r.text
        return r.json(), key

    def activate(
        self,
        op: dict[str, Any],
        key: Ed25519PrivateKey,
        grants: dict[str, Any] | None = None,
        **terms: Any,
    ) -> str:
        """Apply as `op`, approve, sign by bureau and operator; the active contract's id."""
        body = {
            "datasets": grants or GRANTS,
            "purpose": "养老服务设施规划",
            "purpose_class": "commercial",
            "valid_from": "2026-01-01T00:00:00Z",
            "valid_to": "2030-01-01T00:00:00Z",
            **terms,
        }
        r = self.client.post("/v1/contracts", json=body, headers=self.h(op))
        assert r.status_code == 201, r.text
        cid = r.json()["id"]
        assert (
            self.client.post(
                f"/v1/contracts/{cid}/approve", headers=self.h(self.provider)
            ).status_code
            == 200
        )
        assert (
            self.client.post(f"/v1/contracts/{cid}/sign", headers=self.h(self.bureau)).status_code
            == 200
        )
        canonical = base64.b64decode(
            self.client.get(f"/v1/contracts/{cid}", headers=self.h(op)).json()["canonical"]
        )
        r = self.client.post(
            f"/v1/contracts/{cid}/sign",
            json={"signature": sign(key, canonical)},
            headers=self.h(op),
        )
        assert r.status_code == 200 and r.json()["status"] == "active", r.text
        return cid

    def active_contract(
        self, grants: dict[str, Any] | None = None, operator: str = "operator", **terms: Any
    ) -> str:
        """An active contract of the world's operator (or `other_operator`)."""
        key = self.operator_key if operator == "operator" else self.other_key
        return self.activate(getattr(self, operator), key, grants, **terms)

    def run(self, contract_id: str, code: str, operator: str = "operator", **extra: Any) -> Any:
        return self.client.post(
            "/v1/jobs?wait=true",
            headers=self.h(getattr(self, operator)),
            json={"contract_id": contract_id, "code": code, **extra},
        )

    def wait_for_job(
        self, job_id: str, who: str | dict[str, Any] = "operator", timeout: float = 30
    ) -> dict[str, Any]:
        """The job as `who` sees it once it has settled (or `timeout` s have passed)."""
        # The instance's own handle on a job it runs: done once the job is settled.
        running = self.ctx.running.get(job_id)
        if running is not None:
            wait([running], timeout)
        who = getattr(self, who) if isinstance(who, str) else who
        return self.client.get(f"/v1/jobs/{job_id}", headers=self.h(who)).json()  # type: ignore[no-any-return]


# Settings every test instance starts from; a test's own settings go on top.
# On Ray, every scan fans out as Ray tasks (the test data is small enough to run in place).
WORLD_DEFAULTS: dict[str, Any] = {
    "partition_rows": 6000,
    "job_wall_seconds": 20,
    "engine_in_place_rows": 0,
}


@dataclass(frozen=True)
class _Template:
    """A populated instance, made once per kind and copied for each test that asks for one:
    its data directory, its PostgreSQL database (None on SQLite) and who is in it."""

    data_dir: Path
    database_url: str | None
    cast: dict[str, Any]
    city: dict[str, Any]  # kept, so that the id it is found by stays this city's


_TEMPLATES: dict[tuple[Any, ...], _Template] = {}


def principals(client: TestClient, bureau: str) -> dict[str, Any]:
    """The world's principals, made by the bureau, and the operators' keys: World's fields
    after the bureau's token."""

    def principal(name: str, role: str, key: Ed25519PrivateKey | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"name": name, "role": role}
        if key is not None:
            body["public_key"] = public_key_b64(key)
            body["license_no"] = "授权运营-2026-001"
        r = client.post("/v1/principals", json=body, headers=auth(bureau))
        assert r.status_code == 201, r.text
        return r.json()

    op_key, other_key = generate_private_key(), generate_private_key()
    return {
        "provider": principal("市公安局", "provider"),
        "operator": principal("某数据科技有限公司", "operator", op_key),
        "operator_key": op_key,
        "other_operator": principal("另一家运营公司", "operator", other_key),
        "other_key": other_key,
        "regulator": principal("市场监管审计处", "regulator"),
    }


def _populate(client: TestClient, bureau: str, city: dict[str, Any]) -> dict[str, Any]:
    """The world's principals, its population dataset and the demo's fees; who is who."""
    cast = {"bureau": bureau, **principals(client, bureau)}
    r = post_dataset(client, bureau, cast["provider"]["id"], city["population"])
    assert r.status_code == 201, r.text
    assert (
        client.post("/v1/price-schedules", json=SCHEDULE, headers=auth(bureau)).status_code == 201
    )
    return cast


def _template(city: dict[str, Any], postgresql: bool, settings: dict[str, Any]) -> _Template:
    """The template for instances with these settings (made the first time it is asked for).
    Jobs never run in a template, so it is made with in-process jobs whatever the executor."""
    key = (id(city), postgresql, tuple(sorted((k, repr(v)) for k, v in settings.items())))
    made = _TEMPLATES.get(key)
    if made is not None:
        return made
    root = Path(tempfile.mkdtemp(prefix="sandbox-world-"))
    atexit.register(shutil.rmtree, root, True)
    url = None
    if postgresql:
        url = create_database()
        atexit.register(drop_database, url)
    ctx, bureau = bootstrap(
        Settings(
            data_dir=root / "instance",
            executor="local",
            **{**WORLD_DEFAULTS, **settings, **({"database_url": url} if url else {})},
        )
    )
    with TestClient(create_app(context=ctx)) as client:
        cast = _populate(client, bureau, city)
    ctx.close()  # nobody stays connected: PostgreSQL copies only a database nobody uses
    made = _TEMPLATES[key] = _Template(root / "instance", url, cast, city)
    return made


def make_world(
    tmp_path: Path,
    city: dict[str, Any],
    executor: str,
    *,
    raise_server_exceptions: bool = True,
    postgresql: bool = False,
    **settings: Any,
) -> Iterator[World]:
    """A populated instance; `settings` override the test defaults above; `postgresql`: its
    database on the suite's PostgreSQL server (else SQLite). It is a copy of a template made
    once per kind of instance (files and database), which is the same as made afresh at a
    fraction of the cost. Made afresh where the test prepared the directory and its database
    (`database_url`) itself."""
    data_dir = tmp_path / "instance"
    chosen = {**WORLD_DEFAULTS, **settings, "executor": executor, "data_dir": data_dir}
    copied = None
    if "database_url" not in settings:
        if postgresql:
            require_server()
        made = _template(city, postgresql, settings)
        shutil.copytree(made.data_dir, data_dir)
        if made.database_url:
            copied = chosen["database_url"] = create_database(made.database_url)
        ctx = open_instance(Settings(**chosen))
        # Keys are shared (they are never changed); the principals' records are the test's own.
        cast = {k: copy.deepcopy(v) if isinstance(v, dict) else v for k, v in made.cast.items()}
    else:
        ctx, bureau = bootstrap(Settings(**chosen))
        cast = None
    try:
        with TestClient(
            create_app(context=ctx), raise_server_exceptions=raise_server_exceptions
        ) as client:
            if cast is None:
                cast = _populate(client, bureau, city)
            yield World(client, ctx, **cast)
    finally:
        ctx.close()
        if copied:
            drop_database(copied)
        if executor == "ray" and ctx.gate_handle is not None:
            # The gate is a detached actor, made to outlive any one process of its instance;
            # this instance is gone, and a run makes hundreds.
            import ray

            ray.kill(ctx.gate_handle)


@pytest.fixture
def world(tmp_path: Path, city: dict[str, Any], ray_local: None) -> Iterator[World]:
    """An instance whose jobs run on the real local Ray."""
    yield from make_world(tmp_path, city, "ray")


@pytest.fixture
def jobs_started(monkeypatch: pytest.MonkeyPatch) -> queue.Queue[str]:
    """Each job's id as the service marks it running (in this process, whichever executor)."""
    started: queue.Queue[str] = queue.Queue()
    mark_running = execution.mark_running

    def spy(ctx: Context, job_id: str) -> bool:
        started_now = mark_running(ctx, job_id)
        if started_now:
            started.put(job_id)
        return started_now

    monkeypatch.setattr(execution, "mark_running", spy)
    return started


@pytest.fixture(params=BACKENDS)
def local_world(
    tmp_path: Path, city: dict[str, Any], request: pytest.FixtureRequest
) -> Iterator[World]:
    """An instance whose jobs run in-process (fast; for HTTP behaviour that is not about Ray),
    on each database the suite runs on."""
    yield from make_world(tmp_path, city, "local", postgresql=request.param == "postgresql")
