"""A department in a real browser: the operator's requests, one refused with a reason (the
reason missing first, said next to the field), one approved; the use of its datasets; the
queue on a phone."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from conftest import GRANTS
from databases import department_database
from live import Cast
from sqlalchemy import create_engine

from .conftest import Watched, follow, shot, sign_in


def _apply(site: Cast, purpose: str) -> str:
    applied = site.operator.apply_contract(
        GRANTS,
        purpose,
        "commercial",
        dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        "2030-01-01T00:00:00Z",
    )
    return str(applied["id"])


def test_a_department_refuses_one_request_with_a_reason_and_approves_another(
    tab: Watched, site: Cast
) -> None:
    refused, approved = _apply(site, "人口结构商业分析"), _apply(site, "养老服务设施规划")
    sign_in(tab, site.provider.rotate_token())
    tab.go("/requests")
    page = tab.page
    assert "某数据科技有限公司" in page.locator(f"#c-{refused}").inner_text()
    assert "人口结构商业分析" in page.locator(f"#c-{refused} .purpose").inner_text()
    shot(tab.page, "provider-requests")
    follow(page, f"#c-{refused} form.refuse button")
    error = page.locator(f"#reason-error-{refused}")
    assert "needs a reason" in error.inner_text()
    page.fill(f"#reason-{refused}", "申请字段超出分析目的所需")
    follow(page, f"#c-{refused} form.refuse button")
    assert "申请字段超出分析目的所需" in page.locator(f"#c-{refused}").inner_text()
    follow(page, f"#c-{approved} form.approve button")
    assert "本部门已批准" in page.locator(f"#c-{approved}").inner_text()
    assert site.operator.contract(refused)["status"] == "refused"
    assert site.operator.contract(approved)["status"] == "approved"
    tab.go("/usage")
    assert "population" in page.locator("#d-population").inner_text()
    shot(tab.page, "provider-usage")


def test_the_queue_fits_a_phone(phone: Watched, site: Cast) -> None:
    _apply(site, "手机上查看的申请")
    sign_in(phone, site.provider.rotate_token())
    phone.go("/requests")
    page: Any = phone.page
    assert page.locator("#requests .request").count() >= 1
    assert page.evaluate("document.documentElement.scrollWidth") <= 390


def test_a_department_publishes_a_new_version_and_reads_its_quality(
    tab: Watched, site: Cast, tmp_path: Path
) -> None:
    rows = "resident_id,name,gender,birth_date,district,hukou_type,income\n" + "".join(
        f"11010119800101{i:04d},居民{i},{'男' if i % 2 else '女'},1980-01-01,城关区,本地,{3000 + i}\n"
        for i in range(300)
    )
    (tmp_path / "人口.csv").write_text(rows, encoding="utf-8")
    sign_in(tab, site.provider.rotate_token())
    tab.go("/my-datasets")
    page = tab.page
    follow(page, "#my-datasets a[href='/datasets/population/manage']")
    page.set_input_files("#file", str(tmp_path / "人口.csv"))
    page.select_option("#mode", "replace")
    follow(page, "#publish button[type=submit]")
    assert "300" in page.locator("#quality").inner_text()
    assert page.locator("#version-list tbody tr").count() >= 2
    shot(tab.page, "provider-dataset-versions")
    page.check("#rules input[name=not_null][value=income]")
    page.select_option("#on_failure", "refuse")
    follow(page, "#rules button[type=submit]")
    assert page.locator("#rules input[name=not_null][value=income]").is_checked()
    (tmp_path / "缺收入.csv").write_text(rows.replace(",3005\n", ",\n"), encoding="utf-8")
    page.set_input_files("#file", str(tmp_path / "缺收入.csv"))
    follow(page, "#publish button[type=submit]")
    assert "quality rules" in page.locator("#file-error").inner_text()


def test_a_department_connects_its_database_and_pulls_a_version(tab: Watched, site: Cast) -> None:
    with department_database("postgresql") as admin:
        engine = create_engine(admin, isolation_level="AUTOCOMMIT")
        rows = ", ".join(
            f"('11010119800101{i:04d}', '居民{i}', '{'男' if i % 2 else '女'}', "
            f"DATE '1980-01-01', '城关区', '本地', {3000 + i})"
            for i in range(250)
        )
        with engine.connect() as c:
            c.exec_driver_sql(
                'CREATE TABLE "人口" (resident_id text, name text, gender text, '
                "birth_date date, district text, hukou_type text, income bigint)"
            )
            c.exec_driver_sql(f'INSERT INTO "人口" VALUES {rows}')
        engine.dispose()
        sign_in(tab, site.provider.rotate_token())
        tab.go("/datasets/population/manage")
        page = tab.page
        page.fill("#url", admin)
        page.fill("#table", "没有的表")
        page.fill("#schedule", "每天两点")
        follow(page, "#source button[type=submit]")
        assert "schedule" in page.locator("#source-error").inner_text()
        page.fill("#schedule", "daily 02:00 Asia/Shanghai")
        follow(page, "#source button[type=submit]")
        assert "18:00" in page.locator("#source").inner_text()
        follow(page, "#pull-now button")
        for _ in range(100):
            if "进行中" not in page.locator("#pull-list tbody tr").first.inner_text():
                break
            page.wait_for_timeout(200)
            tab.go("/datasets/population/manage")
        failed = page.locator("#pull-list tbody tr").first.inner_text()
        assert "失败" in failed and "没有的表" in failed
        page.fill("#table", "人口")
        follow(page, "#source button[type=submit]")
        follow(page, "#pull-now button")
        for _ in range(150):
            if "进行中" not in page.locator("#pull-list tbody tr").first.inner_text():
                break
            page.wait_for_timeout(200)
            tab.go("/datasets/population/manage")
        first = page.locator("#pull-list tbody tr").first.inner_text()
        assert "已发布" in first and "250" in first
        shot(tab.page, "provider-dataset-connector")
