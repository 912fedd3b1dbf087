"""Data products (数据产品): an operator sells calls of one of its approved templates to its
own customers, priced per call at or below the bureau's cap for the product's application
scenario (应用场景).

    bureau: PUT cap(scenario) ──▶ operator: publish(template version, contract, price ≤ cap)
        ──▶ operator: issue key (pk_…, shown once) ──▶ customer: call(params) = one job
    bureau / regulator: suspend ⇄ resume (with a reason)

A call is a job under the operator's contract, run by `pipeline.submission.submit` with
every check a job has (contract, quotas, spend cap, disclosure, the release history, ε); the
operator is billed for it under the bureau's schedule like any job. The job records the
operator's price for the call (`price_fen`): the price in force when it was made (the trial
price before `trial_until`), never above the scenario's cap in force then. The customer
pays only for calls that delivered a result (status succeeded): a refused or failed call is
recorded but not charged (`pricing.products`).

Every change is logged in the transaction that makes it ("product_cap.set",
"product.published", "product.suspended", "product.resumed", "product_key.issued",
"product_key.revoked"); a cap's and a product's `history` keep each step. Customers' keys
are stored as their SHA-256 only.

Who sees what: the public (no sign-in) the active products by scenario and the caps; an
operator its own products, with their keys, calls and revenue; the bureau and the regulator
every product. Another operator's product is answered 404.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from operators.roles import Role
from pricing.errors import MoneyError, ProductPriceError
from pricing.money import format_money, parse_money
from pricing.products import (
    ProductCall,
    ProductPrice,
    ScenarioCap,
    ScenarioRevenue,
    check_price,
    from_fen,
    revenue_by_scenario,
    to_fen,
)
from sandbox.common import clock, fields
from sandbox.context import Context
from sandbox.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    JobStatus,
    NotFound,
)
from sandbox.ledger import log
from sandbox.records import agreements, directory
from sandbox.records.principals import ACTIVE, Actor, new_id, require
from sandbox.store.models import Job, Principal, Product, ProductCap, ProductKey, Template
from sandbox.store.models import TemplateVersion as Version

SUSPENDED = "suspended"
KEY_PREFIX = "pk_"
NAME_MAX, TEXT_MAX, CUSTOMER_MAX, IDEMPOTENCY_MAX = 200, 4000, 200, 100


# --- helpers ---------------------------------------------------------------------------------


def _yuan(value: Any, field: str) -> Decimal:
    try:
        return parse_money(value, what=field)
    except MoneyError as error:
        raise ProductPriceError(error.message) from None


def _time(value: Any, field: str) -> dt.datetime:
    how = "write it like '2026-07-01T00:00:00+08:00' or '2026-06-30T16:00:00Z'"
    if not isinstance(value, str):
        raise BadRequest(f"{field} must be an ISO 8601 date-time; {how}")
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise BadRequest(f"{field} {value!r} is not an ISO 8601 date-time; {how}") from None
    if moment.tzinfo is None:
        raise BadRequest(f"{field} has no time zone; {how}")
    return moment.astimezone(dt.UTC)


def _aware(stored: dt.datetime) -> dt.datetime:
    return stored.replace(tzinfo=dt.UTC) if stored.tzinfo is None else stored


def hash_key(key: str) -> str:
    """SHA-256 of a customer's key, the only form kept (keys are 256 random bits)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _cap(row: ProductCap) -> ScenarioCap:
    return ScenarioCap(row.scenario, from_fen(row.max_price_fen))


def _pricing(p: Product) -> ProductPrice:
    return ProductPrice(
        p.scenario,
        from_fen(p.price_fen),
        "public_interest" if p.purpose_class == "public_interest" else "commercial",
        None if p.trial_price_fen is None else from_fen(p.trial_price_fen),
        None if p.trial_until is None else _aware(p.trial_until),
    )


def cap_at(row: ProductCap, when: dt.datetime) -> int:
    """The scenario's cap in fen in force at `when`, from its history (the first cap set
    if `when` is before it)."""
    at = _aware(when)
    fen = row.max_price_fen
    for entry in reversed(row.history or []):
        fen = int(entry["max_price_fen"])
        # Parsed, not compared as text: a time on the whole second is written without
        # its fraction, which would sort after the same second's fractions.
        if dt.datetime.fromisoformat(entry["at"].replace("Z", "+00:00")) <= at:
            break
    return fen


