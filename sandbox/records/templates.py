"""Analysis templates (分析模板): an operator's parametrised job, reviewed once by the
departments whose data it reads, then run with many parameters without a new review.

A template has versions, each one exact code (known by its SHA-256) with the schema of its
parameters; the reviewers of a version are the departments that provide the datasets its
code names. Each reviews that code once:

    pending ──every reviewer approves──▶ approved
       │ ──any reviewer refuses───────▶ refused
       └──the operator withdraws──────▶ withdrawn

Submitting other code under the same name adds a version, which needs its own review; an
approved version stays runnable. Code identical to a version the template already has is
refused: its review is already there. Every step is logged ("template.submitted",
"template.reviewed", "template.approved", "template.refused", "template.withdrawn") in the
same transaction.

Who sees what: an operator its own templates; a department those with a version that reads
its data (and only those versions); the bureau and the regulator all. Anything else is
answered 404, so that a template's existence does not leak.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from operators.roles import Role
from sandbox.common import clock, fields
from sandbox.context import Context
from sandbox.errors import BadRequest, Conflict, Forbidden, NotFound
from sandbox.language.analysis import analyse
from sandbox.language.params import parse_schema
from sandbox.language.policy import check_source, compile_checked
from sandbox.ledger import log
from sandbox.records import directory, listings
from sandbox.records.principals import Actor, new_id, require
from sandbox.store.models import Dataset, Template, TemplateVersion

PENDING, APPROVED, REFUSED, WITHDRAWN = "pending", "approved", "refused", "withdrawn"
STATUSES = (PENDING, APPROVED, REFUSED, WITHDRAWN)
APPROVE, REFUSE = "approve", "refuse"
NAME_MAX = 200
TEXT_MAX = 4000


def sha256(code: str) -> str:
    return hashlib.sha256(code.encode("utf-8")).hexdigest()


def _code(code: Any) -> str:
    if not isinstance(code, str) or not code.strip():
        raise BadRequest("code is empty: send the job code the template runs")
    return code


def _datasets_read(code: str) -> list[str]:
    """The datasets the code reads, once it passes the same checks as a job's code."""
    facts = analyse(check_source(code))
    compile_checked(code)
    if facts.datasets is None:
        raise BadRequest(
            "the code computes a dataset's name at run time: a template names every dataset "
            'it reads literally, as in table("population"), so that the departments whose '
            "data it reads are known and can review it"
        )
    if not facts.datasets:
        raise BadRequest(
            'the code reads no dataset: a template names the datasets it reads with table("…")'
        )
    return sorted(facts.datasets)


def _reviewers(session: Session, datasets: Iterable[str]) -> list[str]:
    """The departments providing `datasets`, each once, in the order of the datasets."""
    reviewers: list[str] = []
    for name in datasets:
        row = session.get(Dataset, name)
        if row is None:
            raise BadRequest(
                f"the code reads dataset {name!r}, which is not in the catalog; GET "
                "/v1/datasets lists the datasets by name"
            )
        if row.provider_id not in reviewers:
            reviewers.append(row.provider_id)
    return reviewers


# --- what a template looks like ---------------------------------------------------------------


def _version_view(
    v: TemplateVersion, names: directory.Directory, *, with_code: bool
) -> dict[str, Any]:
    reviewed = {r["by"]: r for r in v.reviews or []}
    body: dict[str, Any] = {
        "version": v.version,
        "code_sha256": v.code_sha256,
        "params_schema": v.params_schema,
        "datasets": list(v.datasets),
        "reviewers": [
            {
                "id": p,
                "name": names.name(p),
                "decision": reviewed[p]["decision"] if p in reviewed else None,
            }
            for p in v.reviewers
        ],
        "reviews": [{**r, "by_name": names.name(r["by"])} for r in v.reviews or []],
        "status": v.status,
        "created_at": clock.text(v.created_at),
        "decided_at": clock.text(v.decided_at) if v.decided_at else None,
    }
    if with_code:
        body["code"] = v.code
    return body


