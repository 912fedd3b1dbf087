"""`sandbox reviews …`: output review from the shell, for the bureau and departments (who
check held releases) and regulators (who read them)."""

from __future__ import annotations

from typing import Any

import typer

from operators.client import SandboxClient
from sandbox.cli.demands import _field, _table, console
from sandbox.cli.jobs import Token, Url, show_table, with_client

reviews_app = typer.Typer(
    help="Output review: releases held for people to check before a job's code receives them.",
    no_args_is_help=True,
)


def _show(r: dict[str, Any]) -> None:
    colour = {"pending": "yellow", "released": "green"}.get(r["status"], "red")
    console.print(f"review {r['id']}: [{colour}]{r['status']}[/]")
    _field("job", f"{r['job_id']} (collect {r['release_index'] + 1})")
    _field("operator", r["operator_id"])
    _field("datasets", ", ".join(r["datasets"]))
    _field("held because", ", ".join(r["reasons"]))
    released = sum(1 for d in r["decisions"] if d["decision"] == "release")
    _field("released by", f"{released} of {r['required']} reviewers")
    _field("waited", f"{r['waited_seconds']} s")
    for d in r["decisions"]:
        _field(d["decision"], f"{d['by']} {d.get('at') or ''} {d.get('reason') or ''}".strip())
    body = r.get("held")
    if body:
        show_table("held release", body)


@reviews_app.command("list")
def list_reviews(
    status: str | None = typer.Option(None, "--status", help="pending, released or refused."),
    url: str = Url,
    token: str = Token,
) -> None:
    """Reviews you may read: all for the bureau and regulators, a department's own data."""

    def action(client: SandboxClient) -> None:
        params = {"status": status} if status else {}
        items = client._listing("/reviews", "reviews", params=params)
        table = _table("id", "status", "job", "datasets", "held because", "released", "waited")
        for r in items:
            released = sum(1 for d in r["decisions"] if d["decision"] == "release")
            table.add_row(
                r["id"],
                r["status"],
                r["job_id"],
                ", ".join(r["datasets"]),
                ", ".join(r["reasons"]),
                f"{released}/{r['required']}",
                f"{r['waited_seconds']} s",
            )
        console.print(table)
        console.print(f"{len(items)} review(s)")

    with_client(url, token, action)


@reviews_app.command("show")
def show(review_id: str = typer.Argument(...), url: str = Url, token: str = Token) -> None:
    """A review with its held table, as its reviewers see it."""
    with_client(url, token, lambda client: _show(client._request("GET", f"/reviews/{review_id}")))


def _decide(review_id: str, decision: str, reason: str | None, url: str, token: str) -> None:
    body = {"decision": decision, **({"reason": reason} if reason else {})}
    with_client(
        url,
        token,
        lambda client: _show(client._request("POST", f"/reviews/{review_id}/decisions", json=body)),
    )


@reviews_app.command("release")
def release(
    review_id: str = typer.Argument(...),
    reason: str | None = typer.Option(None, "--reason", help="Why (optional)."),
    url: str = Url,
    token: str = Token,
) -> None:
    """Release a held release (once per reviewer; enough reviewers resume its job)."""
    _decide(review_id, "release", reason, url, token)


@reviews_app.command("refuse")
def refuse(
    review_id: str = typer.Argument(...),
    reason: str = typer.Option(..., "--reason", help="Why; the operator reads it."),
    url: str = Url,
    token: str = Token,
) -> None:
    """Refuse a held release: its job ends failed, and nothing of the release is kept."""
    _decide(review_id, "refuse", reason, url, token)