def charged_fen(p: Product, cap: ProductCap, when: dt.datetime) -> int:
    """The operator's price for a call at `when`: the price in force, capped."""
    return to_fen(
        _pricing(p).charged_at(when, ScenarioCap(p.scenario, from_fen(cap_at(cap, when))))
    )


# --- caps ------------------------------------------------------------------------------------


def cap_view(row: ProductCap) -> dict[str, Any]:
    return {
        "scenario": row.scenario,
        "max_price": format_money(from_fen(row.max_price_fen)),
        "description": row.description,
        "updated_at": clock.text(row.updated_at),
        "updated_by": row.updated_by,
        # Each entry keeps its fen for `cap_at`; readers see yuan only.
        "history": [
            {k: v for k, v in e.items() if k != "max_price_fen"} for e in (row.history or [])
        ],
    }


def caps(ctx: Context) -> list[dict[str, Any]]:
    """Every scenario's cap, by scenario name (public)."""
    with ctx.reading() as s:
        return [cap_view(r) for r in s.scalars(select(ProductCap).order_by(ProductCap.scenario))]


def set_cap(
    ctx: Context, actor: Actor, scenario: str, max_price: Any, description: str | None
) -> dict[str, Any]:
    """The bureau sets (or changes) the most a product of `scenario` may charge per call.
    Products already priced above a lowered cap are charged the cap from then on."""
    require(actor, Role.bureau)
    name = fields.text(scenario, "scenario", 100, required=True, how='name it, e.g. "普惠金融"')
    cap = ScenarioCap(name, _yuan(max_price, "max_price"))
    about = fields.text(description, "description", TEXT_MAX, required=False)
    with ctx.transaction() as s:
        row = s.get(ProductCap, name, with_for_update=True)
        now = clock.now()
        entry = {
            "max_price": format_money(cap.max_price),
            "max_price_fen": to_fen(cap.max_price),
            "at": clock.text(now),
            "by": actor.id,
            "description": about,
        }
        if row is None:
            row = ProductCap(scenario=name, history=[])
            s.add(row)
        row.max_price_fen = to_fen(cap.max_price)
        row.description = about
        row.updated_at, row.updated_by = clock.stored(now), actor.id
        row.history = [*(row.history or []), entry]
        s.flush()
        log.append(
            s,
            "product_cap.set",
            actor.id,
            name,
            {"max_price": entry["max_price"], "description": about},
        )
        return cap_view(row)


# --- products --------------------------------------------------------------------------------


def _load(session: Session, actor: Actor, product_id: str, *, lock: bool = False) -> Product:
    p = session.get(Product, product_id, with_for_update=lock)
    visible = p is not None and (
        actor.role in (Role.bureau, Role.regulator)
        or (actor.role == Role.operator and p.operator_id == actor.id)
    )
    if not visible:
        raise NotFound(
            f"no product {product_id!r} visible to you; GET /v1/products lists those you can see"
        )
    assert p is not None
    return p


def _price_now(p: Product, cap: ProductCap | None) -> dict[str, Any]:
    if cap is None:
        return {}
    return {"price_now": format_money(from_fen(charged_fen(p, cap, clock.now())))}


def view(
    p: Product,
    cap: ProductCap | None,
    names: directory.Directory | None = None,
    usage: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": p.id,
        "operator_id": p.operator_id,
        "contract_id": p.contract_id,
        "template_id": p.template_id,
        "template_version": p.template_version,
        "name": p.name,
        "scenario": p.scenario,
        "description": p.description,
        "purpose_class": p.purpose_class,
        "price": format_money(from_fen(p.price_fen)),
        "trial_price": None
        if p.trial_price_fen is None
        else format_money(from_fen(p.trial_price_fen)),
        "trial_until": clock.text(p.trial_until),
        "cap": None if cap is None else format_money(from_fen(cap.max_price_fen)),
        **_price_now(p, cap),
        "currency": "CNY",
        "status": p.status,
        "status_reason": p.status_reason,
        "created_at": clock.text(p.created_at),
        "history": list(p.history or []),
    }
    if names is not None:
        body["operator_name"] = names.name(p.operator_id)
    if usage is not None:
        body |= dict(usage)
    return body


