"""Hot partitions kept in Ray's object store, so repeated scans skip Parquet decoding.

One named actor per Ray namespace ("sandbox-scan-cache") maps what a partition task reads —
the file (path, modification time, size), the columns, the row groups — to an object ref of
that projected Arrow table. A task asks it first (one actor call) and maps the table from
shared memory without copying; on a miss it reads Parquet, puts the table in the object store
and registers the ref. The task's worker owns the object: when that worker exits, the object
is lost, and the next task to ask drops the entry and reads the file again.

The actor keeps the most recently used tables up to a byte bound; dropping a ref is what
frees the object. A changed file has a new key, so it is never served stale, and registering
it evicts the entries of the file's older versions. Only tables without row ids are cached:
ids depend on the partition's place in the dataset, and are added after the read.

Any trouble with the cache (the actor died, an object was lost with its owner) falls back to
reading the file: the cache is never needed for a correct answer.

The processes that read partitions for jobs (job drivers computing small plans in place, and
the workers of partition tasks) also keep the tables they read in their own memory (`keep_bytes`,
`SANDBOX_ENGINE_WORKER_TABLES_MB` per process): asking the actor, mapping the object and
releasing it again costs several milliseconds a partition, more than a small job's whole scan.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from sandbox.common.lru import LRU

CACHE_NAME = "sandbox-scan-cache"
# At most this many bytes of tables, and at most this share of the cluster's object store.
MAX_BYTES = 2 << 30
STORE_FRACTION = 0.25
# Tables a reading process keeps of its own, unless the job says otherwise
# (settings.engine_worker_tables_mb).
WORKER_TABLES_BYTES = 256 << 20


@dataclass(frozen=True)
class ScanKey:
    path: str
    mtime_ns: int
    size: int
    columns: tuple[str, ...]
    row_groups: tuple[int, ...] | None  # None: every row group

    @property
    def version(self) -> tuple[int, int]:
        return self.mtime_ns, self.size


class ScanCache:
    """The actor's body: an LRU of object refs bounded by the tables' bytes."""

    def __init__(self, max_bytes: int) -> None:
        self._max_bytes = max_bytes
        self._entries: OrderedDict[ScanKey, tuple[Any, int]] = OrderedDict()
        self._bytes = 0
        self._counts = {"hits": 0, "misses": 0, "evictions": 0, "dropped": 0}

    def lookup(self, key: ScanKey) -> list[Any]:
        """[ref] of the cached table, or [] — a list, so Ray hands back the ref itself."""
        entry = self._entries.get(key)
        if entry is None:
            self._counts["misses"] += 1
            return []
        self._entries.move_to_end(key)
        self._counts["hits"] += 1
        return [entry[0]]

    def register(self, key: ScanKey, refs: list[Any], nbytes: int) -> bool:
        if nbytes > self._max_bytes:
            return False
        for old in [k for k in self._entries if k.path == key.path and k.version != key.version]:
            self._remove(old)
        if key in self._entries:
            self._remove(key)
        self._entries[key] = (refs[0], nbytes)
        self._bytes += nbytes
        while self._bytes > self._max_bytes:
            self._remove(next(iter(self._entries)))
            self._counts["evictions"] += 1
        return True

    def drop(self, key: ScanKey) -> None:
        if key in self._entries:
            self._remove(key)
            self._counts["dropped"] += 1

    def stats(self) -> dict[str, int]:
        return {
            **self._counts,
            "entries": len(self._entries),
            "bytes": self._bytes,
            "max_bytes": self._max_bytes,
        }

    def _remove(self, key: ScanKey) -> None:
        _, nbytes = self._entries.pop(key)
        self._bytes -= nbytes


_handles: dict[str, Any] = {}
_lock = threading.Lock()


def actor(name: str = CACHE_NAME, max_bytes: int | None = None) -> Any:
    """This namespace's cache actor, created by the first caller (not detached: it ends with
    the Ray job that started it). None when Ray is not running."""
    import ray

    if not ray.is_initialized():
        return None
    with _lock:
        handle = _handles.get(name)
        if handle is None:
            bound = max_bytes if max_bytes is not None else _default_bound(ray)
            handle = (
                ray.remote(ScanCache)
                .options(
                    name=name,
                    get_if_exists=True,
                    num_cpus=0,
                    max_restarts=0,
                )
                .remote(bound)
            )
            _handles[name] = handle
        return handle


def _default_bound(ray: Any) -> int:
    store = ray.cluster_resources().get("object_store_memory", 0)
    return int(min(MAX_BYTES, STORE_FRACTION * store)) if store else MAX_BYTES


def forget(name: str = CACHE_NAME) -> None:
    """Drop this process's handle (the actor died): the next call finds or makes a new one."""
    with _lock:
        _handles.pop(name, None)


# This process's most recently used tables. Tables only: the shared memory they map stays
# pinned while they are held, which the bound keeps small.
_local: LRU[ScanKey, pa.Table] = LRU(WORKER_TABLES_BYTES, lambda t: t.get_total_buffer_size())


def fetch(
    handle: Any,
    key: ScanKey,
    load: Callable[[], pa.Table],
    name: str = CACHE_NAME,
    keep_bytes: int = 0,
) -> pa.Table:
    """The table `key` names: from the cache when it holds it, else `load()`ed and cached.
    `keep_bytes`: this process's own tables first, and keep it among them, which then
    weigh at most that many bytes (0: this process keeps none)."""
    keep(keep_bytes)
    if not keep_bytes:
        return _fetch_shared(handle, key, load, name)
    table = _local.get(key)
    if table is None:
        table = _fetch_shared(handle, key, load, name)
        # The file's older versions are never asked for again.
        _local.put(key, table, replaces=lambda k: k.path == key.path and k.version != key.version)
    return table


def keep(max_bytes: int) -> None:
    """Bound this process's own tables (the job's setting, which may have changed since the
    process last read a partition)."""
    if _local.max_weight != max_bytes:
        _local.resize(max_bytes)


def _fetch_shared(handle: Any, key: ScanKey, load: Callable[[], pa.Table], name: str) -> pa.Table:
    import ray
    from ray.exceptions import ObjectLostError, RayActorError

    try:
        refs = ray.get(handle.lookup.remote(key))
    except RayActorError:
        forget(name)
        return load()
    if refs:
        try:
            return ray.get(refs[0])
        except ObjectLostError:
            # Its node or owner is gone: forget it and read the file again.
            handle.drop.remote(key)
    table = load()
    try:
        ref = ray.put(table)
        # Waited for: the actor must hold the ref before this task lets go of it.
        ray.get(handle.register.remote(key, [ref], table.get_total_buffer_size()))
    except RayActorError:
        forget(name)
    return table
