"""`sandbox keys …` and `sandbox jobs …`: an operator's signing key, and jobs from the shell."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import typer
from rich.console import Console
from rich.table import Table

from operators.client import ClientError, Job, SandboxClient
from operators.keys import (
    generate_key,
    private_key_from_pem,
    private_key_to_pem,
    public_key_b64,
)
from operators.suite import Suite

keys_app = typer.Typer(
    help="A signing key (Ed25519, or SM2 for an instance of the sm suite).", no_args_is_help=True
)
jobs_app = typer.Typer(help="Submit and read jobs on a running service.", no_args_is_help=True)
console = Console()
err = Console(stderr=True)

Url = typer.Option("http://127.0.0.1:8000", "--url", envvar="SANDBOX_URL", help="Service URL.")
Token = typer.Option(..., "--token", envvar="SANDBOX_TOKEN", help="Your API token.")
ContractId = typer.Option(..., "--contract", help="Contract id.")
CodeFile = typer.Option(..., "--code", exists=True, dir_okay=False, help="The job's code (UTF-8).")
Params = typer.Option(None, "--params", help="JSON object, or @file.")


@keys_app.command("generate")
def generate(
    out: Path = typer.Option(
        ..., "--out", help="Where to write the private key (PEM, readable by you only)."
    ),
    suite: Suite = typer.Option(
        Suite.international,
        "--suite",
        help="The instance's crypto suite (GET /v1/keys says it): international makes an "
        "Ed25519 key, sm an SM2 key.",
    ),
) -> None:
    """Make a key pair; prints the public key to register with the bureau."""
    if out.exists():
        err.print(f"[red]error:[/] {out} exists; choose another file, a key is never overwritten")
        raise typer.Exit(1)
    key = generate_key(suite)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(private_key_to_pem(key))
    console.print(f"Private key written to {out} (mode 600). Public key, for the bureau:")
    print(public_key_b64(key))


def _client(url: str, token: str, key: Path | None) -> SandboxClient:
    signing = private_key_from_pem(key.read_bytes()) if key else None
    return SandboxClient(url, token=token, signing_key=signing)


def _params(raw: str | None) -> dict[str, Any]:
    if not raw:
        return {}
    text = Path(raw[1:]).read_text(encoding="utf-8") if raw.startswith("@") else raw
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise typer.BadParameter(f"params must be a JSON object: {e.msg}") from None
    if not isinstance(value, dict):
        raise typer.BadParameter("params must be a JSON object, e.g. '{\"year\": 2024}'")
    return value


def _show(job: Job) -> None:
    colour = {"succeeded": "green", "running": "yellow", "queued": "yellow"}.get(job.status, "red")
    console.print(f"job {job.id}: [{colour}]{job.status}[/]")
    if job.review:
        review = job.review
        waited = f", waiting {job.waited_seconds} s" if job.waited_seconds is not None else ""
        console.print(
            f"  output review {review.get('id')}: {review.get('status')}{waited} "
            f"({review.get('released_by', 0)}/{review.get('required')} released; "
            f"why held: {', '.join(review.get('reasons') or [])})",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
    if job.error:
        line = f" (line {job.error['line']})" if job.error.get("line") else ""
        console.print(f"  [red]{job.error.get('code')}[/]{line}: {job.error.get('message')}")
    for name, body in (job.outputs or {}).items():
        show_table(name, body)
    if job.charge:
        console.print(f"  charged {job.charge_amount} yuan (quoted {job.quote_amount})")


def show_table(name: str, body: dict[str, Any]) -> None:
    """A released output: a scalar on a line, a table with its suppressed cells as ▒."""
    if body.get("kind") == "scalar":
        console.print(f"  {name} = {body['value']}")
        return
    suppressed = {(i, c) for i, c in body.get("suppressed", [])}
    margins = set(body.get("margins", []))
    names = [c["name"] for c in body["columns"]]
    table = Table(*names, title=name)
    for i, row in enumerate(body["rows"]):
        cells = ["▒" if (i, n) in suppressed else str(v) for n, v in zip(names, row)]
        # Totals (with_totals()) in bold: None in a key there means "all".
        table.add_row(*cells, style="bold" if i in margins else None)
    console.print(table)


def guarded(action: Callable[[], None]) -> None:
    """Run a command's work against the service: a refusal exits 1 with the service's
    message, an unreachable service exits 2; never a traceback."""
    try:
        action()
    except ClientError as e:
        err.print(f"[red]error:[/] {e}", soft_wrap=True)
        raise typer.Exit(1) from None
    except httpx.HTTPError as e:
        err.print(f"[red]error:[/] could not reach the service: {e}", soft_wrap=True)
        raise typer.Exit(2) from None


def with_client(url: str, token: str | None, action: Callable[[SandboxClient], None]) -> None:
    """`action` with a client of the service at `url` (signed in with `token`, if any)."""

    def go() -> None:
        with SandboxClient(url, token=token) as client:
            action(client)

    guarded(go)


@jobs_app.command("quote")
def quote(
    contract: str = ContractId,
    code: Path = CodeFile,
    params: str | None = Params,
    url: str = Url,
    token: str = Token,
) -> None:
    """The most a job would cost, line by line, without running it."""

    def action() -> None:
        with _client(url, token, None) as client:
            q = client.quote(contract, code.read_text(encoding="utf-8"), _params(params))
        table = Table("unit", "quantity", "amount", title=f"quote under {contract}")
        for line in q["quote"]["lines"]:
            table.add_row(str(line["unit"]), str(line["quantity"]), str(line["amount"]))
        console.print(table)
        bounds = q["bounds"]
        console.print(
            f"at most [bold]{q['quote']['amount']}[/] yuan "
            f"(≤ {bounds['rows_scanned']} rows, ≤ {bounds['outputs']} outputs)"
        )

    guarded(action)


@jobs_app.command("list")
def list_jobs(
    status: str | None = typer.Option(None, "--status", help="Only jobs in this status."),
    contract: str | None = typer.Option(None, "--contract", help="Only this contract's jobs."),
    url: str = Url,
    token: str = Token,
) -> None:
    """Your jobs, newest first: status, charge and outputs."""

    def action() -> None:
        with _client(url, token, None) as client:
            listed = client.jobs(status=status, contract_id=contract)
        table = Table("job", "contract", "status", "created", "charged", "outputs")
        for j in listed:
            charge = (j.get("charge") or {}).get("amount") or ""
            table.add_row(
                j["id"],
                j["contract_id"],
                j["status"],
                str(j.get("created_at") or ""),
                str(charge),
                ", ".join(j.get("outputs") or []),
            )
        console.print(table)

    guarded(action)


@jobs_app.command("output")
def output(
    job_id: str = typer.Argument(...),
    name: str = typer.Argument(..., help="The output's name."),
    csv_file: Path | None = typer.Option(
        None, "--csv", help="Write it as CSV (UTF-8, suppressed cells marked) to this file."
    ),
    xlsx_file: Path | None = typer.Option(None, "--xlsx", help="Write it as an Excel workbook."),
    parquet_file: Path | None = typer.Option(None, "--parquet", help="Write it as Parquet."),
    url: str = Url,
    token: str = Token,
) -> None:
    """Download one released output as CSV, Excel or Parquet (or show it)."""

    def action() -> None:
        with _client(url, token, None) as client:
            wanted = [("csv", csv_file), ("xlsx", xlsx_file), ("parquet", parquet_file)]
            written = [(fmt, path) for fmt, path in wanted if path is not None]
            for fmt, path in written:
                path.write_bytes(client.output_file(job_id, name, fmt))  # type: ignore[arg-type]
                console.print(f"wrote {path} ({fmt})")
            if not written:
                _show_output(name, client.job(job_id).outputs.get(name))

    guarded(action)


def _show_output(name: str, body: dict[str, Any] | None) -> None:
    if body is None:
        err.print(f"[red]error:[/] the job has no output named {name!r}")
        raise typer.Exit(1)
    show_table(name, body)


@jobs_app.command("check")
def check(
    contract: str = ContractId,
    code: Path = CodeFile,
    params: str | None = Params,
    url: str = Url,
    token: str = Token,
) -> None:
    """Check a job before paying for it: problems with their lines, and its quote. Exits 1
    when the job would be refused."""

    def action() -> None:
        with _client(url, token, None) as client:
            result = client.check(contract, code.read_text(encoding="utf-8"), _params(params))
        for p in result["problems"]:
            where = f"line {p['line']}: " if p["line"] else ""
            colour = "red" if p["severity"] == "error" else "yellow"
            console.print(f"[{colour}]{p['severity']}[/] {where}{p['message']}", soft_wrap=True)
        if not result["ok"]:
            raise typer.Exit(1)
        console.print(f"[green]ok[/]: quoted at most {result['quote']['amount']} yuan")

    guarded(action)


@jobs_app.command("submit")
def submit(
    contract: str = ContractId,
    code: Path = CodeFile,
    params: str | None = Params,
    key: Path | None = typer.Option(
        None,
        "--key",
        exists=True,
        dir_okay=False,
        help="Your private key: the submission is signed.",
    ),
    idempotency_key: str | None = typer.Option(None, "--idempotency-key"),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="Wait for the result."),
    url: str = Url,
    token: str = Token,
) -> None:
    """Submit a job (signed when --key is given) and show its released outputs."""

    def action() -> None:
        with _client(url, token, key) as client:
            _show(
                client.submit(
                    contract,
                    code.read_text(encoding="utf-8"),
                    _params(params),
                    idempotency_key,
                    wait=wait,
                )
            )

    guarded(action)


@jobs_app.command("show")
def show(job_id: str = typer.Argument(...), url: str = Url, token: str = Token) -> None:
    """Show a job: status, error, outputs and charge."""

    def action() -> None:
        with _client(url, token, None) as client:
            _show(client.job(job_id))

    guarded(action)
