"""`sandbox demands …` and `sandbox objections …` against a live `sandbox serve`: each role's
steps from the shell, Chinese text whole in the tables, refusals with the service's message,
and the log verifying afterwards with `sandbox ledger verify`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from live import Cast, cast_of, ledger_cli, run_server
from test_cli_jobs import cli

from operators.keys import private_key_from_pem, public_key_b64

TITLE = "全市养老机构床位与入住情况"


@pytest.fixture(scope="module")
def cast(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cast]:
    root = tmp_path_factory.mktemp("cli-demands")
    with run_server(root, executor="local") as server, cast_of(server, root) as cast:
        yield cast


def run(cast: Cast, token: str, *args: str, cwd: Path) -> tuple[int, str, str]:
    r = cli(*args, "--url", cast.server.url, cwd=cwd, token=token)
    return r.returncode, r.stdout, r.stderr


def test_a_demand_from_the_shell_raised_routed_and_published(cast: Cast, tmp_path: Path) -> None:
    operator, bureau = cast.operator_token, cast.server.bureau_token
    department = cast.provider.rotate_token()
    provider_id = cast.provider.me()["id"]
    code, out, err = run(
        cast,
        operator,
        "demands",
        "raise",
        "--title",
        TITLE,
        "--description",
        "各区养老机构的床位数、入住人数，按月",
        "--purpose",
        "测算社区养老服务缺口",
        cwd=tmp_path,
    )
    assert code == 0, err
    assert "open" in out and TITLE in out
    demand_id = out.split("demand ", 1)[1].split(":", 1)[0]

    code, out, err = run(cast, operator, "demands", "list", cwd=tmp_path)
    assert code == 0 and demand_id in out and TITLE in out and "1 demand(s)" in out, err

    code, out, err = run(
        cast,
        bureau,
        "demands",
        "route",
        demand_id,
        "--provider",
        provider_id,
        "--note",
        "请公安局答复",
        cwd=tmp_path,
    )
    assert code == 0 and "routed" in out and "市公安局" in out, out + err

    # A refusal without a reason: the service's message, exit 1, nothing changed.
    code, out, err = run(
        cast, department, "demands", "answer", demand_id, "--status", "refused", cwd=tmp_path
    )
    assert code == 1 and "needs the reason" in err, out + err
    code, out, err = run(
        cast,
        department,
        "demands",
        "answer",
        demand_id,
        "--status",
        "published",
        "--answer",
        "已发布",
        "--dataset",
        "population",
        cwd=tmp_path,
    )
    assert code == 0 and "published" in out and "population" in out, out + err

    code, out, err = run(cast, operator, "demands", "show", demand_id, cwd=tmp_path)
    assert code == 0, err
    assert "published as: population" in out and "请公安局答复" in out and "已发布" in out
    # Another operator's view: not found.
    other = cast.bureau.create_principal("另一家运营公司", "operator")
    code, out, err = run(cast, other["token"], "demands", "show", demand_id, cwd=tmp_path)
    assert code == 1 and "not_found" in err and "no demand" in err, out + err
    code, out, err = run(cast, other["token"], "demands", "list", cwd=tmp_path)
    assert code == 0 and demand_id not in out and "0 demand(s)" in out


def test_objections_from_the_shell_and_the_log_verifies(cast: Cast, tmp_path: Path) -> None:
    operator, bureau = cast.operator_token, cast.server.bureau_token
    department = cast.provider.rotate_token()
    code, out, err = run(
        cast,
        operator,
        "objections",
        "raise",
        "--dataset",
        "population",
        "--text",
        "出生日期有大量 1900-01-01",
        cwd=tmp_path,
    )
    assert code == 0 and "population v1" in out and "open" in out, out + err
    objection_id = out.split("objection ", 1)[1].split(" ", 1)[0]
    code, out, err = run(cast, department, "objections", "list", "--status", "open", cwd=tmp_path)
    assert code == 0 and objection_id in out and "出生日期有大量 1900-01-01" in out, out + err
    code, out, err = run(
        cast,
        department,
        "objections",
        "answer",
        objection_id,
        "--answer",
        "已清洗，发布第 2 版",
        cwd=tmp_path,
    )
    assert code == 0 and "answered" in out and "已清洗，发布第 2 版" in out, out + err
    code, out, err = run(
        cast, bureau, "objections", "answer", objection_id, "--answer", "再答", cwd=tmp_path
    )
    assert code == 1 and "already answered" in err, out + err
    code, out, err = run(cast, operator, "objections", "raise", "--text", "x", cwd=tmp_path)
    assert code == 2 and "--dataset" in err and "--job" in err

    regulator = cast.bureau.create_principal("审计处", "regulator")["token"]
    key = private_key_from_pem((cast.server.data_dir / "keys" / "bureau.pem").read_bytes())
    (tmp_path / "bureau.pub").write_text(public_key_b64(key) + "\n", encoding="utf-8")
    r = ledger_cli(
        "verify",
        "--url",
        cast.server.url,
        "--bureau-key",
        "bureau.pub",
        cwd=tmp_path,
        token=regulator,
    )
    assert r.returncode == 0 and "Verified" in r.stdout, r.stdout + r.stderr
    events = [e["event"] for e in cast.bureau.ledger_entries()]
    assert {"objection.raised", "objection.answered"} <= {e["type"] for e in events}
