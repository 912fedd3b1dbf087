"""One running instance: settings, database, the bureau's key, and where jobs run.

The instance's crypto suite (:mod:`operators.suite`) is the bureau key's: an Ed25519 key
means ``international``, an SM2 key ``sm``. It is chosen once, by ``create_instance``, and
an instance opened with a key of the other suite is refused (its log would not verify).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from operators.keys import (
    PrivateKey,
    generate_key,
    private_key_from_pem,
    private_key_to_pem,
    suite_of,
)
from operators.suite import DEFAULT_SUITE, Suite
from sandbox.catalog.models import DatasetInfo
from sandbox.errors import Conflict, NotFound, RayUnavailable
from sandbox.ledger import log
from sandbox.settings import Settings
from sandbox.store import liveness, schema
from sandbox.store.db import make_engine, make_reader, make_sessionmaker


@dataclass
class Context:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    bureau_key: PrivateKey
    jobs: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(16, "job"))
    money_lock: threading.Lock = field(default_factory=threading.Lock)
    running: dict[str, Future[None]] = field(default_factory=dict)  # job id → its run
    readers: sessionmaker[Session] | None = None
    # Registered datasets as read by this process (they never change once registered).
    # (dataset, version) → what the catalog says of it: versions never change.
    catalog: dict[tuple[str, int], DatasetInfo] = field(default_factory=dict)
    # The release gate (disclosure.gate): an in-process gate or the instance's Ray actor,
    # made when the first job needs it (records.releases.gate).
    gate_handle: Any = None
    gate_lock: threading.Lock = field(default_factory=threading.Lock)
    # Where job drivers run (pipeline.execution.runner): decided once, from the settings.
    runner: Any = None
    runner_lock: threading.Lock = field(default_factory=threading.Lock)
    # SQLite has one writer at a time. Writers of this process queue here, in order, instead
    # of in SQLite's busy handler, which polls with sleeps of up to 100 ms.
    write_lock: threading.RLock = field(default_factory=threading.RLock)
    # This process's lease (sandbox.store.liveness), taken when it first reserves a job.
    lease: liveness.Lease | None = None
    lease_lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        # The ledger reads the tree hash from each session's info (sandbox.ledger.log).
        for maker in (self.sessions, self.readers):
            if maker is not None:
                maker.configure(info={log.SUITE_INFO: self.suite})

    @property
    def suite(self) -> Suite:
        """The instance's crypto suite, fixed by the type of the bureau key."""
        return suite_of(self.bureau_key)

    def runner_id(self) -> str:
        """The lease id this process writes on the jobs it runs."""
        with self.lease_lock:
            if self.lease is None:
                self.lease = liveness.hold(self.engine, self.settings.run_dir)
            return self.lease.id

    def runner_alive(self, runner: str) -> bool:
        return liveness.alive(self.engine, self.settings.run_dir, runner)

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

    def _writer(self) -> threading.RLock | nullcontext[None]:
        return self.write_lock if self.engine.dialect.name == "sqlite" else nullcontext()

    def close(self) -> None:
        self.jobs.shutdown(wait=True)
        with self.lease_lock:
            if self.lease is not None:
                self.lease.release()
                self.lease = None
        self.engine.dispose()


def is_initialised(settings: Settings) -> bool:
    return settings.key_path.exists()


