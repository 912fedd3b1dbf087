"""The recorded history of released sets: what the release gate (disclosure.gate) rebuilds an
operator's partition from, and where each job's releases are kept for good.

The gate audits and remembers a release at the moment of release; settlement records the
sets here, in the same transaction as the job's outcome, so that a gate started afresh (a
restart, another process) knows them.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from pyroaring import FrozenBitMap64
from sqlalchemy import bindparam, insert, select
from sqlalchemy.orm import Session

from sandbox.context import Context
from sandbox.store import core
from sandbox.store.models import ReleasedSet

# dataset → (set, threshold it passed, what it was released about: disclosure.gate's space)
NewSets = Mapping[str, list[tuple[bytes, int, str]]]


def digest(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


def load(session: Session, operator_id: str) -> Iterator[tuple[str, bytes]]:
    """The operator's recorded sets that constrain later releases (threshold above 1), with
    what each was released about, in the order they were recorded."""
    for space, blob in session.execute(  # noqa: UP028 - plain pairs, not result rows
        select(ReleasedSet.space, ReleasedSet.members)
        .where(ReleasedSet.operator_id == operator_id, ReleasedSet.threshold > 1)
        .order_by(ReleasedSet.id)
        .execution_options(yield_per=256)
    ):
        yield space, blob


@functools.cache
def _reader(database_url: str) -> Any:
    from sandbox.store.db import make_engine, make_reader

    return make_reader(make_engine(database_url))


def load_from(database_url: str, operator_id: str) -> list[tuple[str, bytes]]:
    """`load` for a process of its own (the gate's actor), reading through its own engine."""
    with _reader(database_url)() as s:
        return list(load(s, operator_id))


def gate(ctx: Context) -> Any:
    """The instance's release gate, made once: at the API's start, or by the first job
    where the service's app does not run."""
    with ctx.gate_lock:
        if ctx.gate_handle is None:

            def read(operator_id: str) -> list[tuple[str, bytes]]:
                with ctx.reading() as s:
                    return list(load(s, operator_id))

            ctx.gate_handle = gate_handle(ctx.settings, read)
        return ctx.gate_handle


_KNOWN = select(ReleasedSet.digest).where(
    ReleasedSet.operator_id == bindparam("operator_id"),
    ReleasedSet.digest.in_(bindparam("digests", expanding=True)),
)
_INSERT = insert(ReleasedSet)


def record(session: Session, operator_id: str, contract_id: str, job_id: str, new: NewSets) -> int:
    """Keep a job's released sets (each distinct set of the operator once)."""
    # A set is kept once per operator and space.
    digests = {
        digest(space.encode("utf-8") + blob): (dataset, blob, threshold, space)
        for dataset, sets in sorted(new.items())
        for blob, threshold, space in sets
    }
    if not digests:
        return 0
    params = {"operator_id": operator_id, "digests": list(digests)}
    known = set(core.execute(session, _KNOWN, params).scalars())
    rows = [
        {
            "operator_id": operator_id,
            "contract_id": contract_id,
            "dataset": dataset,
            "digest": d,
            "threshold": threshold,
            "space": space,
            "cardinality": len(FrozenBitMap64.deserialize(blob)),
            "members": blob,
            "job_id": job_id,
        }
        for d, (dataset, blob, threshold, space) in digests.items()
        if d not in known
    ]
    if rows:
        core.execute(session, _INSERT, rows)
    return len(rows)


def settled(ctx: Context, job_id: str, recorded: bool) -> None:
    """Tell the gate a job was settled, and whether the sets it handed on are recorded now
    (the job was settled here, not by a process that took it for dead): the gate then
    knows it holds them. Not waited for: until the gate hears it, jobs hand them on again."""
    handle = ctx.gate_handle
    if handle is None:
        return
    if hasattr(handle.settled, "remote"):  # the Ray actor
        handle.settled.remote(job_id, recorded)
    else:
        handle.settled(job_id, recorded)


def gate_handle(settings: Any, load_local: Callable[[str], Iterable[tuple[str, bytes]]]) -> Any:
    """The instance's gate: a Ray actor shared by every process of the instance (one per
    database), or an in-process gate when jobs run in-process."""
    from sandbox.disclosure.gate import Gate, GateActor

    if settings.executor != "ray":
        return Gate(load_local)
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from sandbox.context import ensure_ray

    ensure_ray(settings)
    url = settings.resolved_database_url
    name = "sandbox-release-gate-" + hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]
    # On this node: an SQLite database is a file only this machine can open.
    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    actor = ray.remote(num_cpus=0, max_restarts=-1)(GateActor)
    # One gate for every API process of the instance, whichever process made it: named in a
    # namespace of its own (each attaching process is otherwise in an anonymous one), and
    # detached, so that it outlives the process that made it should that one die.
    return actor.options(
        name=name,
        namespace=GATE_NAMESPACE,
        lifetime="detached",
        get_if_exists=True,
        scheduling_strategy=here,
    ).remote(functools.partial(load_from, url))


GATE_NAMESPACE = "sandbox-gates"
