"""The regulator's console pages over HTTP: contracts with their history (suspend, resume),
jobs with code, signature and the full disclosure report, flags, reports with charts and CSV,
and the log with an inclusion proof verified on the server. And the walls: nobody else sees
these pages, text users typed stays text, a form from another site changes nothing."""

from __future__ import annotations

import csv
import io
import re

from conftest import GRANTS, World
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import update
from test_console import _fresh, _sign_in

from operators.keys import public_key_b64
from sandbox.common import clock
from sandbox.ledger.note import add_signature
from sandbox.records import money
from sandbox.store.models import LedgerEntry

BY_DISTRICT = (
    "emit('t', table('population').group_by('district').agg(n=count(), i=mean('income')).collect())"
)
SEARCH = (
    'emit("t", table("population").filter(col("income") > params["t"])'
    '.agg(n=count(), m=mean("income")).collect())'
)
WITNESS = "regulator.example.gov.cn"
FORGED = b'{"actor":null,"at":"2026-01-01T00:00:00Z","data":{},"subject":null,"type":"x"}'
SCRIPT = '<script>alert("x")</script>"><img src=x onerror=alert(1)>'


def _status(w: World, cid: str) -> str:
    return str(w.client.get(f"/v1/contracts/{cid}", headers=w.h(w.bureau)).json()["status"])


def test_nobody_but_the_regulator_opens_the_oversight_pages(local_world: World) -> None:
    w = local_world
    cid = w.active_contract()
    job = w.run(cid, BY_DISTRICT).json()
    paths = (
        "/oversight/contracts",
        f"/oversight/contracts/{cid}",
        "/oversight/jobs",
        f"/oversight/jobs/{job['id']}",
        "/oversight/reports",
        "/oversight/reports/usage.csv",
        "/oversight/log",
    )
    with _fresh(w) as browser:
        for path in paths:
            assert browser.get(path, follow_redirects=False).status_code == 303
        for who in (w.operator, w.provider, w.bureau):
            token = who if isinstance(who, str) else who["token"]
            _sign_in(browser, token)
            for path in paths:
                r = browser.get(path)
                assert r.status_code == 403, (path, r.text)
                assert "emit(" not in r.text and job["id"] not in r.text
        csrf = _sign_in(browser, w.operator["token"])
        r = browser.post(f"/oversight/contracts/{cid}/suspend", data={"csrf": csrf, "reason": "x"})
        assert r.status_code == 403 and _status(w, cid) == "active"


def test_the_regulator_reads_contracts_with_history_and_suspends_and_resumes_with_a_reason(
    local_world: World,
) -> None:
    w = local_world
    cid = w.active_contract()
    with _fresh(w) as browser:
        csrf = _sign_in(browser, w.regulator["token"])
        listing = browser.get("/oversight/contracts").text
        assert cid in listing and w.operator["name"] in listing and "生效" in listing
        assert cid in browser.get("/oversight/contracts?status=active").text
        assert cid not in browser.get("/oversight/contracts?status=refused").text
        page = browser.get(f"/oversight/contracts/{cid}").text
        for shown in ("待部门审批", "数据局已签署", "养老服务设施规划", "<code>income</code>"):
            assert shown in page
        view = w.client.get(f"/v1/contracts/{cid}", headers=w.h(w.regulator)).json()
        assert view["signatures"]["operator"] in page and view["signatures"]["bureau"] in page
        # A suspension needs a reason: said next to the field, nothing changed.
        empty = browser.post(f"/oversight/contracts/{cid}/suspend", data={"csrf": csrf})
        assert empty.status_code == 400 and 'id="reason-contract-suspend-error"' in empty.text
        assert "needs a reason" in empty.text and _status(w, cid) == "active"
        r = browser.post(
            f"/oversight/contracts/{cid}/suspend",
            data={"csrf": csrf, "reason": "抽查发现异常查询"},
            follow_redirects=False,
        )
        assert r.status_code == 303 and _status(w, cid) == "suspended"
        page = browser.get(f"/oversight/contracts/{cid}").text
        assert "抽查发现异常查询" in page and f"/oversight/contracts/{cid}/resume" in page
        r = browser.post(
            f"/oversight/contracts/{cid}/resume",
            data={"csrf": csrf, "reason": "已核实"},
            follow_redirects=False,
        )
        assert r.status_code == 303 and _status(w, cid) == "active"
        # The operator too, through the same functions as the API.
        r = browser.post(
            f"/oversight/contracts/{cid}/operator/suspend",
            data={"csrf": csrf, "reason": "许可审查"},
            follow_redirects=False,
        )
        assert r.status_code == 303
        who = w.client.get(f"/v1/principals/{w.operator['id']}", headers=w.h(w.regulator))
        assert who.json()["status"] == "suspended"
        r = browser.post(
            f"/oversight/contracts/{cid}/operator/resume",
            data={"csrf": csrf, "reason": "审查结束"},
            follow_redirects=False,
        )
        who = w.client.get(f"/v1/principals/{w.operator['id']}", headers=w.h(w.regulator))
        assert r.status_code == 303 and who.json()["status"] == "active"
        missing = browser.get("/oversight/contracts/c-nothere")
        assert missing.status_code == 404


