"""`sandbox contracts …`: signing a contract's canonical bytes and checking exported contracts,
offline (the private key stays on the operator's machine)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console

from contracts.verify import verify_export
from operators.client import SandboxClient
from operators.errors import OperatorError
from operators.keys import private_key_from_pem, strict_b64decode
from operators.keys import sign as sign_bytes
from sandbox.cli.jobs import Token, Url, with_client
from sandbox.ledger.verify import inline_or_file

contracts_app = typer.Typer(
    help="Sign contracts and check them, offline; download them.", no_args_is_help=True
)
console = Console()


def read_key(value: str, party: str = "bureau") -> str:
    """A base64 raw public key (Ed25519 or SM2) given inline, or a file holding one (or
    `GET /v1/keys` JSON)."""
    text = inline_or_file(value)
    if text.startswith("{"):
        keys = json.loads(text)
        if party not in keys:
            raise typer.BadParameter(f"{value} has no {party!r} key")
        return str(keys[party])
    return text


@contracts_app.command("verify")
def verify(
    file: Path = typer.Argument(
        ..., exists=True, dir_okay=False, help="JSON of GET /v1/contracts/{id}."
    ),
    bureau_key: str = typer.Option(
        ...,
        "--bureau-key",
        help="The bureau's public key (base64), or a file with it or with GET /v1/keys JSON.",
    ),
    operator_key: str | None = typer.Option(
        None, "--operator-key", help="The operator's public key (base64 or file)."
    ),
) -> None:
    """Check an exported contract's canonical bytes and signatures, with no service."""
    try:
        export = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        console.print(f"[red]{file} is not JSON: {e.msg}[/]")
        raise typer.Exit(2) from None
    result = verify_export(
        export,
        read_key(bureau_key, "bureau"),
        read_key(operator_key, "operator") if operator_key else None,
    )
    console.print(f"contract {result.contract_id} version {result.version}")
    for line in result.checked:
        console.print(f"  [green]✓[/] {line}")
    for line in result.skipped:
        console.print(f"  [yellow]–[/] not checked: {line}")
    for line in result.problems:
        console.print(f"  [red]✗ {line}[/]")
    if not result.ok:
        raise typer.Exit(1)
    console.print("[bold green]verified[/]")


@contracts_app.command("sign")
def sign(
    canonical: str = typer.Argument(
        ...,
        help="The contract's canonical bytes in base64, as the console shows them "
        "(or GET /v1/contracts/{id}/canonical gives them), or a file holding that text.",
    ),
    key: Path = typer.Option(
        ...,
        "--key",
        exists=True,
        dir_okay=False,
        help="Your private key (PEM): Ed25519, or SM2 on an sm instance.",
    ),
) -> None:
    """Sign a contract's canonical bytes with your key, here; prints the base64 signature to
    paste into the console (or send as POST /v1/contracts/{id}/sign)."""
    data = strict_b64decode(inline_or_file(canonical))
    if data is None:
        console.print(
            "[red]cannot sign: the canonical bytes are not base64; copy them whole from the "
            "contract's page[/]"
        )
        raise typer.Exit(2)
    try:
        private = private_key_from_pem(key.read_bytes())
    except OperatorError as e:
        console.print(f"[red]cannot sign: {e}[/]")
        raise typer.Exit(2) from None
    print(sign_bytes(private, data))


@contracts_app.command("get")
def get(
    contract_id: str = typer.Argument(..., help="The contract's id."),
    out: Path | None = typer.Option(None, "--out", dir_okay=False, help="Write the JSON here."),
    url: str = Url,
    token: str = Token,
) -> None:
    """Download a contract as JSON (document, status, signatures): the file `sandbox contracts
    verify` checks and `sandbox dev run --contract` reads."""

    def action(client: SandboxClient) -> None:
        text = json.dumps(client.contract(contract_id), ensure_ascii=False, indent=2)
        if out is None:
            print(text)
            return
        out.write_text(text + "\n", encoding="utf-8")
        console.print(f"wrote {out}")

    with_client(url, token, action)
