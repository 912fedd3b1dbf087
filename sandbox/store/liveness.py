"""Which serving processes are alive.

A process that runs jobs holds a lease for as long as it lives, and writes its lease's id on
every job it reserves. When it dies (a crash, SIGKILL, the OOM killer), its lease goes with
it, whatever the process managed to do: the jobs it left queued or running can then be
failed by whichever process looks next, while the jobs of processes still alive are left
alone. The lease is something the operating system or the database drops when its holder
dies, never a heartbeat to time out:

- on PostgreSQL, a session-level advisory lock held on a connection of its own (several
  machines may serve one database, so only the database can tell);
- on SQLite, an exclusive `flock` on a file in the instance's directory (one machine).
"""

from __future__ import annotations

import fcntl
import os
import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

# The first key of every lease's two-key advisory lock. Two-key advisory locks are a space
# apart from the one-key lock that writers take (sandbox.store.db.WRITER_LOCK).
_LEASE_SPACE = 0x5A4E


@dataclass
class Lease:
    """Held until `release()` or the holder's death."""

    id: str
    _hold: Any

    def release(self) -> None:
        hold, self._hold = self._hold, None
        if hold is not None:
            hold.close()


def hold(engine: Engine, run_dir: Path) -> Lease:
    """A new lease for this process."""
    lease_id = uuid.uuid4().hex
    if engine.dialect.name == "postgresql":
        return Lease(lease_id, _hold_advisory(engine, lease_id))
    return Lease(lease_id, _hold_file(run_dir, lease_id))


def alive(engine: Engine, run_dir: Path, lease_id: str) -> bool:
    """Whether the process that took `lease_id` still holds it."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            held = conn.execute(_ADVISORY_HELD, {"space": _LEASE_SPACE, "key": _key(lease_id)})
            found = held.first() is not None
            conn.rollback()
            return found
    return _file_held(run_dir, lease_id)


def _key(lease_id: str) -> int:
    # pg_locks shows the keys as unsigned 32-bit numbers; kept below 2**31 so that the int4
    # passed to pg_advisory_lock reads back the same.
    return zlib.crc32(lease_id.encode("ascii")) & 0x7FFF_FFFF


_ADVISORY_HELD = text(
    "SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted "
    "AND classid = :space AND objid = :key AND objsubid = 2 "
    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)


def _hold_advisory(engine: Engine, lease_id: str) -> Any:
    # A raw connection in autocommit: a session lock outlives transactions, and an open
    # transaction held for the process's life would hold back the database's vacuum.
    raw = engine.raw_connection()
    driver = raw.driver_connection
    assert driver is not None
    driver.autocommit = True
    with driver.cursor() as cur:
        cur.execute("SELECT pg_advisory_lock(%s, %s)", (_LEASE_SPACE, _key(lease_id)))
    return _Detached(raw)


class _Detached:
    """A pooled connection that must not go back to the pool: it is closed outright, which
    ends its session and so its locks."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw

    def close(self) -> None:
        self.raw.invalidate()


def _lease_file(run_dir: Path, lease_id: str) -> Path:
    return run_dir / f"lease-{lease_id}"


def _hold_file(run_dir: Path, lease_id: str) -> Any:
    run_dir.mkdir(parents=True, exist_ok=True)
    path = _lease_file(run_dir, lease_id)
    f = path.open("w")
    fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    return _HeldFile(path, f)


class _HeldFile:
    def __init__(self, path: Path, f: Any) -> None:
        self.path, self.f = path, f

    def close(self) -> None:
        self.path.unlink(missing_ok=True)
        self.f.close()


def _file_held(run_dir: Path, lease_id: str) -> bool:
    path = _lease_file(run_dir, lease_id)
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        # Its holder died without cleaning up: the file goes too.
        path.unlink(missing_ok=True)
        return False
    finally:
        os.close(fd)
