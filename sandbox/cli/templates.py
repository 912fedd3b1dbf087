"""`sandbox templates …`: analysis templates on a running service, as whoever the token
belongs to (an operator submits and runs, a department reviews; the bureau and the regulator
read)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.syntax import Syntax
from rich.table import Table

from operators.client import SandboxClient
from sandbox.cli.jobs import Token, Url, with_client

templates_app = typer.Typer(
    help="Analysis templates (分析模板): parametrised code the departments approve once.",
    no_args_is_help=True,
)
console = Console()
err = Console(stderr=True)


def _fail(message: str) -> NoReturn:
    err.print(f"[red]error:[/] {message}", soft_wrap=True, markup=False)
    raise typer.Exit(2)


def _json_object(text: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        _fail(f"{what} is not JSON ({e.msg} at line {e.lineno} column {e.colno})")
    if not isinstance(value, dict):
        _fail(f'{what} must be a JSON object, e.g. {{"district": "城关区"}}')
    return value


def _table(*columns: str, title: str | None = None) -> Table:
    table = Table(title=title)
    for name in columns:
        table.add_column(name, overflow="fold")
    return table


def _plain(text: str) -> None:
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def _show(t: dict[str, Any], *, code: bool = True) -> None:
    console.print(f"template {t['id']}: [bold]{t['name']}[/]", highlight=False)
    _plain(f"  operator: {t.get('operator_name') or ''} ({t['operator_id']})")
    if t.get("description"):
        _plain(f"  description: {t['description']}")
    approved = t.get("approved_version")
    _plain(f"  runs: version {approved}" if approved else "  runs: no version approved yet")
    for v in t["versions"]:
        console.print(f"version {v['version']}: [bold]{v['status']}[/]", highlight=False)
        _plain(f"  code sha256: {v['code_sha256']}")
        _plain(f"  datasets: {', '.join(v['datasets'])}")
        _plain(f"  parameters: {json.dumps(v['params_schema'], ensure_ascii=False)}")
        table = _table("department", "decision", "reason", "conditions", "at")
        reviews = {r["by"]: r for r in v["reviews"]}
        for who in v["reviewers"]:
            r = reviews.get(who["id"], {})
            table.add_row(
                f"{who.get('name') or ''} ({who['id']})",
                r.get("decision") or "awaiting",
                r.get("reason") or "",
                r.get("conditions") or "",
                r.get("at") or "",
            )
        console.print(table)
        if code and v.get("code"):
            console.print(Syntax(v["code"], "python", line_numbers=True))


@templates_app.command("submit")
def submit(
    file: Path = typer.Argument(..., help="The job code the template runs (a .py file)."),
    name: str = typer.Option(..., "--name", help="The analysis, in a line; again: a new version."),
    description: str | None = typer.Option(None, "--description", help="What it computes."),
    schema: Path | None = typer.Option(
        None, "--schema", help="A JSON file: the parameters' schema (closed, every one bounded)."
    ),
    schema_json: str | None = typer.Option(
        None, "--schema-json", help="The parameters' schema as JSON text."
    ),
    url: str = Url,
    token: str = Token,
) -> None:
    """As an operator: submit code and its parameters' schema for the departments' review."""
    if schema is not None and schema_json is not None:
        _fail("give the schema once: --schema FILE or --schema-json TEXT")
    try:
        code = file.read_text(encoding="utf-8")
        text = schema.read_text(encoding="utf-8") if schema is not None else schema_json
    except OSError as e:
        _fail(f"cannot read {e.filename}: {e.strerror}")
    params_schema = _json_object(text, "the schema") if text is not None else None
    with_client(
        url,
        token,
        lambda c: _show(c.submit_template(name, code, params_schema, description), code=False),
    )


@templates_app.command("list")
def listing(
    status: str | None = typer.Option(
        None, "--status", help="pending, approved, refused or withdrawn."
    ),
    awaiting: bool = typer.Option(
        False, "--awaiting", help="As a department: those waiting for your review."
    ),
    url: str = Url,
    token: str = Token,
) -> None:
    """The templates you can see, newest first."""

    def action(c: SandboxClient) -> None:
        rows = c.templates(status, awaiting)
        table = _table("id", "name", "operator", "versions", "runs")
        for t in rows:
            versions = ", ".join(f"{v['version']} {v['status']}" for v in t["versions"])
            table.add_row(
                t["id"],
                t["name"],
                t.get("operator_name") or t["operator_id"],
                versions,
                str(t["approved_version"] or "—"),
            )
        console.print(table)
        console.print(f"{len(rows)} template(s)")

    with_client(url, token, action)


@templates_app.command("show")
def show(template_id: str = typer.Argument(...), url: str = Url, token: str = Token) -> None:
    """A template: each version's code, parameters and every department's decision."""
    with_client(url, token, lambda c: _show(c.template(template_id)))


@templates_app.command("review")
def review(
    template_id: str = typer.Argument(...),
    version: int = typer.Argument(...),
    approve: bool = typer.Option(False, "--approve", help="Approve this exact code."),
    refuse: bool = typer.Option(False, "--refuse", help="Refuse it (give --reason)."),
    reason: str | None = typer.Option(None, "--reason", help="Why; required to refuse."),
    conditions: str | None = typer.Option(
        None, "--conditions", help="Conditions attached to an approval."
    ),
    url: str = Url,
    token: str = Token,
) -> None:
    """As a department whose data the version reads: approve or refuse it, once."""
    if approve == refuse:
        _fail("say --approve or --refuse (with --reason)")
    decision: Any = "approve" if approve else "refuse"
    with_client(
        url,
        token,
        lambda c: _show(
            c.review_template(template_id, version, decision, reason, conditions), code=False
        ),
    )


@templates_app.command("withdraw")
def withdraw(
    template_id: str = typer.Argument(...),
    version: int = typer.Argument(...),
    url: str = Url,
    token: str = Token,
) -> None:
    """As its operator: take back a version still waiting for review."""
    with_client(url, token, lambda c: _show(c.withdraw_template(template_id, version), code=False))


@templates_app.command("run")
def run(
    template_id: str = typer.Argument(...),
    contract: str = typer.Option(..., "--contract", help="The contract to run under."),
    params: str = typer.Option(
        "{}", "--params", help="The parameters as JSON, e.g. '{\"year\": 2025}'."
    ),
    version: int | None = typer.Option(
        None, "--version", help="The version to run (default: the latest approved)."
    ),
    idempotency_key: str | None = typer.Option(None, "--idempotency-key"),
    url: str = Url,
    token: str = Token,
) -> None:
    """As its operator: run an approved template and wait for the job."""
    values = _json_object(params, "--params")

    def action(c: SandboxClient) -> None:
        job = c.run_template(template_id, contract, values, version, idempotency_key, wait=True)
        origin = job.origin or {}
        console.print(
            f"job {job.id}: [bold]{job.status}[/] (template {origin.get('template_id')} "
            f"version {origin.get('template_version')})",
            highlight=False,
        )
        if job.error:
            _plain(f"  {job.error.get('message') or job.error}")
        if job.charge_amount is not None:
            _plain(f"  charge: {job.charge_amount} CNY")
        for name in sorted(job.outputs):
            _plain(f"  output {name}: {json.dumps(job.outputs[name], ensure_ascii=False)}")

    with_client(url, token, action)
