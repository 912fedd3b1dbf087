"""Charts drawn on the server as SVG: no script, nothing fetched, readable without colour.

Labels are escaped like any user text (a district or company name is data the person typed or
the service released)."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from markupsafe import Markup

WIDTH, BAR_HEIGHT, GAP, LABEL_WIDTH, VALUE_WIDTH = 640, 22, 6, 180, 90


def bars(
    labels: Sequence[str],
    values: Sequence[float | None],
    *,
    title: str,
    limit: float | None = None,
    limit_label: str = "",
) -> Markup:
    """Horizontal bars, one per label; a missing value (a suppressed cell) is drawn as a
    hatched gap marked "—". `limit` draws a vertical rule (say, the month's allowed revenue)."""
    shown = [v for v in values if v is not None]
    top = max([*shown, limit or 0.0, 0.0]) or 1.0
    span = WIDTH - LABEL_WIDTH - VALUE_WIDTH
    height = len(labels) * (BAR_HEIGHT + GAP) + GAP + (18 if limit is not None else 0)
    parts = [
        f'<svg class="chart" role="img" aria-label="{escape(title)}" viewBox="0 0 {WIDTH} '
        f'{height}" width="100%" preserveAspectRatio="xMinYMin meet" '
        'xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
    ]
    for i, (label, value) in enumerate(zip(labels, values)):
        y = GAP + i * (BAR_HEIGHT + GAP)
        mid = y + BAR_HEIGHT * 0.7
        parts.append(
            f'<text x="{LABEL_WIDTH - 8}" y="{mid:.1f}" text-anchor="end" '
            f'class="chart-label">{escape(str(label))}</text>'
        )
        if value is None:
            parts.append(
                f'<rect x="{LABEL_WIDTH}" y="{y}" width="{span * 0.15:.1f}" '
                f'height="{BAR_HEIGHT}" class="chart-suppressed"/>'
                f'<text x="{LABEL_WIDTH + span * 0.15 + 6:.1f}" y="{mid:.1f}" '
                'class="chart-value">—</text>'
            )
            continue
        w = max(span * max(value, 0.0) / top, 1.0)
        parts.append(
            f'<rect x="{LABEL_WIDTH}" y="{y}" width="{w:.1f}" height="{BAR_HEIGHT}" '
            f'class="chart-bar"/><text x="{LABEL_WIDTH + w + 6:.1f}" y="{mid:.1f}" '
            f'class="chart-value">{_number(value)}</text>'
        )
    if limit is not None:
        x = LABEL_WIDTH + span * limit / top
        parts.append(
            f'<line x1="{x:.1f}" y1="0" x2="{x:.1f}" y2="{height - 16}" class="chart-limit"/>'
            f'<text x="{x:.1f}" y="{height - 4}" text-anchor="middle" '
            f'class="chart-limit-label">{escape(limit_label)}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def _number(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"