def view(
    t: Template,
    versions: Sequence[TemplateVersion],
    names: directory.Directory,
    *,
    with_code: bool = True,
) -> dict[str, Any]:
    approved = [v.version for v in versions if v.status == APPROVED]
    return {
        "id": t.id,
        "operator_id": t.operator_id,
        "operator_name": names.name(t.operator_id),
        "name": t.name,
        "description": t.description,
        "created_at": clock.text(t.created_at),
        "latest_version": max((v.version for v in versions), default=None),
        "approved_version": max(approved, default=None),
        "versions": [_version_view(v, names, with_code=with_code) for v in versions],
    }


def _shown(actor: Actor, versions: Iterable[TemplateVersion]) -> list[TemplateVersion]:
    """The versions `actor` may see, newest first: a department only those reading its data."""
    if actor.role == Role.provider:
        versions = [v for v in versions if actor.id in v.reviewers]
    return sorted(versions, key=lambda v: v.version, reverse=True)


def _may_see(actor: Actor, t: Template, versions: Sequence[TemplateVersion]) -> bool:
    if actor.role == Role.operator:
        return t.operator_id == actor.id
    if actor.role == Role.provider:
        return bool(_shown(actor, versions))
    return True


def _versions(session: Session, template_id: str) -> list[TemplateVersion]:
    return list(
        session.scalars(select(TemplateVersion).where(TemplateVersion.template_id == template_id))
    )


def _load(
    session: Session, actor: Actor, template_id: str
) -> tuple[Template, list[TemplateVersion]]:
    t = session.get(Template, template_id)
    versions = _versions(session, template_id) if t is not None else []
    if t is None or not _may_see(actor, t, versions):
        raise NotFound(
            f"no template {template_id!r} visible to you; GET /v1/templates lists those you can see"
        )
    return t, versions


def _version(
    session: Session,
    t: Template,
    versions: Sequence[TemplateVersion],
    version: int,
    *,
    lock: bool = False,
) -> TemplateVersion:
    if any(v.version == version for v in versions):
        # Locked for a decision, as a demand is: each department deciding must see the
        # reviews already given, or the version could stay pending with every approval in.
        found = session.get(
            TemplateVersion, (t.id, version), with_for_update=lock, populate_existing=lock
        )
        assert found is not None
        return found
    known = ", ".join(str(v.version) for v in sorted(versions, key=lambda v: v.version))
    raise NotFound(f"template {t.id} has no version {version}; its versions: {known or 'none'}")


# --- submitting, reading ------------------------------------------------------------------------


def submit(ctx: Context, actor: Actor, body: dict[str, Any]) -> dict[str, Any]:
    """An operator submits code and the schema of its parameters for review; under a name it
    used before, other code becomes the template's next version."""
    require(actor, Role.operator)
    name = fields.text(
        body.get("name"), "name", NAME_MAX, required=True, how="name the analysis in a line"
    )
    description = fields.text(body.get("description"), "description", TEXT_MAX, required=False)
    code = _code(body.get("code"))
    datasets = _datasets_read(code)
    schema = parse_schema(body.get("params_schema")).to_json()
    digest = sha256(code)
    try:
        with ctx.transaction() as s:
            reviewers = _reviewers(s, datasets)
            t = s.scalar(
                select(Template).where(Template.operator_id == actor.id, Template.name == name)
            )
            if t is None:
                t = Template(
                    id=new_id("tp"),
                    operator_id=actor.id,
                    name=name,
                    description=description,
                    created_at=clock.stored_now(),
                )
                s.add(t)
                s.flush()
                number = 1
            else:
                versions = _versions(s, t.id)
                # A version is its code and the parameters it accepts: either changed is
                # something new for the departments to review.
                same = [
                    v for v in versions if v.code_sha256 == digest and v.params_schema == schema
                ]
                if same:
                    raise Conflict(
                        f"template {name!r} ({t.id}) already has this exact code and parameter "
                        f"schema as version {same[0].version} ({same[0].status}); change the "
                        "code or the schema to submit a new version, or run that one"
                    )
                number = max(v.version for v in versions) + 1
                if description:
                    t.description = description
            v = TemplateVersion(
                template_id=t.id,
                version=number,
                code=code,
                code_sha256=digest,
                params_schema=schema,
                datasets=datasets,
                reviewers=reviewers,
                reviews=[],
                status=PENDING,
                created_at=clock.stored_now(),
            )
            s.add(v)
            s.flush()
            log.append(
                s,
                "template.submitted",
                actor.id,
                t.id,
                {
                    "name": name,
                    "version": number,
                    "code_sha256": digest,
                    "datasets": datasets,
                    "reviewers": reviewers,
                    "params_schema": schema,
                },
            )
            return view(t, _shown(actor, _versions(s, t.id)), directory.load(s))
    except IntegrityError:
        # The same name (or the next version of it) submitted twice at once: one wins.
        raise Conflict(
            f"template {name!r} was being submitted by another request at the same moment; "
            "look at GET /v1/templates, then submit again if this code is not there"
        ) from None


