"""The service's log: one JSON object per line carrying the ids of the request, job, contract
and principal it concerns, and never a data value, token, key, job code or parameters,
whatever a client sends or a job does."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from live import Cast, active_contract, cast_of, run_server

from operators.submission import sign_submission
from sandbox.api.request_ids import request_id
from sandbox.catalog.synthetic import DISTRICTS
from sandbox.common import logs
from sandbox.settings import Settings

# --- the formatter ------------------------------------------------------------------------------


def _logger(formatter: logging.Formatter) -> tuple[logging.Logger, io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    logger = logging.getLogger(f"sandbox.test.{uuid.uuid4().hex}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    return logger, out


def test_one_json_object_per_line_with_the_bound_ids_and_readable_chinese() -> None:
    logger, out = _logger(logs.JsonFormatter())
    with logs.bound(request_id="r-1", job_id="j_1", contract_id="c_1", principal_id="p_1"):
        logger.info("数据局 job finished", extra=logs.fields(status="succeeded", run_seconds=1.5))
    logger.warning("outside")

    text = out.getvalue()
    assert "数据局" in text and "\\u" not in text
    first, second = (json.loads(line) for line in text.splitlines())
    assert first == {
        "time": first["time"],
        "level": "info",
        "logger": logger.name,
        "message": "数据局 job finished",
        "request_id": "r-1",
        "job_id": "j_1",
        "contract_id": "c_1",
        "principal_id": "p_1",
        "status": "succeeded",
        "run_seconds": 1.5,
    }
    at = dt.datetime.fromisoformat(first["time"])
    assert at.utcoffset() == dt.timedelta(0)
    assert abs(dt.datetime.now(dt.UTC) - at) < dt.timedelta(minutes=1)
    assert second["level"] == "warning" and "job_id" not in second and "request_id" not in second


def test_the_time_is_the_record_s_own_in_utc() -> None:
    record = logging.LogRecord("sandbox.x", logging.INFO, __file__, 1, "m", None, None)
    record.created = dt.datetime(2026, 3, 1, 8, 0, 0, 250_000, tzinfo=dt.UTC).timestamp()
    line = json.loads(logs.JsonFormatter().format(record))
    assert line["time"] == "2026-03-01T08:00:00.250+00:00"


def test_ids_bound_in_a_block_are_gone_after_it_and_inner_ones_win() -> None:
    with logs.bound(job_id="j_outer", contract_id="c_1"):
        with logs.bound(job_id="j_inner"):
            assert logs.current() == {"job_id": "j_inner", "contract_id": "c_1"}
        assert logs.current() == {"job_id": "j_outer", "contract_id": "c_1"}
    assert logs.current() == {}


@pytest.mark.parametrize("formatter", [logs.JsonFormatter(), logs.TextFormatter()])
def test_an_exception_is_written_as_types_and_frames_without_its_text(
    formatter: logging.Formatter,
) -> None:
    logger, out = _logger(formatter)
    try:
        try:
            raise KeyError("城关区-敏感值-1")
        except KeyError as inner:
            raise ValueError("invalid literal for int(): '城关区-敏感值-2'") from inner
    except ValueError:
        logger.exception("job failed in the service")

    text = out.getvalue()
    assert "敏感值" not in text and "invalid literal" not in text
    assert "builtins.ValueError" in text and "builtins.KeyError" in text
    assert "test_an_exception_is_written_as_types_and_frames_without_its_text" in text


def test_text_lines_quote_a_field_that_could_make_a_line_of_its_own() -> None:
    logger, out = _logger(logs.TextFormatter())
    with logs.bound(job_id="j_1", contract_id="c 1\nERROR forged line"):
        logger.info("job refused", extra=logs.fields(code="code_rejected"))
    (line,) = out.getvalue().splitlines()
    assert " INFO " in line and line.endswith("code=code_rejected")
    assert "job_id=j_1" in line and 'contract_id="c 1\\nERROR forged line"' in line


# --- settings and request ids -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [("SANDBOX_LOG_FORMAT", "xml", "json, text"), ("SANDBOX_LOG_LEVEL", "loud", "debug, info")],
)
def test_a_bad_log_setting_is_refused_with_the_choices(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, named: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError, match=f"{variable} must be one of {named}"):
        Settings()


def test_log_settings_default_to_json_at_info_and_ignore_case(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SANDBOX_LOG_FORMAT", raising=False)
    monkeypatch.delenv("SANDBOX_LOG_LEVEL", raising=False)
    assert (Settings().log_format, Settings().log_level) == ("json", "info")
    monkeypatch.setenv("SANDBOX_LOG_FORMAT", "Text")
    monkeypatch.setenv("SANDBOX_LOG_LEVEL", "WARNING")
    assert (Settings().log_format, Settings().log_level) == ("text", "warning")


@pytest.mark.parametrize(
    "sent",
    [b"a b", b"x" * 65, b"id\r\nSet-Cookie: x", "请求".encode(), b'{"level":"error"}', b""],
)
def test_a_malformed_request_id_is_replaced(sent: bytes) -> None:
    made = request_id(sent)
    assert made != sent.decode("latin-1") and re.fullmatch(r"[0-9a-f]{32}", made)


def test_a_well_formed_request_id_is_kept() -> None:
    assert request_id(b"req-2026.03_01") == "req-2026.03_01"
    assert request_id(None) != request_id(None)


# --- a running `sandbox serve` ------------------------------------------------------------------

CODE_SENTINEL = "哨兵代码字面量K9ZQ"
PARAM_SENTINEL = "哨兵参数值P3XW"
QUERY_SENTINEL = "QRY7sentinel"
BY_DISTRICT = (
    f'tag = "{CODE_SENTINEL}"\n'
    'emit("by_district", table("population").group_by("district").agg(n=count()).collect())\n'
)
# Refused at compile time: imports are not part of the job language.
REFUSED = f'import os\ntag = "{CODE_SENTINEL}"\n'
# Fails after a release, with an error whose text quotes a released district name and the
# code's literal: nothing of it may reach the log.
FAILING = (
    f'tag = "{CODE_SENTINEL}"\n'
    'r = table("population").group_by("district").agg(n=count()).collect()\n'
    "x = int(r.rows[0][0] + tag)\n"
)


@dataclass(frozen=True)
class Run:
    cast: Cast
    contract_id: str
    operator_id: str
    jobs: dict[str, dict[str, Any]]
    echoed: dict[bytes, str]
    lines: list[dict[str, Any]]
    text: str


def _submit(cast: Cast, cid: str, code: str, rid: str) -> httpx.Response:
    params = {"标记": PARAM_SENTINEL}
    body = {"contract_id": cid, "code": code, "params": params}
    body.update(sign_submission(cast.operator_key, cid, code, params))
    return httpx.post(
        f"{cast.server.url}/v1/jobs",
        params={"wait": "true"},
        json=body,
        headers={"Authorization": f"Bearer {cast.operator_token}", "X-Request-ID": rid},
        timeout=60,
    )


# `local`: the engine and each job's driver run in the serving process, so anything they let
# slip would be in its log. `ray`, the default: what Ray adds to the serving process's output.
@pytest.fixture(scope="module", params=["local", "ray"])
def run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    root = tmp_path_factory.mktemp("logs")
    # Debug: the most the log ever says.
    env = {"SANDBOX_LOG_FORMAT": "json", "SANDBOX_LOG_LEVEL": "debug"}
    with run_server(root, request.param, env) as server, cast_of(server, root) as cast:
        cid = active_contract(cast)
        jobs = {}
        for name, code in (("released", BY_DISTRICT), ("refused", REFUSED), ("failed", FAILING)):
            r = _submit(cast, cid, code, f"req-{name}")
            assert r.headers["X-Request-ID"] == f"req-{name}"
            jobs[name] = r.json()
        url = cast.server.url
        bureau = {"Authorization": f"Bearer {server.bureau_token}"}
        # Secrets where a careless client might put them: the query string.
        httpx.get(f"{url}/v1/me", params={"token": server.bureau_token, "q": QUERY_SENTINEL})
        httpx.get(f"{url}/v1/jobs/{jobs['released']['id']}", params={"t": cast.operator_token})
        echoed = {}
        for bad in (b"x" * 500, b"bad id", "请求编号".encode(), b"a;b=c"):
            answered = httpx.get(f"{url}/v1/me", headers={**bureau, "X-Request-ID": bad})
            echoed[bad] = answered.headers["X-Request-ID"]
        me = cast.operator.me()
        # Read while the server still runs: every line is written as it is logged.
        text = (root / "serve.log").read_text(encoding="utf-8")
        lines = [json.loads(line) for line in text.splitlines() if line.strip()]
        yield Run(cast, cid, me["id"], jobs, echoed, lines, text)


def _of_job(run: Run, name: str) -> dict[str, dict[str, Any]]:
    """The job's lines, by message."""
    job_id = run.jobs[name].get("id") or run.jobs[name]["job_id"]
    return {line["message"]: line for line in run.lines if line.get("job_id") == job_id}


