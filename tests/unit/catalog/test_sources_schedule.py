"""A dataset's source and its schedule, without a database: what a source may say (never a
password), how password references resolve, how a source is described, and when the next
pull is due. Pulls from real servers are in tests/system/test_sources.py."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from sandbox.catalog.schedule import Schedule
from sandbox.catalog.sources import describe, parse_source, resolve_password, stream
from sandbox.errors import IngestError, SourceError

URL = "postgresql+psycopg://reader@db.example:5432/hr"
SECRET = "S3cr%t@:/#?中"


def source(**fields: Any) -> dict[str, Any]:
    return {"url": URL, "table": "public.residents", **fields}


def refused(raw: object) -> str:
    with pytest.raises(IngestError) as info:
        parse_source(raw)
    assert type(info.value) is IngestError and info.value.code == "ingest_failed"
    return info.value.message


# --- the source ----------------------------------------------------------------------------


def test_a_source_with_defaults() -> None:
    spec = parse_source(source())
    assert (spec.url, spec.table, spec.query, spec.password_ref) == (
        URL,
        "public.residents",
        None,
        None,
    )
    assert (spec.mode, spec.schedule, spec.batch_rows) == ("replace", None, 50_000)


def test_a_source_is_frozen() -> None:
    spec = parse_source(source())
    with pytest.raises(ValueError):
        spec.table = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("url", "normal"),
    [
        ("postgresql://reader@db.example/hr", "postgresql+psycopg://reader@db.example/hr"),
        ("mysql://reader@10.0.0.5:3306/civil", "mysql+pymysql://reader@10.0.0.5:3306/civil"),
        ("mariadb://reader@10.0.0.5/civil", "mariadb+pymysql://reader@10.0.0.5/civil"),
        (" mysql+pymysql://reader@10.0.0.5/civil ", "mysql+pymysql://reader@10.0.0.5/civil"),
    ],
)
def test_a_url_without_a_driver_gets_the_one_the_service_ships(url: str, normal: str) -> None:
    assert parse_source(source(url=url)).url == normal


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql+psycopg://reader:{SECRET}@db.example:5432/hr",
        "mysql+pymysql://reader:hunter2@10.0.0.5:3306/civil",
        "postgresql://reader:@db.example/hr",
        "postgresql://reader@db.example/hr?password=hunter2",
        "postgresql://reader@db.example/hr?passfile=/tmp/p",
    ],
)
def test_a_password_in_the_url_is_refused_without_being_repeated(url: str) -> None:
    message = refused(source(url=url))
    assert message.startswith("source: url: the URL contains a password")
    assert "password_ref" in message and "env:NAME" in message and "file:/" in message
    for secret in (SECRET, "hunter2", "/tmp/p"):
        assert secret not in message


def test_the_model_itself_never_repeats_its_input() -> None:
    from pydantic import ValidationError

    from sandbox.catalog.sources import SourceSpec

    with pytest.raises(ValidationError) as info:
        SourceSpec.model_validate(source(url=f"postgresql://reader:{SECRET}@db/hr"))
    assert SECRET not in str(info.value)
    assert SECRET not in repr(info.value.errors(include_input=False))


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"url": "sqlite:///x.db"}, "source: url: the connector reads PostgreSQL through psycopg"),
        ({"url": "postgresql+psycopg2://r@h/db"}, "not postgresql+psycopg2://"),
        ({"url": "db.example:5432/hr"}, "source: url: not a database URL; write it as"),
        ({"url": "postgresql://reader@db.example"}, "the URL names no database; end it with"),
        ({"password_ref": "HR_PASSWORD"}, "source: password_ref: write 'env:NAME'"),
        ({"password_ref": "file:relative/pw"}, "'file:/absolute/path'"),
        ({"password_ref": "env:1BAD"}, "write 'env:NAME'"),
        ({"table": '"public"."x"'}, "source: table: write the table as NAME or SCHEMA.NAME"),
        ({"table": "a.b.c"}, "NAME or SCHEMA.NAME"),
        ({"table": "a."}, "NAME or SCHEMA.NAME"),
        ({"table": "public.residents", "query": "SELECT 1"}, "source: give either table"),
        ({"table": None}, "source: give table (a table to read whole) or query"),
        ({"table": None, "query": "DELETE FROM x"}, "source: query: the query must be one SELECT"),
        ({"table": None, "query": "SELECT 1; DROP TABLE x"}, "no ';' inside it"),
        ({"mode": "merge"}, "source: mode: Input should be 'replace' or 'append'"),
        ({"batch_rows": 10}, "source: batch_rows: Input should be greater than or equal to 1000"),
        ({"batch_rows": 2_000_000}, "(rows per batch, 1000 to 1000000)"),
        ({"schedule": "nightly"}, "source: schedule: schedule 'nightly' is not understood"),
        ({"passwd": "x"}, "source: passwd: unknown field; the fields of a source are url,"),
        ({"url": None}, "source: url: Input should be a valid string"),
    ],
)
def test_a_bad_source_names_the_field_and_the_fix(fields: dict[str, Any], fragment: str) -> None:
    assert fragment in refused(source(**fields))


def test_a_missing_url_and_a_source_that_is_not_an_object() -> None:
    assert refused({"table": "t"}) == f"source: url: missing (e.g. {URL})"
    assert (
        refused(["not", "an", "object"]) == "source: must be an object with url, and table or query"
    )


@pytest.mark.parametrize(
    ("query", "kept"),
    [
        ("  select 1 as n ; ", "select 1 as n"),
        ("WITH a AS (SELECT 1) SELECT * FROM a", "WITH a AS (SELECT 1) SELECT * FROM a"),
        (
            "-- residents\n/* all */ SELECT 区县 FROM 常住人口",
            "-- residents\n/* all */ SELECT 区县 FROM 常住人口",
        ),
        (
            "SELECT 'a;b' AS x, \"c;d\" -- ;\nFROM `e;f`",
            "SELECT 'a;b' AS x, \"c;d\" -- ;\nFROM `e;f`",
        ),
    ],
)
def test_a_query_is_one_select(query: str, kept: str) -> None:
    assert parse_source(source(table=None, query=query)).query == kept


def test_a_table_may_be_named_in_chinese_and_a_schedule_is_kept_in_its_canonical_form() -> None:
    spec = parse_source(source(table=" 人口 . 常住人口 ", schedule="Daily 2:00", mode="append"))
    assert (spec.table, spec.schedule, spec.mode) == (
        "人口.常住人口",
        "daily 02:00 Asia/Shanghai",
        "append",
    )


def test_describe_names_the_table_or_a_digest_of_the_query_never_a_password() -> None:
    assert describe(parse_source(source())) == f"{URL} table public.residents"
    first = describe(parse_source(source(table=None, query="SELECT 区县 FROM 常住人口")))
    again = describe(parse_source(source(table=None, query="SELECT 区县 FROM 常住人口 ")))
    other = describe(parse_source(source(table=None, query="SELECT 1")))
    assert first.startswith(f"{URL} query sha256:") and len(first.rsplit(":", 1)[1]) == 16
    assert first == again != other and "常住人口" not in first


# --- password references -------------------------------------------------------------------


def test_an_environment_variable_gives_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SANDBOX_TEST_SOURCE_PW", SECRET)
    assert resolve_password("env:SANDBOX_TEST_SOURCE_PW") == SECRET


@pytest.mark.parametrize(("value", "said"), [(None, "not set"), ("", "empty")])
def test_a_missing_or_empty_variable_is_said(
    monkeypatch: pytest.MonkeyPatch, value: str | None, said: str
) -> None:
    if value is None:
        monkeypatch.delenv("SANDBOX_TEST_SOURCE_PW", raising=False)
    else:
        monkeypatch.setenv("SANDBOX_TEST_SOURCE_PW", value)
    with pytest.raises(SourceError, match=f"SANDBOX_TEST_SOURCE_PW is {said} in the service's"):
        resolve_password("env:SANDBOX_TEST_SOURCE_PW")


def _password_file(tmp_path: Path, mode: int, text: str = SECRET + "\n") -> Path:
    path = tmp_path / "hr.password"
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return path


def test_a_file_only_its_owner_can_read_gives_the_password(tmp_path: Path) -> None:
    # The line break an editor leaves is not part of it; other whitespace is.
    path = _password_file(tmp_path, 0o600, f" {SECRET}\r\n")
    assert resolve_password(f"file:{path}") == f" {SECRET}"
    assert resolve_password(f"file:{_password_file(tmp_path, 0o400)}") == SECRET


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_a_file_others_can_read_is_refused(tmp_path: Path, mode: int) -> None:
    path = _password_file(tmp_path, mode)
    with pytest.raises(SourceError) as info:
        resolve_password(f"file:{path}")
    message = info.value.message
    assert f"group or others may use it (mode {mode:04o})" in message
    assert f"chmod 600 {path}" in message and SECRET not in message


def test_a_file_another_user_owns_is_refused(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("giving a file to another user needs root")
    path = _password_file(tmp_path, 0o600)
    os.chown(path, 65534, 65534)  # nobody
    with pytest.raises(SourceError, match="owned by another user \\(uid 65534\\)"):
        resolve_password(f"file:{path}")


def test_a_link_a_missing_file_and_an_empty_one_are_refused(tmp_path: Path) -> None:
    target = _password_file(tmp_path, 0o600)
    link = tmp_path / "link"
    link.symlink_to(target)
    with pytest.raises(SourceError, match="not a link"):
        resolve_password(f"file:{link}")
    with pytest.raises(SourceError, match="cannot be opened"):
        resolve_password(f"file:{tmp_path / 'absent'}")
    with pytest.raises(SourceError, match="empty"):
        resolve_password(f"file:{_password_file(tmp_path, 0o600, chr(10))}")


def test_a_pull_with_an_unsafe_password_file_stops_before_connecting(tmp_path: Path) -> None:
    path = _password_file(tmp_path, 0o644)
    # The host does not exist: the refusal must come before any attempt to reach it.
    spec = parse_source(
        {
            "url": "postgresql://reader@nohost.invalid/hr",
            "table": "t",
            "password_ref": f"file:{path}",
        }
    )
    with pytest.raises(SourceError, match="chmod 600"):
        next(stream(spec))


# --- the schedule --------------------------------------------------------------------------


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("daily 02:00 Asia/Shanghai", "daily 02:00 Asia/Shanghai"),
        ("daily 2:00", "daily 02:00 Asia/Shanghai"),
        ("hourly", "hourly Asia/Shanghai"),
        ("  HOURLY   UTC ", "hourly UTC"),
        ("weekly mon 03:30 Asia/Shanghai", "weekly mon 03:30 Asia/Shanghai"),
        ("weekly Sunday 23:59", "weekly sun 23:59 Asia/Shanghai"),
        ("every 6h", "every 6h Asia/Shanghai"),
        ("every 24h Europe/Berlin", "every 24h Europe/Berlin"),
        ("every 15m", "every 15m Asia/Shanghai"),
    ],
)
def test_schedule_forms(text: str, canonical: str) -> None:
    assert str(Schedule.parse(text)) == canonical


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "the schedule is empty; accepted forms: 'hourly', 'daily HH:MM', 'weekly mon HH:MM'"),
        ("nightly", "schedule 'nightly' is not understood; accepted forms: 'hourly'"),
        ("daily", "is not understood; accepted forms"),
        ("daily 02:00 Asia/Shanghai extra", "is not understood"),
        ("daily 25:00", "'25:00' in the schedule is not a time of day; write HH:MM"),
        ("daily 02:60", "not a time of day"),
        (
            "weekly someday 03:00",
            "'someday' in the schedule is not a day of the week; use one of mon",
        ),
        (
            "every 5h",
            "'every 5h' is not a step the schedule takes: use 'every Nh' with N one of 1, 2",
        ),
        ("every 7m", "'every Nm' with N one of 5, 10, 15, 20, 30"),
        ("every 0h", "is not a step"),
        (
            "daily 02:00 Asia/Shangai",
            "unknown time zone 'Asia/Shangai' in the schedule; use an IANA",
        ),
        ("hourly ../../etc/passwd", "unknown time zone"),
    ],
)
def test_a_bad_schedule_lists_what_is_accepted(text: str, fragment: str) -> None:
    with pytest.raises(IngestError) as info:
        Schedule.parse(text)
    assert fragment in info.value.message


@pytest.mark.parametrize(
    ("text", "after", "due"),
    [
        # 02:00 in Shanghai (UTC+8) is 18:00Z the day before.
        ("daily 02:00 Asia/Shanghai", "2026-12-05T18:30Z", "2026-12-06T18:00Z"),
        ("daily 02:00 Asia/Shanghai", "2026-12-05T17:59Z", "2026-12-05T18:00Z"),
        ("daily 02:00 Asia/Shanghai", "2026-12-05T18:00Z", "2026-12-06T18:00Z"),  # strictly after
        ("daily 02:00", "2026-12-31T20:00Z", "2027-01-01T18:00Z"),  # over a year's end
        ("daily 23:30 UTC", "2026-02-28T23:31Z", "2026-03-01T23:30Z"),
        ("hourly", "2026-12-05T18:30Z", "2026-12-05T19:00Z"),
        ("hourly", "2026-12-05T23:59:59Z", "2026-12-06T00:00Z"),
        ("hourly Asia/Kolkata", "2026-12-05T18:31Z", "2026-12-05T19:30Z"),  # UTC+5:30
        ("every 6h", "2026-12-05T18:30Z", "2026-12-05T22:00Z"),  # 06:00 Shanghai
        ("every 6h", "2026-12-05T22:00Z", "2026-12-06T04:00Z"),  # 12:00 Shanghai
        ("every 15m UTC", "2026-12-05T18:30:00.000001Z", "2026-12-05T18:45Z"),
        # 2026-12-05 is a Saturday: Monday 03:30 Shanghai is Sunday 19:30Z.
        ("weekly mon 03:30 Asia/Shanghai", "2026-12-05T18:30Z", "2026-12-06T19:30Z"),
        ("weekly mon 03:30 Asia/Shanghai", "2026-12-06T19:30Z", "2026-12-13T19:30Z"),
        ("weekly sun 23:00 Asia/Shanghai", "2026-12-06T14:59Z", "2026-12-06T15:00Z"),
    ],
)
def test_next_after(text: str, after: str, due: str) -> None:
    got = Schedule.parse(text).next_after(at(after))
    assert got == at(due) and got.tzinfo is UTC


def test_next_after_takes_any_aware_time_and_refuses_a_naive_one() -> None:
    schedule = Schedule.parse("daily 02:00 Asia/Shanghai")
    shanghai = at("2026-12-06T02:30+08:00")
    assert schedule.next_after(shanghai) == at("2026-12-06T18:00Z")
    with pytest.raises(ValueError, match="aware"):
        schedule.next_after(datetime(2026, 12, 6, 2, 30))


def test_summer_time_a_skipped_slot_runs_late_and_a_repeated_one_once() -> None:
    # Berlin: 2026-03-29 02:00 CET → 03:00 CEST; 2026-10-25 03:00 CEST → 02:00 CET.
    daily = Schedule.parse("daily 02:30 Europe/Berlin")
    assert daily.next_after(at("2026-03-28T12:00Z")) == at("2026-03-29T01:30Z")  # 03:30 CEST
    assert daily.next_after(at("2026-10-24T12:00Z")) == at("2026-10-25T00:30Z")  # the first 02:30
    assert daily.next_after(at("2026-10-25T00:30Z")) == at("2026-10-26T01:30Z")


def test_summer_time_hourly_runs_every_hour_that_happens() -> None:
    hourly = Schedule.parse("hourly Europe/Berlin")

    def runs(start: str, count: int) -> list[datetime]:
        out, moment = [], at(start)
        for _ in range(count):
            moment = hourly.next_after(moment)
            out.append(moment)
        return out

    hour = timedelta(hours=1)
    autumn = runs("2026-10-24T22:30Z", 6)  # 02:00 local happens twice: both run
    assert autumn == [at("2026-10-24T23:00Z") + i * hour for i in range(6)]
    spring = runs("2026-03-28T22:30Z", 5)  # 02:00 local never happens: no extra run
    assert spring == [at("2026-03-28T23:00Z") + i * hour for i in range(5)]


def test_a_failed_pull_is_an_ingest_error_of_its_own_code() -> None:
    from sandbox.records.failures import status_of

    error = SourceError("could not connect to PostgreSQL database 'hr' on db.example:5432")
    assert isinstance(error, IngestError) and error.code == "source_failed"
    assert status_of(error) == 400
