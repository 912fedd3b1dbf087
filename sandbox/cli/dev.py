"""`sandbox datasets dummy …` and `sandbox dev run …`: writing a job without seeing the data.

`datasets dummy` downloads a dataset's dummy table (generated from the published schema only)
and the catalog entry a local run needs; `dev run` runs a job on it, on this machine, under the
service's rules (`sandbox.pipeline.local`): what it refuses, the service refuses with the same
error code, and what it accepts runs there. Its values come from dummy data and mean nothing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from contracts.errors import ContractError
from operators.client import ClientError, SandboxClient
from operators.errors import OperatorError
from sandbox.cli.jobs import Params, Token, Url, _params, console, guarded, show_table, with_client
from sandbox.errors import SandboxError

dev_app = typer.Typer(
    help="Run jobs on this machine, on dummy data, under the service's rules.",
    no_args_is_help=True,
)

DUMMY_BANNER = "DUMMY DATA — generated from the published schema; these values mean nothing"


def datasets_dummy(
    name: str = typer.Argument(..., help="The dataset's name."),
    out: Path = typer.Option(..., "--out", file_okay=False, help="Directory to write into."),
    rows: int | None = typer.Option(None, "--rows", min=0, help="Rows to generate."),
    url: str = Url,
    token: str = Token,
) -> None:
    """Download a dataset's dummy data (NAME.parquet) and catalog entry (NAME.json) for
    `sandbox dev run`. Generated from the published schema only: no real value or
    distribution, so results on it mean nothing."""

    from sandbox.pipeline.local import CATALOG_SUFFIX, NOTICE, TABLE_SUFFIX

    def action(client: SandboxClient) -> None:
        table = client.dummy_data(name, rows)
        described = client.dummy_catalog(name)
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{name}{TABLE_SUFFIX}").write_bytes(table)
        (out / f"{name}{CATALOG_SUFFIX}").write_text(
            json.dumps(described, ensure_ascii=False, indent=2), encoding="utf-8"
        )
        console.print(f"wrote {out / (name + TABLE_SUFFIX)} and {out / (name + CATALOG_SUFFIX)}")
        console.print(NOTICE, soft_wrap=True)

    with_client(url, token, action)


@dev_app.command("run")
def run(
    code: Path = typer.Argument(..., exists=True, dir_okay=False, help="The job's code (UTF-8)."),
    contract: Path = typer.Option(
        ...,
        "--contract",
        exists=True,
        dir_okay=False,
        help="The contract as `sandbox contracts get ID --out FILE` saves it (JSON).",
    ),
    data: Path = typer.Option(
        ..., "--data", file_okay=False, help="Directory of `sandbox datasets dummy` downloads."
    ),
    params: str | None = Params,
) -> None:
    """Run a job here on dummy data, with the service's checks and disclosure rules. Exits 1
    when the service would refuse it or it fails."""
    # The engine is imported only here: every other command starts without it.
    from sandbox.pipeline.local import LocalContract, LocalData, run_locally

    def action() -> None:
        try:
            document = LocalContract.from_json(json.loads(contract.read_text(encoding="utf-8")))
        except (ValueError, KeyError, TypeError, ContractError) as e:
            raise NotAContract(contract, e) from None
        try:
            done = run_locally(
                code.read_text(encoding="utf-8"), _params(params), document, LocalData.load(data)
            )
        except (SandboxError, ContractError, OperatorError) as e:
            raise LocalRefusal(e) from None
        result = done.result
        _report(result.status, result.error, result.outputs, result.disclosure)
        if str(result.status) != "succeeded":
            raise typer.Exit(1)

    guarded(action)


class LocalRefusal(ClientError):
    """What the service would refuse, found here: its code, as the service would answer."""

    def __init__(self, cause: SandboxError | ContractError | OperatorError) -> None:
        line = getattr(cause, "line", None)
        where = f" (line {line})" if line and not str(cause).startswith("line ") else ""
        super().__init__(f"refused locally, as the service would: {cause.code}{where}: {cause}")
        self.code = cause.code


class NotAContract(ClientError):
    def __init__(self, path: Path, cause: Exception) -> None:
        super().__init__(
            f"{path} is not a contract ({type(cause).__name__}: {cause}); save yours with "
            "`sandbox contracts get ID --out FILE`"
        )


def _report(status: Any, error: Any, outputs: dict[str, Any], disclosure: dict[str, Any]) -> None:
    console.print(f"[bold yellow]{DUMMY_BANNER}[/]")
    colour = "green" if str(status) == "succeeded" else "red"
    console.print(f"local run: [{colour}]{status}[/]")
    if error is not None:
        line = f" (line {error.line})" if getattr(error, "line", None) else ""
        console.print(f"  [red]{error.code}[/]{line}: {error.message}", soft_wrap=True)
    for name, body in outputs.items():
        show_table(name, body)
    releases = disclosure.get("releases", [])
    if releases:
        table = Table(
            "collect", "dataset", "keys", "rows", "cells", "suppressed", title="disclosure"
        )
        for r in releases:
            table.add_row(
                str(r["index"] + 1),
                " ⋈ ".join([r["dataset"], *r.get("joined", [])]),
                ", ".join(r.get("keys", [])),
                str(r.get("rows", "")),
                str(r.get("cells", "")),
                "; ".join(_suppressed(s) for s in r.get("suppressed", [])) or "none",
            )
        console.print(table)
    console.print(f"[bold yellow]{DUMMY_BANNER}[/]")


def _suppressed(cell: dict[str, Any]) -> str:
    return f"row {cell.get('row')} {cell.get('column')}: {cell.get('rule')}"