def test_every_line_of_the_serving_log_is_a_json_object(run: Run) -> None:
    assert len(run.lines) > 10
    for line in run.lines:
        assert isinstance(line, dict)
        assert {"time", "level", "logger", "message"} <= line.keys(), line
        assert dt.datetime.fromisoformat(line["time"]).utcoffset() == dt.timedelta(0)
    loggers = {line["logger"] for line in run.lines}
    assert {"uvicorn.error", "uvicorn.access"} <= loggers


def test_each_job_s_lines_carry_its_ids_and_outcome(run: Run) -> None:
    assert run.jobs["released"]["status"] == "succeeded", run.jobs["released"]
    assert run.jobs["failed"]["status"] == "failed", run.jobs["failed"]
    assert run.jobs["refused"]["code"] == "code_rejected", run.jobs["refused"]

    for name, status in (("released", "succeeded"), ("failed", "failed")):
        lines = _of_job(run, name)
        assert {"job accepted", "job settled", "job finished"} <= lines.keys(), lines
        for line in lines.values():
            assert line["contract_id"] == run.contract_id
            assert line["principal_id"] == run.operator_id
            # The job's own thread carries the request that submitted it.
            assert line["request_id"] == f"req-{name}"
        finished = lines["job finished"]
        assert finished["status"] == status and finished["level"] == "info"
        assert finished["run_seconds"] >= 0 and finished["settle_seconds"] >= 0
        assert lines["job settled"]["charge_fen"] <= lines["job settled"]["quote_fen"]
    assert _of_job(run, "released")["job finished"]["code"] is None
    assert _of_job(run, "failed")["job finished"]["code"] == run.jobs["failed"]["error"]["code"]

    refused = _of_job(run, "refused")["job refused"]
    assert refused["code"] == "code_rejected" and refused["contract_id"] == run.contract_id
    assert refused["request_id"] == "req-refused"


