"""The operator's console pages over HTTP: applying for a contract from a dataset, signing it
with a signature made elsewhere, writing, quoting and running jobs, their tables, charts and
downloads, the bill and the privacy budget; and the walls: another operator's ids, script in
what operators type, posts from another site, other roles."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import World
from fastapi.testclient import TestClient
from test_console import _fresh, _sign_in

from operators.keys import private_key_to_pem, sign
from operators.submission import SUBMISSION_DOMAIN, sign_submission

CODE = 'emit("by_district", table("population").group_by("district").agg(n=count()).collect())'
SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(1)>'


def _csrf(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, page
    return found.group(1)


def _application(csrf: str, **changes: Any) -> dict[str, Any]:
    form: dict[str, Any] = {
        "csrf": csrf,
        "dataset": "population",
        "use.district": ["group_by", "filter"],
        "use.income": ["aggregate"],
        "purpose": "城关区养老服务设施规划",
        "purpose_class": "public_interest",
        "valid_from": "2026-01-01",
        "valid_to": "2029-12-31",
        "spend_cap": "5000.00",
    }
    return {**form, **changes}


def _signed_by_bureau(w: World) -> str:
    """An application of the world's operator, approved and signed by the bureau."""
    body = {
        "datasets": {"population": {"district": ["group_by"]}},
        "purpose": "养老服务设施规划",
        "purpose_class": "commercial",
        "valid_from": "2026-01-01T00:00:00Z",
        "valid_to": "2030-01-01T00:00:00Z",
    }
    cid: str = w.client.post("/v1/contracts", json=body, headers=w.h(w.operator)).json()["id"]
    assert w.client.post(f"/v1/contracts/{cid}/approve", headers=w.h(w.provider)).status_code == 200
    assert w.client.post(f"/v1/contracts/{cid}/sign", headers=w.h(w.bureau)).status_code == 200
    return cid


def _contract(w: World, cid: str) -> dict[str, Any]:
    r = w.client.get(f"/v1/contracts/{cid}", headers=w.h(w.operator))
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def test_an_operator_applies_from_the_dataset_page_with_the_columns_and_uses_ticked(
    local_world: World,
) -> None:
    w = local_world
    with _fresh(w) as anyone:
        assert "/contracts/new?dataset=population" not in anyone.get("/catalog/population").text
    with _fresh(w) as browser:
        csrf = _sign_in(browser, w.operator["token"])
        assert 'href="/contracts/new?dataset=population"' in browser.get("/catalog/population").text
        form = browser.get("/contracts/new?dataset=population")
        assert form.status_code == 200 and 'name="use.income" value="aggregate"' in form.text
        r = browser.post("/contracts/new", data=_application(csrf), follow_redirects=False)
        assert r.status_code == 303, r.text
        cid = r.headers["location"].removeprefix("/contracts/")
        made = _contract(w, cid)
        assert made["status"] == "pending_approval"
        assert made["document"]["datasets"] == {
            "population": {"district": ["filter", "group_by"], "income": ["aggregate"]}
        }
        assert made["document"]["valid_from"].startswith("2025-12-31T16:00:00")
        assert made["document"]["spend_cap"] == "5000.00"
        shown = browser.get(r.headers["location"]).text
        assert "待部门审批" in shown and "城关区养老服务设施规划" in shown
        # The term as typed, on the bureau's calendar.
        assert "2026-01-01 00:00 – 2029-12-31 00:00" in shown
        assert cid in browser.get("/contracts").text


def test_a_refused_application_is_explained_next_to_its_field_and_keeps_what_was_typed(
    local_world: World,
) -> None:
    w = local_world
    with _fresh(w) as browser:
        csrf = _sign_in(browser, w.operator["token"])
        before = len(browser.get("/contracts").text)
        late = _application(
            csrf, valid_from="2029-06-01", valid_to="2029-01-01", purpose="保留这段文字"
        )
        r = browser.post("/contracts/new", data=late)
        assert r.status_code == 400
        assert re.search(r'id="valid_to-error"[^>]*>[^<]*not after valid_from', r.text), r.text
        assert "保留这段文字" in r.text and 'value="2029-01-01"' in r.text
        assert re.search(
            r'name="use.income" value="aggregate"\s+aria-label="[^"]*" checked', r.text
        )
        cap = browser.post("/contracts/new", data=_application(csrf, spend_cap="1.001"))
        assert cap.status_code == 400 and 'id="spend_cap-error"' in cap.text
        none = {k: v for k, v in _application(csrf).items() if not k.startswith("use.")}
        empty = browser.post("/contracts/new", data=none)
        assert empty.status_code == 400 and 'id="datasets-error"' in empty.text
        assert len(browser.get("/contracts").text) == before


