"""`sandbox products …`: data products on a running service. The bureau sets each
scenario's cap, an operator publishes products and issues its customers' keys, the bureau
or the regulator suspends and resumes; a customer calls a product with its key."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from operators.client import ProductClient, SandboxClient
from sandbox.cli.jobs import Token, Url, guarded, with_client

products_app = typer.Typer(
    help="Data products (数据产品): caps per scenario, products, customers' keys and calls.",
    no_args_is_help=True,
)
keys_app = typer.Typer(help="Customers' keys of a product (operator).", no_args_is_help=True)
products_app.add_typer(keys_app, name="keys")
console = Console()
err = Console(stderr=True)

Key = typer.Option(
    ..., "--key", envvar="SANDBOX_PRODUCT_KEY", help="The product key you were given (pk_…)."
)


def _table(*columns: str, title: str | None = None) -> Table:
    # Folded, never cut: Chinese names are shown whole.
    table = Table(title=title)
    for name in columns:
        table.add_column(name, overflow="fold")
    return table


def _show(p: dict[str, Any]) -> None:
    console.print(f"product {p['id']}: [bold]{p['status']}[/]", highlight=False)
    for label, value in (
        ("name", p["name"]),
        ("scenario", p["scenario"]),
        ("operator", f"{p.get('operator_name') or ''} ({p['operator_id']})"),
        ("price", f"{p['price']} yuan per call (cap {p.get('cap')})"),
        ("trial", p["trial_price"] and f"{p['trial_price']} until {p['trial_until']}"),
        ("now", p.get("price_now")),
        ("reason", p.get("status_reason") if p["status"] != "active" else None),
        ("calls", f"{p.get('calls', 0)} ({p.get('charged_calls', 0)} charged)"),
        ("revenue", p.get("revenue")),
    ):
        if value:
            console.print(f"  {label}: {value}", markup=False, highlight=False, soft_wrap=True)


@products_app.command("caps")
def caps(url: str = Url) -> None:
    """Every scenario's cap per call (no token needed)."""

    def action(c: SandboxClient) -> None:
        table = _table("scenario", "max price", "description", "updated")
        for cap in c.product_caps():
            table.add_row(
                cap["scenario"], cap["max_price"], cap["description"], cap["updated_at"] or ""
            )
        console.print(table)

    with_client(url, None, action)


@products_app.command("cap-set")
def cap_set(
    scenario: str = typer.Argument(..., help="The application scenario, e.g. 普惠金融."),
    max_price: str = typer.Option(..., "--max-price", help='Yuan per call, e.g. "5.00".'),
    description: str | None = typer.Option(None, "--description", help="What it covers."),
    url: str = Url,
    token: str = Token,
) -> None:
    """As the bureau: set or change a scenario's cap per call."""

    def action(c: SandboxClient) -> None:
        cap = c.set_product_cap(scenario, max_price, description)
        console.print(
            f"cap of {cap['scenario']}: {cap['max_price']} yuan per call", highlight=False
        )

    with_client(url, token, action)


@products_app.command("publish")
def publish(
    name: str = typer.Option(..., "--name", help="The product's name."),
    scenario: str = typer.Option(..., "--scenario", help="Its scenario (which has a cap)."),
    description: str = typer.Option(..., "--description", help="What it answers."),
    contract: str = typer.Option(..., "--contract", help="Your active contract."),
    template: str = typer.Option(..., "--template", help="Your template's id."),
    version: int = typer.Option(..., "--version", help="Its approved version."),
    price: str = typer.Option(..., "--price", help='Yuan per call, at most the cap: "4.00".'),
    trial_price: str | None = typer.Option(None, "--trial-price", help="试运行价格."),
    trial_until: str | None = typer.Option(
        None, "--trial-until", help="When the trial ends (ISO 8601)."
    ),
    url: str = Url,
    token: str = Token,
) -> None:
    """As an operator: publish a product on an approved template version."""
    with_client(
        url,
        token,
        lambda c: _show(
            c.publish_product(
                name,
                scenario,
                description,
                contract,
                template,
                version,
                price,
                trial_price,
                trial_until,
            )
        ),
    )


