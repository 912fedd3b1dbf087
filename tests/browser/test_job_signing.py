"""An operator signs a job in the browser with its key file (WebCrypto Ed25519): the service
verifies it, the regulator reads the signature and checks it from the stored submission; a key
that is not the operator's is refused beside the picker and runs nothing; the key never leaves
the page."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import rfc8785
from live import Cast, active_contract

from operators.keys import generate_private_key, private_key_to_pem, public_key_b64, verify
from operators.submission import submission_bytes

from .conftest import Watched, follow, sign_in

# Two lines (the form sends them as CRLF) and params with Chinese keys, a number and a list:
# what the page signs must be byte for byte what the service canonicalises.
CODE = (
    'd = table("population").group_by("district").agg(n=count()).collect()\nemit("按区人数", d)\n'
)
PARAMS = '{"年份": 2026, "比例": 0.5, "区": ["城关区", "七里河区"], "a": {"z": 1, "b": null}}'


def _posts(page: Any) -> list[str]:
    sent: list[str] = []
    page.on("request", lambda r: sent.append(r.post_data or "") if r.method == "POST" else None)
    return sent


def _write(tab: Watched, site: Cast, key_pem: bytes, tmp_path: Path) -> str:
    """A contract, the operator signed in at its editor with the job typed and `key_pem`
    chosen; the contract's id."""
    cid = active_contract(site)
    sign_in(tab, site.operator_token)
    page = tab.page
    tab.go(f"/jobs/new?contract={cid}")
    page.fill("#code", CODE)
    page.fill("#params", PARAMS)
    key_file = tmp_path / "operator.pem"
    key_file.write_bytes(key_pem)
    page.set_input_files("#key-file", str(key_file))
    return cid


def _regulator_view(site: Cast, job_id: str) -> dict[str, Any]:
    token = site.bureau.create_principal("市数据监管处", "regulator")["token"]
    response = httpx.get(
        f"{site.server.url}/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {token}"}
    )
    response.raise_for_status()
    return dict(response.json())


def test_a_job_signed_in_the_browser_verifies_from_its_record(
    tab: Watched, site: Cast, tmp_path: Path
) -> None:
    cid = _write(tab, site, private_key_to_pem(site.operator_key), tmp_path)
    page = tab.page
    sent = _posts(page)
    follow(page, "#run")
    page.wait_for_selector("table.released", timeout=60_000)
    job_id = page.url.rsplit("/", 1)[-1]
    assert job_id.startswith("j-")
    # Only the signature went to the service, never the key.
    assert sent and all("PRIVATE" not in body and "MC4CAQ" not in body for body in sent)

    job = _regulator_view(site, job_id)
    assert job["signature"] and job["signing_key_id"]
    assert job["code"] == CODE  # line breaks as typed, not as the form sent them
    data = submission_bytes(cid, job["code"], job["params"], None, job["signed_at"])
    verify(public_key_b64(site.operator_key), data, job["signature"])
    # The regulator's page shows it as signed.
    follow(page, "form[action='/signout'] button")
    sign_in(tab, site.bureau.create_principal("市数据监管处二科", "regulator")["token"])
    tab.go(f"/oversight/jobs/{job_id}")
    assert page.locator("#signature").inner_text() == job["signature"]


def test_a_key_that_is_not_the_operators_is_refused_and_runs_nothing(
    tab: Watched, site: Cast, tmp_path: Path
) -> None:
    before = len(site.operator.jobs())
    _write(tab, site, private_key_to_pem(generate_private_key()), tmp_path)
    page = tab.page
    follow(page, "#run")
    assert "/jobs/new" in page.url
    error = page.locator("#key-error")
    assert error.is_visible() and "verify" in error.inner_text()
    assert "key-error" in (page.get_attribute("#key-file", "aria-describedby") or "")
    # What was typed is kept, so that only the key needs choosing again.
    assert page.input_value("#code") == CODE
    assert len(site.operator.jobs()) == before


def test_a_file_that_holds_no_key_is_explained_and_nothing_is_sent(
    tab: Watched, site: Cast, tmp_path: Path
) -> None:
    _write(tab, site, b"not a key\n", tmp_path)
    page = tab.page
    sent = _posts(page)
    page.click("#run")
    error = page.locator("#key-error")
    error.wait_for(state="visible")
    assert "PKCS#8" in error.inner_text()
    assert sent == []


# Where canonical JSON is easy to get wrong: key order by UTF-16 code units (a character
# beyond the BMP sorts before U+FFFF there, after it by code point), numbers in their shortest
# form and exponents, and strings with line separators, controls, quotes and backslashes.
TRICKY: list[Any] = [
    {"\uffff": 1, "😀": 2, "z": 3, "Z": 4, "é": 5, "城": 6, "": 7},
    {"n": [0, -1, 1.5, 0.1, 1e21, 1e-7, 123456789012345, 2**53 - 1, -2.5e-300, 1e300]},
    {"s": 'line\u2028sep\u2029para\x00\x1f"quoted" back\\slash /slash tab\t 中文 😀'},
    {"nested": {"b": [True, False, None, {"y": {}, "x": []}], "a": "甲"}},
]


def test_the_pages_canonical_json_is_rfc_8785_byte_for_byte(tab: Watched, site: Cast) -> None:
    cid = active_contract(site)
    sign_in(tab, site.operator_token)
    tab.go(f"/jobs/new?contract={cid}")
    for value in TRICKY:
        made = tab.page.evaluate("(v) => canonicalJson(v)", value)
        assert made.encode("utf-8") == rfc8785.dumps(value), value
