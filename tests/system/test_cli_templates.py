"""`sandbox templates …` against a live `sandbox serve`: an operator submits a template from a
file, its department approves it from the shell, the operator runs it with parameters and
sees the job; refusals carry the service's message; the client SDK does the same."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from live import Cast, active_contract, cast_of, run_server
from test_cli_jobs import cli

from operators.client import SandboxAPIError

CODE = (
    'rows = table("population").filter(col("district") == params["district"])'
    '.group_by("gender").agg(n=count()).collect()\n'
    'emit("by_gender", rows)\n'
)
SCHEMA = {
    "type": "object",
    "properties": {"district": {"type": "string", "enum": ["城关区", "湖滨区"]}},
    "required": ["district"],
}


@pytest.fixture(scope="module")
def cast(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cast]:
    root = tmp_path_factory.mktemp("cli-templates")
    with run_server(root, executor="local") as server, cast_of(server, root) as cast:
        yield cast


def run(cast: Cast, token: str, *args: str, cwd: Path) -> tuple[int, str, str]:
    r = cli(*args, "--url", cast.server.url, cwd=cwd, token=token)
    return r.returncode, r.stdout, r.stderr


def test_a_template_submitted_approved_and_run_from_the_shell(cast: Cast, tmp_path: Path) -> None:
    operator = cast.operator_token
    department = cast.provider.rotate_token()
    cid = active_contract(cast)
    (tmp_path / "elderly.py").write_text(CODE, encoding="utf-8")
    (tmp_path / "schema.json").write_text(json.dumps(SCHEMA, ensure_ascii=False), "utf-8")

    code, out, err = run(
        cast,
        operator,
        "templates",
        "submit",
        "elderly.py",
        "--name",
        "分区性别构成",
        "--schema",
        "schema.json",
        cwd=tmp_path,
    )
    assert code == 0, err
    assert "分区性别构成" in out and "version 1: pending" in out and "awaiting" in out
    tid = out.split("template ", 1)[1].split(":", 1)[0]

    # Not approved yet: the run is refused with what it waits for.
    code, out, err = run(
        cast, operator, "templates", "run", tid, "--contract", cid, "--params",
        '{"district": "城关区"}', cwd=tmp_path,
    )  # fmt: skip
    assert code == 1 and "市公安局" in err and "pending" in err, (out, err)

    code, out, err = run(cast, department, "templates", "list", "--awaiting", cwd=tmp_path)
    assert code == 0 and tid in out and "1 template(s)" in out, err
    code, out, err = run(
        cast, department, "templates", "review", tid, "1", "--refuse", cwd=tmp_path
    )
    assert code == 1 and "reason" in err, (out, err)
    code, out, err = run(
        cast, department, "templates", "review", tid, "1", "--approve",
        "--conditions", "结果仅用于养老规划", cwd=tmp_path,
    )  # fmt: skip
    assert code == 0 and "version 1: approved" in out and "结果仅用于养老规划" in out, err

    code, out, err = run(cast, operator, "templates", "show", tid, cwd=tmp_path)
    assert code == 0 and "approve" in out and 'params["district"]' in out, err

    code, out, err = run(
        cast, operator, "templates", "run", tid, "--contract", cid, "--params",
        '{"district": "火星区"}', cwd=tmp_path,
    )  # fmt: skip
    assert code == 1 and "district" in err and "城关区" in err, (out, err)
    code, out, err = run(
        cast, operator, "templates", "run", tid, "--contract", cid, "--params", "[1]",
        cwd=tmp_path,
    )  # fmt: skip
    assert code == 2 and "JSON object" in err, (out, err)

    code, out, err = run(
        cast, operator, "templates", "run", tid, "--contract", cid, "--params",
        '{"district": "湖滨区"}', cwd=tmp_path,
    )  # fmt: skip
    assert code == 0, err
    assert "succeeded" in out and f"template {tid} version 1" in out and "by_gender" in out
    job_id = out.split("job ", 1)[1].split(":", 1)[0]
    job = cast.operator.job(job_id)
    assert job.origin == {"template_id": tid, "template_version": 1}
    assert sum(job.output("by_gender").column("n").to_pylist()) > 0


def test_the_client_submits_lists_and_runs_templates(cast: Cast) -> None:
    cid = active_contract(cast)
    code = CODE.replace("by_gender", "性别")
    t = cast.operator.submit_template("性别构成（SDK）", code, SCHEMA, "SDK 提交")
    assert t["versions"][0]["status"] == "pending"
    with pytest.raises(SandboxAPIError) as refused:
        cast.operator.submit_template("性别构成（SDK）", code, SCHEMA)
    assert refused.value.status == 409 and "version 1" in str(refused.value)
    assert t["id"] in [x["id"] for x in cast.provider.templates(awaiting=True)]
    cast.provider.review_template(t["id"], 1, "approve")
    assert t["id"] in [x["id"] for x in cast.operator.templates(status="approved")]
    job = cast.operator.run_template(t["id"], cid, {"district": "城关区"}, wait=True)
    assert job.status == "succeeded" and job.origin == {
        "template_id": t["id"],
        "template_version": 1,
    }
    assert job.output("性别").num_rows == 2
    with pytest.raises(SandboxAPIError) as bad:
        cast.operator.run_template(t["id"], cid, {"district": "城关区", "x": 1})
    assert bad.value.code == "params_invalid" and "x" in str(bad.value)
