"""Demand lists (需求清单): operators ask for data the catalog lacks, or for more columns of a
dataset it has; the bureau routes each to the department that could provide it (or answers
it itself) and the department answers.

    open ──route (bureau)──▶ routed ──answer (department or bureau)──▶ planned
      │                        │  ▲                                      │
      │                        └──┘ re-routed to another department     ▼
      └──answer (bureau)──────────────────────────────────────▶ refused | published

`planned` (a note, an expected date in its text if the department has one) may later become
`published` or `refused`; those two are final. `published` names an existing dataset: the
link the operator follows. Every step is appended to the demand's `history`
({status, at, by, note}) and to the log ("demand.raised", "demand.routed",
"demand.answered") in the same transaction; a demand holds only what people typed, never a
data value.

Who sees what: the operator its own demands; the bureau and the regulator (read-only) all;
a department those routed to it. Anything else is answered 404, as for another operator's
contract, so that its existence does not leak.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from operators.roles import Role
from sandbox.common import clock, fields
from sandbox.context import Context
from sandbox.errors import BadRequest, Conflict, NotFound
from sandbox.ledger import log
from sandbox.records import directory, listings
from sandbox.records.principals import ACTIVE, Actor, new_id, require
from sandbox.store.models import Dataset, Demand, Principal

OPEN, ROUTED, PLANNED, REFUSED, PUBLISHED = "open", "routed", "planned", "refused", "published"
STATUSES = (OPEN, ROUTED, PLANNED, REFUSED, PUBLISHED)
ANSWERS = (PLANNED, REFUSED, PUBLISHED)
FINAL = (REFUSED, PUBLISHED)
TITLE_MAX = 300
TEXT_MAX = 4000
COLUMN_MAX = 128
COLUMNS_MAX = 100


# --- checks of what people typed -------------------------------------------------------------


def _columns(raw: Any) -> list[str]:
    """The column names asked for: distinct, in the order given."""
    if raw is None:
        return []
    if isinstance(raw, str):
        raw = [c for c in raw.replace("，", ",").split(",")]
    if not isinstance(raw, list) or not all(isinstance(c, str) for c in raw):
        raise BadRequest('columns must be a list of column names, e.g. ["hukou_type", "education"]')
    names: list[str] = []
    for c in (c.strip() for c in raw):
        if not c:
            continue
        if len(c) > COLUMN_MAX:
            raise BadRequest(f"column name {c[:40]!r}… is longer than {COLUMN_MAX} characters")
        if c not in names:
            names.append(c)
    if len(names) > COLUMNS_MAX:
        raise BadRequest(f"{len(names)} columns asked for; ask for at most {COLUMNS_MAX} at once")
    return names


def _known_dataset(session: Session, name: str, field: str) -> Dataset:
    row = session.get(Dataset, name)
    if row is None:
        raise BadRequest(
            f"{field} {name!r} is not in the catalog; GET /v1/datasets (or the console's "
            "catalog) lists the datasets by name"
        )
    return row


# --- what a demand looks like -----------------------------------------------------------------


def _entry(status: str, actor: Actor, note: str | None, **more: Any) -> dict[str, Any]:
    return {
        "status": status,
        "at": clock.text(clock.now()),
        "by": actor.id,
        "note": note or None,
        **more,
    }


def view(d: Demand, names: directory.Directory | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": d.id,
        "operator_id": d.operator_id,
        "title": d.title,
        "description": d.description,
        "purpose": d.purpose,
        "dataset": d.dataset,
        "columns": list(d.columns or []),
        "status": d.status,
        "provider_id": d.provider_id,
        "answer": d.answer,
        "answer_dataset": d.answer_dataset,
        "created_at": clock.text(d.created_at),
        "updated_at": clock.text(d.updated_at),
        "history": list(d.history or []),
    }
    if names is not None:
        body |= {
            "operator_name": names.name(d.operator_id),
            "provider_name": names.name(d.provider_id),
            "dataset_title": names.dataset_title(d.dataset),
            "answer_dataset_title": names.dataset_title(d.answer_dataset),
        }
    return body


def _visible(q: Select[Demand], actor: Actor) -> Select[Demand]:
    if actor.role == Role.operator:
        return q.where(Demand.operator_id == actor.id)
    if actor.role == Role.provider:
        return q.where(Demand.provider_id == actor.id)
    return q  # the bureau and the regulator see every demand


def _may_see(actor: Actor, d: Demand) -> bool:
    if actor.role == Role.operator:
        return d.operator_id == actor.id
    if actor.role == Role.provider:
        return d.provider_id == actor.id
    return True


def _load(session: Session, actor: Actor, demand_id: str, *, lock: bool = False) -> Demand:
    d = session.get(Demand, demand_id, with_for_update=lock)
    if d is None or not _may_see(actor, d):
        raise NotFound(
            f"no demand {demand_id!r} visible to you; GET /v1/demands lists those you can see"
        )
    return d


# --- raising, reading ---------------------------------------------------------------------------


def raise_demand(ctx: Context, actor: Actor, body: dict[str, Any]) -> dict[str, Any]:
    """An operator asks for data the catalog lacks (no `dataset`), or for more `columns` of a
    `dataset` it has."""
    require(actor, Role.operator)
    title = fields.text(
        body.get("title"), "title", TITLE_MAX, required=True, how="name the data in a line"
    )
    description = fields.text(
        body.get("description"),
        "description",
        TEXT_MAX,
        required=True,
        how="say what the data should hold: which facts, which years, which area",
    )
    purpose = fields.text(
        body.get("purpose"),
        "purpose",
        TEXT_MAX,
        required=True,
        how="say what the data would be analysed for (the department weighs it)",
    )
    dataset = fields.text(body.get("dataset"), "dataset", 128, required=False, how="")
    columns = _columns(body.get("columns"))
    with ctx.transaction() as s:
        if dataset:
            row = _known_dataset(s, dataset, "dataset")
            if not columns:
                raise BadRequest(
                    f"columns is empty: a demand about dataset {dataset!r} asks for columns it "
                    'lacks, so name them in "columns"; to ask for other data, leave "dataset" out'
                )
            have = {c["name"] for c in row.columns}
            present = [c for c in columns if c in have]
            if present:
                raise BadRequest(
                    f"columns {', '.join(present)} are already in dataset {dataset!r}: apply "
                    "for a contract that grants them instead, and name here only columns it "
                    "lacks"
                )
        elif columns:
            raise BadRequest(
                "columns are those wanted in an existing dataset: name it in dataset, or "
                "describe the columns of new data in the description"
            )
        now = clock.stored_now()
        d = Demand(
            id=new_id("dm"),
            operator_id=actor.id,
            title=title,
            description=description,
            purpose=purpose,
            dataset=dataset or None,
            columns=columns or None,
            status=OPEN,
            provider_id=None,
            created_at=now,
            updated_at=now,
            history=[_entry(OPEN, actor, None)],
        )
        s.add(d)
        s.flush()
        log.append(
            s,
            "demand.raised",
            actor.id,
            d.id,
            {
                "title": title,
                "description": description,
                "purpose": purpose,
                "dataset": d.dataset,
                "columns": columns,
            },
        )
        return view(d, directory.load(s))


def listing(
    ctx: Context,
    actor: Actor,
    status: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """The demands the caller may see, newest first; `status` keeps those in one status."""
    limit, offset = listings.checked_page(limit, offset)
    if status and status not in STATUSES:
        raise BadRequest(f"no demand status {status!r}; filter by one of: {', '.join(STATUSES)}")
    q = _visible(select(Demand), actor)
    if status:
        q = q.where(Demand.status == status)
    q = q.order_by(Demand.created_at.desc(), Demand.id.desc()).offset(offset).limit(limit)
    with ctx.reading() as s:
        names = directory.load(s)
        return [view(d, names) for d in s.scalars(q)]


def get(ctx: Context, actor: Actor, demand_id: str) -> dict[str, Any]:
    with ctx.reading() as s:
        return view(_load(s, actor, demand_id), directory.load(s))


def providers(ctx: Context, actor: Actor) -> list[dict[str, str]]:
    """The departments a demand can be routed to (the bureau's route form lists them)."""
    require(actor, Role.bureau)
    with ctx.reading() as s:
        rows: Sequence[Principal] = s.scalars(
            select(Principal)
            .where(Principal.role == Role.provider, Principal.status == ACTIVE)
            .order_by(Principal.name, Principal.id)
        ).all()
        return [{"id": p.id, "name": p.name} for p in rows]


# --- routing and answering ------------------------------------------------------------------


def route(
    ctx: Context, actor: Actor, demand_id: str, provider_id: str, note: str | None = None
) -> dict[str, Any]:
    """The bureau sends an open demand to the department that could provide the data (or a
    routed one to another department, when the first says it is not theirs)."""
    require(actor, Role.bureau)
    provider_id = fields.text(
        provider_id,
        "provider_id",
        32,
        required=True,
        how="name the department's principal id (role provider) to route the demand to",
    )
    note = fields.text(note, "note", TEXT_MAX, required=False, how="")
    with ctx.transaction() as s:
        d = _load(s, actor, demand_id, lock=True)
        if d.status not in (OPEN, ROUTED):
            raise Conflict(
                f"demand {d.id} is {d.status} already: only an open or routed demand can be "
                "routed; the department's answer stands"
                + ("" if d.status in FINAL else ", and it can still publish or refuse it")
            )
        if d.status == ROUTED and d.provider_id == provider_id:
            raise Conflict(
                f"demand {d.id} is already routed to {provider_id}; route it to another "
                "department, or wait for this one's answer"
            )
        p = s.get(Principal, provider_id)
        if p is None or p.role != Role.provider:
            raise BadRequest(
                f"{provider_id!r} is not a department: route a demand to a principal of role "
                "provider (GET /v1/principals lists them)"
            )
        if p.status != ACTIVE:
            raise BadRequest(
                f"department {p.name} ({p.id}) is suspended and cannot answer; route the "
                "demand to another department, or resume it first"
            )
        d.status, d.provider_id, d.updated_at = ROUTED, p.id, clock.stored_now()
        d.history = [*(d.history or []), _entry(ROUTED, actor, note, provider_id=p.id)]
        log.append(s, "demand.routed", actor.id, d.id, {"provider_id": p.id, "note": note or None})
        return view(d, directory.load(s))


def answer(
    ctx: Context,
    actor: Actor,
    demand_id: str,
    status: str,
    text: str | None,
    answer_dataset: str | None = None,
) -> dict[str, Any]:
    """The department a demand is routed to (or the bureau) answers: `planned` with a note,
    `refused` with the reason, or `published` naming the dataset that now holds the data."""
    require(actor, Role.provider, Role.bureau)
    if status not in ANSWERS:
        raise BadRequest(
            f"a demand is answered {', '.join(ANSWERS)}, not {status!r}: planned (with a note, "
            "and the expected date if known), refused (with the reason) or published (naming "
            "the dataset in answer_dataset)"
        )
    how = {
        PLANNED: "say what is planned and, if known, when the data is expected",
        REFUSED: "a refusal needs the reason, which the operator reads",
        PUBLISHED: "",
    }[status]
    text = fields.text(text, "answer", TEXT_MAX, required=status != PUBLISHED, how=how)
    linked = fields.text(answer_dataset, "answer_dataset", 128, required=False, how="")
    if status == PUBLISHED and not linked:
        raise BadRequest(
            "a published answer names the dataset that now holds the data in answer_dataset "
            "(its catalog name), so that the operator can apply for it"
        )
    if status != PUBLISHED and linked:
        raise BadRequest(
            f"answer_dataset is the link of a published answer; leave it out of a {status} one"
        )
    with ctx.transaction() as s:
        d = _load(s, actor, demand_id, lock=True)
        if d.status in FINAL:
            raise Conflict(
                f"demand {d.id} was already answered {d.status} "
                f"({_last_at(d)}); an answer of published or refused is final"
            )
        if d.status == PLANNED and status == PLANNED:
            raise Conflict(
                f"demand {d.id} is planned already ({_last_at(d)}); answer it published when "
                "the data is in the catalog, or refused with the reason"
            )
        if linked:
            _known_dataset(s, linked, "answer_dataset")
        d.status, d.answer, d.updated_at = status, text or None, clock.stored_now()
        d.answer_dataset = linked or None
        more = {"answer_dataset": linked} if linked else {}
        d.history = [*(d.history or []), _entry(status, actor, text, **more)]
        log.append(
            s,
            "demand.answered",
            actor.id,
            d.id,
            {"status": status, "answer": text or None, "answer_dataset": linked or None},
        )
        return view(d, directory.load(s))


def _last_at(d: Demand) -> str:
    history = d.history or []
    return f"at {history[-1]['at']}" if history else "earlier"
