"""Checking a job before paying for it (`POST /v1/checks`): problems with their lines,
nothing run, read, recorded or charged; submission refuses exactly the errors found."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import World

from sandbox.api.models.jobs import Check

GOOD = 'emit("n", table("population").group_by("district").agg(n=count()).collect())'
CASES = [
    # (code, line, words of the message, the code a submission is refused with)
    (
        'res = table("population").group_by("district").order_by("n")\nemit("x", res)',
        1,
        "a grouped table (group_by(…)) has no 'order_by'",
        "code_rejected",
    ),
    (
        't = table("population").group_by("district").agg(n=count()).collect()\n'
        'emit("x", t.slice(0, 3))',
        2,
        "a released table has no 'slice'",
        "code_rejected",
    ),
    (
        'old = col("birth_date") < "1960-01-01"\n'
        'emit("x", table("population").agg(n=sum(old)).collect())',
        2,
        "sum() of a condition",
        "code_rejected",
    ),
    ("x = 1\nimport os", 2, "import", "code_rejected"),
    (
        'emit("x", table("population").group_by("hukou_type").agg(n=count()).collect())',
        None,
        "'hukou_type'",
        "contract_scope",
    ),
]


def check(w: World, cid: str, code: str) -> dict[str, Any]:
    r = w.client.post(
        "/v1/checks", json={"contract_id": cid, "code": code}, headers=w.h(w.operator)
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert Check.model_validate(body).model_dump(mode="json", exclude_unset=True) == body
    return body  # type: ignore[no-any-return]


def test_a_good_job_is_quoted_and_nothing_is_recorded(local_world: World) -> None:
    w = local_world
    cid = w.active_contract(
        {
            "population": {
                "district": ["group_by"],
                "birth_date": ["filter"],
                "income": ["aggregate"],
            }
        }
    )
    entries = len(w.client.get("/v1/ledger/entries", headers=w.h(w.regulator)).json()["entries"])
    body = check(w, cid, GOOD)
    assert body["ok"] is True and body["problems"] == [] and body["quote"]["amount"]
    listed = w.client.get("/v1/jobs", headers=w.h(w.operator)).json()["jobs"]
    assert listed == []
    after = w.client.get("/v1/ledger/entries", headers=w.h(w.regulator)).json()["entries"]
    assert len(after) == entries
    # A loop around emit() is a warning: the job may still be admitted.
    looped = (
        't = table("population").group_by("district").agg(n=count()).collect()\n'
        "for i in range(2):\n"
        '    emit("x" + str(i), t)\n'
    )
    body = check(w, cid, looped)
    assert body["ok"] is True and body["quote"] is not None
    (problem,) = body["problems"]
    assert (problem["line"], problem["severity"]) == (3, "warning")
    assert "emit() inside a loop" in problem["message"]


@pytest.mark.parametrize(("code", "line", "says", "refused_as"), CASES)
def test_a_problem_is_found_with_its_line_and_submission_refuses_it_alike(
    local_world: World, code: str, line: int | None, says: str, refused_as: str
) -> None:
    w = local_world
    cid = w.active_contract(
        {
            "population": {
                "district": ["group_by"],
                "birth_date": ["filter"],
                "income": ["aggregate"],
            }
        }
    )
    body = check(w, cid, code)
    assert body["ok"] is False and body["quote"] is None
    first = body["problems"][0]
    assert first["severity"] == "error" and first["line"] == line, body
    assert says in first["message"] and first["code"] == refused_as, body
    r = w.run(cid, code)
    assert r.status_code in (400, 403), r.text
    assert r.json()["code"] == refused_as and says in r.json()["error"]
    assert r.json().get("line") == line
    # Refused before anything was reserved or read: nothing charged.
    job = w.client.get(f"/v1/jobs/{r.json()['job_id']}", headers=w.h(w.operator)).json()
    assert job["status"] == "rejected" and job["charge"] is None


def test_only_operators_check(local_world: World) -> None:
    w = local_world
    cid = w.active_contract()
    r = w.client.post(
        "/v1/checks", json={"contract_id": cid, "code": GOOD}, headers=w.h(w.provider)
    )
    assert r.status_code == 403 and r.json()["code"] == "forbidden"
