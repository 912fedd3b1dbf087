"""Output review in the console over HTTP: the queue and a held release's page for those who
decide and the regulator who reads, the decision form with its refusals beside it, the
operator's held job with its waited time, and the walls (operators see no review)."""

from __future__ import annotations

from conftest import World
from test_console import _fresh, _sign_in

CODE = "emit('t', table('population').group_by('district').agg(n=count()).collect())"


def test_a_department_releases_from_its_queue_and_the_operator_sees_the_job_finish(
    local_world: World,
) -> None:
    w = local_world
    cid = w.active_contract(review={"outputs": True})
    job_id = w.run(cid, CODE).json()["id"]
    review_id = w.wait_for_job(job_id)["review"]["id"]
    with _fresh(w) as op:
        _sign_in(op, w.operator["token"])
        page = op.get(f"/jobs/{job_id}").text
        assert 'id="job-held"' in page and "待审核" in page and "已等待" in page
        assert "城关区" not in page
        assert 'href="/reviews"' not in page  # not in an operator's menu
        assert op.get("/reviews").status_code == 403
        assert op.get(f"/reviews/{review_id}").status_code == 403
    with _fresh(w) as dept:
        csrf = _sign_in(dept, w.provider["token"])
        queue = dept.get("/reviews").text
        assert 'href="/reviews"' in queue and f'id="review-{review_id}"' in queue
        assert "合同要求审核全部结果" in queue
        page = dept.get(f"/reviews/{review_id}").text
        assert 'id="held"' in page and "城关区" in page and 'id="decide"' in page
        # Refusing needs a reason: said beside the form, nothing decided.
        r = dept.post(
            f"/reviews/{review_id}/decisions",
            data={"csrf": csrf, "decision": "refuse", "reason": " "},
            follow_redirects=False,
        )
        assert r.status_code == 400 and 'id="review-error"' in r.text
        # A form from elsewhere (no CSRF token) changes nothing.
        r = dept.post(
            f"/reviews/{review_id}/decisions",
            data={"decision": "release"},
            follow_redirects=False,
        )
        assert r.status_code in (400, 401, 403)
        assert w.wait_for_job(job_id)["status"] == "held"
        r = dept.post(
            f"/reviews/{review_id}/decisions",
            data={"csrf": csrf, "decision": "release", "reason": "<script>alert(1)</script>"},
            follow_redirects=False,
        )
        assert r.status_code == 303, r.text
        page = dept.get(f"/reviews/{review_id}").text
        assert "已放行" in page and "&lt;script&gt;" in page and "<script>alert" not in page
    job = w.wait_for_job(job_id)
    assert job["status"] == "succeeded", job
    with _fresh(w) as reg:
        _sign_in(reg, w.regulator["token"])
        page = reg.get(f"/reviews/{review_id}").text
        assert 'id="held"' in page and 'id="decide"' not in page
        page = reg.get(f"/oversight/jobs/{job_id}").text
        assert f'href="/reviews/{review_id}"' in page
    with _fresh(w) as op:
        _sign_in(op, w.operator["token"])
        page = op.get(f"/jobs/{job_id}").text
        assert "城关区" in page and 'id="job-held"' not in page and 'id="job-review"' in page
