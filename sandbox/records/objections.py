"""Objections (异议): a principal disputes something the service or a department did, and the
one who owns it answers.

    quality   an operator or a department objects to a version of a dataset (its values look
              wrong, a column is empty, a refresh lost rows); the dataset's department answers,
              or the bureau
    refusal   an operator objects to a refusal of one of its own jobs: a job rejected or
              failed, or one whose disclosure report suppressed cells; the bureau answers

    open ──answer (owner)──▶ answered

The raiser sees its own objections; a department those it must answer (and those it raised);
the bureau and the regulator all. Anything else is answered 404. Every step is appended to
the objection's `history` and to the log ("objection.raised", "objection.answered").

Privacy: an objection about a refusal carries the job's id and what the operator wrote, and
never anything of the job's disclosure report, its code or its data: whoever reads it learns
no more about the data than the refusal told the operator. The answer is the owner's own text.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, or_, select
from sqlalchemy.orm import Session

from operators.roles import Role
from sandbox.common import clock, fields
from sandbox.context import Context
from sandbox.disclosure.threshold import operator_view
from sandbox.errors import BadRequest, Conflict, Forbidden, JobStatus, NotFound
from sandbox.ledger import log
from sandbox.records import directory, listings
from sandbox.records.jobs import load_job
from sandbox.records.principals import Actor, new_id, require
from sandbox.store.models import Dataset, DatasetVersion, Job, Objection

QUALITY, REFUSAL = "quality", "refusal"
KINDS = (QUALITY, REFUSAL)
OPEN, ANSWERED = "open", "answered"
STATUSES = (OPEN, ANSWERED)
TEXT_MAX = 4000
# Jobs an operator may object to the refusal of, besides those whose report suppressed cells.
REFUSED_JOBS = (JobStatus.REJECTED, JobStatus.FAILED)


def _text(value: Any, field: str, how: str) -> str:
    return fields.text(value, field, TEXT_MAX, required=True, how=how)


def _entry(status: str, actor: Actor, note: str | None) -> dict[str, Any]:
    return {"status": status, "at": clock.text(clock.now()), "by": actor.id, "note": note}


def view(o: Objection, names: directory.Directory | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": o.id,
        "kind": o.kind,
        "raised_by": o.raised_by,
        "dataset": o.dataset,
        "version": o.version,
        "job_id": o.job_id,
        # None for the bureau, which answers as a whole (any of its principals).
        "owner_id": o.owner_id,
        "owner": "bureau" if o.owner_id is None else "provider",
        "text": o.text,
        "status": o.status,
        "answer": o.answer,
        "answered_by": o.answered_by,
        "created_at": clock.text(o.created_at),
        "answered_at": clock.text(o.answered_at),
        "history": list(o.history or []),
    }
    if names is not None:
        body |= {
            "raised_by_name": names.name(o.raised_by),
            "owner_name": names.name(o.owner_id),
            "answered_by_name": names.name(o.answered_by),
            "dataset_title": names.dataset_title(o.dataset),
        }
    return body


def _may_see(actor: Actor, o: Objection) -> bool:
    if actor.role in (Role.bureau, Role.regulator):
        return True
    return actor.id in (o.raised_by, o.owner_id)


def _visible(q: Select[Objection], actor: Actor) -> Select[Objection]:
    if actor.role in (Role.bureau, Role.regulator):
        return q
    if actor.role == Role.provider:
        return q.where(or_(Objection.raised_by == actor.id, Objection.owner_id == actor.id))
    return q.where(Objection.raised_by == actor.id)


def _load(session: Session, actor: Actor, objection_id: str, *, lock: bool = False) -> Objection:
    o = session.get(Objection, objection_id, with_for_update=lock)
    if o is None or not _may_see(actor, o):
        raise NotFound(
            f"no objection {objection_id!r} visible to you; GET /v1/objections lists those "
            "you can see"
        )
    return o


def may_answer(actor: Actor, o: Objection) -> bool:
    """The owner answers: the bureau any objection (a quality one on the department's
    behalf too), a department those about its datasets."""
    if actor.role == Role.bureau:
        return True
    return actor.role == Role.provider and o.owner_id == actor.id


# --- raising --------------------------------------------------------------------------------


def raise_objection(ctx: Context, actor: Actor, body: dict[str, Any]) -> dict[str, Any]:
    kind = body.get("kind")
    if kind not in KINDS:
        raise BadRequest(
            f"kind must be {QUALITY!r} (about a version of a dataset: send dataset and "
            f"version) or {REFUSAL!r} (about a refusal of one of your jobs: send job_id), "
            f"not {kind!r}"
        )
    text = _text(
        body.get("text"),
        "text",
        "say what is wrong and what you expected, so that the owner can answer",
    )
    with ctx.transaction() as s:
        if kind == QUALITY:
            o = _quality(s, actor, body, text)
        else:
            o = _refusal(s, actor, body, text)
        s.add(o)
        s.flush()
        log.append(
            s,
            "objection.raised",
            actor.id,
            o.id,
            {
                "kind": o.kind,
                "dataset": o.dataset,
                "version": o.version,
                "job_id": o.job_id,
                "owner_id": o.owner_id,
                "text": text,
            },
        )
        return view(o, directory.load(s))


def _new(actor: Actor, kind: str, text: str, **about: Any) -> Objection:
    return Objection(
        id=new_id("ob"),
        kind=kind,
        raised_by=actor.id,
        text=text,
        status=OPEN,
        created_at=clock.stored_now(),
        history=[_entry(OPEN, actor, None)],
        **about,
    )


def _quality(s: Session, actor: Actor, body: dict[str, Any], text: str) -> Objection:
    if actor.role not in (Role.operator, Role.provider):
        raise Forbidden(
            f"an objection to a dataset's quality is raised by an operator or a department; "
            f"you are {actor.role}"
        )
    if body.get("job_id") is not None:
        raise BadRequest("a quality objection is about a dataset, not a job: leave job_id out")
    name = body.get("dataset")
    if not isinstance(name, str) or not name.strip():
        raise BadRequest(
            "a quality objection names the dataset (its catalog name) in dataset, and the "
            "version it is about in version (the version in force when left out)"
        )
    dataset = s.get(Dataset, name.strip())
    if dataset is None:
        raise BadRequest(
            f"dataset {name!r} is not in the catalog; GET /v1/datasets (or the console's "
            "catalog) lists the datasets by name"
        )
    if actor.role == Role.provider and dataset.provider_id == actor.id:
        raise BadRequest(
            f"dataset {dataset.name!r} is your department's own: correct it and publish a "
            "new version rather than object to it"
        )
    version = body.get("version")
    if version is None:
        version = dataset.version
    if isinstance(version, bool) or not isinstance(version, int):
        raise BadRequest(f"version must be a whole number, like {dataset.version}")
    known = sorted(
        s.scalars(select(DatasetVersion.version).where(DatasetVersion.dataset == dataset.name))
    ) or [dataset.version]
    if version not in known:
        raise BadRequest(
            f"dataset {dataset.name!r} has no version {version}; its versions are "
            f"{', '.join(str(v) for v in known)} (version {dataset.version} is in force)"
        )
    return _new(
        actor, QUALITY, text, dataset=dataset.name, version=version, owner_id=dataset.provider_id
    )


def _refusal(s: Session, actor: Actor, body: dict[str, Any], text: str) -> Objection:
    if actor.role != Role.operator:
        raise Forbidden(
            f"an objection to a refusal is raised by the operator whose job was refused; "
            f"you are {actor.role}"
        )
    if body.get("dataset") is not None or body.get("version") is not None:
        raise BadRequest(
            "an objection to a refusal is about a job, not a dataset: send job_id only"
        )
    job_id = body.get("job_id")
    if not isinstance(job_id, str) or not job_id.strip():
        raise BadRequest("an objection to a refusal names the refused job in job_id")
    job: Job = load_job(s, actor, job_id.strip())  # another operator's job: 404
    if not refused(job):
        raise BadRequest(
            f"job {job.id} is {job.status} and its outputs had nothing suppressed: there is "
            "no refusal to object to (an objection to a refusal is about a job rejected or "
            "failed, or whose disclosure report suppressed cells)"
        )
    earlier = s.scalar(
        select(Objection.id).where(
            Objection.kind == REFUSAL,
            Objection.job_id == job.id,
            Objection.raised_by == actor.id,
            Objection.status == OPEN,
        )
    )
    if earlier is not None:
        raise Conflict(
            f"objection {earlier} to the refusal of job {job.id} is still open; the bureau "
            "answers it (GET /v1/objections/" + earlier + "), add to it after the answer"
        )
    return _new(actor, REFUSAL, text, job_id=job.id, owner_id=None)


def refused(job: Job) -> bool:
    return was_refused(job.status, job.disclosure)


def was_refused(status: str, disclosure: dict[str, Any] | None) -> bool:
    """Whether a job was refused, as its operator saw it: rejected or failed, or a release
    with suppressed cells in the report the operator reads (never what only the regulator
    reads, such as groups left out: that would tell the operator of them)."""
    if status in REFUSED_JOBS:
        return True
    report = operator_view(disclosure or {"releases": []})
    return any(r.get("suppressed") for r in report.get("releases", []))


# --- reading, answering ---------------------------------------------------------------------


def listing(
    ctx: Context,
    actor: Actor,
    status: str | None = None,
    kind: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """The objections the caller may see, newest first."""
    limit, offset = listings.checked_page(limit, offset)
    if status and status not in STATUSES:
        raise BadRequest(f"no objection status {status!r}; filter by one of: open, answered")
    if kind and kind not in KINDS:
        raise BadRequest(f"no objection kind {kind!r}; filter by one of: quality, refusal")
    q = _visible(select(Objection), actor)
    if status:
        q = q.where(Objection.status == status)
    if kind:
        q = q.where(Objection.kind == kind)
    q = q.order_by(Objection.created_at.desc(), Objection.id.desc()).offset(offset).limit(limit)
    with ctx.reading() as s:
        names = directory.load(s)
        return [view(o, names) for o in s.scalars(q)]


def get(ctx: Context, actor: Actor, objection_id: str) -> dict[str, Any]:
    with ctx.reading() as s:
        return view(_load(s, actor, objection_id), directory.load(s))


def answer(ctx: Context, actor: Actor, objection_id: str, text: str | None) -> dict[str, Any]:
    require(actor, Role.bureau, Role.provider)
    text = _text(text, "answer", "say what was found and what will be done about it")
    with ctx.transaction() as s:
        o = _load(s, actor, objection_id, lock=True)
        if not may_answer(actor, o):
            raise Forbidden(
                f"objection {o.id} is answered by "
                + ("the bureau" if o.owner_id is None else f"the department {o.owner_id}")
                + "; you raised it"
            )
        if o.status != OPEN:
            raise Conflict(
                f"objection {o.id} was already answered at {clock.text(o.answered_at)} by "
                f"{o.answered_by}; an objection is answered once (raise a new one if "
                "the answer leaves something open)"
            )
        o.status, o.answer, o.answered_by = ANSWERED, text, actor.id
        o.answered_at = clock.stored_now()
        o.history = [*(o.history or []), _entry(ANSWERED, actor, text)]
        log.append(
            s,
            "objection.answered",
            actor.id,
            o.id,
            {"kind": o.kind, "answer": text},
        )
        return view(o, directory.load(s))
