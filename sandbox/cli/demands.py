"""`sandbox demands …` and `sandbox objections …`: demand lists and objections on a running
service, as whoever the token belongs to (an operator raises, the bureau routes, a department
answers; the regulator reads)."""

from __future__ import annotations

from typing import Any, cast

import typer
from rich.console import Console
from rich.table import Table

from operators.client import SandboxClient
from sandbox.cli.jobs import Token, Url, with_client

demands_app = typer.Typer(
    help="Demand lists (需求清单): ask for data the catalog lacks, route and answer.",
    no_args_is_help=True,
)
objections_app = typer.Typer(
    help="Objections (异议) to a dataset version's quality or to a job's refusal.",
    no_args_is_help=True,
)
console = Console()
err = Console(stderr=True)


def _table(*columns: str, title: str | None = None) -> Table:
    # Folded, never cut: Chinese titles and names are shown whole.
    table = Table(title=title)
    for name in columns:
        table.add_column(name, overflow="fold")
    return table


def _field(label: str, value: Any) -> None:
    if value not in (None, "", []):
        console.print(f"  {label}: ", end="")
        console.print(str(value), markup=False, highlight=False, soft_wrap=True)


def _history(history: list[dict[str, Any]]) -> None:
    table = _table("at", "status", "by", "note", title="history")
    for h in history:
        table.add_row(h.get("at") or "", h["status"], h.get("by") or "", h.get("note") or "")
    console.print(table)


# --- demands ------------------------------------------------------------------------------


def _show_demand(d: dict[str, Any]) -> None:
    console.print(f"demand {d['id']}: [bold]{d['status']}[/]")
    _field("title", d["title"])
    _field("operator", f"{d.get('operator_name') or ''} ({d['operator_id']})")
    _field("description", d["description"])
    _field("purpose", d["purpose"])
    if d.get("dataset"):
        _field("dataset", f"{d['dataset']} {d.get('dataset_title') or ''}".strip())
        _field("columns", ", ".join(d.get("columns") or []))
    if d.get("provider_id"):
        _field("routed to", f"{d.get('provider_name') or ''} ({d['provider_id']})")
    _field("answer", d.get("answer"))
    if d.get("answer_dataset"):
        title = d.get("answer_dataset_title") or ""
        _field("published as", f"{d['answer_dataset']} {title}".strip())
    _history(d.get("history") or [])


@demands_app.command("raise")
def demand_raise(
    title: str = typer.Option(..., "--title", help="The data wanted, in a line."),
    description: str = typer.Option(
        ..., "--description", help="What it should hold: which facts, years, area."
    ),
    purpose: str = typer.Option(..., "--purpose", help="What it would be analysed for."),
    dataset: str | None = typer.Option(
        None, "--dataset", help="A catalog dataset whose further columns are wanted."
    ),
    column: list[str] | None = typer.Option(
        None, "--column", help="With --dataset: a column it lacks (repeat for several)."
    ),
    url: str = Url,
    token: str = Token,
) -> None:
    """As an operator: ask for data the catalog lacks, or for more columns of a dataset."""
    with_client(
        url,
        token,
        lambda c: _show_demand(c.raise_demand(title, description, purpose, dataset, column)),
    )


@demands_app.command("list")
def demand_list(
    status: str | None = typer.Option(
        None, "--status", help="open, routed, planned, refused or published."
    ),
    url: str = Url,
    token: str = Token,
) -> None:
    """The demands you can see, newest first."""

    def action(c: SandboxClient) -> None:
        rows = c.demands(status)
        table = _table("id", "status", "title", "operator", "department", "updated")
        for d in rows:
            table.add_row(
                d["id"],
                d["status"],
                d["title"],
                d.get("operator_name") or d["operator_id"],
                d.get("provider_name") or d.get("provider_id") or "",
                d.get("updated_at") or "",
            )
        console.print(table)
        console.print(f"{len(rows)} demand(s)")

    with_client(url, token, action)


@demands_app.command("show")
def demand_show(demand_id: str = typer.Argument(...), url: str = Url, token: str = Token) -> None:
    """A demand with its answer and every step."""
    with_client(url, token, lambda c: _show_demand(c.demand(demand_id)))


