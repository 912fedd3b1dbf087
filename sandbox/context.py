"""One running instance: settings, database, the bureau's key, and where jobs run."""

from __future__ import annotations

import logging
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Iterator

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from operators.keys import generate_private_key, private_key_from_pem, private_key_to_pem
from sandbox.catalog.models import DatasetInfo
from sandbox.errors import Conflict, NotFound
from sandbox.settings import Settings
from sandbox.store.db import make_engine, make_reader, make_sessionmaker


@dataclass
class Context:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    bureau_key: Ed25519PrivateKey
    jobs: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(16, "job"))
    money_lock: threading.Lock = field(default_factory=threading.Lock)
    running: dict[str, Future[None]] = field(default_factory=dict)   # job id → its run
    readers: sessionmaker[Session] | None = None
    # Registered datasets as read by this process (they never change once registered).
    catalog: dict[str, DatasetInfo] = field(default_factory=dict)
    # The release gate (disclosure.gate): an in-process gate or the instance's Ray actor,
    # made when the first job needs it.
    _gate: Any = None
    _gate_lock: threading.Lock = field(default_factory=threading.Lock)
    # SQLite has one writer at a time. Writers of this process queue here, in order, instead
    # of in SQLite's busy handler, which polls with sleeps of up to 100 ms.
    write_lock: threading.RLock = field(default_factory=threading.RLock)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        with self._writer(), self.sessions.begin() as session:
            yield session

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """A session that only reads: it sees one consistent snapshot and, on SQLite, waits
        for no writer and has changes made in it refused."""
        with (self.readers or self.sessions)() as session:
            yield session

    def gate(self) -> Any:
        with self._gate_lock:
            if self._gate is None:
                from sandbox import release_history

                def load(operator_id: str) -> list[tuple[str, bytes]]:
                    with self.reading() as s:
                        return list(release_history.load(s, operator_id))

                self._gate = release_history.gate_handle(self.settings, load)
            return self._gate

    def _writer(self) -> threading.RLock | nullcontext[None]:
        return self.write_lock if self.engine.dialect.name == "sqlite" else nullcontext()

    def close(self) -> None:
        self.jobs.shutdown(wait=True)
        self.engine.dispose()


def is_initialised(settings: Settings) -> bool:
    return settings.key_path.exists()


def create_instance(settings: Settings) -> Context:
    """Create the data directory, database and bureau key of a new instance."""
    if is_initialised(settings):
        raise Conflict(f"an instance already exists in {settings.data_dir}; use another "
                       "--data-dir or remove it first")
    settings.datasets_dir.mkdir(parents=True, exist_ok=True)
    settings.key_path.parent.mkdir(parents=True, exist_ok=True)
    key = generate_private_key()
    fd = os.open(settings.key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(private_key_to_pem(key))
    return _context(settings, key)


def open_instance(settings: Settings) -> Context:
    if not is_initialised(settings):
        raise NotFound(f"no instance in {settings.data_dir}; create one with: "
                       f"sandbox init --data-dir {settings.data_dir}")
    return _context(settings, private_key_from_pem(settings.key_path.read_bytes()))


def _context(settings: Settings, key: Ed25519PrivateKey) -> Context:
    engine = make_engine(settings.resolved_database_url)
    return Context(settings, engine, make_sessionmaker(engine), key, readers=make_reader(engine))


_ray_lock = threading.Lock()


def ensure_ray(settings: Settings) -> None:
    """Attach to the configured Ray cluster, or start a local one, once per process."""
    import ray

    with _ray_lock:
        if ray.is_initialized():
            return
        address = settings.resolved_ray_address
        if address:
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
        else:
            ray.init(num_cpus=settings.ray_num_cpus, include_dashboard=False,
                     log_to_driver=False, logging_level=logging.WARNING)
        # The scan cache lives as long as this process's Ray job, not as long as the first
        # worker that happens to read a partition.
        from sandbox.engine import cache

        cache.actor()
