"""Sessions on the SQLite file: readers see a snapshot and never wait for the writer, a reader
cannot write, and writers of one process take turns without SQLite's sleeping busy handler."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from sandbox.context import Context
from sandbox.records.principals import bootstrap
from sandbox.settings import Settings
from sandbox.store.models import Principal


@pytest.fixture
def ctx(tmp_path: Path) -> Iterator[Context]:
    context, _ = bootstrap(Settings(data_dir=tmp_path / "instance", executor="local"))
    yield context
    context.close()


def _count(ctx: Context) -> int:
    with ctx.reading() as s:
        return int(s.scalar(select(func.count()).select_from(Principal)) or 0)


def test_a_reader_does_not_wait_for_an_open_write_and_sees_the_last_commit(ctx: Context) -> None:
    inside, release = threading.Event(), threading.Event()

    def writer() -> None:
        with ctx.transaction() as s:
            s.add(Principal(id="p-new", name="新单位", role="provider", token_hash="x" * 64))
            s.flush()
            inside.set()
            release.wait(10)

    t = threading.Thread(target=writer)
    t.start()
    assert inside.wait(10)
    started = time.monotonic()
    before = _count(ctx)  # the write lock is held right now
    assert time.monotonic() - started < 1.0
    release.set()
    t.join()
    assert _count(ctx) == before + 1  # the snapshot did not include the open write


def test_a_reading_session_cannot_write(ctx: Context) -> None:
    with ctx.reading() as s:
        s.add(Principal(id="p-sneak", name="不该写入", role="provider", token_hash="y" * 64))
        with pytest.raises(OperationalError, match="readonly"):
            s.flush()
    with ctx.reading() as s:
        assert s.get(Principal, "p-sneak") is None


def test_writers_of_one_process_take_turns(ctx: Context) -> None:
    """Many threads writing at once all commit, none waits out SQLite's busy timeout."""

    def write(i: int) -> None:
        with ctx.transaction() as s:
            s.add(Principal(id=f"p-{i}", name=f"单位{i}", role="provider", token_hash=f"{i:064d}"))

    before = _count(ctx)
    started = time.monotonic()
    threads = [threading.Thread(target=write, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert _count(ctx) == before + 40
    assert time.monotonic() - started < 10


def test_sessions_of_both_kinds_on_the_same_connections_keep_their_kind(ctx: Context) -> None:
    """A connection remembers being read-only between sessions (the pragma is set only when
    the kind changes): readers that follow writers still cannot write, writers that follow
    readers can, and a connection made anew after its predecessor was dropped starts over."""
    for i in range(12):
        with ctx.transaction() as s:
            s.add(Principal(id=f"p-w{i}", name=f"单位{i}", role="provider", token_hash=f"{i:064x}"))
        with ctx.reading() as s:
            s.add(Principal(id=f"p-r{i}", name="不该写入", role="provider", token_hash="z" * 64))
            with pytest.raises(OperationalError, match="readonly"):
                s.flush()
        if i % 4 == 1:
            with ctx.reading() as s:
                # Dropped mid-session (as after an error): its record connects again.
                s.connection().invalidate()
        if i % 4 == 3:
            # Every pooled connection closed: the next sessions connect again.
            ctx.engine.dispose()
    with ctx.reading() as s:
        names = set(s.scalars(select(Principal.id).where(Principal.id.like("p-%"))))
    assert {f"p-w{i}" for i in range(12)} <= names
    assert not any(n.startswith("p-r") for n in names)