@demands_app.command("route")
def demand_route(
    demand_id: str = typer.Argument(...),
    provider: str = typer.Option(..., "--provider", help="The department's principal id."),
    note: str | None = typer.Option(None, "--note", help="Why this department."),
    url: str = Url,
    token: str = Token,
) -> None:
    """As the bureau: send a demand to the department that could provide the data."""
    with_client(url, token, lambda c: _show_demand(c.route_demand(demand_id, provider, note)))


@demands_app.command("answer")
def demand_answer(
    demand_id: str = typer.Argument(...),
    status: str = typer.Option(..., "--status", help="planned, refused or published."),
    answer: str | None = typer.Option(
        None, "--answer", help="The note (planned), the reason (refused, required)."
    ),
    dataset: str | None = typer.Option(
        None, "--dataset", help="published: the dataset that now holds the data."
    ),
    url: str = Url,
    token: str = Token,
) -> None:
    """As its department or the bureau: answer a demand."""
    with_client(
        url,
        token,
        lambda c: _show_demand(c.answer_demand(demand_id, cast(Any, status), answer, dataset)),
    )


# --- objections -----------------------------------------------------------------------------


def _about(o: dict[str, Any]) -> str:
    if o["kind"] == "refusal":
        return f"job {o['job_id']}"
    return f"{o['dataset']} v{o['version']}"


def _show_objection(o: dict[str, Any]) -> None:
    console.print(f"objection {o['id']} ({o['kind']}): [bold]{o['status']}[/]")
    _field("about", _about(o))
    _field("raised by", f"{o.get('raised_by_name') or ''} ({o['raised_by']})")
    owner = (
        "the bureau" if o["owner_id"] is None else f"{o.get('owner_name') or ''} ({o['owner_id']})"
    )
    _field("answered by" if o["status"] == "answered" else "to be answered by", owner)
    _field("text", o["text"])
    _field("answer", o.get("answer"))
    _history(o.get("history") or [])


@objections_app.command("raise")
def objection_raise(
    text: str = typer.Option(..., "--text", help="What is wrong, and what you expected."),
    dataset: str | None = typer.Option(None, "--dataset", help="Quality: the dataset objected to."),
    version: int | None = typer.Option(
        None, "--version", help="Quality: its version (default: the one in force)."
    ),
    job: str | None = typer.Option(None, "--job", help="Refusal: your refused job's id."),
    url: str = Url,
    token: str = Token,
) -> None:
    """Object to a dataset version's quality (--dataset) or to a job's refusal (--job)."""
    if (dataset is None) == (job is None):
        err.print(
            "[red]error:[/] name either --dataset (an objection to its quality) or --job "
            "(an objection to its refusal)"
        )
        raise typer.Exit(2)
    kind = "quality" if dataset is not None else "refusal"
    with_client(
        url,
        token,
        lambda c: _show_objection(c.raise_objection(cast(Any, kind), text, dataset, version, job)),
    )


@objections_app.command("list")
def objection_list(
    status: str | None = typer.Option(None, "--status", help="open or answered."),
    kind: str | None = typer.Option(None, "--kind", help="quality or refusal."),
    url: str = Url,
    token: str = Token,
) -> None:
    """The objections you can see, newest first."""

    def action(c: SandboxClient) -> None:
        rows = c.objections(status, kind)
        table = _table("id", "kind", "status", "about", "raised by", "text")
        for o in rows:
            table.add_row(
                o["id"],
                o["kind"],
                o["status"],
                _about(o),
                o.get("raised_by_name") or o["raised_by"],
                o["text"],
            )
        console.print(table)
        console.print(f"{len(rows)} objection(s)")

    with_client(url, token, action)


@objections_app.command("show")
def objection_show(
    objection_id: str = typer.Argument(...), url: str = Url, token: str = Token
) -> None:
    """An objection with its answer and every step."""
    with_client(url, token, lambda c: _show_objection(c.objection(objection_id)))


@objections_app.command("answer")
def objection_answer(
    objection_id: str = typer.Argument(...),
    answer: str = typer.Option(..., "--answer", help="What was found and what will be done."),
    url: str = Url,
    token: str = Token,
) -> None:
    """As its owner (the dataset's department, or the bureau): answer an objection, once."""
    with_client(url, token, lambda c: _show_objection(c.answer_objection(objection_id, answer)))