def test_a_signature_made_elsewhere_signs_the_contract_and_a_wrong_one_is_refused(
    local_world: World, tmp_path: Path
) -> None:
    w = local_world
    cid = _signed_by_bureau(w)
    canonical = _contract(w, cid)["canonical"]
    with _fresh(w) as browser:
        csrf = _sign_in(browser, w.operator["token"])
        page = browser.get(f"/contracts/{cid}").text
        assert f'data-canonical="{canonical}"' in page and "数据局已签署，待您签署" in page
        # Signed with another operator's key: the service refuses it, the page says why.
        wrong = sign(w.other_key, base64.b64decode(canonical))
        r = browser.post(f"/contracts/{cid}/sign", data={"csrf": csrf, "signature": wrong})
        assert r.status_code == 400 and 'id="signature-error"' in r.text
        assert "signature" in r.text and _contract(w, cid)["status"] == "signed_by_bureau"
        # The page's command, run on the operator's machine with the operator's key file.
        command = re.search(r'id="sign-command">([^<]+)</pre>', page)
        assert command and canonical in command.group(1)
        key_file = tmp_path / "operator.pem"
        key_file.write_bytes(private_key_to_pem(w.operator_key))
        script = Path(sys.executable).with_name("sandbox")
        made = subprocess.run(
            [str(script), "contracts", "sign", "--key", str(key_file), canonical],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert made.returncode == 0, made.stderr
        right = made.stdout.strip()
        assert right == sign(w.operator_key, base64.b64decode(canonical))
        r = browser.post(
            f"/contracts/{cid}/sign",
            data={"csrf": csrf, "signature": right},
            follow_redirects=False,
        )
        assert r.status_code == 303
        assert _contract(w, cid)["status"] == "active"
        after = browser.get(f"/contracts/{cid}").text
        assert 'id="sign-form"' not in after and "生效中" in after


def test_a_job_is_quoted_refused_at_its_line_run_charted_downloaded_and_billed(
    local_world: World,
) -> None:
    w = local_world
    cid = w.active_contract()
    with _fresh(w) as browser:
        csrf = _sign_in(browser, w.operator["token"])
        assert browser.get(f"/jobs/new?contract={cid}").status_code == 200
        unchosen = browser.get("/jobs/new", follow_redirects=False)
        assert unchosen.status_code == 303 and unchosen.headers["location"] == "/contracts"
        bad = {"csrf": csrf, "contract": cid, "params": "{}", "action": "quote"}
        r = browser.post("/jobs/new", data={**bad, "code": "x = 1\nimport os\n"})
        assert r.status_code == 400
        assert '<li class="bad">2</li>' in r.text and 'id="code-error"' in r.text
        assert "import os" in r.text  # the code typed comes back
        params = browser.post("/jobs/new", data={**bad, "code": CODE, "params": "[1"})
        assert params.status_code == 400 and 'id="params-error"' in params.text
        quoted = browser.post("/jobs/new", data={**bad, "code": CODE})
        assert quoted.status_code == 200 and 'id="quote-result"' in quoted.text
        r = browser.post(
            "/jobs/new", data={**bad, "code": CODE, "action": "run"}, follow_redirects=False
        )
        assert r.status_code == 303, r.text
        job_id = r.headers["location"].removeprefix("/jobs/")
        assert w.wait_for_job(job_id)["status"] == "succeeded"
        page = browser.get(f"/jobs/{job_id}").text
        assert 'class="grid released"' in page and '<svg class="chart"' in page
        assert 'http-equiv="refresh"' not in page and "披露控制报告" in page
        csv = browser.get(f"/jobs/{job_id}/outputs/by_district.csv")
        assert csv.status_code == 200 and "attachment" in csv.headers["content-disposition"]
        assert "district" in csv.content.decode("utf-8-sig").splitlines()[0]
        parquet = browser.get(f"/jobs/{job_id}/outputs/by_district.parquet")
        assert parquet.content[:4] == b"PAR1"
        as_json = browser.get(f"/jobs/{job_id}/outputs/by_district.json")
        api_body = w.client.get(
            f"/v1/jobs/{job_id}/outputs/by_district", headers=w.h(w.operator)
        ).json()
        assert as_json.json() == api_body
        assert browser.get(f"/jobs/{job_id}/outputs/by_district.exe").status_code == 404
        assert job_id in browser.get("/jobs").text
        bill = browser.get("/bills").text
        period = _period(w, job_id)
        api = w.client.get(f"/v1/bills?period={period}", headers=w.h(w.operator)).json()
        assert job_id in bill and f"¥ {api['total']}" in bill
        sheet = browser.get(f"/bills/{period}.csv")
        api_sheet = w.client.get(f"/v1/bills?period={period}&format=csv", headers=w.h(w.operator))
        assert sheet.status_code == 200 and sheet.content == api_sheet.content
        assert browser.get(f"/bills/{period}.exe").status_code == 404


def test_a_job_signed_where_the_key_is_runs_signed_and_a_changed_one_is_refused_by_the_key(
    local_world: World,
) -> None:
    """What the editor's script sends: the signature over the code as typed (LF), while the
    form carries the code's line breaks as CRLF; any change after signing is refused beside
    the key picker, and nothing runs or is reserved."""
    w = local_world
    cid = w.active_contract()
    code = 'd = table("population").group_by("district").agg(n=count()).collect()\nemit("d", d)\n'
    params = {"年份": 2026}
    with _fresh(w) as browser:
        csrf = _sign_in(browser, w.operator["token"])
        editor = browser.get(f"/jobs/new?contract={cid}").text
        assert 'id="key-file"' in editor and 'name="signature"' in editor
        domain = re.search(r'id="job-signing" data-domain="([^"]+)"', editor)
        assert domain and base64.b64decode(domain.group(1)) == SUBMISSION_DOMAIN
        form = {
            "csrf": csrf,
            "contract": cid,
            "code": code.replace("\n", "\r\n"),
            "params": json.dumps(params, ensure_ascii=False),
            "action": "run",
        }
        before = len(w.client.get("/v1/jobs", headers=w.h(w.operator)).json()["jobs"])
        changed = sign_submission(w.operator_key, cid, code.replace("d)", "d) "), params)
        r = browser.post("/jobs/new", data={**form, **changed})
        assert r.status_code == 400
        assert re.search(r'id="key-error"[^>]*>[^<]*does not verify', r.text), r.text
        late = sign_submission(w.operator_key, cid, code, params, signed_at="2020-01-01T00:00:00Z")
        r = browser.post("/jobs/new", data={**form, **late})
        assert r.status_code == 400 and "sign it again" in r.text
        assert len(w.client.get("/v1/jobs", headers=w.h(w.operator)).json()["jobs"]) == before
        # The quote needs no signature, and ignores one.
        quoted = browser.post("/jobs/new", data={**form, **changed, "action": "quote"})
        assert quoted.status_code == 200 and 'id="quote-result"' in quoted.text

        signed = sign_submission(w.operator_key, cid, code, params)
        r = browser.post("/jobs/new", data={**form, **signed}, follow_redirects=False)
        assert r.status_code == 303, r.text
        job_id = r.headers["location"].removeprefix("/jobs/")
    job = w.client.get(f"/v1/jobs/{job_id}", headers=w.h(w.regulator)).json()
    assert job["signature"] == signed["signature"] and job["signing_key_id"]
    assert job["code"] == code and job["signed_at"] == signed["signed_at"]


def _period(w: World, job_id: str) -> str:
    from sandbox.records.money import period_of
    from sandbox.store.models import Job

    with w.ctx.reading() as s:
        job = s.get(Job, job_id)
        assert job is not None and job.finished_at is not None
        return period_of(job.finished_at)


def test_another_operators_contract_and_job_are_refused_as_the_api_refuses_them(
    local_world: World,
) -> None:
    w = local_world
    cid = w.active_contract()
    job_id = w.run(cid, CODE).json()["id"]
    with _fresh(w) as other:
        csrf = _sign_in(other, w.other_operator["token"])
        for path in (
            f"/contracts/{cid}",
            f"/jobs/new?contract={cid}",
            f"/jobs/{job_id}",
            f"/jobs/{job_id}/outputs/by_district.csv",
        ):
            r = other.get(path)
            api = w.client.get(
                "/v1"
                + path.split("?")[0].replace("outputs/by_district.csv", "outputs/by_district"),
                headers=w.h(w.other_operator),
            )
            assert r.status_code == api.status_code == 404, path
            assert (
                "by_district" not in r.text.replace(path, "") and "养老服务设施规划" not in r.text
            )
        signed = other.post(f"/contracts/{cid}/sign", data={"csrf": csrf, "signature": "AAAA"})
        assert signed.status_code == 404
        ran = other.post(
            "/jobs/new", data={"csrf": csrf, "contract": cid, "code": CODE, "action": "run"}
        )
        assert ran.status_code == 404
        assert job_id not in other.get("/jobs").text and cid not in other.get("/bills").text
    with _fresh(w) as provider:
        _sign_in(provider, w.provider["token"])
        for path in ("/contracts", "/jobs", "/bills", "/contracts/new?dataset=population"):
            assert provider.get(path).status_code == 403, path


def test_script_in_what_operators_type_is_shown_as_text(local_world: World) -> None:
    w = local_world
    cid = w.active_contract(purpose=f"规划 {SCRIPT} {IMG}")
    with _fresh(w) as browser:
        csrf = _sign_in(browser, w.operator["token"])
        pages = [browser.get(f"/contracts/{cid}").text, browser.get("/contracts").text]
        pages.append(
            browser.post(
                "/jobs/new",
                data={
                    "csrf": csrf,
                    "contract": cid,
                    "code": f"# {SCRIPT}\n{IMG}\n",
                    "params": f'{{"x": "{IMG}"',
                    "action": "quote",
                },
            ).text
        )
        pages.append(
            browser.post(
                "/jobs/new",
                data={"csrf": csrf, "contract": cid, "code": f"x = '{IMG}'\n{SCRIPT}"},
            ).text
        )
        refused = browser.post(
            "/contracts/new", data=_application(csrf, purpose=SCRIPT, valid_to="2000-01-01")
        )
        pages.append(refused.text)
        for page in pages:
            assert "<script>alert" not in page and "<img src=x" not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in pages[0]
        assert "&lt;img src=x onerror=alert(1)&gt;" in pages[2]


def test_a_post_from_another_site_changes_nothing(local_world: World) -> None:
    w = local_world
    cid = _signed_by_bureau(w)
    canonical = base64.b64decode(_contract(w, cid)["canonical"])
    with _fresh(w) as browser:
        csrf = _sign_in(browser, w.operator["token"])
        evil = {"origin": "https://evil.example"}
        before = w.client.get("/v1/contracts", headers=w.h(w.operator)).json()["contracts"]
        applied = browser.post("/contracts/new", data=_application(csrf), headers=evil)
        assert applied.status_code == 403
        signed = browser.post(
            f"/contracts/{cid}/sign",
            data={"csrf": csrf, "signature": sign(w.operator_key, canonical)},
            headers=evil,
        )
        assert signed.status_code == 403
        ran = browser.post(
            "/jobs/new",
            data={"csrf": csrf, "contract": cid, "code": CODE, "action": "run"},
            headers=evil,
        )
        assert ran.status_code == 403
        no_token = browser.post("/contracts/new", data=_application("forged"))
        assert no_token.status_code in (401, 403)
    after = w.client.get("/v1/contracts", headers=w.h(w.operator)).json()["contracts"]
    assert len(after) == len(before) and _contract(w, cid)["status"] == "signed_by_bureau"


SMALL_GROUPS = (
    'rows = table("population").filter(col("district") == params["区"])'
    '.group_by("hukou_type", "gender").agg(n=count(), m=mean("income")).collect()\n'
    'emit("户籍性别", rows)\n'
)
TWO_NUMBERS = (
    'emit("by_district", table("population").group_by("district")'
    '.agg(n=count(), m=mean("income")).collect())'
)


def _run(browser: TestClient, csrf: str, w: World, cid: str, code: str, params: str) -> str:
    form = {"csrf": csrf, "contract": cid, "code": code, "params": params, "action": "run"}
    r = browser.post("/jobs/new", data=form, follow_redirects=False)
    assert r.status_code == 303, r.text
    job_id = r.headers["location"].removeprefix("/jobs/")
    assert w.wait_for_job(job_id)["status"] == "succeeded"
    return job_id


def test_suppressed_cells_are_marked_and_any_numeric_column_can_be_charted(
    local_world: World,
) -> None:
    w = local_world
    cid = w.active_contract()
    with _fresh(w) as browser:
        csrf = _sign_in(browser, w.operator["token"])
        small = _run(browser, csrf, w, cid, SMALL_GROUPS, '{"区": "北山区"}')
        released = w.wait_for_job(small)["outputs"]["户籍性别"]
        page = browser.get(f"/jobs/{small}").text
        hidden = page.count('<td class="suppressed"')
        assert hidden == len(released["suppressed"]) > 0
        assert 'class="legend"' in page
        # Two key columns: no one-key chart to draw.
        assert '<svg class="chart"' not in page
        two = _run(browser, csrf, w, cid, TWO_NUMBERS, "{}")
        first = browser.get(f"/jobs/{two}").text
        assert '<option value="m">' in first and 'aria-label="by_district：n"' in first
        chosen = browser.get(f"/jobs/{two}", params={"chart.by_district": "m"}).text
        assert 'aria-label="by_district：m"' in chosen


TOTALS = """\
r = table("population").group_by("district", "gender").agg(n=count()).with_totals().collect()
emit("cross", r)
"""


def test_totals_are_rows_of_their_own_saying_what_they_add_up(local_world: World) -> None:
    w = local_world
    cid = w.active_contract()
    with _fresh(w) as browser:
        csrf = _sign_in(browser, w.operator["token"])
        job_id = _run(browser, csrf, w, cid, TOTALS, "{}")
        released = w.wait_for_job(job_id)["outputs"]["cross"]
        page = browser.get(f"/jobs/{job_id}").text
        assert page.count('<tr class="total">') == len(released["margins"]) > 0
        grand = page.split('<tr class="total">')[-1].split("</tr>")[0]
        assert grand.count("<td>合计</td>") == 2, grand
        assert (
            f"<td>{sum(r[2] for i, r in enumerate(released['rows']) if i not in released['margins'])}</td>"
            in grand
        )


def test_the_job_listing_shows_the_newest_first_however_many_there_are(
    local_world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With more jobs than the page shows, the page holds the newest (it once held the
    oldest: an operator with a long history never saw a new job in the console)."""
    from sandbox.console.pages import operator, regulator

    monkeypatch.setattr(operator, "SHOWN", 2)
    monkeypatch.setattr(regulator, "SHOWN", 2)
    w = local_world
    cid = w.active_contract()
    ids = [w.run(cid, CODE).json()["id"] for _ in range(3)]
    newest = ids[::-1][:2]
    for who, path in ((w.operator, "/jobs"), (w.regulator, "/oversight/jobs")):
        with _fresh(w) as browser:
            _sign_in(browser, who["token"])
            page = browser.get(path).text
            shown = [i for i in re.findall(r"j-[0-9a-f]+", page) if i in ids]
            assert list(dict.fromkeys(shown)) == newest, (path, shown)
            # …and says there are more than it shows, and where to find them.
            assert 'id="jobs-newest"' in page and "GET /v1/jobs" in page
    with _fresh(w) as browser:
        _sign_in(browser, w.regulator["token"])
        page = browser.get("/oversight/jobs").text
        # The filters still offer every operator and status there are.
        assert f'value="{w.operator["id"]}"' in page and 'value="succeeded"' in page
