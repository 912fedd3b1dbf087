"""`sandbox contracts get`, `sandbox datasets dummy` and `sandbox dev run` against a live
`sandbox serve`: an operator downloads what a local run needs and runs a job on dummy data."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from live import Cast, active_contract, cast_of, run_server
from test_cli_jobs import cli


@pytest.fixture(scope="module")
def cast(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cast]:
    root = tmp_path_factory.mktemp("cli-dev")
    with run_server(root, executor="local") as server, cast_of(server, root) as cast:
        yield cast


@pytest.fixture(scope="module")
def downloaded(cast: Cast, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A working directory holding the contract (contract.json) and dummy data (data/)."""
    cid = active_contract(cast)
    here = tmp_path_factory.mktemp("operator")
    common = ("--url", cast.server.url)
    got = cli(
        "contracts",
        "get",
        cid,
        "--out",
        "contract.json",
        *common,
        cwd=here,
        token=cast.operator_token,
    )
    assert got.returncode == 0, got.stderr
    assert json.loads((here / "contract.json").read_text(encoding="utf-8"))["id"] == cid
    dummy = cli(
        "datasets",
        "dummy",
        "population",
        "--out",
        "data",
        "--rows",
        "500",
        *common,
        cwd=here,
        token=cast.operator_token,
    )
    assert dummy.returncode == 0, dummy.stderr
    assert "no real value" in dummy.stdout
    return here


def test_dev_run_prints_the_release_and_says_it_is_dummy_data(downloaded: Path) -> None:
    (downloaded / "job.py").write_text(
        'emit("按区", table("population").group_by("district").agg(n=count()).collect())\n'
        'emit("年份", params["year"])\n',
        encoding="utf-8",
    )
    r = cli(
        "dev",
        "run",
        "job.py",
        "--params",
        '{"year": 2024}',
        "--contract",
        "contract.json",
        "--data",
        "data",
        cwd=downloaded,
    )
    assert r.returncode == 0, r.stderr
    assert "DUMMY DATA" in r.stdout and "mean nothing" in r.stdout
    assert "succeeded" in r.stdout
    assert "按区" in r.stdout and "district_1" in r.stdout
    assert "年份 = 2024" in r.stdout
    assert "disclosure" in r.stdout


def test_dev_run_refuses_as_the_service_would(downloaded: Path) -> None:
    (downloaded / "rows.py").write_text(
        'emit("t", table("population").select("district").collect())\n', encoding="utf-8"
    )
    r = cli(
        "dev", "run", "rows.py", "--contract", "contract.json", "--data", "data", cwd=downloaded
    )
    assert r.returncode == 1
    assert "plan_invalid" in r.stdout + r.stderr
    assert "Traceback" not in r.stderr


def test_dev_run_says_which_download_is_missing(downloaded: Path, tmp_path: Path) -> None:
    (tmp_path / "job.py").write_text(
        'emit("n", table("population").agg(n=count()).collect())\n', encoding="utf-8"
    )
    (tmp_path / "empty").mkdir()
    r = cli(
        "dev",
        "run",
        "job.py",
        "--contract",
        str(downloaded / "contract.json"),
        "--data",
        "empty",
        cwd=tmp_path,
    )
    assert r.returncode == 1
    assert "dummy_data_missing" in r.stderr and "sandbox datasets dummy population" in r.stderr


def test_dummy_download_needs_a_token(tmp_path: Path, cast: Cast) -> None:
    r = cli(
        "datasets",
        "dummy",
        "population",
        "--out",
        "d",
        "--url",
        cast.server.url,
        cwd=tmp_path,
        token="not-a-token",
    )
    assert r.returncode == 1 and "Traceback" not in r.stderr


def test_dev_run_says_what_a_contract_file_must_be(downloaded: Path, tmp_path: Path) -> None:
    (tmp_path / "job.py").write_text('emit("n", 1)\n', encoding="utf-8")
    (tmp_path / "bad.json").write_text("{}", encoding="utf-8")
    r = cli(
        "dev",
        "run",
        "job.py",
        "--contract",
        "bad.json",
        "--data",
        str(downloaded / "data"),
        cwd=tmp_path,
    )
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "is not a contract" in r.stderr and "sandbox contracts get" in r.stderr


def test_an_analyst_goes_from_dummy_data_to_a_notebook(downloaded: Path, cast: Cast) -> None:
    """The README's loop, end to end: a mistake found locally on dummy data is the refusal
    the service gives; the fixed job runs locally, then on the service, and its release is
    read as a pandas table and shown as a notebook shows it."""
    from operators.client import PlanInvalid

    cid = json.loads((downloaded / "contract.json").read_text(encoding="utf-8"))["id"]
    wrong = 'emit("r", table("population").select("district").collect())\n'
    right = 'emit("r", table("population").group_by("district").agg(n=count()).collect())\n'
    (downloaded / "journey.py").write_text(wrong, encoding="utf-8")
    local = cli(
        "dev", "run", "journey.py", "--contract", "contract.json", "--data", "data", cwd=downloaded
    )
    assert local.returncode == 1 and "plan_invalid" in local.stdout + local.stderr
    with pytest.raises(PlanInvalid) as refused:
        cast.operator.run(cid, wrong, progress=False)
    assert refused.value.code == "plan_invalid" and refused.value.line == 1
    (downloaded / "journey.py").write_text(right, encoding="utf-8")
    local = cli(
        "dev", "run", "journey.py", "--contract", "contract.json", "--data", "data", cwd=downloaded
    )
    assert local.returncode == 0, local.stderr
    job = cast.operator.run(cid, right, progress=False)
    frame = job.table("r").to_pandas()
    assert list(frame.columns) == ["district", "n"] and len(frame) > 1
    assert int(frame["n"].sum()) > 0
    html = job.table("r")._repr_html_()
    assert "<table" in html and str(frame["district"].iloc[0]) in html
