"""The schema is the migrations': they agree with the models on every database, an instance
made at the first revision and filled upgrades to the newest with its ledger and jobs intact,
and an instance whose schema is behind is refused with the command that fixes it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from conftest import make_world
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from databases import BACKENDS, fresh_database
from sqlalchemy import text

from sandbox.context import open_instance
from sandbox.errors import Conflict
from sandbox.ledger.verify import BureauKey, LedgerSource, verify_log
from sandbox.settings import Settings
from sandbox.store import schema
from sandbox.store.db import make_engine
from sandbox.store.models import Base

BY_DISTRICT = (
    'emit("t", table("population").group_by("district")'
    '.agg(n=count(), avg=mean("income")).collect())\n'
)


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_models_and_the_migrations_agree(tmp_path: Path, backend: str) -> None:
    with fresh_database(backend) as url:
        engine = make_engine(url or f"sqlite:///{tmp_path / 'schema.db'}")
        try:
            schema.upgrade(engine)
            assert schema.current(engine) == schema.head()
            with engine.connect() as conn:
                diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
            assert diff == [], diff
        finally:
            engine.dispose()


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_instance_made_at_the_first_revision_and_filled_upgrades_intact(
    tmp_path: Path, city: dict[str, Any], backend: str
) -> None:
    with fresh_database(backend) as url:
        database = url or f"sqlite:///{tmp_path / 'instance' / 'sandbox.db'}"
        (tmp_path / "instance").mkdir()
        first = make_engine(database)
        schema.upgrade(first, schema.FIRST)
        first.dispose()
        for w in make_world(tmp_path, city, "local", database_url=database):
            cid = w.active_contract()
            before = w.run(cid, BY_DISTRICT).json()
            assert before["status"] == "succeeded", before
            saved = w.client.get("/v1/ledger/checkpoint", headers=w.h(w.regulator)).json()[
                "checkpoint"
            ]
            schema.upgrade(w.ctx.engine)
            assert schema.current(w.ctx.engine) == schema.head()
            # The jobs and charges are still there and new ones run and are charged.
            again = w.client.get(f"/v1/jobs/{before['id']}", headers=w.h(w.operator)).json()
            assert again["charge"] == before["charge"] and again["outputs"] == before["outputs"]
            after = w.run(cid, BY_DISTRICT).json()
            assert after["status"] == "succeeded" and after["charge"], after
            # The ledger verifies from outside, against a checkpoint saved before the upgrade.
            source = LedgerSource("http://testserver", w.regulator["token"], client=w.client)
            report = verify_log(
                source,
                BureauKey(
                    w.ctx.bureau_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
                ),
                saved,
            )
            assert report.ok and report.consistent_with_saved, report.problems


def test_an_instance_whose_schema_is_behind_is_refused_with_the_command(tmp_path: Path) -> None:
    home = tmp_path / "instance"
    env = {**os.environ, "SANDBOX_DATA_DIR": str(home)}
    sandbox = [sys.executable, "-m", "sandbox.cli.main"]
    subprocess.run([*sandbox, "init"], env=env, check=True, capture_output=True)
    settings = Settings(data_dir=home)
    # As an instance made before migrations existed: the first revision's tables, no version.
    (home / "sandbox.db").unlink()
    engine = make_engine(settings.resolved_database_url)
    schema.upgrade(engine, schema.FIRST)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE alembic_version"))
    engine.dispose()

    with pytest.raises(Conflict, match="sandbox db upgrade --data-dir"):
        open_instance(settings)
    served = subprocess.run(
        [*sandbox, "serve", "--port", "0"], env=env, capture_output=True, text=True, timeout=60
    )
    assert served.returncode == 1 and "sandbox db upgrade" in served.stderr, served.stderr

    upgraded = subprocess.run(
        [*sandbox, "db", "upgrade"], env=env, capture_output=True, text=True, check=True
    )
    assert f"to {schema.head()}" in upgraded.stdout
    open_instance(settings).close()
