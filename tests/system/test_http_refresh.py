"""Datasets mounted from a department's database, over HTTP, against real PostgreSQL and
MariaDB servers: a pull on command publishes a version read through the pipeline; a failed
pull changes nothing and is recorded, logged and shown to the bureau and the department; the
password is referenced, never stored or logged; a scheduled pull runs once when due."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pytest
from conftest import World
from databases import department_database
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from sandbox.common import clock
from sandbox.records import refresh
from sandbox.store.models import DatasetRefresh, DatasetSource
from tests.factories import parquet_bytes
from tests.waiting import wait_until

PASSWORD_ENV = "SANDBOX_TEST_PULL_PASSWORD"
DISTRICTS = ["城关区", "七里河区", "安宁区", "西固区"]
COLUMNS = {
    "居民编号": {"role": "identifier"},
    "区县": {"role": "attribute"},
    "月收入": {"role": "sensitive", "lower": 0, "upper": 100000},
}
GRANTS = {"人口接口": {"区县": ["group_by", "filter"], "月收入": ["aggregate"]}}
BY_DISTRICT = 'emit("r", table("人口接口").group_by("区县").agg(n=count()).collect())\n'


@dataclass(frozen=True)
class Source:
    backend: str
    admin: str
    reader: str  # without its password
    password: str


def _rows(n: int) -> list[dict[str, Any]]:
    return [
        {"居民编号": f"R{i:06d}", "区县": DISTRICTS[i % 4], "月收入": 3000 + i} for i in range(n)
    ]


def _sql(url: str, *statements: str) -> None:
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as c:
            for s in statements:
                c.execution_options(no_parameters=True).exec_driver_sql(s)
    finally:
        engine.dispose()


def _fill(source: Source, n: int) -> None:
    q = (lambda x: f'"{x}"') if source.backend == "postgresql" else (lambda x: f"`{x}`")
    values = ", ".join(f"('{r['居民编号']}', '{r['区县']}', {r['月收入']})" for r in _rows(n))
    _sql(
        source.admin,
        f"DELETE FROM {q('常住人口')}",
        f"INSERT INTO {q('常住人口')} ({q('居民编号')}, {q('区县')}, {q('月收入')}) VALUES {values}",
    )


@pytest.fixture(params=["postgresql", "mariadb"])
def source(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Source]:
    backend: str = request.param
    with department_database(backend) as admin:
        user = f"puller_{uuid.uuid4().hex[:8]}"
        password = f"Pw:{uuid.uuid4().hex[:10]}@口令"
        database = make_url(admin).database
        if backend == "postgresql":
            _sql(
                admin,
                'CREATE TABLE "常住人口" ("居民编号" text, "区县" text, "月收入" integer)',
                f"CREATE ROLE {user} LOGIN PASSWORD '{password}'",
                f'GRANT SELECT ON "常住人口" TO {user}',
            )
            drop: tuple[str, ...] = (f"DROP OWNED BY {user}", f"DROP ROLE {user}")
        else:
            _sql(
                admin,
                "CREATE TABLE `常住人口` (`居民编号` varchar(20), `区县` varchar(20), `月收入` int)"
                " CHARACTER SET utf8mb4",
                f"CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'",
                f"GRANT SELECT ON `{database}`.`常住人口` TO '{user}'@'%'",
            )
            drop = (f"DROP USER '{user}'@'%'",)
        monkeypatch.setenv(PASSWORD_ENV, password)
        try:
            reader = make_url(admin).set(username=user, password=None)
            yield Source(backend, admin, reader.render_as_string(hide_password=False), password)
        finally:
            _sql(admin, *drop)


def _register(w: World, n: int = 40) -> None:
    r = w.client.post(
        "/v1/datasets",
        headers=w.h(w.bureau),
        files={"file": ("x.parquet", parquet_bytes(pa.Table.from_pylist(_rows(n))))},
        data={
            "meta": json.dumps(
                {
                    "name": "人口接口",
                    "title": "常住人口（接口）",
                    "provider_id": w.provider["id"],
                    "level": "L2",
                    "columns": COLUMNS,
                },
                ensure_ascii=False,
            )
        },
    )
    assert r.status_code == 201, r.text


def _set_source(w: World, source: Source, **extra: Any) -> Any:
    return w.client.put(
        "/v1/datasets/人口接口/source",
        headers=w.h(w.provider),
        json={
            "url": source.reader,
            "password_ref": f"env:{PASSWORD_ENV}",
            "table": "常住人口",
            **extra,
        },
    )


def _pulls(w: World, who: str | dict[str, Any] | None = None) -> list[dict[str, Any]]:
    r = w.client.get("/v1/datasets/人口接口/refreshes", headers=w.h(who or w.bureau))
    assert r.status_code == 200, r.text
    return r.json()["refreshes"]  # type: ignore[no-any-return]


def _log(w: World) -> str:
    r = w.client.get("/v1/ledger/entries", headers=w.h(w.regulator))
    return json.dumps(r.json(), ensure_ascii=False)


def test_a_pull_publishes_a_version_that_jobs_read(local_world: World, source: Source) -> None:
    w = local_world
    _register(w)
    _fill(source, 1200)
    r = _set_source(w, source)
    assert r.status_code == 200, r.text
    assert r.json()["password_ref"] == f"env:{PASSWORD_ENV}"
    started = w.client.post("/v1/datasets/人口接口/refresh", headers=w.h(w.provider))
    assert started.status_code == 202, started.text
    assert started.json()["status"] in ("running", "published")
    wait_until(lambda: _pulls(w)[0]["status"] != "running", timeout=60)
    pull = _pulls(w)[0]
    assert (pull["status"], pull["version"], pull["rows"]) == ("published", 2, 1200), pull
    history = w.client.get("/v1/datasets/人口接口/versions", headers=w.h(w.bureau)).json()
    assert history["versions"][0]["source"] == "connector"
    cid = w.active_contract(GRANTS)
    job = w.run(cid, BY_DISTRICT).json()
    assert job["status"] == "succeeded", job
    assert job["versions"] == {"人口接口": 2}
    assert sorted(row[0] for row in job["outputs"]["r"]["rows"]) == sorted(DISTRICTS)
    assert sum(row[1] for row in job["outputs"]["r"]["rows"]) == 1200
    # The password is nowhere: not in the source as stored, not in the log.
    with w.ctx.reading() as s:
        stored = s.get(DatasetSource, "人口接口")
        assert stored is not None
        assert source.password not in json.dumps(refresh.source_json(stored), ensure_ascii=False)
    assert source.password not in _log(w)


def test_a_failed_pull_changes_nothing_and_is_recorded_logged_and_shown(
    local_world: World, source: Source
) -> None:
    w = local_world
    _register(w)
    assert _set_source(w, source, table="没有这张表").status_code == 200
    done = refresh.refresh(w.ctx, None, "人口接口", "command")
    assert done["status"] == "failed" and "没有这张表" in done["error"], done
    assert source.password not in done["error"]
    assert w.client.get("/v1/datasets/人口接口", headers=w.h(w.bureau)).json()["version"] == 1
    for who in (w.bureau, w.provider):
        assert _pulls(w, who)[0]["status"] == "failed"
    r = w.client.get("/v1/datasets/人口接口/refreshes", headers=w.h(w.operator))
    assert r.status_code == 403
    assert "dataset.refresh_failed" in _log(w)
    assert not any(p.name.startswith(".tmp-") for p in w.ctx.settings.datasets_dir.iterdir())


def test_a_wrong_password_fails_the_pull_without_saying_the_password(
    local_world: World, source: Source, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = local_world
    _register(w)
    _fill(source, 100)
    assert _set_source(w, source).status_code == 200
    if source.backend == "postgresql":
        pytest.skip("the local PostgreSQL trusts every connection from 127.0.0.1")
    monkeypatch.setenv(PASSWORD_ENV, source.password + "-wrong")
    done = refresh.refresh(w.ctx, None, "人口接口", "command")
    assert done["status"] == "failed"
    assert source.password not in done["error"] and source.password not in _log(w)


def test_a_password_in_the_url_is_refused_before_anything_is_kept(
    local_world: World, source: Source
) -> None:
    w = local_world
    _register(w)
    with_password = make_url(source.reader).set(password=source.password)
    r = w.client.put(
        "/v1/datasets/人口接口/source",
        headers=w.h(w.bureau),
        json={"url": with_password.render_as_string(hide_password=False), "table": "常住人口"},
    )
    assert r.status_code == 400 and "password_ref" in r.json()["error"]
    assert source.password not in r.text
    assert w.client.get("/v1/datasets/人口接口/source", headers=w.h(w.bureau)).status_code == 404


def test_a_scheduled_pull_runs_once_when_due_and_appends(
    local_world: World, source: Source
) -> None:
    w = local_world
    _register(w, 40)
    _fill(source, 40)
    _sql(
        source.admin,
        "UPDATE "
        + ('"常住人口" SET "居民编号" = \'N\' || "居民编号"' if source.backend == "postgresql"
           else "`常住人口` SET `居民编号` = CONCAT('N', `居民编号`)"),
    )  # fmt: skip
    r = _set_source(w, source, mode="append", schedule="daily 02:00 Asia/Shanghai")
    assert r.status_code == 200, r.text
    due = dt.datetime.fromisoformat(r.json()["next_run_at"].replace("Z", "+00:00"))
    assert (due.hour, due.minute) == (18, 0)  # 02:00 in Beijing
    assert refresh.run_due(w.ctx, due - dt.timedelta(minutes=1)) == []
    done = refresh.run_due(w.ctx, due + dt.timedelta(seconds=1))
    assert [(d["status"], d["rows"], d["trigger"]) for d in done] == [("published", 80, "schedule")]
    # Claimed: the same moment again runs nothing, and the next run is a day later.
    assert refresh.run_due(w.ctx, due + dt.timedelta(seconds=1)) == []
    with w.ctx.reading() as s:
        row = s.get(DatasetSource, "人口接口")
        assert row is not None and row.next_run_at == clock.stored(due + dt.timedelta(days=1))
    published = [
        e
        for e in json.loads(_log(w))["entries"]
        if e["event"]["type"] == "dataset.version_published"
    ]
    assert published[-1]["event"]["actor"] is None


def test_a_pull_left_running_by_a_stopped_process_is_failed_and_nothing_changed(
    local_world: World,
) -> None:
    w = local_world
    with w.ctx.transaction() as s:
        s.add(
            DatasetRefresh(
                dataset="population",
                trigger="schedule",
                status="running",
                started_at=clock.stored(clock.now()),
                runner="gone-runner",
            )
        )
        s.add(
            DatasetRefresh(
                dataset="population",
                trigger="console",
                status="running",
                started_at=clock.stored(clock.now()),
                runner=w.ctx.runner_id(),
            )
        )
    assert refresh.recover(w.ctx) == 1
    pulls = {p["trigger"]: p for p in refresh.history(w.ctx, _bureau(w), "population")}
    assert pulls["schedule"]["status"] == "failed"
    assert "the service stopped while this pull was under way" in pulls["schedule"]["error"]
    assert pulls["console"]["status"] == "running"  # this process's own, still under way
    assert w.client.get("/v1/datasets/population", headers=w.h(w.bureau)).json()["version"] == 1


def _bureau(w: World) -> Any:
    from sandbox.records.principals import authenticate

    return authenticate(w.ctx, w.bureau)