def test_the_access_line_names_the_request_and_the_caller(run: Run) -> None:
    (access,) = (
        line
        for line in run.lines
        if line["logger"] == "uvicorn.access" and line.get("request_id") == "req-released"
    )
    assert access["path"] == "/v1/jobs" and access["method"] == "POST"
    assert access["status"] == 201 and access["principal_id"] == run.operator_id
    assert "wait=true" not in access["message"]


def test_a_malformed_request_id_is_neither_echoed_nor_logged(run: Run) -> None:
    for sent, answered in run.echoed.items():
        assert re.fullmatch(r"[0-9a-f]{32}", answered), (sent, answered)
        assert any(line.get("request_id") == answered for line in run.lines)
    assert "x" * 100 not in run.text and "bad id" not in run.text and "请求编号" not in run.text


def test_no_data_value_token_key_code_or_parameter_reaches_the_log(run: Run) -> None:
    failed = run.jobs["failed"]["error"]["message"]
    # The attack took: the job's own error quotes a released district and its literal.
    assert CODE_SENTINEL in failed and any(d in failed for d in DISTRICTS)
    pem = (run.cast.server.data_dir / "keys" / "bureau.pem").read_text()
    key_lines = [line for line in pem.splitlines() if line and not line.startswith("-----")]
    assert key_lines
    secrets = [
        CODE_SENTINEL,
        PARAM_SENTINEL,
        QUERY_SENTINEL,
        run.cast.server.bureau_token,
        run.cast.operator_token,
        *key_lines,
        *DISTRICTS,
    ]
    for secret in secrets:
        assert secret not in run.text, secret
    # Not in any escaped form either.
    assert json.dumps(CODE_SENTINEL)[1:-1] not in run.text
    assert "Authorization" not in run.text and "Bearer" not in run.text


def test_text_format_is_for_a_person_at_a_terminal(tmp_path: Path) -> None:
    with run_server(tmp_path, "local", {"SANDBOX_LOG_FORMAT": "text"}) as server:
        answered = httpx.get(f"{server.url}/v1/health/live", headers={"X-Request-ID": "t-1"})
        assert answered.headers["X-Request-ID"] == "t-1"
        text = (tmp_path / "serve.log").read_text(encoding="utf-8")
    assert "INFO    uvicorn.error: Application startup complete." in text
    (access,) = (line for line in text.splitlines() if "request_id=t-1" in line)
    assert "uvicorn.access" in access and "path=/v1/health/live status=200" in access
    assert not any(line.startswith("{") for line in text.splitlines())