@products_app.command("list")
def list_products(
    public: bool = typer.Option(False, "--public", help="The public list (no token)."),
    url: str = Url,
    token: str | None = typer.Option(None, "--token", envvar="SANDBOX_TOKEN", help="Token."),
) -> None:
    """Your products with calls and revenue (all, for the bureau and the regulator), or
    with --public the active products by scenario."""

    def action(c: SandboxClient) -> None:
        if public:
            table = _table("scenario", "product", "operator", "price", "trial")
            for group in c.public_products():
                for p in group["products"]:
                    trial = p["trial_price"] and f"{p['trial_price']} until {p['trial_until']}"
                    table.add_row(
                        group["scenario"], p["name"], p["operator_name"], p["price"], trial or ""
                    )
            console.print(table)
            return
        rows = c.products()
        table = _table("id", "name", "scenario", "price", "status", "calls", "revenue")
        for p in rows:
            table.add_row(
                p["id"],
                p["name"],
                p["scenario"],
                p["price"],
                p["status"],
                str(p["calls"]),
                p["revenue"],
            )
        console.print(table)
        console.print(f"{len(rows)} product(s)")

    if not public and not token:
        err.print("[red]error:[/] give --token (or SANDBOX_TOKEN), or --public")
        raise typer.Exit(1)
    with_client(url, None if public else token, action)


@keys_app.command("issue")
def key_issue(
    product_id: str = typer.Argument(...),
    customer: str = typer.Option(..., "--customer", help="Who the key is for."),
    url: str = Url,
    token: str = Token,
) -> None:
    """A key for one customer, printed once: hand it over now, it cannot be shown again."""

    def action(c: SandboxClient) -> None:
        k = c.issue_product_key(product_id, customer)
        console.print(f"key {k['id']} for {k['customer']}:", highlight=False)
        console.print(k["key"], markup=False, highlight=False, soft_wrap=True)

    with_client(url, token, action)


@keys_app.command("revoke")
def key_revoke(
    product_id: str = typer.Argument(...),
    key_id: str = typer.Argument(...),
    url: str = Url,
    token: str = Token,
) -> None:
    """Revoke a customer's key: its calls are refused from now on."""

    def action(c: SandboxClient) -> None:
        k = c.revoke_product_key(product_id, key_id)
        console.print(f"key {k['id']} revoked at {k['revoked_at']}", highlight=False)

    with_client(url, token, action)


@products_app.command("suspend")
def suspend(
    product_id: str = typer.Argument(...),
    reason: str = typer.Option(..., "--reason", help="Why; shown on the product."),
    url: str = Url,
    token: str = Token,
) -> None:
    """As the bureau or the regulator: stop a product's calls."""
    with_client(url, token, lambda c: _show(c.suspend_product(product_id, reason)))


@products_app.command("resume")
def resume(
    product_id: str = typer.Argument(...),
    reason: str = typer.Option(..., "--reason", help="Why."),
    url: str = Url,
    token: str = Token,
) -> None:
    """As the bureau or the regulator: let a suspended product take calls again."""
    with_client(url, token, lambda c: _show(c.resume_product(product_id, reason)))


def _params(pairs: list[str] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs or []:
        name, sep, raw = pair.partition("=")
        if not sep or not name:
            err.print(f"[red]error:[/] --param {pair!r}: write name=value, e.g. 区=城关区")
            raise typer.Exit(1)
        try:
            out[name] = json.loads(raw)  # numbers, true/false, lists
        except ValueError:
            out[name] = raw  # plain text
    return out


@products_app.command("call")
def call(
    product_id: str = typer.Argument(...),
    param: list[str] | None = typer.Option(
        None, "--param", help="A parameter as name=value (repeat); values read as JSON if they can."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the answer as JSON."),
    url: str = Url,
    key: str = Key,
) -> None:
    """As a customer: call a product with your key and print its outputs and price."""
    params = _params(param)

    def go() -> None:
        with ProductClient(url, key) as client:
            answer = client.call(product_id, params)
        if as_json:
            print(json.dumps(answer, ensure_ascii=False))
            return
        console.print(
            f"call {answer['id']}: {answer['status']}, {answer['price']} yuan"
            + ("" if answer["charged"] else " (not charged)"),
            highlight=False,
        )
        for name, out in answer["outputs"].items():
            if out.get("kind") != "table":
                console.print(f"{name} = {out.get('value')}", markup=False, highlight=False)
                continue
            table = _table(*(c["name"] for c in out["columns"]), title=name)
            for row in out["rows"]:
                table.add_row(*("·" if v is None else str(v) for v in row))
            console.print(table)
            if out.get("suppressed"):
                console.print(f"{len(out['suppressed'])} cell(s) suppressed (·)")

    guarded(go)