def test_a_job_page_shows_code_signature_disclosure_and_released_tables(
    local_world: World,
) -> None:
    w = local_world
    cid = w.active_contract()
    job = w.run(cid, BY_DISTRICT + "  # " + SCRIPT).json()
    assert job["status"] == "succeeded", job
    full = w.client.get(f"/v1/jobs/{job['id']}", headers=w.h(w.regulator)).json()
    with _fresh(w) as browser:
        _sign_in(browser, w.regulator["token"])
        listing = browser.get(f"/oversight/jobs?contract={cid}").text
        assert job["id"] in listing
        assert job["id"] not in browser.get("/oversight/jobs?status=failed").text
        page = browser.get(f"/oversight/jobs/{job['id']}")
        assert page.status_code == 200
        code = page.text.split('<pre class="code" id="code">')[1].split("</pre>")[0]
        assert "group_by(&#39;district&#39;)" in code and "&lt;script&gt;" in code
        assert "<script>alert" not in page.text and "<img src=x" not in page.text
        release = full["disclosure"]["releases"][0]
        assert "disclosure-json" in page.text and str(release["cells"]) in page.text
        # The released table, row by row.
        released = full["outputs"]["t"]
        assert len(released["rows"]) >= 1
        assert str(released["rows"][0][0]) in page.text
        assert browser.get("/oversight/jobs/j-nothere").status_code == 404


def test_reports_draw_charts_and_download_the_apis_csv(local_world: World) -> None:
    w = local_world
    cid = w.active_contract()
    assert w.run(cid, BY_DISTRICT).json()["status"] == "succeeded"
    period = money.period_of(clock.now())
    with _fresh(w) as browser:
        _sign_in(browser, w.regulator["token"])
        page = browser.get(f"/oversight/reports?period={period}").text
        assert page.count('<svg class="chart"') == 2 and w.operator["name"] in page
        mine = browser.get(f"/oversight/reports/usage.csv?period={period}")
        api = w.client.get(
            f"/v1/reports/usage?period={period}&format=csv", headers=w.h(w.regulator)
        )
        assert mine.status_code == 200 and mine.headers["content-type"].startswith("text/csv")
        assert mine.content == api.content
        rows = list(csv.reader(io.StringIO(mine.content.decode("utf-8-sig"))))
        assert w.operator["name"] in rows[1]
        revenue = browser.get(f"/oversight/reports/revenue.csv?period={period}")
        api = w.client.get(
            f"/v1/reports/revenue?period={period}&format=csv", headers=w.h(w.regulator)
        )
        assert revenue.content == api.content
        # Every release of the month, with its suppressed cells, and the API's CSV of them.
        job_id = w.client.get("/v1/jobs", headers=w.h(w.regulator)).json()["jobs"][0]["id"]
        assert 'id="releases"' in page and job_id in page
        released = browser.get(f"/oversight/reports/releases.csv?period={period}")
        api = w.client.get(f"/v1/releases?period={period}&format=csv", headers=w.h(w.regulator))
        assert released.status_code == 200 and released.content == api.content
        bad = browser.get("/oversight/reports?period=2026-13")
        assert bad.status_code == 400 and "YYYY-MM" in bad.text