def _usage(session: Session, product_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per product: its calls, those charged (succeeded), and the revenue of those."""
    calls: dict[str, int] = dict.fromkeys(product_ids, 0)
    charged: dict[str, int] = dict.fromkeys(product_ids, 0)
    revenue: dict[str, int] = dict.fromkeys(product_ids, 0)
    if product_ids:
        rows = session.execute(
            select(Job.product_id, Job.status, func.count(), func.sum(Job.price_fen))
            .where(Job.product_id.in_(product_ids))
            .group_by(Job.product_id, Job.status)
        )
        for pid, status, n, fen in rows:
            key = str(pid)
            calls[key] += int(n)
            if status == JobStatus.SUCCEEDED:
                charged[key] += int(n)
                revenue[key] += int(fen or 0)
    return {
        pid: {
            "calls": calls[pid],
            "charged_calls": charged[pid],
            "revenue": format_money(from_fen(revenue[pid])),
        }
        for pid in product_ids
    }


def publish(ctx: Context, actor: Actor, body: Mapping[str, Any]) -> dict[str, Any]:
    """An operator publishes a product on one of its approved template versions, run under
    one of its active contracts, priced at or below its scenario's cap."""
    require(actor, Role.operator)
    name = fields.text(body.get("name"), "name", NAME_MAX, required=True, how="name the product")
    scenario = fields.text(
        body.get("scenario"),
        "scenario",
        100,
        required=True,
        how='name its scenario, e.g. "普惠金融"',
    )
    description = fields.text(
        body.get("description"),
        "description",
        TEXT_MAX,
        required=True,
        how="say what the product answers, for the public list",
    )
    contract_id = fields.text(
        body.get("contract_id"), "contract_id", 64, required=True, how="name it"
    )
    template_id = fields.text(
        body.get("template_id"), "template_id", 32, required=True, how="name it"
    )
    version_no = body.get("template_version")
    if isinstance(version_no, bool) or not isinstance(version_no, int):
        raise BadRequest("template_version must be the number of an approved version, e.g. 1")
    price = _yuan(body.get("price"), "price")
    trial = body.get("trial_price")
    trial_until = body.get("trial_until")
    with ctx.transaction() as s:
        contract = agreements.load(s, actor, contract_id)
        if contract.operator_id != actor.id:
            raise NotFound(f"no contract {contract_id!r} visible to you")
        if contract.status != "active":
            raise Conflict(
                f"contract {contract.id} is {contract.status}: a product runs under an active "
                "contract; publish it under one that is active"
            )
        purpose_class = agreements.document(contract).purpose_class
        asked = body.get("purpose_class")
        if asked is not None and asked != purpose_class:
            raise BadRequest(
                f"purpose_class {asked!r} is not that of contract {contract.id} "
                f"({purpose_class}); a product's purpose class is its contract's"
            )
        version = s.get(Version, (template_id, version_no))
        template = s.get(Template, template_id)
        if version is None or template is None or template.operator_id != actor.id:
            raise NotFound(f"no template {template_id!r} version {version_no} of yours")
        if version.status != "approved":
            raise Conflict(
                f"template {template_id} version {version_no} is {version.status}: a product "
                "sells only a version every department whose data it reads has approved"
            )
        pricing = ProductPrice(
            scenario,
            price,
            "public_interest" if purpose_class == "public_interest" else "commercial",
            None if trial is None else _yuan(trial, "trial_price"),
            None if trial_until is None else _time(trial_until, "trial_until"),
        )
        cap = s.get(ProductCap, scenario)
        check_price(pricing, None if cap is None else _cap(cap))
        assert cap is not None
        now = clock.now()
        p = Product(
            id=new_id("pr"),
            operator_id=actor.id,
            contract_id=contract.id,
            template_id=template_id,
            template_version=version_no,
            name=name,
            scenario=scenario,
            description=description,
            purpose_class=purpose_class,
            price_fen=to_fen(pricing.price),
            trial_price_fen=None if pricing.trial_price is None else to_fen(pricing.trial_price),
            trial_until=None if pricing.trial_until is None else clock.stored(pricing.trial_until),
            status=ACTIVE,
            history=[{"status": ACTIVE, "at": clock.text(now), "by": actor.id, "reason": None}],
            created_at=clock.stored(now),
        )
        s.add(p)
        s.flush()
        log.append(
            s,
            "product.published",
            actor.id,
            p.id,
            {
                "name": name,
                "scenario": scenario,
                "contract_id": contract.id,
                "template_id": template_id,
                "template_version": version_no,
                "price": format_money(pricing.price),
                "trial_price": None
                if pricing.trial_price is None
                else format_money(pricing.trial_price),
                "trial_until": clock.text(pricing.trial_until),
            },
        )
        return view(p, cap, directory.load(s), _usage(s, [p.id])[p.id])


def listing(ctx: Context, actor: Actor) -> list[dict[str, Any]]:
    """An operator's own products, or every product for the bureau and the regulator, with
    their calls and revenue; newest first."""
    require(actor, Role.operator, Role.bureau, Role.regulator)
    q = select(Product).order_by(Product.created_at.desc(), Product.id.desc())
    if actor.role == Role.operator:
        q = q.where(Product.operator_id == actor.id)
    with ctx.reading() as s:
        rows = list(s.scalars(q))
        capped = {c.scenario: c for c in s.scalars(select(ProductCap))}
        usage = _usage(s, [p.id for p in rows])
        names = directory.load(s)
        return [view(p, capped.get(p.scenario), names, usage[p.id]) for p in rows]


def get(ctx: Context, actor: Actor, product_id: str) -> dict[str, Any]:
    with ctx.reading() as s:
        p = _load(s, actor, product_id)
        body = view(p, s.get(ProductCap, p.scenario), directory.load(s), _usage(s, [p.id])[p.id])
        if actor.role == Role.operator:
            body["keys"] = [_key_view(k) for k in _keys(s, p.id)]
        return body


def public_listing(ctx: Context) -> list[dict[str, Any]]:
    """The active products, grouped by scenario (no sign-in): what each answers, who sells
    it and at what price."""
    with ctx.reading() as s:
        names = directory.load(s)
        capped = {c.scenario: c for c in s.scalars(select(ProductCap))}
        groups: dict[str, list[dict[str, Any]]] = {}
        for p in s.scalars(
            select(Product)
            .join(Principal, Principal.id == Product.operator_id)
            .where(Product.status == ACTIVE, Principal.status == ACTIVE)
            .order_by(Product.scenario, Product.name, Product.id)
        ):
            cap = capped.get(p.scenario)
            groups.setdefault(p.scenario, []).append(
                {
                    "id": p.id,
                    "name": p.name,
                    "operator_name": names.name(p.operator_id),
                    "description": p.description,
                    "price": format_money(from_fen(p.price_fen)),
                    "trial_price": None
                    if p.trial_price_fen is None
                    else format_money(from_fen(p.trial_price_fen)),
                    "trial_until": clock.text(p.trial_until),
                    **_price_now(p, cap),
                }
            )
        return [
            {
                "scenario": scenario,
                "cap": None
                if capped.get(scenario) is None
                else format_money(from_fen(capped[scenario].max_price_fen)),
                "products": rows,
            }
            for scenario, rows in groups.items()
        ]


def _set_status(
    ctx: Context, actor: Actor, product_id: str, status: str, reason: str | None
) -> dict[str, Any]:
    require(actor, Role.bureau, Role.regulator)
    what = "suspending" if status == SUSPENDED else "resuming"
    why = fields.text(
        reason, "reason", TEXT_MAX, required=True, how=f"{what} a product needs a reason"
    )
    with ctx.transaction() as s:
        p = _load(s, actor, product_id, lock=True)
        if p.status == status:
            raise Conflict(f"product {p.id} is {status} already ({p.status_reason})")
        if status == ACTIVE and actor.role == Role.bureau:
            last = next((e for e in reversed(p.history or []) if e["status"] == SUSPENDED), None)
            if last is not None and last.get("role") == Role.regulator:
                raise Forbidden(
                    f"product {p.id} was suspended by the regulator; only the regulator resumes it"
                )
        p.status, p.status_reason = status, why
        entry = {
            "status": status,
            "at": clock.text(clock.now()),
            "by": actor.id,
            "role": str(actor.role),
            "reason": why,
        }
        p.history = [*(p.history or []), entry]
        kind = "product.suspended" if status == SUSPENDED else "product.resumed"
        log.append(s, kind, actor.id, p.id, {"reason": why})
        return view(p, s.get(ProductCap, p.scenario), directory.load(s), _usage(s, [p.id])[p.id])


def suspend(ctx: Context, actor: Actor, product_id: str, reason: str | None) -> dict[str, Any]:
    """The bureau or the regulator stops a product's calls, saying why (shown on it)."""
    return _set_status(ctx, actor, product_id, SUSPENDED, reason)


def resume(ctx: Context, actor: Actor, product_id: str, reason: str | None) -> dict[str, Any]:
    """Calls again; a product the regulator suspended only the regulator resumes."""
    return _set_status(ctx, actor, product_id, ACTIVE, reason)


# --- customers' keys -------------------------------------------------------------------------


def _keys(session: Session, product_id: str) -> Iterable[ProductKey]:
    return session.scalars(
        select(ProductKey)
        .where(ProductKey.product_id == product_id)
        .order_by(ProductKey.issued_at, ProductKey.id)
    )


def _key_view(k: ProductKey) -> dict[str, Any]:
    return {
        "id": k.id,
        "product_id": k.product_id,
        "customer": k.customer,
        "issued_at": clock.text(k.issued_at),
        "revoked_at": clock.text(k.revoked_at),
    }


def issue_key(ctx: Context, actor: Actor, product_id: str, customer: str | None) -> dict[str, Any]:
    """A key for one customer of the operator's product; the key is in this answer only."""
    require(actor, Role.operator)
    who = fields.text(customer, "customer", CUSTOMER_MAX, required=True, how="name the customer")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    with ctx.transaction() as s:
        p = _load(s, actor, product_id)
        row = ProductKey(
            id=new_id("pk"),
            key_hash=hash_key(key),
            product_id=p.id,
            customer=who,
            issued_at=clock.stored_now(),
        )
        s.add(row)
        s.flush()
        log.append(s, "product_key.issued", actor.id, row.id, {"product_id": p.id, "customer": who})
        return {**_key_view(row), "key": key}


def revoke_key(ctx: Context, actor: Actor, product_id: str, key_id: str) -> dict[str, Any]:
    require(actor, Role.operator)
    with ctx.transaction() as s:
        p = _load(s, actor, product_id)
        row = s.get(ProductKey, key_id, with_for_update=True)
        if row is None or row.product_id != p.id:
            raise NotFound(f"product {p.id} has no key {key_id!r}")
        if row.revoked_at is not None:
            raise Conflict(f"key {row.id} was revoked already at {clock.text(row.revoked_at)}")
        row.revoked_at = clock.stored_now()
        log.append(s, "product_key.revoked", actor.id, row.id, {"product_id": p.id})
        return _key_view(row)


def keys(ctx: Context, actor: Actor, product_id: str) -> list[dict[str, Any]]:
    require(actor, Role.operator)
    with ctx.reading() as s:
        p = _load(s, actor, product_id)
        return [_key_view(k) for k in _keys(s, p.id)]


# --- reports ---------------------------------------------------------------------------------


def revenue(session: Session, start: dt.datetime, end: dt.datetime) -> list[dict[str, Any]]:
    """Product revenue by scenario over calls finished in [start, end): calls, charged calls,
    revenue (the operators' prices of delivered calls) and the maximum allowed revenue (the
    cap in force at each charged call)."""
    capped = {c.scenario: c for c in session.scalars(select(ProductCap))}
    rows = session.execute(
        select(Product.scenario, Job.status, Job.price_fen, Job.created_at)
        .join(Product, Product.id == Job.product_id)
        .where(Job.finished_at >= start, Job.finished_at < end)
    )
    calls = [
        ProductCall(
            scenario,
            from_fen(price or 0),
            # The price was capped when the call was made; the cap is read back from the
            # history a moment later, so the larger of the two guards that moment.
            from_fen(max(cap_at(capped[scenario], created), price or 0))
            if scenario in capped
            else from_fen(price or 0),
            status == JobStatus.SUCCEEDED,
        )
        for scenario, status, price, created in rows
    ]
    report: Mapping[str, ScenarioRevenue] = revenue_by_scenario(calls)
    return [r.to_json() for r in report.values()]
