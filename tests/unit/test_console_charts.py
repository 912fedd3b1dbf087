"""Server-drawn charts: bars proportional to values, suppressed cells marked, labels escaped."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from sandbox.console.charts import bars


def test_bars_are_proportional_and_a_suppressed_cell_is_marked() -> None:
    svg = str(bars(["朝阳区", "海淀区", "东城区"], [100.0, 50.0, None], title="人口"))
    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    widths = [
        float(r.get("width", 0)) for r in root.iter(f"{ns}rect") if r.get("class") == "chart-bar"
    ]
    assert len(widths) == 2 and abs(widths[0] / widths[1] - 2.0) < 0.01
    assert [r for r in root.iter(f"{ns}rect") if r.get("class") == "chart-suppressed"]
    assert "朝阳区" in svg and "—" in svg


def test_labels_and_titles_are_escaped() -> None:
    svg = str(
        bars(['<script>alert(1)</script>"'], [1.0], title="<b>x</b>", limit=2, limit_label="<i>")
    )
    assert "<script>" not in svg and "<b>" not in svg and "<i>" not in svg
    assert re.search(r"&lt;script&gt;", svg)
    ET.fromstring(svg)  # still well-formed
