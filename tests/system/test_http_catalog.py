"""The catalog over HTTP: uploads (CSV with Chinese names, Parquet), refusals that leave
nothing behind, and listings that show shape and policy, never values."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import World
from factories import parquet_bytes
from httpx import Response

from sandbox.catalog.encryption import decryption_for as decrypt

SURVEY_CSV = (
    "区县,性别,年龄,月收入\n"
    "城关区,男,34,5200\n"
    "湖滨区,女,61,3100\n"
    "城关区,女,45,7300\n"
    "北山区,男,70,2100\n"
).encode()
SURVEY_POLICY = {
    "区县": {"role": "attribute"},
    "性别": {"role": "quasi_identifier"},
    "年龄": {"role": "quasi_identifier", "lower": 0, "upper": 120},
    "月收入": {"role": "sensitive", "lower": 0, "upper": 100000},
}
SURVEY_VALUES = ("城关区", "湖滨区", "北山区", "5200", "7300")


def upload(
    w: World,
    name: str,
    data: bytes,
    filename: str = "data.csv",
    columns: dict[str, Any] | None = None,
    provider_id: str | None = None,
    level: str = "L2",
    token: str | None = None,
) -> Response:
    meta = {
        "name": name,
        "title": "居民抽样调查",
        "level": level,
        "provider_id": provider_id or w.provider["id"],
        "columns": columns or SURVEY_POLICY,
    }
    return w.client.post(
        "/v1/datasets",
        headers=w.h(token or w.bureau),
        files={"file": (filename, data)},
        data={"meta": json.dumps(meta, ensure_ascii=False)},
    )


def catalog(w: World) -> Any:
    r = w.client.get("/v1/datasets", headers=w.h(w.operator))
    assert r.status_code == 200
    return r.json()


def ledger_size(w: World) -> int:
    return int(w.client.get("/v1/ledger/checkpoint", headers=w.h(w.bureau)).json()["size"])


def dataset_files(w: World) -> list[Path]:
    return sorted(w.ctx.settings.datasets_dir.rglob("*"))


def test_csv_with_chinese_columns_is_registered(local_world: World) -> None:
    w = local_world
    r = upload(w, "居民抽样", SURVEY_CSV)
    assert r.status_code == 201, r.text
    info = r.json()
    assert info["name"] == "居民抽样" and info["title"] == "居民抽样调查"
    assert info["row_count"] == 4 and info["level"] == "L2"
    assert info["provider_id"] == w.provider["id"]
    assert [(c["name"], c["type"], c["role"]) for c in info["columns"]] == [
        ("区县", "string", "attribute"),
        ("性别", "string", "quasi_identifier"),
        ("年龄", "int64", "quasi_identifier"),
        ("月收入", "int64", "sensitive"),
    ]
    assert info["columns"][3]["upper"] == 100000
    assert (w.ctx.settings.datasets_dir / "居民抽样").is_dir()
    # The catalog lists it by name for everyone, and never shows a value.
    assert "居民抽样" in [d["name"] for d in catalog(w)["datasets"]]
    one = w.client.get("/v1/datasets/居民抽样", headers=w.h(w.regulator))
    assert one.status_code == 200 and one.json() == info
    for value in SURVEY_VALUES:
        assert value not in one.text


def test_chinese_dataset_is_usable_end_to_end(local_world: World) -> None:
    """Contract over Chinese column names; the released table keeps Chinese values."""
    w = local_world
    rows = "".join(
        f"{'城关区' if i % 3 else '湖滨区'},{'男' if i % 2 else '女'},{20 + i % 50},"
        f"{3000 + 10 * i}\n"
        for i in range(120)
    )
    assert upload(w, "居民抽样", ("区县,性别,年龄,月收入\n" + rows).encode()).status_code == 201
    cid = w.active_contract({"居民抽样": {"区县": ["group_by"], "月收入": ["aggregate"]}})
    r = w.run(
        cid,
        'emit("各区", table("居民抽样").group_by("区县")'
        '.agg(人数=count(), 平均收入=mean("月收入")).collect())',
    )
    job = r.json()
    assert job["status"] == "succeeded", job["error"]
    out = job["outputs"]["各区"]
    assert [c["name"] for c in out["columns"]] == ["区县", "人数", "平均收入"]
    assert {row[0]: row[1] for row in out["rows"]} == {"城关区": 80, "湖滨区": 40}


def test_catalog_shows_population_policy_without_values(local_world: World, city: Any) -> None:
    w = local_world
    (entry,) = catalog(w)["datasets"]
    pop = city["population"]
    assert entry["row_count"] == pop.table.num_rows
    assert entry["level"] == "L3"
    assert {c["name"]: c["role"] for c in entry["columns"]} == {
        name: policy["role"] for name, policy in pop.columns.items()
    }
    assert {c["name"]: c["type"] for c in entry["columns"]}["birth_date"] == "date32[day]"
    assert set(entry) == {
        "name",
        "title",
        "provider_id",
        "level",
        "row_count",
        "version",
        "columns",
        "registered_at",
        "as_of",
    }
    sample = pop.table.slice(0, 3).to_pylist()
    text = json.dumps(catalog(w), ensure_ascii=False)
    for row in sample:
        assert row["resident_id"] not in text and row["name"] not in text


def _bad_uploads(w: World) -> list[tuple[str, Response, int, str]]:
    good_provider = w.provider["id"]
    return [
        ("ragged csv", upload(w, "坏数据", b"a,b\n1,2,3\n"), 400, "ingest_failed"),
        (
            "not parquet",
            upload(w, "坏数据", b"PAR1 this is not parquet", "x.parquet"),
            400,
            "ingest_failed",
        ),
        (
            "not utf-8",
            upload(
                w, "坏数据", "区县\n城关区\n".encode("gbk"), columns={"区县": {"role": "attribute"}}
            ),
            400,
            "ingest_failed",
        ),
        ("empty file", upload(w, "坏数据", b""), 400, "ingest_failed"),
        (
            "header only",
            upload(w, "坏数据", "区县,性别,年龄,月收入\n".encode()),
            400,
            "ingest_failed",
        ),
        (
            "unknown column in policy",
            upload(
                w,
                "坏数据",
                SURVEY_CSV,
                columns={**SURVEY_POLICY, "身份证号": {"role": "identifier"}},
            ),
            400,
            "ingest_failed",
        ),
        (
            "column without role",
            upload(
                w,
                "坏数据",
                SURVEY_CSV,
                columns={k: v for k, v in SURVEY_POLICY.items() if k != "月收入"},
            ),
            400,
            "ingest_failed",
        ),
        (
            "unknown role",
            upload(w, "坏数据", SURVEY_CSV, columns={**SURVEY_POLICY, "区县": {"role": "secret"}}),
            400,
            "ingest_failed",
        ),
        (
            "bounds on text",
            upload(
                w,
                "坏数据",
                SURVEY_CSV,
                columns={**SURVEY_POLICY, "区县": {"role": "attribute", "lower": 0}},
            ),
            400,
            "ingest_failed",
        ),
        (
            "unknown provider",
            upload(w, "坏数据", SURVEY_CSV, provider_id="d-000000000000"),
            400,
            "ingest_failed",
        ),
        (
            "operator as provider",
            upload(w, "坏数据", SURVEY_CSV, provider_id=w.operator["id"]),
            400,
            "ingest_failed",
        ),
        ("bad name", upload(w, "1-坏", SURVEY_CSV), 400, "ingest_failed"),
        ("bad level", upload(w, "坏数据", SURVEY_CSV, level="L5"), 400, "ingest_failed"),
        (
            "duplicate name",
            upload(w, "population", SURVEY_CSV, provider_id=good_provider),
            409,
            "conflict",
        ),
        (
            "not bureau",
            upload(w, "坏数据", SURVEY_CSV, token=w.operator["token"]),
            403,
            "forbidden",
        ),
    ]


def test_refused_uploads_register_nothing(local_world: World) -> None:
    w = local_world
    listed, files, logged = catalog(w), dataset_files(w), ledger_size(w)
    for what, r, status, code in _bad_uploads(w):
        assert r.status_code == status, (what, r.text)
        body = r.json()
        assert body["code"] == code and body["status"] == status, (what, body)
        assert body["error"].strip(), (what, body)
    assert catalog(w) == listed
    assert dataset_files(w) == files
    assert ledger_size(w) == logged
    assert w.client.get("/v1/datasets/坏数据", headers=w.h(w.operator)).status_code == 404


@pytest.mark.parametrize(
    "what,columns,needle",
    [
        (
            "unknown column in policy",
            {**SURVEY_POLICY, "身份证号": {"role": "identifier"}},
            "身份证号",
        ),
        (
            "column without role",
            {k: v for k, v in SURVEY_POLICY.items() if k != "月收入"},
            "月收入",
        ),
    ],
)
def test_policy_errors_name_the_column(
    local_world: World, what: str, columns: dict[str, Any], needle: str
) -> None:
    r = upload(local_world, "坏数据", SURVEY_CSV, columns=columns)
    assert r.status_code == 400, r.text
    assert needle in r.json()["error"], what


def test_ingest_errors_carry_no_values(local_world: World) -> None:
    data = "区县,人数\n城关区,12\n湖滨区,十三,额外\n".encode()
    r = upload(
        local_world,
        "坏数据",
        data,
        columns={"区县": {"role": "attribute"}, "人数": {"role": "sensitive"}},
    )
    assert r.status_code == 400, r.text
    for value in ("城关区", "湖滨区", "十三", "额外"):
        assert value not in r.json()["error"]


def test_duplicate_keeps_the_first_dataset(local_world: World) -> None:
    w = local_world
    before = w.client.get("/v1/datasets/population", headers=w.h(w.operator)).json()
    r = w.ingest("population", pa.table({"x": [1, 2]}), "L1", {"x": {"role": "attribute"}})
    assert r.status_code == 409
    assert "population" in r.json()["error"]
    assert w.client.get("/v1/datasets/population", headers=w.h(w.operator)).json() == before
    parts = sorted((w.ctx.settings.datasets_dir / "population").glob("*.parquet"))
    assert len(parts) == 4  # 20 000 rows in partitions of 6 000
    assert (
        sum(pq.read_metadata(p, decryption_properties=decrypt(p)).num_rows for p in parts)
        == (before["row_count"])
    )


def test_parquet_upload_keeps_types(local_world: World) -> None:
    import datetime as dt

    w = local_world
    table = pa.table(
        {"街道": ["东关街道", "西湖街道"], "日期": [dt.date(2026, 1, 1)] * 2, "金额": [1.5, 2.5]}
    )
    r = w.client.post(
        "/v1/datasets",
        headers=w.h(w.bureau),
        files={"file": ("d.parquet", parquet_bytes(table))},
        data={
            "meta": json.dumps(
                {
                    "name": "街道台账",
                    "title": "街道台账",
                    "provider_id": w.provider["id"],
                    "level": "L1",
                    "columns": {
                        "街道": {"role": "attribute"},
                        "日期": {"role": "attribute"},
                        "金额": {"role": "sensitive"},
                    },
                },
                ensure_ascii=False,
            )
        },
    )
    assert r.status_code == 201, r.text
    assert [c["type"] for c in r.json()["columns"]] == ["string", "date32[day]", "double"]
