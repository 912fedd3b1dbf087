"""The public pages (fees, register, log) and /v1/public over HTTP: what anyone may see,
signed out, is the same through the console and the API, and never anything private to an
operator (tokens, code, a job's charge)."""

from __future__ import annotations

import json
from decimal import Decimal
from html import unescape
from typing import Any

from conftest import SCHEDULE, World
from fastapi.testclient import TestClient

from sandbox.api.models.ledger import Checkpoint
from sandbox.api.models.public import Fees, PublicDataset, PublicDatasets, Register

CODE = 'd = table("population").group_by("district").agg(n=count()).collect()\nemit("d", d)\n'
CAPS = {
    "name": "上限收费标准 2026",
    "effective_from": "2026-01-01T00:00:00Z",
    "items": [{"unit": "call", "max_price": "3.00"}, {"unit": "output", "max_price": "0.80"}],
}


def _fresh(world: World) -> TestClient:
    # A browser of its own: cookies are not shared with the world's client.
    return TestClient(world.client.app)


def _job(w: World) -> tuple[str, dict[str, Any]]:
    cid = w.active_contract()
    r = w.run(cid, CODE)
    assert r.status_code in (200, 201), r.text
    job = r.json()
    assert job["status"] == "succeeded", job
    return cid, job


def test_the_fees_page_shows_the_schedule_in_force_and_its_caps(local_world: World) -> None:
    w = local_world
    assert w.client.post("/v1/price-caps", json=CAPS, headers=w.h(w.bureau)).status_code == 201
    with _fresh(w) as browser:
        text = browser.get("/fees").text
        api = browser.get("/v1/public/fees").json()
    Fees.model_validate(api)
    assert api["schedule"]["name"] == SCHEDULE["name"] and api["caps"]["name"] == CAPS["name"]
    assert SCHEDULE["name"] in text and CAPS["name"] in text
    # Each price beside the cap it is held to (call: 2.00 under 3.00).
    row = text.split("调用次数", 1)[1].split("</tr>", 1)[0]
    assert "2.00" in row and "3.00" in row
    assert "0.05" in text and "0.10" in text


def test_the_register_lists_contracts_in_force_and_monthly_totals_only(
    local_world: World,
) -> None:
    w = local_world
    cid, job = _job(w)
    with _fresh(w) as browser:
        page = browser.get("/register")
        api = browser.get("/v1/public/register")
    assert page.status_code == 200 and api.status_code == 200
    body = api.json()
    Register.model_validate(body)
    [entry] = body["contracts"]
    assert entry == {
        "contract_id": cid,
        "operator_name": w.operator["name"],
        "license_no": "授权运营-2026-001",
        "datasets": [{"name": "population", "title": entry["datasets"][0]["title"]}],
        "purpose_class": "commercial",
        "valid_from": "2026-01-01T00:00:00Z",
        "valid_to": "2030-01-01T00:00:00Z",
    }
    [month] = body["fees_by_month"]
    assert month == {"period": job["finished_at"][:7], "total": job["charge"]["amount"]}
    text = page.text
    assert w.operator["name"] in text and "授权运营-2026-001" in text and "经营性使用" in text
    assert 'class="chart"' in text and month["period"] in text
    assert Decimal(month["total"]) > 0
    # Nothing of the operator's own: no token, no job, no code, no charge lines.
    for private in (w.operator["token"], job["id"], "group_by(", "compute_seconds", "spent"):
        assert private not in text, private
        assert private not in api.text, private


def test_the_public_api_reveals_no_operator_private_data(local_world: World) -> None:
    w = local_world
    _, job = _job(w)
    secrets = [w.operator["token"], w.other_operator["token"], w.bureau, job["id"], CODE[:30]]
    with _fresh(w) as anyone:
        for path in (
            "/v1/public/datasets",
            "/v1/public/datasets/population",
            "/v1/public/fees",
            "/v1/public/register",
            "/v1/public/checkpoint",
        ):
            r = anyone.get(path)
            assert r.status_code == 200, (path, r.text)
            for secret in secrets:
                assert secret not in r.text, (path, secret)
            assert '"charge"' not in r.text and '"lines"' not in r.text
        # The signed-in routes stay signed-in.
        assert anyone.get("/v1/contracts").status_code == 401
        assert anyone.get("/v1/ledger/checkpoint").status_code == 401


