"""Versions of a dataset over HTTP: publishing (replace, append), jobs pinned to one snapshot,
schema changes checked against contracts, quality at every version, retention."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from conftest import World

from sandbox.common import clock
from sandbox.errors import VersionRetired
from sandbox.pipeline import execution
from sandbox.records import registry, versions
from sandbox.settings import Settings
from sandbox.store import backup, restore
from sandbox.store.models import DatasetVersion, Job
from tests.factories import parquet_bytes

COUNT_ALL = 'emit("r", table("population").agg(n=count()).collect())\n'


def post_version(
    w: World, table: pa.Table, who: str | dict[str, Any] | None = None, **meta: Any
) -> Any:
    return w.client.post(
        "/v1/datasets/population/versions",
        headers=w.h(who if who is not None else w.bureau),
        files={"file": ("population.parquet", parquet_bytes(table))},
        data={"meta": json.dumps(meta, ensure_ascii=False)},
    )


def job(w: World, cid: str, code: str) -> dict[str, Any]:
    r = w.run(cid, code)
    assert r.status_code in (201, 400, 403), r.text
    return r.json()  # type: ignore[no-any-return]


def entries(w: World, kind: str) -> list[dict[str, Any]]:
    r = w.client.get("/v1/ledger/entries", headers=w.h(w.regulator))
    assert r.status_code == 200, r.text
    return [
        {"subject": e["event"]["subject"], "body": e["event"]["data"]}
        for e in r.json()["entries"]
        if e["event"]["type"] == kind
    ]


def test_a_new_version_replaces_the_rows_and_jobs_record_the_version_they_read(
    local_world: World, city: Any
) -> None:
    w, pop = local_world, city["population"].table
    cid = w.active_contract()
    first = job(w, cid, COUNT_ALL)
    assert first["versions"] == {"population": 1}
    smaller = pop.slice(0, pop.num_rows - 500)
    r = post_version(w, smaller, mode="replace")
    assert r.status_code == 201, r.text
    body = r.json()
    assert (body["version"], body["mode"], body["row_count"]) == (2, "replace", smaller.num_rows)
    assert body["removed_columns"] == [] and body["affected_contracts"] == []
    second = job(w, cid, COUNT_ALL)
    assert second["versions"] == {"population": 2}
    assert w.client.get("/v1/datasets/population", headers=w.h(w.operator)).json()["version"] == 2
    # The log says which snapshot each job read.
    submitted = {e["subject"]: e["body"] for e in entries(w, "job.submitted")}
    assert submitted[first["id"]]["versions"] == {"population": 1}
    assert submitted[second["id"]]["versions"] == {"population": 2}
    published = entries(w, "dataset.version_published")
    assert [e["body"]["version"] for e in published] == [2]


def test_appending_adds_rows_and_keeps_the_old_files(local_world: World, city: Any) -> None:
    w, pop = local_world, city["population"].table
    extra = pop.slice(0, 3).to_pylist()
    for i, row in enumerate(extra):
        row["resident_id"] = f"99000019900101{i:04d}"
    r = post_version(w, pa.Table.from_pylist(extra, schema=pop.schema), mode="append")
    assert r.status_code == 201, r.text
    assert r.json()["row_count"] == pop.num_rows + 3
    history = w.client.get("/v1/datasets/population/versions", headers=w.h(w.bureau)).json()
    assert [v["version"] for v in history["versions"]] == [2, 1]
    assert history["versions"][0]["mode"] == "append"
    assert history["versions"][1]["superseded_at"] is not None


def test_appended_rows_must_have_the_same_columns(local_world: World, city: Any) -> None:
    w, pop = local_world, city["population"].table
    r = post_version(w, pop.slice(0, 3).drop(["income"]), mode="append")
    assert r.status_code == 400
    assert "appended rows must have the columns of the current version" in r.json()["error"]
    assert w.client.get("/v1/datasets/population", headers=w.h(w.bureau)).json()["version"] == 1
    assert not any(
        p.name.startswith(("population@", ".tmp-")) for p in w.ctx.settings.datasets_dir.iterdir()
    )


def test_a_new_column_must_be_declared_and_is_granted_by_no_contract(
    local_world: World, city: Any
) -> None:
    w, pop = local_world, city["population"].table
    cid = w.active_contract()
    wider = pop.append_column("学历", pa.array(["本科"] * pop.num_rows))
    r = post_version(w, wider, mode="replace")
    assert r.status_code == 400
    assert "column '学历' is new in this version; declare its role" in r.json()["error"]
    r = post_version(w, wider, mode="replace", columns={"学历": {"role": "attribute"}})
    assert r.status_code == 201, r.text
    assert r.json()["added_columns"] == ["学历"]
    refused = job(
        w, cid, 'emit("r", table("population").group_by("学历").agg(n=count()).collect())\n'
    )
    assert refused["status"] == "rejected" or refused.get("code") == "contract_scope", refused
    message = refused.get("error") if isinstance(refused.get("error"), str) else refused["error"]
    assert "学历" in json.dumps(message, ensure_ascii=False)


def test_a_removed_column_lists_the_contracts_it_affects_and_refuses_their_jobs_clearly(
    local_world: World, city: Any
) -> None:
    w, pop = local_world, city["population"].table
    cid = w.active_contract()
    r = post_version(w, pop.drop(["income"]), mode="replace")
    assert r.status_code == 201, r.text
    assert r.json()["removed_columns"] == ["income"]
    assert r.json()["affected_contracts"] == [cid]
    r = w.run(cid, 'emit("r", table("population").agg(t=sum("income")).collect())\n')
    body = r.json()
    text = json.dumps(body, ensure_ascii=False)
    assert "income" in text and "removed" in text and "version 2" in text, text
    # What no longer needs the column still runs.
    assert job(w, cid, COUNT_ALL)["status"] == "succeeded"


def test_only_the_bureau_and_the_owning_department_publish_and_see_quality(
    local_world: World, city: Any
) -> None:
    w, pop = local_world, city["population"].table
    r = post_version(w, pop, who=w.operator, mode="replace")
    assert r.status_code == 403
    r = post_version(w, pop.slice(0, 100), who=w.provider, mode="replace")
    assert r.status_code == 201, r.text
    assert r.json()["quality"]["rows"] == 100
    own = w.client.get("/v1/datasets/population/versions/2", headers=w.h(w.provider)).json()
    assert own["quality"]["rows"] == 100 and own["quality_status"] == "passed"
    seen = w.client.get("/v1/datasets/population/versions/2", headers=w.h(w.operator)).json()
    assert "quality" not in seen and "quality_status" not in seen
    listed = w.client.get("/v1/datasets/population/versions", headers=w.h(w.operator)).json()
    assert all("quality_status" not in v for v in listed["versions"])
    missing = w.client.get("/v1/datasets/population/versions/9", headers=w.h(w.bureau))
    assert missing.status_code == 404 and "GET /v1/datasets/population/versions" in missing.text


def test_declared_quality_rules_refuse_or_flag_a_version(local_world: World, city: Any) -> None:
    w, pop = local_world, city["population"].table
    r = w.client.put(
        "/v1/datasets/population/quality-rules",
        headers=w.h(w.provider),
        json={"not_null": ["income"], "unique": ["resident_id"], "on_failure": "refuse"},
    )
    assert r.status_code == 200, r.text
    incomes = pop.column("income").to_pylist()
    incomes[5] = None
    holed = pop.set_column(
        pop.schema.get_field_index("income"), "income", pa.array(incomes, pop["income"].type)
    )
    r = post_version(w, holed, mode="replace")
    assert r.status_code == 400 and r.json()["code"] == "quality_refused", r.text
    assert "income" in r.json()["error"] and "nothing changed" in r.json()["error"]
    assert w.client.get("/v1/datasets/population", headers=w.h(w.bureau)).json()["version"] == 1
    assert entries(w, "dataset.version_refused")[0]["body"]["version"] == 2
    # The same rules flagging instead: the version is published, its failures recorded.
    r = w.client.put(
        "/v1/datasets/population/quality-rules",
        headers=w.h(w.bureau),
        json={"not_null": ["income"], "on_failure": "flag"},
    )
    assert r.status_code == 200
    r = post_version(w, holed, mode="replace")
    assert r.status_code == 201, r.text
    assert r.json()["quality_status"] == "flagged"
    assert r.json()["quality"]["failures"][0]["column"] == "income"
    # A rule on a column the dataset does not have is refused with the columns it has.
    r = w.client.put(
        "/v1/datasets/population/quality-rules",
        headers=w.h(w.bureau),
        json={"not_null": ["收入"]},
    )
    assert r.status_code == 400 and "收入" in r.json()["error"]


def test_old_versions_are_retired_after_the_retention_unless_a_job_reads_them(
    local_world: World, city: Any
) -> None:
    w, pop = local_world, city["population"].table
    cid = w.active_contract()
    assert post_version(w, pop, mode="replace").status_code == 201
    assert post_version(w, pop.slice(10), mode="replace").status_code == 201
    base = w.ctx.settings.datasets_dir
    assert any((base / "population").glob("part-*.parquet"))
    later = clock.now() + dt.timedelta(days=w.ctx.settings.version_retention_days + 1)
    retired = versions.retire(w.ctx, later)
    assert sorted(retired) == [("population", 1), ("population", 2)]
    assert not any((base / "population").glob("part-*.parquet"))
    assert not (base / "population@2").exists() and (base / "population@3").exists()
    listed = w.client.get("/v1/datasets/population/versions", headers=w.h(w.bureau)).json()
    assert [v["retired_at"] is not None for v in listed["versions"]] == [False, True, True]
    assert job(w, cid, COUNT_ALL)["outputs"]["r"]["rows"][0][0] is not None
    assert [e["body"]["version"] for e in entries(w, "dataset.version_retired")] == [1, 2]


def test_a_retired_version_a_job_still_reads_fails_the_job_at_no_cost(
    local_world: World, city: Any
) -> None:
    w, pop = local_world, city["population"].table
    cid = w.active_contract()
    done = job(w, cid, COUNT_ALL)
    assert post_version(w, pop, mode="replace").status_code == 201
    with w.ctx.transaction() as s:
        s.get(DatasetVersion, ("population", 1)).retired_at = clock.stored(clock.now())  # type: ignore[union-attr]
        pinned = s.get(Job, done["id"])
        assert pinned is not None and pinned.versions == {"population": 1}
    w.ctx.catalog.clear()
    with w.ctx.reading() as s, pytest.raises(VersionRetired, match="submit the job again"):
        registry.get_many(w.ctx, s, ["population"], {"population": 1})


def test_a_backup_keeps_every_kept_version_and_restores_the_history_across_versions(
    local_world: World, city: Any, tmp_path: Path
) -> None:
    w, pop = local_world, city["population"].table
    cid = w.active_contract()
    district = str(pop.column("district")[0])
    code = (
        f'emit("r", table("population").filter(col("district") == "{district}")'
        '.agg(total=sum("income")).collect())\n'
    )
    assert job(w, cid, code)["outputs"]["r"]["rows"] != [[None]]
    target = next(r for r in pop.to_pylist() if r["district"] == district and r["income"])
    incomes = [
        r["income"] + 999 if r["resident_id"] == target["resident_id"] else r["income"]
        for r in pop.to_pylist()
    ]
    changed = pop.set_column(
        pop.schema.get_field_index("income"), "income", pa.array(incomes, pop["income"].type)
    )
    assert post_version(w, changed, mode="replace").json()["revised"] == 1
    if w.ctx.settings.resolved_database_url.startswith("postgresql"):
        pytest.skip("the restore below needs a database of its own")
    manifest = backup.take(w.ctx.settings, w.ctx.engine, tmp_path / "b")
    assert "population@2" in manifest.datasets and "population" in manifest.datasets
    assert "revisions.npz" in manifest.datasets["population@2"]
    assert "datasets/.entities/key" in manifest.files
    assert (tmp_path / "b" / "datasets" / ".entities" / "key").stat().st_mode & 0o077 == 0
    settings = Settings(data_dir=tmp_path / "restored", executor="local")
    restore.restore(tmp_path / "b", settings)
    key = settings.datasets_dir / ".entities" / "key"
    assert key.read_bytes() == (w.ctx.settings.datasets_dir / ".entities" / "key").read_bytes()
    assert key.stat().st_mode & 0o077 == 0
    assert (settings.datasets_dir / "population@2" / "revisions.npz").exists()


def test_a_job_submitted_before_a_new_version_reads_the_version_it_was_submitted_against(
    local_world: World, city: Any
) -> None:
    w, pop = local_world, city["population"].table
    cid = w.active_contract()
    before = job(w, cid, COUNT_ALL)
    assert post_version(w, pop.slice(0, 100), mode="replace").status_code == 201
    with w.ctx.reading() as s:
        row = s.get(Job, before["id"])
        assert row is not None
        spec = execution._spec(w.ctx, row, False)
    read = spec.datasets["population"]
    assert (read.version, read.row_count) == (1, pop.num_rows)
    assert all("/population/part-" in p for p in read.partitions)
    after = job(w, cid, COUNT_ALL)
    with w.ctx.reading() as s:
        row = s.get(Job, after["id"])
        assert row is not None
        assert execution._spec(w.ctx, row, False).datasets["population"].row_count == 100


def test_a_second_version_written_while_one_is_being_written_is_refused_and_harms_nothing(
    local_world: World, city: Any
) -> None:
    import fcntl

    w, pop = local_world, city["population"].table
    lock = w.ctx.settings.datasets_dir / ".publishing-population"
    with open(lock, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # another process writing version 2
        r = post_version(w, pop, mode="replace")
        fcntl.flock(held, fcntl.LOCK_UN)
    assert r.status_code == 409 and "being published right now" in r.json()["error"]
    assert not (w.ctx.settings.datasets_dir / "population@2").exists()
    assert post_version(w, pop, mode="replace").json()["version"] == 2


def test_each_version_says_the_date_its_data_describes(local_world: World, city: Any) -> None:
    w = local_world
    today = clock.now().date().isoformat()
    shown = w.client.get("/v1/datasets/population", headers=w.h(w.operator)).json()
    # Not declared at registration: the day it was registered.
    assert shown["as_of"] == today
    pop = city["population"].table
    r = post_version(w, pop, mode="replace", as_of="2025-12-31")
    assert r.status_code == 201, r.text
    shown = w.client.get("/v1/datasets/population", headers=w.h(w.operator)).json()
    assert (shown["version"], shown["as_of"]) == (2, "2025-12-31")
    # A version that declares none is dated the day it is published, not its predecessor's.
    assert post_version(w, pop, mode="replace").status_code == 201
    shown = w.client.get("/v1/datasets/population", headers=w.h(w.operator)).json()
    assert (shown["version"], shown["as_of"]) == (3, today)
    bad = post_version(w, pop, mode="replace", as_of="2025-13-01")
    assert bad.status_code == 400 and "as_of" in bad.json()["error"]


def test_a_dataset_registered_with_its_date_shows_it(local_world: World) -> None:
    w = local_world
    table = pa.table({"district": ["城关区"] * 20, "n": list(range(20))})
    meta = {
        "name": "街道统计",
        "title": "街道统计",
        "provider_id": w.provider["id"],
        "level": "L2",
        "columns": {"district": {"role": "attribute"}, "n": {"role": "attribute"}},
        "as_of": "2024-06-30",
    }
    r = w.client.post(
        "/v1/datasets",
        headers=w.h(w.bureau),
        files={"file": ("t.parquet", parquet_bytes(table))},
        data={"meta": json.dumps(meta, ensure_ascii=False)},
    )
    assert r.status_code == 201, r.text
    shown = w.client.get("/v1/datasets/街道统计", headers=w.h(w.operator)).json()
    assert shown["as_of"] == "2024-06-30"