def create_instance(settings: Settings, suite: Suite = DEFAULT_SUITE) -> Context:
    """Create the data directory, database and bureau key of a new instance of ``suite``."""
    if is_initialised(settings):
        raise Conflict(
            f"an instance already exists in {settings.data_dir}; use another "
            "--data-dir or remove it first (an instance's crypto suite cannot be changed)"
        )
    settings.datasets_dir.mkdir(parents=True, exist_ok=True)
    settings.key_path.parent.mkdir(parents=True, exist_ok=True)
    key = generate_key(suite)
    fd = os.open(settings.key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(private_key_to_pem(key))
    ctx = _context(settings, key)
    schema.upgrade(ctx.engine)
    return ctx


def check_initialised(settings: Settings) -> None:
    if not is_initialised(settings):
        raise NotFound(
            f"no instance in {settings.data_dir}; create one with: "
            f"sandbox init --data-dir {settings.data_dir}"
        )


def open_instance(settings: Settings) -> Context:
    check_initialised(settings)
    ctx = _context(settings, private_key_from_pem(settings.key_path.read_bytes()))
    try:
        schema.check_current(ctx.engine, settings.data_dir)
        _check_suite(ctx)
    except Conflict:
        ctx.engine.dispose()
        raise
    return ctx


def _check_suite(ctx: Context) -> None:
    with ctx.reading() as session:
        log.check_hash(session, ctx.suite)


def _context(settings: Settings, key: PrivateKey) -> Context:
    engine = make_engine(settings.resolved_database_url)
    return Context(settings, engine, make_sessionmaker(engine), key, readers=make_reader(engine))


_ray_lock = threading.Lock()


def ensure_ray(settings: Settings) -> None:
    """Attach to the configured Ray cluster, or start a private local one, once per process.

    Raises `RayUnavailable` when a configured cluster does not answer within
    `settings.ray_connect_timeout`."""
    import ray

    with _ray_lock:
        if ray.is_initialized():
            return
        address = settings.resolved_ray_address
        if address and address != "local":
            _attach(address, _address_source(settings), settings.ray_connect_timeout)
        else:
            # "local", not None: with None Ray looks for a cluster to join, and joins the one
            # named in the file the last `ray start` left in its temp directory even when that
            # cluster is long gone (then it retries for minutes).
            start_local_ray(settings.ray_num_cpus, settings.ray_object_store_mb)
        # The scan cache lives as long as this process's Ray job, not as long as the first
        # worker that happens to read a partition.
        from sandbox.engine import cache

        cache.actor()


def start_local_ray(num_cpus: int | None, object_store_mb: int | None = None) -> None:
    """Start a private Ray on this machine, with `num_cpus` (all of them when None)."""
    import ray

    cpus = num_cpus or ray_detected_cpus()
    ray.init(
        address="local",
        num_cpus=num_cpus,
        object_store_memory=object_store_mb << 20 if object_store_mb else None,
        include_dashboard=False,
        log_to_driver=False,
        logging_level=logging.WARNING,
        # Idle workers beyond this many are stopped after a second (Ray's default: one per
        # CPU). A job's driver waits on a worker of its own while its partition tasks run on
        # others, so a CPU is used by up to two workers; kept, they stay ready (`RayRunner`)
        # instead of being started again, seconds each, for every job that needs them.
        _system_config={"num_workers_soft_limit": WORKERS_PER_CPU * cpus},
    )


# Ready workers kept per CPU: one driver waiting on its partitions, one computing them.
WORKERS_PER_CPU = 2


def ray_detected_cpus() -> int:
    """The CPUs a local Ray gives itself when not told: in a container, its CPU quota, not
    the host's processors (`os.cpu_count()`), which would keep dozens of idle workers of a
    few hundred megabytes each on a container allowed two CPUs."""
    try:
        from ray._private.utils import get_num_cpus
    except ImportError:  # moved in a later Ray: the host's count, as before
        return os.cpu_count() or 1
    return max(1, int(get_num_cpus(override_docker_cpu_warning=True)))


def ray_gcs_address() -> str:
    """The GCS address of the Ray this process uses (after `ensure_ray`)."""
    import ray

    return str(ray.get_runtime_context().gcs_address)


def _address_source(settings: Settings) -> str:
    return "SANDBOX_RAY_ADDRESS" if settings.ray_address else "RAY_ADDRESS"


def _attach(address: str, source: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    endpoint = _endpoint(address)
    if endpoint is not None:
        _probe(address, source, endpoint, timeout)
    _init_within(address, source, timeout, max(deadline - time.monotonic(), 0.1))


def _endpoint(address: str) -> tuple[str, int] | None:
    """HOST and PORT of `HOST:PORT`, `ray://HOST:PORT` or `[IPV6]:PORT`; None for the forms
    Ray resolves itself (`auto`)."""
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def _probe(address: str, source: str, endpoint: tuple[str, int], timeout: float) -> None:
    # Ray's own connect retries for minutes and cannot be interrupted while it waits; a plain
    # TCP connect says within the timeout whether anything listens there at all.
    try:
        socket.create_connection(endpoint, timeout=timeout).close()
    except OSError as e:
        reason = "timed out" if isinstance(e, TimeoutError) else (e.strerror or str(e))
        raise RayUnavailable(
            f"cannot reach the Ray cluster at {address} (from {source}): {reason} within "
            f"{timeout:g} s. Check that the cluster's head runs (`ray start --head` prints its "
            f"address) and that port {endpoint[1]} of {endpoint[0]} is open from this machine; "
            f"or unset {source} to start a local Ray. SANDBOX_RAY_CONNECT_TIMEOUT sets how "
            "long to wait."
        ) from e


def _init_within(address: str, source: str, timeout: float, remaining: float) -> None:
    """`ray.init(address)` bounded in time: Ray blocks in native code for each of its
    retries, where neither a timeout nor a signal reaches it, so it runs in a thread of its
    own (an attaching driver starts no Ray processes that would die with that thread)."""
    import ray

    failure: list[BaseException] = []
    done = threading.Event()

    def connect() -> None:
        try:
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
        except BaseException as e:  # handed to the waiting thread, which raises it
            failure.append(e)
        finally:
            done.set()

    quiet = _DropMessage("SIGTERM handler is not set")  # the serving thread handles signals
    logging.getLogger("ray._private.worker").addFilter(quiet)
    try:
        threading.Thread(target=connect, name="ray-connect", daemon=True).start()
        answered = done.wait(remaining)
    finally:
        logging.getLogger("ray._private.worker").removeFilter(quiet)
    if not answered:
        raise RayUnavailable(
            f"the Ray cluster at {address} (from {source}) did not answer within {timeout:g} s: "
            "something listens there, but no Ray head that lets this machine join. Check that "
            "it is the GCS address `ray start --head` printed (port 6379 unless chosen "
            "otherwise), not the dashboard's or the client server's, and that this machine "
            "can reach the cluster's nodes; SANDBOX_RAY_CONNECT_TIMEOUT sets how long to wait."
        )
    if failure:
        raise RayUnavailable(
            f"cannot attach to the Ray cluster at {address} (from {source}): {failure[0]}"
        ) from failure[0]


class _DropMessage(logging.Filter):
    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefix)