def test_the_catalog_searches_the_same_through_the_api_and_the_console(
    local_world: World, city: dict[str, Any]
) -> None:
    w = local_world
    table = city["population"].table.select(["district"]).slice(0, 100)
    assert w.ingest("districts_l3", table, "L1", {"district": {"role": "attribute"}}, "区县表")
    with _fresh(w) as anyone:
        for query, expected in (
            ("q=区县", {"districts_l3"}),
            ("q=POPULATION", {"population"}),
            ("level=L1", {"districts_l3"}),
            (f"department={w.provider['id']}", {"population", "districts_l3"}),
            ("department=d-nobody", set()),
        ):
            api = anyone.get(f"/v1/public/datasets?{query}").json()
            PublicDatasets.model_validate(api)
            assert {d["name"] for d in api["datasets"]} == expected, query
            page = anyone.get(f"/catalog?{query}").text
            shown = {n for n in ("population", "districts_l3") if f"<code>{n}</code>" in page}
            assert shown == expected, query
        one = anyone.get("/v1/public/datasets/population").json()
        PublicDataset.model_validate(one)
        assert one["department"] == "市公安局" and "partitions" not in one
        assert anyone.get("/v1/public/datasets/没有").status_code == 404


def test_the_log_page_shows_the_signed_checkpoint_and_how_to_verify_it(
    local_world: World,
) -> None:
    w = local_world
    with _fresh(w) as anyone:
        api = anyone.get("/v1/public/checkpoint").json()
        text = anyone.get("/log").text
    Checkpoint.model_validate(api)
    signed = w.client.get("/v1/ledger/checkpoint", headers=w.h(w.regulator)).json()
    assert api["root_hash"] == signed["root_hash"] and api["size"] == signed["size"]
    assert api["checkpoint"] == signed["checkpoint"]
    note = unescape(text.split('<pre class="note-text" id="checkpoint">', 1)[1].split("</pre>")[0])
    assert note == api["checkpoint"]
    assert "sandbox ledger verify" in text and "--checkpoint checkpoint.txt" in text


def test_public_routes_need_no_token_in_the_openapi_document(local_world: World) -> None:
    document = local_world.client.app.openapi()  # type: ignore[attr-defined]
    for path in ("datasets", "datasets/{name}", "fees", "register", "checkpoint"):
        op = document["paths"][f"/v1/public/{path}"]["get"]
        assert not op.get("security"), path
        assert "$ref" in json.dumps(op["responses"]["200"]), path


def test_script_in_titles_and_names_on_the_register_is_text(
    local_world: World, city: dict[str, Any]
) -> None:
    w = local_world
    evil = '"><img src=x onerror=alert(1)><script>alert("x")</script>'
    table = city["population"].table.select(["district"]).slice(0, 100)
    assert w.ingest("evil", table, "L2", {"district": {"role": "attribute"}}, evil)
    op, key = w.register_operator(evil, evil)
    w.activate(op, key, {"evil": {"district": ["group_by"]}})
    with _fresh(w) as anyone:
        for path in ("/register", "/catalog", "/catalog/evil"):
            text = anyone.get(path).text
            assert "<script>alert" not in text and "<img src=x" not in text, path
            assert "&lt;script&gt;" in text, path


def test_the_dataset_page_shows_a_generated_preview_labelled_as_such(local_world: World) -> None:
    browser = _fresh(local_world)
    page = browser.get("/catalog/population").text
    assert 'id="dummy-preview"' in page
    assert "示例数据（生成）" in page and "不含任何真实数据值" in page
    assert "sandbox datasets dummy population --out DIR" in page
    assert "district_1" in page or "district_2" in page
    # Real districts of the test city: the preview reads no file, so none of them shows.
    for value in ("城关区", "湖滨区"):
        assert value not in page
    english = browser.get("/catalog/population?lang=en").text
    assert "Dummy data (generated)" in english and "no real value" in english
