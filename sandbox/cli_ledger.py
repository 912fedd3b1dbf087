"""`sandbox ledger …`: commands for verifying the transparency log."""

from __future__ import annotations

import typer

ledger_app = typer.Typer(help="Verify the tamper-evident log of a running service.",
                         no_args_is_help=True)