def listing(
    ctx: Context,
    actor: Actor,
    status: str | None = None,
    awaiting: bool = False,
    limit: int = 100,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """The templates the caller may see, newest first, without their code. `status` keeps
    those with a version in that status; `awaiting` (a department) those with a version
    waiting for its review."""
    limit, offset = listings.checked_page(limit, offset)
    if status and status not in STATUSES:
        raise BadRequest(f"no template status {status!r}; filter by one of: {', '.join(STATUSES)}")
    if awaiting and actor.role != Role.provider:
        raise BadRequest("awaiting lists what waits for a department's review; leave it out")
    q = select(Template)
    if actor.role == Role.operator:
        q = q.where(Template.operator_id == actor.id)
    q = q.order_by(Template.created_at.desc(), Template.id.desc())
    with ctx.reading() as s:
        names = directory.load(s)
        by_template: dict[str, list[TemplateVersion]] = {}
        for v in s.scalars(select(TemplateVersion)):
            by_template.setdefault(v.template_id, []).append(v)
        found: list[dict[str, Any]] = []
        for t in s.scalars(q):
            versions = _shown(actor, by_template.get(t.id, []))
            if not _may_see(actor, t, versions):
                continue
            if status and not any(v.status == status for v in versions):
                continue
            if awaiting and not any(_awaits(v, actor) for v in versions):
                continue
            found.append(view(t, versions, names, with_code=False))
        return found[offset : offset + limit]


def _awaits(v: TemplateVersion, actor: Actor) -> bool:
    return (
        v.status == PENDING
        and actor.id in v.reviewers
        and all(r["by"] != actor.id for r in v.reviews or [])
    )


def get(ctx: Context, actor: Actor, template_id: str) -> dict[str, Any]:
    """A template with every version the caller may see: code, schema, each review."""
    with ctx.reading() as s:
        t, versions = _load(s, actor, template_id)
        return view(t, _shown(actor, versions), directory.load(s))


# --- reviewing, withdrawing -------------------------------------------------------------------


def review(
    ctx: Context,
    actor: Actor,
    template_id: str,
    version: int,
    decision: str,
    reason: str | None = None,
    conditions: str | None = None,
) -> dict[str, Any]:
    """A department whose data a pending version reads approves or refuses its exact code,
    once. The version is approved when every such department has approved, refused as soon
    as one refuses."""
    require(actor, Role.provider)
    if decision not in (APPROVE, REFUSE):
        raise BadRequest(
            f'decision is "approve" or "refuse", not {decision!r}; a refusal needs the reason'
        )
    reason = fields.text(
        reason,
        "reason",
        TEXT_MAX,
        required=decision == REFUSE,
        how="a refusal needs the reason, which the operator reads",
    )
    conditions = fields.text(conditions, "conditions", TEXT_MAX, required=False)
    with ctx.transaction() as s:
        t, versions = _load(s, actor, template_id)
        v = _version(s, t, versions, version, lock=True)
        if actor.id not in v.reviewers:
            raise Forbidden(
                f"template {t.id} version {version} reads none of your datasets "
                f"({', '.join(v.datasets)}); only the departments providing them review it"
            )
        mine = [r for r in v.reviews or [] if r["by"] == actor.id]
        if mine:
            raise Conflict(
                f"you already reviewed template {t.id} version {version} ({mine[0]['decision']} "
                f"at {mine[0]['at']}); a department reviews a version once"
            )
        if v.status != PENDING:
            raise Conflict(
                f"template {t.id} version {version} is {v.status}: only a pending version is "
                "reviewed"
            )
        entry = {
            "by": actor.id,
            "decision": decision,
            "reason": reason or None,
            "conditions": conditions or None,
            "at": clock.text(clock.now()),
        }
        v.reviews = [*(v.reviews or []), entry]
        log.append(
            s,
            "template.reviewed",
            actor.id,
            t.id,
            {
                "version": version,
                "code_sha256": v.code_sha256,
                "by": actor.id,
                "decision": decision,
                "reason": reason or None,
                "conditions": conditions or None,
            },
        )
        approvals = {r["by"] for r in v.reviews if r["decision"] == APPROVE}
        outcome = None
        if decision == REFUSE:
            outcome = REFUSED
        elif approvals >= set(v.reviewers):
            outcome = APPROVED
        if outcome is not None:
            v.status, v.decided_at = outcome, clock.stored_now()
            log.append(
                s,
                f"template.{outcome}",
                actor.id,
                t.id,
                {"version": version, "code_sha256": v.code_sha256},
            )
        s.flush()
        return view(t, _shown(actor, versions), directory.load(s))


def withdraw(ctx: Context, actor: Actor, template_id: str, version: int) -> dict[str, Any]:
    """The operator takes back a version still waiting for review."""
    require(actor, Role.operator)
    with ctx.transaction() as s:
        t, versions = _load(s, actor, template_id)
        v = _version(s, t, versions, version, lock=True)
        if v.status != PENDING:
            raise Conflict(
                f"template {t.id} version {version} is {v.status}: only a pending version can "
                "be withdrawn"
            )
        v.status, v.decided_at = WITHDRAWN, clock.stored_now()
        log.append(
            s,
            "template.withdrawn",
            actor.id,
            t.id,
            {"version": version, "code_sha256": v.code_sha256},
        )
        s.flush()
        return view(t, _shown(actor, versions), directory.load(s))


def runnable(
    session: Session, actor: Actor, template_id: str, version: int | None
) -> TemplateVersion:
    """The version of its own template an operator runs: the one named, else the latest
    approved; refused unless approved, saying what it waits for."""
    require(actor, Role.operator)
    t, versions = _load(session, actor, template_id)
    if version is not None:
        v = _version(session, t, versions, version)
    else:
        approved = [v for v in versions if v.status == APPROVED]
        if not approved:
            latest = max(versions, key=lambda v: v.version)
            raise Conflict(
                f"template {t.id} has no approved version to run; version {latest.version} is "
                f"{latest.status}" + _waiting(session, latest)
            )
        v = max(approved, key=lambda v: v.version)
    if v.status != APPROVED:
        raise Conflict(
            f"template {t.id} version {v.version} is {v.status}, not approved; it runs once "
            "every department whose data it reads approves it" + _waiting(session, v)
        )
    return v


def _waiting(session: Session, v: TemplateVersion) -> str:
    if v.status != PENDING:
        return ""
    names = directory.load(session)
    done = {r["by"] for r in v.reviews or []}
    waiting = [names.name(p) or p for p in v.reviewers if p not in done]
    return f" (waiting for: {', '.join(waiting)})"
