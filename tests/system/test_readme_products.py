"""The README's worked example of a data product, recomputed with `pricing.products` and
run end to end: its cap, price and trial price, its calls either side of the trial's end,
the revenue and maximum allowed revenue the revenue report shows, and the operator's bill
under the schedule it names."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from pathlib import Path

import pytest
from conftest import World
from products_helpers import approved_template, call, issue_key, publish, set_cap

from pricing.products import ProductCall, ProductPrice, ScenarioCap, revenue_by_scenario
from sandbox.common import clock

D = Decimal
MONEY = r"(\d+\.\d{2})"


def example() -> dict[str, str]:
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Data products (数据产品)")[1].split("\n## ")[0]
    block = section.split("```text\n")[1].split("```")[0]
    patterns = {
        "scenario": r"scenario cap \((\S+)\)",
        "cap": rf"scenario cap \(\S+\)\s+{MONEY} yuan per call",
        "price": rf"product price\s+{MONEY} yuan per call",
        "trial_until": r"trial price until (\d{4}-\d{2}-\d{2})",
        "trial_price": rf"trial price until \S+\s+{MONEY} yuan per call",
        "trial_calls": r"calls during the trial\s+(\d+)",
        "regular_calls": r"calls after the trial\s+(\d+)",
        "revenue": rf"product revenue\s+.*= {MONEY}",
        "max_allowed": rf"maximum allowed revenue\s+.*= {MONEY} \(within\)",
        "call_fee": rf"operator's bill \(call {MONEY}",
        "output_fee": rf"output {MONEY}\)",
        "bill": rf"operator's bill .*= {MONEY}",
    }
    found = {}
    for name, pattern in patterns.items():
        match = re.search(pattern, block)
        assert match, (name, block)
        found[name] = match.group(1)
    return found


def test_the_readme_example_adds_up() -> None:
    ex = example()
    until = dt.datetime.fromisoformat(ex["trial_until"]).replace(tzinfo=dt.UTC)
    product = ProductPrice(
        ex["scenario"], D(ex["price"]), trial_price=D(ex["trial_price"]), trial_until=until
    )
    cap = ScenarioCap(ex["scenario"], D(ex["cap"]))
    during, after = until - dt.timedelta(days=1), until + dt.timedelta(days=1)
    calls = [
        ProductCall(ex["scenario"], product.charged_at(during, cap), cap.max_price, True)
        for _ in range(int(ex["trial_calls"]))
    ] + [
        ProductCall(ex["scenario"], product.charged_at(after, cap), cap.max_price, True)
        for _ in range(int(ex["regular_calls"]))
    ]
    (row,) = revenue_by_scenario(calls).values()
    assert row.revenue == D(ex["revenue"]) and row.max_allowed == D(ex["max_allowed"])
    assert row.within
    n = int(ex["trial_calls"]) + int(ex["regular_calls"])
    assert n * (D(ex["call_fee"]) + D(ex["output_fee"])) == D(ex["bill"])


def test_the_readme_example_runs(local_world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    w = local_world
    ex = example()
    # Beijing midnight of the trial's last day: the example's calls fall in one month.
    until = dt.datetime.fromisoformat(ex["trial_until"] + "T00:00:00+08:00")
    month = until.strftime("%Y-%m")
    schedule = {
        "name": "产品示例收费标准",
        "effective_from": f"{month}-01T00:00:00+08:00",
        "items": [
            {"unit": "call", "price": ex["call_fee"]},
            {"unit": "output", "price": ex["output_fee"]},
        ],
    }
    r = w.client.post("/v1/price-schedules", json=schedule, headers=w.h(w.bureau))
    assert r.status_code == 201, r.text
    assert set_cap(w, ex["scenario"], ex["cap"]).status_code == 200
    cid = w.active_contract()
    template = approved_template(w)
    monkeypatch.setattr(clock, "now", lambda: until - dt.timedelta(days=5))
    r = publish(
        w,
        cid,
        template,
        scenario=ex["scenario"],
        price=ex["price"],
        trial_price=ex["trial_price"],
        trial_until=until.isoformat(),
    )
    assert r.status_code == 201, r.text
    pid = r.json()["id"]
    key = issue_key(w, pid)["key"]
    prices = []
    for when, n in (
        (-dt.timedelta(days=1), "trial_calls"),
        (dt.timedelta(days=1), "regular_calls"),
    ):
        monkeypatch.setattr(clock, "now", lambda when=when: until + when)
        for _ in range(int(ex[n])):
            answer = call(w, pid, key, 区="北山区")
            assert answer.status_code == 200, answer.text
            prices.append(answer.json()["price"])
    assert prices == [ex["trial_price"]] * int(ex["trial_calls"]) + [ex["price"]] * int(
        ex["regular_calls"]
    )
    report = w.client.get(f"/v1/reports/revenue?period={month}", headers=w.h(w.regulator)).json()
    (row,) = report["products_by_scenario"]
    assert (row["revenue"], row["max_allowed_revenue"], row["within"]) == (
        ex["revenue"],
        ex["max_allowed"],
        True,
    )
    bill = w.client.get(f"/v1/bills?period={month}", headers=w.h(w.operator)).json()
    assert bill["total"] == ex["bill"]
