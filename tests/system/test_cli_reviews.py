"""`sandbox reviews …` against a live `sandbox serve` whose L3 releases are held: a department
lists, reads and releases from the shell; the operator's `sandbox jobs show` follows."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from live import Cast, active_contract, cast_of, run_server
from test_cli_jobs import cli


@pytest.fixture(scope="module")
def cast(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cast]:
    root = tmp_path_factory.mktemp("cli-reviews")
    env = {"SANDBOX_REVIEW_LEVELS": "L3"}
    with run_server(root, executor="local", extra_env=env) as server, cast_of(server, root) as cast:
        yield cast


def test_a_department_releases_a_held_job_from_the_shell(cast: Cast, tmp_path: Path) -> None:
    cid = active_contract(cast, spend_cap="100.00")
    code = 'emit("按区", table("population").group_by("district").agg(n=count()).collect())\n'
    job = cast.unsigned_operator.submit(cid, code, wait=True)
    assert job.status == "held"
    department = cast.provider.rotate_token()
    url = ("--url", cast.server.url)

    shown = cli("jobs", "show", job.id, *url, cwd=tmp_path, token=cast.operator_token)
    assert shown.returncode == 0 and "held" in shown.stdout, shown.stderr
    assert "waiting" in shown.stdout and "level:L3" in shown.stdout
    assert "城关区" not in shown.stdout

    listed = cli("reviews", "list", "--status", "pending", *url, cwd=tmp_path, token=department)
    assert listed.returncode == 0 and "1 review(s)" in listed.stdout, listed.stderr
    review_id = job.refresh().review["id"]  # type: ignore[index]
    assert review_id in listed.stdout

    read = cli("reviews", "show", review_id, *url, cwd=tmp_path, token=department)
    assert read.returncode == 0 and "城关区" in read.stdout and "held release" in read.stdout

    denied = cli("reviews", "list", *url, cwd=tmp_path, token=cast.operator_token)
    assert denied.returncode == 1 and "forbidden" in denied.stderr + denied.stdout

    no_reason = cli("reviews", "refuse", review_id, *url, cwd=tmp_path, token=department)
    assert no_reason.returncode != 0

    done = cli("reviews", "release", review_id, *url, cwd=tmp_path, token=department)
    assert done.returncode == 0 and "released" in done.stdout, done.stderr
    assert job.wait(timeout=30).status == "succeeded"
    twice = cli("reviews", "release", review_id, *url, cwd=tmp_path, token=department)
    assert twice.returncode == 1 and "decided already" in twice.stderr
