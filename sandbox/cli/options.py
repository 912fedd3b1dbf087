"""What every command that works on a local instance takes: its data directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from sandbox.settings import Settings

DataDir = typer.Option(
    None, "--data-dir", help="Instance directory (default: $SANDBOX_DATA_DIR or ./sandbox-data)."
)


def settings_for(data_dir: Path | None, **overrides: Any) -> Settings:
    """The settings of the instance in `data_dir` (else from the environment), with
    `overrides` that are not None."""
    values = {k: v for k, v in overrides.items() if v is not None}
    if data_dir is not None:
        values["data_dir"] = data_dir
    return Settings(**values)