def test_the_log_shows_its_checkpoint_entries_newest_first_and_a_proof_that_verifies(
    local_world: World,
) -> None:
    w = local_world
    w.active_contract()
    size = w.client.get("/v1/ledger/checkpoint", headers=w.h(w.regulator)).json()["size"]
    with _fresh(w) as browser:
        _sign_in(browser, w.regulator["token"])
        page = browser.get("/oversight/log").text
        assert f'id="log-size">{size}<' in page
        indexes = [int(i) for i in re.findall(r"<tr>\s*<td>(\d+)</td>", page)]
        assert indexes and indexes == sorted(indexes, reverse=True) and indexes[0] == size - 1
        assert "sandbox ledger verify --url http://testserver --bureau-key" in page
        proof = browser.get("/oversight/log?index=2").text
        assert 'class="ok verified"' in proof
        api = w.client.get(
            f"/v1/ledger/proofs/inclusion?index=2&size={size}", headers=w.h(w.regulator)
        ).json()
        path = re.findall(r'<li><code class="sig">([^<]+)</code></li>', proof)
        assert path == api["proof"]
        for wrong in ("abc", str(size + 5), "-1"):
            r = browser.get(f"/oversight/log?index={wrong}").text
            assert 'id="index-error"' in r and 'class="ok verified"' not in r
        # A witness's co-signature of the checkpoint is shown with its key.
        signer = Ed25519PrivateKey.generate()
        note = w.client.get("/v1/ledger/checkpoint", headers=w.h(w.regulator)).json()
        body = {
            "checkpoint": add_signature(note["checkpoint"], WITNESS, signer),
            "witness": {"name": WITNESS, "public_key": public_key_b64(signer)},
        }
        cosigned = w.client.post("/v1/ledger/witness", json=body, headers=w.h(w.regulator))
        assert cosigned.status_code == 201, cosigned.text
        witnesses = browser.get("/oversight/log").text.split('id="witnesses"')[1]
        assert WITNESS in witnesses.split("</ul>")[0]
        assert public_key_b64(signer) in witnesses.split("</ul>")[0]
        # An entry changed behind the log's back: the page says its proof does not verify.
        with w.ctx.transaction() as s:
            s.execute(update(LedgerEntry).where(LedgerEntry.index == 2).values(leaf=FORGED))
        forged = browser.get("/oversight/log?index=2").text
        assert 'class="ok verified"' not in forged and "✗" in forged


def test_text_users_typed_reaches_the_regulators_pages_as_text(local_world: World) -> None:
    w = local_world
    cid = w.active_contract(purpose=SCRIPT)
    with _fresh(w) as browser:
        csrf = _sign_in(browser, w.regulator["token"])
        r = browser.post(
            f"/oversight/contracts/{cid}/suspend", data={"csrf": csrf, "reason": SCRIPT}
        )
        assert r.status_code == 200
        for path in (
            "/oversight/contracts",
            f"/oversight/contracts/{cid}",
            "/oversight/log",
        ):
            text = browser.get(path).text
            assert "<script>alert" not in text and "<img src=x" not in text, path
            assert "&lt;script&gt;alert(" in text, path


def test_a_suspension_posted_from_another_site_is_refused(local_world: World) -> None:
    w = local_world
    cid = w.active_contract()
    with _fresh(w) as browser:
        csrf = _sign_in(browser, w.regulator["token"])
        for headers in ({"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}):
            r = browser.post(
                f"/oversight/contracts/{cid}/suspend",
                data={"csrf": csrf, "reason": "伪造"},
                headers=headers,
            )
            assert r.status_code == 403
        assert _status(w, cid) == "active"


def test_flags_are_listed_with_their_jobs_for_the_regulator(local_world: World) -> None:
    w = local_world
    grants = {"population": {**GRANTS["population"], "income": ["aggregate", "filter"]}}
    cid = w.active_contract(grants)
    sweep = [w.run(cid, SEARCH, params={"t": t}).json() for t in (1000, 2000, 3000, 4000)]
    assert all(j["status"] == "succeeded" for j in sweep), sweep
    with _fresh(w) as browser:
        _sign_in(browser, w.regulator["token"])
        listed = browser.get("/oversight/jobs").text.split('id="flag-list"')[1]
        assert "<b>search</b>" in listed and sweep[3]["id"] in listed
        page = browser.get(f"/oversight/jobs/{sweep[3]['id']}").text
        assert 'id="job-flags"' in page and "<b>search</b>" in page
        assert 'id="job-flags"' not in browser.get(f"/oversight/jobs/{sweep[0]['id']}").text
