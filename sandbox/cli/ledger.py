"""`sandbox ledger …`: commands for verifying the transparency log of a running service.

They talk to the service over HTTP only, so a regulator can run them from any machine with
the service's URL, an API token and the bureau's public key. Exit codes: 0 everything
verified, 1 something did not verify (the log or a checkpoint is not what was signed),
2 the check could not run (bad key or file, service unreachable, request refused).
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import NoReturn

import httpx
import typer
from rich.console import Console
from rich.table import Table

from operators.client import SandboxAPIError
from operators.errors import OperatorError
from operators.keys import private_key_from_pem
from sandbox.ledger.errors import LedgerError, NoteError
from sandbox.ledger.verify import (
    BureauKey,
    LedgerSource,
    LogUnavailable,
    VerifyReport,
    cosign,
    load_bureau_key,
    verify_log,
)

ledger_app = typer.Typer(
    help="Verify the tamper-evident log of a running service.", no_args_is_help=True
)

console = Console()
err = Console(stderr=True)

FAILED, CANNOT_RUN = 1, 2
SHOWN_PROBLEMS = 20

Url = typer.Option(..., "--url", help="The service's base URL, e.g. https://sandbox.example.gov.cn")
Token = typer.Option(
    None,
    "--token",
    envvar="SANDBOX_TOKEN",
    show_envvar=True,
    help="API token of a regulator or the bureau.",
)
BureauKeyOption = typer.Option(
    None,
    "--bureau-key",
    help="The bureau's public key, or a file holding it: base64 of the raw "
    "Ed25519 key, the '<origin>+<id>+<base64>' verifier key or PEM. Get it from the bureau, "
    "not from the service you check.",
)
TrustServed = typer.Option(
    False,
    "--trust-served-key",
    help="Take the bureau key from the "
    "service's /v1/keys. This proves nothing against the service itself; "
    "use it only to try the command out.",
)


def _cannot_run(message: str) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(CANNOT_RUN)


def _require_token(token: str | None) -> str:
    if not token:
        _cannot_run("pass --token or set SANDBOX_TOKEN to a regulator's or the bureau's API token")
    return token


def _bureau_key(source: LedgerSource, given: str | None, trust_served: bool) -> BureauKey:
    if given is None and not trust_served:
        _cannot_run(
            "pass the bureau's public key with --bureau-key KEY_OR_FILE (or, only to "
            "try things out, --trust-served-key)"
        )
    try:
        key = load_bureau_key(given) if given is not None else None
    except NoteError as exc:
        _cannot_run(str(exc))
    if not trust_served:
        assert key is not None
        return key
    served = source.served_key()
    if key is not None and key.public_key != served.public_key:
        _cannot_run(
            "the service serves a bureau key that differs from the one you gave; "
            "trust the bureau's own publication and verify without --trust-served-key"
        )
    return key or served


def _read_note(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        _cannot_run(
            f"cannot read the {what} {path} ({exc}); give a file written by "
            "'sandbox ledger checkpoint --out' or '--save-checkpoint'"
        )


def _write_note(path: Path, note: str) -> None:
    try:
        path.write_text(note, encoding="utf-8")
    except OSError as exc:
        _cannot_run(f"cannot write {path} ({exc}); choose a writable path")


def _run_errors() -> tuple[type[Exception], ...]:
    return (LedgerError, SandboxAPIError, OperatorError, httpx.HTTPError)


@ledger_app.command()
def verify(
    url: str = Url,
    token: str | None = Token,
    bureau_key: str | None = BureauKeyOption,
    checkpoint: Path | None = typer.Option(
        None,
        "--checkpoint",
        help="A checkpoint saved earlier: the log must still contain exactly what it signed.",
    ),
    save_checkpoint: Path | None = typer.Option(
        None,
        "--save-checkpoint",
        help="Write the newly verified checkpoint here "
        "(only when everything verified) for the next run's --checkpoint.",
    ),
    trust_served_key: bool = TrustServed,
) -> None:
    """Download the whole log, rebuild its Merkle tree and check it against signed checkpoints."""
    saved = _read_note(checkpoint, "saved checkpoint") if checkpoint else None
    try:
        with LedgerSource(url, _require_token(token)) as source:
            key = _bureau_key(source, bureau_key, trust_served_key)
            report = verify_log(source, key, saved)
    except _run_errors() as exc:
        _cannot_run(f"could not verify the log: {exc}")
    _print_report(report)
    if not report.ok:
        raise typer.Exit(FAILED)
    if save_checkpoint is not None and report.checkpoint is not None:
        _write_note(save_checkpoint, report.checkpoint)
        console.print(f"Saved the verified checkpoint to [bold]{save_checkpoint}[/]")


@ledger_app.command("checkpoint")
def save(
    url: str = Url,
    token: str | None = Token,
    out: Path | None = typer.Option(
        None, "--out", help="Write the signed note here instead of printing it."
    ),
) -> None:
    """Fetch the latest signed checkpoint (verify it later with 'ledger verify --checkpoint')."""
    try:
        with LedgerSource(url, _require_token(token)) as source:
            body = source.checkpoint()
    except _run_errors() as exc:
        _cannot_run(f"could not fetch the checkpoint: {exc}")
    if out is None:
        print(body["checkpoint"], end="")
        return
    _write_note(out, body["checkpoint"])
    console.print(f"Saved the checkpoint of size {body['size']} to [bold]{out}[/]")


@ledger_app.command("cosign")
def cosign_command(
    url: str = Url,
    token: str | None = Token,
    key: Path = typer.Option(
        ...,
        "--key",
        exists=True,
        dir_okay=False,
        help="The witness's private key (PEM): Ed25519, or SM2 on an instance of the sm suite.",
    ),
    name: str = typer.Option(
        ..., "--name", help="The witness's key name, e.g. regulator.example.gov.cn"
    ),
    previous: Path | None = typer.Option(
        None,
        "--previous",
        help="The last checkpoint this witness holds: the log must have only grown since.",
    ),
    bureau_key: str | None = BureauKeyOption,
    save_checkpoint: Path | None = typer.Option(
        None,
        "--save-checkpoint",
        help="Write the co-signed checkpoint here (the next run's --previous).",
    ),
    trust_served_key: bool = TrustServed,
) -> None:
    """As a witness: check the latest checkpoint against yours, co-sign it, post it back."""
    held = _read_note(previous, "previous checkpoint") if previous else None
    try:
        witness_key = private_key_from_pem(key.read_bytes())
        with LedgerSource(url, _require_token(token)) as source:
            trusted = _bureau_key(source, bureau_key, trust_served_key)
            done = cosign(source, trusted, witness_key, name, held)
    except (LogUnavailable, OperatorError, httpx.HTTPError, OSError) as exc:
        _cannot_run(f"could not co-sign: {exc}")
    except (LedgerError, SandboxAPIError) as exc:
        # A checkpoint that does not verify, or the service refusing the co-signature.
        err.print(f"[bold red]not co-signed:[/] {exc}")
        raise typer.Exit(FAILED if isinstance(exc, LedgerError) else CANNOT_RUN) from None
    since = (
        f", consistent with your checkpoint of size {done.previous_size}"
        if done.previous_size is not None
        else ""
    )
    console.print(f"[bold green]Co-signed[/] checkpoint of size {done.size} as {name}{since}.")
    if save_checkpoint is not None:
        _write_note(save_checkpoint, done.checkpoint)
        console.print(f"Saved the co-signed checkpoint to [bold]{save_checkpoint}[/]")


def _print_report(report: VerifyReport) -> None:
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("service", report.url)
    key_note = (
        " [yellow](served by the service itself: not independent)[/]"
        if report.key_source == "served"
        else ""
    )
    table.add_row("log", f"{report.origin}{key_note}")
    if report.size is not None and report.root_hash is not None:
        table.add_row(
            "checkpoint", f"size {report.size}, root {base64.b64encode(report.root_hash).decode()}"
        )
        table.add_row("signed by", ", ".join(report.signers))
        table.add_row("entries checked", str(report.entries_checked))
    if report.saved_size is not None:
        verdict = {True: "consistent", False: "NOT consistent", None: "nothing to prove"}
        table.add_row(
            "saved checkpoint", f"size {report.saved_size}: {verdict[report.consistent_with_saved]}"
        )
    console.print(table)
    if report.ok:
        console.print(
            "[bold green]Verified:[/] every entry is in the signed tree and the log only grew."
        )
        return
    first = report.first_bad_index
    where = f" — first bad entry: index {first}" if first is not None else ""
    err.print(f"[bold red]NOT verified[/]{where}")
    for problem in report.problems[:SHOWN_PROBLEMS]:
        at = f"[{problem.index}] " if problem.index is not None else ""
        err.print(f"  • {problem.code}: {at}{problem.message}", highlight=False)
    if len(report.problems) > SHOWN_PROBLEMS:
        err.print(f"  … and {len(report.problems) - SHOWN_PROBLEMS} more")
