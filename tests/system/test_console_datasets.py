"""A dataset's versions and quality in the console over HTTP: the department that owns it
publishes a version, sees its quality, sets rules that then refuse a version; an operator
and another department are refused as the API refuses them."""

from __future__ import annotations

import re

import pyarrow as pa
from conftest import World
from test_console import _fresh, _sign_in

from tests.factories import parquet_bytes


def _csrf(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, page
    return found.group(1)


def test_the_department_publishes_a_version_sees_its_quality_and_sets_rules(
    local_world: World, city: dict[str, pa.Table]
) -> None:
    w = local_world
    pop = city["population"].table  # type: ignore[attr-defined]
    with _fresh(w) as browser:
        _sign_in(browser, w.provider["token"])
        mine = browser.get("/my-datasets")
        assert mine.status_code == 200 and "/datasets/population/manage" in mine.text
        page = browser.get("/datasets/population/manage")
        assert page.status_code == 200 and "当前为第 1 版" in page.text
        r = browser.post(
            "/datasets/population/versions",
            data={"csrf": _csrf(page.text), "mode": "replace"},
            files={"file": ("p.parquet", parquet_bytes(pop.slice(0, 500)))},
            follow_redirects=False,
        )
        assert r.status_code == 303, r.text
        page = browser.get(r.headers["location"])
        assert "版本 2 的质量" in page.text and "共 500 行" in page.text
        assert 'id="quality-columns"' in page.text
        r = browser.post(
            "/datasets/population/quality-rules",
            data={"csrf": _csrf(page.text), "not_null": "income", "on_failure": "refuse"},
            follow_redirects=False,
        )
        assert r.status_code == 303, r.text
        incomes = pop.column("income").to_pylist()[:500]
        incomes[3] = None
        holed = pop.slice(0, 500).set_column(
            pop.schema.get_field_index("income"), "income", pa.array(incomes, pop["income"].type)
        )
        page = browser.get("/datasets/population/manage")
        r = browser.post(
            "/datasets/population/versions",
            data={"csrf": _csrf(page.text), "mode": "replace"},
            files={"file": ("p.parquet", parquet_bytes(holed))},
        )
        assert r.status_code == 400
        assert (
            "refused by the dataset&#39;s quality rules" in r.text and 'id="file-error"' in r.text
        )
    assert w.client.get("/v1/datasets/population", headers=w.h(w.bureau)).json()["version"] == 2


def test_an_operator_and_another_department_are_refused(local_world: World) -> None:
    w = local_world
    other = w.client.post(
        "/v1/principals", json={"name": "市民政局", "role": "provider"}, headers=w.h(w.bureau)
    ).json()
    for token in (w.operator["token"], other["token"]):
        with _fresh(w) as browser:
            _sign_in(browser, token)
            page = browser.get("/datasets/population/manage")
            assert page.status_code == 403
            assert 'id="quality-columns"' not in page.text and 'id="version-list"' not in page.text
            assert "published by the bureau or by the department that owns it" in page.text
