"""The Python client against a real `sandbox serve` process, and against the app in-process.

The live part starts `sandbox init` and `sandbox serve` as subprocesses on a free port and drives
the whole story through `SandboxClient` only: bureau, provider and operator each hold their own
client. The in-process part points the client at the FastAPI app through its TestClient, which is
an httpx.Client, to check output decoding and error envelopes quickly.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import GRANTS, SCHEDULE, World
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from live import RESIDENTS, Cast, active_contract, cast_of, run_server

from operators.client import (
    CodeRejected,
    ContractMismatch,
    JobCodeError,
    OutputUnavailable,
    PlanInvalid,
    Progress,
    SandboxAPIError,
    SandboxClient,
    SigningKeyMissing,
    _canonical_of,
    released_table,
)
from operators.keys import generate_private_key
from sandbox.catalog.synthetic import DISTRICTS

# Elderly residents by district and hukou type: the small district's rare hukou types fall
# below the L3 threshold of 10, so the release has suppressed cells.
ELDERLY = """
old = table("population").filter(col("birth_date").year() <= 1959)
emit("elderly_by_district",
     old.group_by("district", "hukou_type").agg(n=count(), avg_income=mean(col("income"))).collect())
emit("total", 42)
"""


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cast]:
    root = tmp_path_factory.mktemp("live")
    with run_server(root, executor="local") as server, cast_of(server, root) as cast:
        yield cast


@pytest.fixture(scope="module")
def contract_id(live: Cast) -> str:
    return active_contract(live, spend_cap="500.00")


# --- the story, live ---------------------------------------------------------------------------


def test_roles_and_catalog_seen_through_the_client(live: Cast) -> None:
    assert live.bureau.me()["role"] == "bureau"
    assert live.operator.me()["name"] == "某数据科技有限公司"
    (info,) = live.operator.datasets()
    assert info["name"] == "population" and info["title"] == "人口基础信息库"
    assert live.operator.dataset("population")["row_count"] == RESIDENTS
    assert live.operator.price_schedule()["name"] == SCHEDULE["name"]


def test_signed_job_releases_a_typed_table_and_costs_at_most_its_quote(
    live: Cast, contract_id: str
) -> None:
    quoted = Decimal(live.operator.quote(contract_id, ELDERLY)["quote"]["amount"])
    job = live.operator.submit(contract_id, ELDERLY, params={"年份": 1959}, wait=True)

    assert job.status == "succeeded", job.error
    assert job.charge is not None and job.charge["currency"] == "CNY"
    assert job.charge_amount is not None and Decimal("0") < job.charge_amount <= quoted
    assert job.quote_amount == quoted
    table = job.output("elderly_by_district")
    assert isinstance(table, pa.Table)
    assert table.column_names == ["district", "hukou_type", "n", "avg_income"]
    assert table.schema.field("district").type == pa.string()
    assert table.schema.field("n").type == pa.int64()
    assert table.schema.field("avg_income").type == pa.float64()
    assert set(table.column("district").to_pylist()) <= set(DISTRICTS)
    assert "北山区" in table.column("district").to_pylist()
    suppressed = job.output("elderly_by_district", as_="json")["suppressed"]
    assert suppressed, "the small district should have cells below the threshold"
    for row, column in suppressed:
        assert table.column(column)[row].as_py() is None
    assert job.output("total") == 42
    assert job.refresh() == job


def test_signed_submission_is_recorded_and_billed(live: Cast, contract_id: str) -> None:
    code = 'emit("n", table("population").group_by("gender").agg(n=count()).collect())'
    job = live.operator.submit(contract_id, code, idempotency_key="性别-2026-01")
    again = live.operator.submit(contract_id, code, idempotency_key="性别-2026-01")
    assert again.id == job.id
    finished = job.wait(timeout=30, poll=0.1)
    assert finished.status == "succeeded"
    period = dt.datetime.now(dt.UTC).strftime("%Y-%m")
    bill = live.operator.bills(period)
    charged = {c["job_id"]: Decimal(c["amount"]) for c in bill["charges"]}
    assert charged[job.id] == finished.charge_amount
    assert Decimal(bill["total"]) >= finished.charge_amount  # type: ignore[operator]
    entries = live.bureau.ledger_entries()
    (submitted,) = [
        e["event"]
        for e in entries
        if e["event"]["type"] == "job.submitted" and e["event"]["subject"] == job.id
    ]
    assert submitted["data"]["signature"], "the client signs every submission it has a key for"
    assert live.bureau.checkpoint()["size"] == len(entries)


def test_errors_carry_status_and_code(live: Cast, contract_id: str) -> None:
    with pytest.raises(SandboxAPIError) as scope:
        live.operator.submit(
            contract_id,
            'emit("x", table("population").group_by("name").agg(n=count()).collect())',
            wait=True,
        )
    assert (scope.value.status, scope.value.code) == (403, "contract_scope")
    assert "name" in scope.value.message and scope.value.details["job_id"]
    assert str(scope.value).startswith("HTTP 403 contract_scope: ")

    with pytest.raises(SandboxAPIError) as missing:
        live.operator.job("j-nonexistent")
    assert (missing.value.status, missing.value.code) == (404, "not_found")

    with pytest.raises(SandboxAPIError) as forbidden:
        live.operator.create_principal("冒充者", "bureau")
    assert forbidden.value.status == 403

    with pytest.raises(SandboxAPIError) as unauthenticated:
        SandboxClient(live.server.url, token="sbx_wrong").me()
    assert unauthenticated.value.status == 401


def test_submission_signed_with_another_key_is_refused(live: Cast, contract_id: str) -> None:
    stranger = SandboxClient(
        live.server.url, token=live.operator_token, signing_key=generate_private_key()
    )
    with stranger, pytest.raises(SandboxAPIError) as refused:
        stranger.submit(contract_id, 'emit("t", 1)', wait=True)
    assert (refused.value.status, refused.value.code) == (400, "signature_invalid")


def test_contract_signing_needs_the_operators_key(live: Cast) -> None:
    cid = live.operator.apply_contract(
        GRANTS, "人口结构研究", "public_interest", "2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z"
    )["id"]
    live.provider.approve_contract(cid)
    live.bureau.sign_contract(cid)
    with pytest.raises(SigningKeyMissing, match="signing_key="):
        live.unsigned_operator.sign_contract(cid)
    assert live.operator.contract(cid)["status"] != "active"
    assert live.operator.sign_contract(cid)["status"] == "active"


def test_output_files_keep_chinese_names(live: Cast, contract_id: str) -> None:
    code = 'emit("by_district", table("population").group_by("district").agg(n=count()).collect())'
    job = live.operator.submit(contract_id, code, wait=True)
    csv_text = live.operator.output_file(job.id, "by_district", "csv").decode("utf-8-sig")
    assert csv_text.splitlines()[0] == "district,n" and "城关区" in csv_text
    parquet = pq.read_table(pa.BufferReader(live.operator.output_file(job.id, "by_district")))
    assert sorted(parquet.column("district").to_pylist()) == sorted(
        job.output("by_district").column("district").to_pylist()
    )


@pytest.mark.ray
def test_job_runs_on_ray_behind_a_live_server(tmp_path: Path) -> None:
    with run_server(tmp_path, executor=None) as server, cast_of(server, tmp_path) as cast:
        cid = active_contract(cast)
        job = cast.operator.submit(
            cid,
            'emit("t", table("population").group_by("district").agg(n=count()).collect())',
            wait=True,
        )
    assert job.status == "succeeded", job.error
    counts = job.output("t").column("n").to_pylist()
    assert sum(n for n in counts if n is not None) <= RESIDENTS


# --- in-process: the client on the app's TestClient ---------------------------------------------


def _client_for(
    world: World, who: dict[str, Any] | str, key: Ed25519PrivateKey | None = None
) -> SandboxClient:
    token = who if isinstance(who, str) else who["token"]
    return SandboxClient(
        "http://testserver", token=token, signing_key=key, http_client=world.client
    )


def test_job_snapshot_explains_missing_outputs(local_world: World) -> None:
    cid = local_world.active_contract()
    op = _client_for(local_world, local_world.operator, local_world.operator_key)
    job = op.submit(cid, 'emit("t", 7)', wait=True)
    assert job.output("t") == 7
    with pytest.raises(OutputUnavailable, match="outputs: t"):
        job.output("elderly")
    failed = op.submit(cid, 'emit("t", 1)\nemit("t", 2)', wait=True)
    assert failed.status != "succeeded"
    with pytest.raises(OutputUnavailable, match=f"{failed.status} and released no output"):
        failed.output("t")


def test_sign_contract_refuses_canonical_bytes_that_differ_from_the_document(
    local_world: World,
) -> None:
    cid = local_world.active_contract()
    view = _client_for(local_world, local_world.operator).contract(cid)
    assert _canonical_of(view) == base64.b64decode(view["canonical"])
    tampered = {**view, "document": {**view["document"], "purpose": "别的用途"}}
    with pytest.raises(ContractMismatch, match="do not encode the document"):
        _canonical_of(tampered)


def test_money_is_never_sent_as_float(local_world: World) -> None:
    op = _client_for(local_world, local_world.operator, local_world.operator_key)
    with pytest.raises(TypeError, match="decimal string"):
        op.apply_contract(
            GRANTS,
            "研究",
            "commercial",
            "2026-01-01T00:00:00Z",
            "2027-01-01T00:00:00Z",
            spend_cap=100.1,
        )  # type: ignore[arg-type]


def test_validation_errors_arrive_as_api_errors(local_world: World) -> None:
    bureau = _client_for(local_world, local_world.bureau)
    with pytest.raises(SandboxAPIError) as invalid:
        bureau.create_principal("", "operator")
    assert (invalid.value.status, invalid.value.code) == (400, "invalid_request")


def test_non_envelope_errors_are_still_readable() -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(502, text="Bad Gateway"))
    client = SandboxClient(
        "http://proxy.example", token="t", http_client=httpx.Client(transport=transport)
    )
    with pytest.raises(SandboxAPIError) as bad:
        client.me()
    assert (bad.value.status, bad.value.code) == (502, "http_error")
    assert "Bad Gateway" in str(bad.value)


def test_released_table_types_columns_as_announced() -> None:
    table = released_table(
        {
            "kind": "table",
            "columns": [
                {"name": "区", "type": "string"},
                {"name": "day", "type": "date32[day]"},
                {"name": "at", "type": "timestamp[us, tz=UTC]"},
                {"name": "amount", "type": "decimal128(12, 2)"},
                {"name": "n", "type": "int64"},
                {"name": "odd", "type": "map<x>"},
            ],
            "rows": [
                ["城关区", "2024-12-31", "2024-12-31T08:00:00+00:00", "12.30", None, 1],
                ["北山区", None, None, None, 3, 2],
            ],
            "suppressed": [[0, "n"]],
        }
    )
    assert table.schema.types == [
        pa.string(),
        pa.date32(),
        pa.timestamp("us", tz="UTC"),
        pa.decimal128(12, 2),
        pa.int64(),
        pa.int64(),
    ]
    assert table.column("区").to_pylist() == ["城关区", "北山区"]
    assert table.column("day")[0].as_py() == dt.date(2024, 12, 31)
    assert table.column("amount")[0].as_py() == Decimal("12.30")
    assert table.column("n").to_pylist() == [None, 3]
    empty = released_table(
        {"kind": "table", "columns": [{"name": "n", "type": "int64"}], "rows": [], "suppressed": []}
    )
    assert empty.num_rows == 0 and empty.schema.field("n").type == pa.int64()


# --- notebooks: released tables as pandas, Arrow and HTML; typed errors ---------------------------


def test_a_job_run_with_progress_releases_tables_for_notebooks(
    live: Cast, contract_id: str
) -> None:
    lines: list[str] = []
    job = live.operator.run(contract_id, ELDERLY, progress=Progress(lines.append), poll=0.1)
    assert job.status == "succeeded"
    assert lines[-1].startswith(f"job {job.id}: succeeded: 2 outputs, charged ")

    released = job.table("elderly_by_district")
    suppressed = released.suppressed
    assert suppressed, "the small district should have cells below the threshold"
    assert all(cell.rule for cell in suppressed), "the report names each cell's rule"
    arrow = released.to_arrow()
    frame = released.to_pandas()
    assert (
        arrow.column_names == list(frame.columns) == ["district", "hukou_type", "n", "avg_income"]
    )
    for cell in suppressed:
        assert arrow.column(cell.column)[cell.row].as_py() is None
        assert pd.isna(frame.at[cell.row, cell.column])
    shown = frame["n"].dropna()
    assert len(shown) == len(frame) - sum(c.column == "n" for c in suppressed)

    markup = released._repr_html_()
    assert markup.count(f'class="sbx-suppressed" title="{suppressed[0].rule}: ') >= 1
    assert markup.count("—</td>") == len(suppressed)
    assert "disclosure report" in markup and f"{len(suppressed)} of " in markup
    assert "北山区" in markup


def test_a_job_that_fails_raises_its_typed_error_with_the_line(
    live: Cast, contract_id: str
) -> None:
    plan_error = (
        't = table("population")\n\nemit("a", t.filter("district").agg(n=count()).collect())'
    )
    with pytest.raises(PlanInvalid) as invalid:
        live.operator.run(contract_id, plan_error, progress=False, poll=0.1)
    assert (invalid.value.code, invalid.value.line) == ("plan_invalid", 3)
    assert "filter() takes a condition" in invalid.value.message and invalid.value.job_id

    with pytest.raises(JobCodeError) as raised:
        live.operator.run(contract_id, "x = 1\ny = x / 0\n", progress=False, poll=0.1)
    assert (raised.value.code, raised.value.line) == ("job_code_error", 2)

    with pytest.raises(CodeRejected) as rejected:
        live.operator.run(contract_id, 'x = 1\nimport os\nemit("t", 1)', progress=False)
    assert (rejected.value.status, rejected.value.line) == (400, 2)
