"""The menu: what everyone sees, and what each role sees besides (label keys in `words`)."""

from __future__ import annotations

EVERYONE: tuple[tuple[str, str], ...] = (
    ("/catalog", "nav.catalog"),
    ("/fees", "nav.fees"),
    ("/register", "nav.register"),
    ("/log", "nav.log"),
    ("/data-products", "nav.products.public"),
)

# One line per role, each kept by its own area of pages.
BY_ROLE: dict[str, tuple[tuple[str, str], ...]] = {
    "operator": (
        ("/contracts", "nav.operator.contracts"),
        ("/jobs", "nav.operator.jobs"),
        ("/bills", "nav.operator.bills"),
        ("/products", "nav.products"),
        ("/demands", "nav.demands"),
        ("/objections", "nav.objections"),
        ("/templates", "nav.templates"),
    ),
    "provider": (
        ("/requests", "nav.provider.requests"),
        ("/usage", "nav.provider.usage"),
        ("/my-datasets", "nav.datasets.mine"),
        ("/statistics", "nav.provider.statistics"),
        ("/reviews", "nav.reviews"),
        ("/demands", "nav.demands"),
        ("/objections", "nav.objections"),
        ("/templates", "nav.templates"),
    ),
    "bureau": (
        ("/admin/datasets", "nav.bureau.datasets"),
        ("/admin/principals", "nav.bureau.principals"),
        ("/admin/prices", "nav.bureau.prices"),
        ("/admin/caps", "nav.bureau.caps"),
        ("/admin/contracts", "nav.bureau.contracts"),
        ("/admin/revenue", "nav.bureau.revenue"),
        ("/products", "nav.products"),
        ("/admin/statistics", "nav.bureau.statistics"),
        ("/reviews", "nav.reviews"),
        ("/demands", "nav.demands"),
        ("/objections", "nav.objections"),
        ("/templates", "nav.templates"),
    ),
    "regulator": (
        ("/oversight/contracts", "nav.regulator.contracts"),
        ("/oversight/jobs", "nav.regulator.jobs"),
        ("/oversight/reports", "nav.regulator.reports"),
        ("/products", "nav.products"),
        ("/oversight/statistics", "nav.regulator.statistics"),
        ("/oversight/log", "nav.regulator.log"),
        ("/reviews", "nav.reviews"),
        ("/demands", "nav.demands"),
        ("/objections", "nav.objections"),
        ("/templates", "nav.templates"),
    ),
}


def items(role: str | None) -> tuple[tuple[str, str], ...]:
    return EVERYONE + BY_ROLE.get(role or "", ())
