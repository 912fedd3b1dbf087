"""`sandbox products …` against a live `sandbox serve`: the bureau sets a scenario's cap,
the operator publishes (a price above the cap refused with the cap), issues a customer's
key, the customer calls with it from the shell, the regulator suspends and the call is
refused with the reason; the public list and the operator's revenue follow."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from live import Cast, active_contract, cast_of, run_server
from products_helpers import approve_in
from test_cli_jobs import cli


@pytest.fixture(scope="module")
def cast(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cast]:
    root = tmp_path_factory.mktemp("cli-products")
    with run_server(root, executor="local") as server, cast_of(server, root) as cast:
        yield cast


def run(cast: Cast, token: str | None, *args: str, cwd: Path) -> tuple[int, str, str]:
    r = cli(*args, "--url", cast.server.url, cwd=cwd, token=token)
    return r.returncode, r.stdout, r.stderr


def test_a_product_from_the_shell(cast: Cast, tmp_path: Path) -> None:
    operator, bureau = cast.operator_token, cast.server.bureau_token
    regulator = cast.bureau.create_principal("市场监管审计处", "regulator")["token"]
    template_id, version = approve_in(cast.operator, cast.provider)
    contract = active_contract(cast)

    code, out, err = run(
        cast, bureau, "products", "cap-set", "普惠金融", "--max-price", "5.00", cwd=tmp_path
    )
    assert code == 0 and "5.00" in out, out + err
    code, out, err = run(cast, None, "products", "caps", cwd=tmp_path)
    assert code == 0 and "普惠金融" in out and "5.00" in out, out + err

    publish = [
        "products",
        "publish",
        "--name",
        "小微企业户籍结构",
        "--scenario",
        "普惠金融",
        "--description",
        "按区的户籍与性别构成",
        "--contract",
        contract,
        "--template",
        template_id,
        "--version",
        str(version),
    ]
    code, out, err = run(cast, operator, *publish, "--price", "5.50", cwd=tmp_path)
    assert code == 1 and "price_above_cap" in err and "5.00" in err, out + err
    code, out, err = run(cast, operator, *publish, "--price", "4.00", cwd=tmp_path)
    assert code == 0 and "active" in out, out + err
    product_id = out.split("product ", 1)[1].split(":", 1)[0]

    code, out, err = run(
        cast,
        operator,
        "products",
        "keys",
        "issue",
        product_id,
        "--customer",
        "某城商行",
        cwd=tmp_path,
    )
    assert code == 0, out + err
    key = next(line for line in out.splitlines() if line.startswith("pk_"))
    key_id = out.split("key ", 1)[1].split(" ", 1)[0]
    assert key_id.startswith("pk-") and key not in str(cast.operator.product_keys(product_id))

    r = cli(
        "products",
        "call",
        product_id,
        "--param",
        "区=北山区",
        "--json",
        "--key",
        key,
        "--url",
        cast.server.url,
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    answer = json.loads(r.stdout)
    assert answer["status"] == "succeeded" and answer["price"] == "4.00"
    assert "户籍性别" in answer["outputs"]
    r = cli(
        "products",
        "call",
        product_id,
        "--param",
        "区=火星区",
        "--key",
        key,
        "--url",
        cast.server.url,
        cwd=tmp_path,
    )
    assert r.returncode == 1 and "params_invalid" in r.stderr, r.stdout + r.stderr

    code, out, err = run(cast, operator, "products", "list", cwd=tmp_path)
    assert code == 0 and "小微企业户籍结构" in out and "4.00" in out, out + err
    code, out, err = run(cast, None, "products", "list", "--public", cwd=tmp_path)
    assert code == 0 and "小微企业户籍结构" in out and "某数据科技有限公司" in out, out + err

    code, out, err = run(
        cast, regulator, "products", "suspend", product_id, "--reason", "投诉核查中", cwd=tmp_path
    )
    assert code == 0 and "suspended" in out and "投诉核查中" in out, out + err
    r = cli(
        "products",
        "call",
        product_id,
        "--param",
        "区=北山区",
        "--key",
        key,
        "--url",
        cast.server.url,
        cwd=tmp_path,
    )
    assert r.returncode == 1 and "投诉核查中" in r.stderr, r.stdout + r.stderr
    code, out, err = run(cast, None, "products", "list", "--public", cwd=tmp_path)
    assert code == 0 and "小微企业户籍结构" not in out, out + err

    code, out, err = run(
        cast, operator, "products", "keys", "revoke", product_id, key_id, cwd=tmp_path
    )
    assert code == 0 and "revoked" in out, out + err
    r = cli(
        "products",
        "call",
        product_id,
        "--param",
        "区=北山区",
        "--key",
        key,
        "--url",
        cast.server.url,
        cwd=tmp_path,
    )
    assert r.returncode == 1 and "revoked" in r.stderr, r.stdout + r.stderr
