"""`sandbox keys rotate-data-key`: a new master key for the encrypted (L3/L4) data, every
partition's wrapped keys re-wrapped under it, the data files untouched."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from sandbox.cli.options import DataDir, settings_for

console = Console()
err = Console(stderr=True)


def rotate_data_key(data_dir: Path | None = DataDir) -> None:
    """Rotate the master key of the encrypted data. Run it with the service stopped."""
    from sandbox.catalog import encryption
    from sandbox.context import check_initialised
    from sandbox.errors import SandboxError

    settings = settings_for(data_dir)
    try:
        check_initialised(settings)
        partitions = sorted(settings.datasets_dir.rglob("*.parquet"))
        done = encryption.rotate(settings.data_dir, partitions)
    except (SandboxError, OSError) as e:
        err.print(f"[bold red]error:[/] {getattr(e, 'message', None) or e}", highlight=False)
        raise typer.Exit(1) from None
    retired = ", ".join(f"v{n}" for n in done.retired) or "none"
    console.print(
        f"Master key v{done.version} in force: the wrapped keys of {done.files} encrypted "
        f"partition(s) re-wrapped, no data file rewritten; retired: {retired}. Take a new "
        "backup: older ones hold the retired key."
    )
