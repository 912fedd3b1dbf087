"""The database schema's version: Alembic migrations in `sandbox/store/migrations`.

`sandbox init` creates an instance at the newest revision; `sandbox db upgrade` brings an
existing one there; `serve` and every command that opens an instance refuse one whose
schema is behind, with the command to run. An instance made before migrations existed (its
tables there, no version recorded) is taken to be at the first revision.
"""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect

from sandbox.errors import Conflict

FIRST = "0001"


def _config(engine: Engine | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", "sandbox.store:migrations")
    if engine is not None:
        # The option is read through configparser's interpolation: a data directory with a
        # Chinese name puts %-escapes in the URL.
        url = engine.url.render_as_string(hide_password=False)
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def head() -> str:
    return str(ScriptDirectory.from_config(_config()).get_current_head())


def known(revision: str) -> bool:
    """Whether `revision` is one of this version's migrations."""
    script = ScriptDirectory.from_config(_config())
    return any(r.revision == revision for r in script.walk_revisions())


def current(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to `revision` (the newest by default)."""
    config = _config(engine)
    if current(engine) is None and inspect(engine).has_table("jobs"):
        command.stamp(config, FIRST)
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, revision)


def check_current(engine: Engine, data_dir: object) -> None:
    """Refuse an instance whose schema is behind this version of the service."""
    at, newest = current(engine), head()
    if at == newest:
        return
    if at is None and not inspect(engine).has_table("jobs"):
        raise Conflict(
            f"the database of {data_dir} has no schema; create the instance with: "
            f"sandbox init --data-dir {data_dir}"
        )
    where = f"is at revision {at}" if at else "records no revision"
    raise Conflict(
        f"the database schema of {data_dir} {where}, this version of the service "
        f"needs {newest}; upgrade it first with: "
        f"sandbox db upgrade --data-dir {data_dir}"
    )
