"""Imported first by conftest: the suite's processes give no terminal width of their own.

pytest-xdist's workers start with COLUMNS=80 in their environment, and a Rich console made
while it is set keeps that width for good; the CLI's consoles are made when its modules are
imported, so tests that ask for a wide table (CliRunner's env COLUMNS=300) would see it cut at
80 columns in a worker and whole in a single process. Without the variable, each console reads
the width when it prints."""

import os

os.environ.pop("COLUMNS", None)
