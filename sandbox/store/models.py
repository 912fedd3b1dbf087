"""Tables. Money is stored as integer fen; documents and reports as JSON."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from sandbox.common import clock


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Principal(Base):
    __tablename__ = "principals"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))
    license_no: Mapped[str | None] = mapped_column(String(100))
    public_key: Mapped[str | None] = mapped_column(String(64))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=clock.stored_now)
    # None: a licence without an end date (and every principal created before licences had one).
    license_valid_to: Mapped[dt.datetime | None] = mapped_column(default=None)
    status: Mapped[str] = mapped_column(String(16), default="active")  # active | suspended
    status_reason: Mapped[str | None] = mapped_column(Text, default=None)
    history: Mapped[list[Any]] = mapped_column(JSON, default=list)  # [{status, at, by, reason}]


class PrincipalKey(Base):
    """One registered Ed25519 public key; a rotation revokes the previous one but keeps it,
    so signatures made while it was current stay verifiable."""

    __tablename__ = "principal_keys"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    principal_id: Mapped[str] = mapped_column(ForeignKey("principals.id"), index=True)
    public_key: Mapped[str] = mapped_column(String(64))
    valid_from: Mapped[dt.datetime] = mapped_column(default=clock.stored_now)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    revoked_reason: Mapped[str | None] = mapped_column(Text, default=None)
    registered_by: Mapped[str | None] = mapped_column(String(32), default=None)


class PrincipalToken(Base):
    """Every API token ever issued, by hash; kept after revocation to explain a refusal."""

    __tablename__ = "principal_tokens"
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    principal_id: Mapped[str] = mapped_column(ForeignKey("principals.id"), index=True)
    issued_at: Mapped[dt.datetime] = mapped_column(default=clock.stored_now)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    revoked_reason: Mapped[str | None] = mapped_column(Text, default=None)


class Dataset(Base):
    __tablename__ = "datasets"
    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    title: Mapped[str] = mapped_column(String(300))
    provider_id: Mapped[str] = mapped_column(ForeignKey("principals.id"))
    level: Mapped[str] = mapped_column(String(2))
    row_count: Mapped[int] = mapped_column(BigInteger)
    columns: Mapped[list[Any]] = mapped_column(JSON)  # [ColumnInfo.to_json()]
    partitions: Mapped[list[Any]] = mapped_column(JSON)  # file names under the dataset dir
    created_at: Mapped[dt.datetime] = mapped_column(default=clock.stored_now)
    topic: Mapped[str | None] = mapped_column(String(100))
    description: Mapped[str | None] = mapped_column(Text)
    # The version in force (dataset_versions): what new jobs read. `columns`, `partitions` and
    # `row_count` above are that version's, kept here so the catalog reads one row.
    version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    # The date the version in force describes (YYYY-MM-DD), as its row in dataset_versions.
    as_of: Mapped[str | None] = mapped_column(String(10), default=None)
    # Declared quality constraints and what a failure does (catalog.quality): None, none.
    quality_rules: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)


class DatasetVersion(Base):
    """One snapshot of a dataset. Its files never change; a job reads exactly one version."""

    __tablename__ = "dataset_versions"
    dataset: Mapped[str] = mapped_column(ForeignKey("datasets.name"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    mode: Mapped[str] = mapped_column(String(16))  # initial | replace | append
    source: Mapped[str] = mapped_column(String(16))  # upload | connector
    directory: Mapped[str] = mapped_column(String(200))  # under the datasets directory
    partitions: Mapped[list[Any]] = mapped_column(JSON)
    columns: Mapped[list[Any]] = mapped_column(JSON)
    row_count: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[dt.datetime] = mapped_column(default=clock.stored_now)
    created_by: Mapped[str | None] = mapped_column(String(32))
    quality: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    quality_status: Mapped[str] = mapped_column(String(16), default="unchecked")
    # File (in `directory`) of the people whose rows changed since they were first seen,
    # each with the number the release history knows that state of them by.
    revisions: Mapped[str | None] = mapped_column(String(200), default=None)
    superseded_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    retired_at: Mapped[dt.datetime | None] = mapped_column(default=None)  # files removed
    as_of: Mapped[str | None] = mapped_column(String(10), default=None)  # the data's date


class DatasetSource(Base):
    """Where a dataset is pulled from (a department's database). The password is only ever
    referenced (an environment variable or a file), never stored."""

    __tablename__ = "dataset_sources"
    dataset: Mapped[str] = mapped_column(ForeignKey("datasets.name"), primary_key=True)
    url: Mapped[str] = mapped_column(String(500))  # SQLAlchemy URL without a password
    password_ref: Mapped[str | None] = mapped_column(String(500))  # env:NAME | file:/path
    table: Mapped[str | None] = mapped_column(String(200))
    query: Mapped[str | None] = mapped_column(Text)
    mode: Mapped[str] = mapped_column(String(16), default="replace")  # replace | append
    schedule: Mapped[str | None] = mapped_column(String(100))  # e.g. "daily 02:00 Asia/Shanghai"
    next_run_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    updated_at: Mapped[dt.datetime] = mapped_column(default=clock.stored_now)
    updated_by: Mapped[str | None] = mapped_column(String(32))


class DatasetRefresh(Base):
    """One pull of a dataset from its source, whatever its outcome."""

    __tablename__ = "dataset_refreshes"
    __table_args__ = (Index("ix_dataset_refreshes_dataset", "dataset", "id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dataset: Mapped[str] = mapped_column(ForeignKey("datasets.name"))
    trigger: Mapped[str] = mapped_column(String(16))  # command | schedule | api | console
    actor: Mapped[str | None] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))  # running | published | failed
    started_at: Mapped[dt.datetime] = mapped_column(default=clock.stored_now)
    finished_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    version: Mapped[int | None] = mapped_column(Integer, default=None)
    rows: Mapped[int | None] = mapped_column(BigInteger, default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    # The lease of the process making the pull (sandbox.store.liveness) while it runs.
    runner: Mapped[str | None] = mapped_column(String(32), default=None)


class Demand(Base):
    """An operator's request for data the catalog lacks (需求清单), and its answer."""

    __tablename__ = "demands"
    __table_args__ = (Index("ix_demands_status", "status"),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    operator_id: Mapped[str] = mapped_column(ForeignKey("principals.id"))
    title: Mapped[str] = mapped_column(String(300))
    description: Mapped[str] = mapped_column(Text)
    purpose: Mapped[str] = mapped_column(Text)
    dataset: Mapped[str | None] = mapped_column(String(128))  # more columns of this one
    columns: Mapped[list[Any] | None] = mapped_column(JSON, default=None)
    status: Mapped[str] = mapped_column(String(16))  # open|routed|planned|refused|published
    provider_id: Mapped[str | None] = mapped_column(ForeignKey("principals.id"))
    answer: Mapped[str | None] = mapped_column(Text, default=None)
    answer_dataset: Mapped[str | None] = mapped_column(String(128), default=None)
    created_at: Mapped[dt.datetime] = mapped_column(default=clock.stored_now)
    updated_at: Mapped[dt.datetime] = mapped_column(default=clock.stored_now)
    history: Mapped[list[Any]] = mapped_column(JSON, default=list)


class Objection(Base):
    """A quality objection about a dataset version, or an objection to a refusal."""

    __tablename__ = "objections"
    __table_args__ = (Index("ix_objections_status", "status"),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # quality | refusal
    raised_by: Mapped[str] = mapped_column(ForeignKey("principals.id"))
    dataset: Mapped[str | None] = mapped_column(String(128))
    version: Mapped[int | None] = mapped_column(Integer)
    job_id: Mapped[str | None] = mapped_column(String(32))
    owner_id: Mapped[str | None] = mapped_column(String(32))  # who answers
    text: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))  # open | answered
    answer: Mapped[str | None] = mapped_column(Text, default=None)
    answered_by: Mapped[str | None] = mapped_column(String(32), default=None)
    created_at: Mapped[dt.datetime] = mapped_column(default=clock.stored_now)
    answered_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    history: Mapped[list[Any]] = mapped_column(JSON, default=list)


class PriceSchedule(Base):
    __tablename__ = "price_schedules"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200))
    effective_from: Mapped[dt.datetime]
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    published_at: Mapped[dt.datetime] = mapped_column(default=clock.stored_now)


class PriceCaps(Base):
    """Maximum fees (上限收费标准) a schedule may not exceed, versioned like schedules."""

    __tablename__ = "price_caps"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200))
    effective_from: Mapped[dt.datetime]
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    published_at: Mapped[dt.datetime] = mapped_column(default=clock.stored_now)


class PrepaidAccount(Base):
    """An operator's prepaid balance, for bureaus that bill in advance. Operators without an
    account are billed in arrears."""

    __tablename__ = "prepaid_accounts"
    operator_id: Mapped[str] = mapped_column(ForeignKey("principals.id"), primary_key=True)
    balance_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    reserved_fen: Mapped[int] = mapped_column(BigInteger, default=0)


class AllowedRevenue(Base):
    """The maximum allowed revenue (最高准许收入) the bureau records for a billing month."""

    __tablename__ = "allowed_revenue"
    period: Mapped[str] = mapped_column(String(7), primary_key=True)
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    recorded_at: Mapped[dt.datetime] = mapped_column(default=clock.stored_now)


class Contract(Base):
    __tablename__ = "contracts"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    operator_id: Mapped[str] = mapped_column(ForeignKey("principals.id"))
    document: Mapped[dict[str, Any]] = mapped_column(JSON)
    canonical: Mapped[bytes] = mapped_column(LargeBinary)
    status: Mapped[str] = mapped_column(String(32))
    required_approvals: Mapped[list[Any]] = mapped_column(JSON)
    approvals: Mapped[list[Any]] = mapped_column(JSON, default=list)
    bureau_signature: Mapped[str | None] = mapped_column(String(128))
    operator_signature: Mapped[str | None] = mapped_column(String(128))
    status_reason: Mapped[str | None] = mapped_column(Text)
    reserved_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    spent_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(default=clock.stored_now)
    updated_at: Mapped[dt.datetime] = mapped_column(
        default=clock.stored_now, onupdate=clock.stored_now
    )
    # The version in force (or, before the first activation, the one applied for); the
    # columns above mirror that version's row in `contract_versions`.
    version: Mapped[int] = mapped_column(Integer, default=1)


class ContractVersion(Base):
    """One version of a contract: its document, approvals, signatures and status history."""

    __tablename__ = "contract_versions"
    contract_id: Mapped[str] = mapped_column(ForeignKey("contracts.id"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    document: Mapped[dict[str, Any]] = mapped_column(JSON)
    canonical: Mapped[bytes] = mapped_column(LargeBinary)
    status: Mapped[str] = mapped_column(String(32))
    status_reason: Mapped[str | None] = mapped_column(Text, default=None)
    required_approvals: Mapped[list[Any]] = mapped_column(JSON)
    approvals: Mapped[list[Any]] = mapped_column(JSON, default=list)
    bureau_signature: Mapped[str | None] = mapped_column(String(128), default=None)
    operator_signature: Mapped[str | None] = mapped_column(String(128), default=None)
    operator_key_id: Mapped[str | None] = mapped_column(String(32), default=None)
    history: Mapped[list[Any]] = mapped_column(JSON, default=list)  # [{status, at, by, reason}]
    created_at: Mapped[dt.datetime] = mapped_column(default=clock.stored_now)


class Job(Base):
    __tablename__ = "jobs"
    # Quotas and volume tiers sum a contract's and an operator's jobs of a month per submission.
    __table_args__ = (
        UniqueConstraint("operator_id", "idempotency_key"),
        Index("ix_jobs_contract_created", "contract_id", "created_at"),
        Index("ix_jobs_operator_finished", "operator_id", "finished_at"),
        # Finding the jobs still queued or running (recovery) reads only those.
        Index("ix_jobs_status", "status"),
    )
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    contract_id: Mapped[str] = mapped_column(ForeignKey("contracts.id"))
    contract_version: Mapped[int] = mapped_column(Integer, default=1)  # the terms it ran under
    operator_id: Mapped[str] = mapped_column(ForeignKey("principals.id"))
    signing_key_id: Mapped[str | None] = mapped_column(String(64))  # key that signed it, if any
    signed_at: Mapped[str | None] = mapped_column(String(40))  # as signed, verbatim
    code: Mapped[str] = mapped_column(Text)
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    signature: Mapped[str | None] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16))
    schedule_id: Mapped[int | None] = mapped_column(ForeignKey("price_schedules.id"))
    quote: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    quote_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    charge: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    charge_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    usage: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    disclosure: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(default=clock.stored_now)
    finished_at: Mapped[dt.datetime | None]
    # The lease of the process that runs it (sandbox.store.liveness) while queued or running.
    runner: Mapped[str | None] = mapped_column(String(32))
    # dataset → the version it reads, fixed at submission.
    versions: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    # Where the job came from, when not written by hand: a template's run, a product's call
    # (and the customer's key), with the operator's own price for that call.
    template_id: Mapped[str | None] = mapped_column(String(32), default=None)
    template_version: Mapped[int | None] = mapped_column(Integer, default=None)
    product_id: Mapped[str | None] = mapped_column(String(32), default=None, index=True)
    product_key_id: Mapped[str | None] = mapped_column(String(32), default=None)
    price_fen: Mapped[int | None] = mapped_column(BigInteger, default=None)


class UsageCounter(Base):
    """A running total the service reads on every submission (a contract's jobs of the day,
    its rows of the month, an operator's volume of the month by level), kept as jobs are
    admitted and settled: reading it costs the same however many jobs came before."""

    __tablename__ = "usage_counters"
    scope: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner: Mapped[str] = mapped_column(String(32), primary_key=True)  # contract or operator
    period: Mapped[str] = mapped_column(String(10), primary_key=True)  # YYYY-MM-DD or YYYY-MM
    label: Mapped[str] = mapped_column(String(16), primary_key=True, default="")
    value: Mapped[int] = mapped_column(BigInteger, default=0)


class Template(Base):
    """A parametrised analysis an operator submits for review; its code lives in versions."""

    __tablename__ = "templates"
    __table_args__ = (UniqueConstraint("operator_id", "name"),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    operator_id: Mapped[str] = mapped_column(ForeignKey("principals.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=clock.stored_now)


class TemplateVersion(Base):
    """One exact code (by its hash) of a template, with the schema of its parameters, and
    the review of each department whose data it reads."""

    __tablename__ = "template_versions"
    __table_args__ = (Index("ix_template_versions_status", "status"),)
    template_id: Mapped[str] = mapped_column(ForeignKey("templates.id"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    code: Mapped[str] = mapped_column(Text)
    code_sha256: Mapped[str] = mapped_column(String(64))
    params_schema: Mapped[dict[str, Any]] = mapped_column(JSON)
    datasets: Mapped[list[Any]] = mapped_column(JSON)  # the dataset names the code reads
    reviewers: Mapped[list[Any]] = mapped_column(JSON)  # provider ids whose approval it needs
    reviews: Mapped[list[Any]] = mapped_column(JSON, default=list)  # [{by, decision, …}]
    status: Mapped[str] = mapped_column(String(16))  # pending | approved | refused | withdrawn
    created_at: Mapped[dt.datetime] = mapped_column(default=clock.stored_now)
    decided_at: Mapped[dt.datetime | None] = mapped_column(default=None)


class OutputReview(Base):
    """A release a rule holds for people to check before the job's code receives it.

    `held` is the release as the rules made it and `state` what the job had done before
    it (its earlier releases and usage): both stay inside the service, and a refused
    release's body is cleared once decided."""

    __tablename__ = "output_reviews"
    __table_args__ = (Index("ix_output_reviews_status", "status"),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), index=True)
    release_index: Mapped[int] = mapped_column(Integer)
    reasons: Mapped[list[Any]] = mapped_column(JSON)  # the rules that held it
    required: Mapped[int] = mapped_column(Integer)  # independent reviewers needed
    decisions: Mapped[list[Any]] = mapped_column(JSON, default=list)  # [{by, decision, …}]
    status: Mapped[str] = mapped_column(String(16))  # pending | released | refused
    held: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    state: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    created_at: Mapped[dt.datetime] = mapped_column(default=clock.stored_now)
    decided_at: Mapped[dt.datetime | None] = mapped_column(default=None)


class ProductCap(Base):
    """The most an operator's data product may charge per call in one application
    scenario (应用场景), set by the bureau."""

    __tablename__ = "product_caps"
    scenario: Mapped[str] = mapped_column(String(100), primary_key=True)
    max_price_fen: Mapped[int] = mapped_column(BigInteger)
    description: Mapped[str] = mapped_column(Text, default="")
    updated_at: Mapped[dt.datetime] = mapped_column(default=clock.stored_now)
    updated_by: Mapped[str | None] = mapped_column(String(32), default=None)
    history: Mapped[list[Any]] = mapped_column(JSON, default=list)


class Product(Base):
    """A data product an operator sells, built on an approved template, run under one of
    its contracts; each customer's call is a job."""

    __tablename__ = "products"
    __table_args__ = (Index("ix_products_scenario", "scenario"),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    operator_id: Mapped[str] = mapped_column(ForeignKey("principals.id"), index=True)
    contract_id: Mapped[str] = mapped_column(ForeignKey("contracts.id"))
    template_id: Mapped[str] = mapped_column(ForeignKey("templates.id"))
    template_version: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(200))
    scenario: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(Text, default="")
    purpose_class: Mapped[str] = mapped_column(String(32))
    price_fen: Mapped[int] = mapped_column(BigInteger)  # per call
    trial_price_fen: Mapped[int | None] = mapped_column(BigInteger, default=None)
    trial_until: Mapped[dt.datetime | None] = mapped_column(default=None)
    status: Mapped[str] = mapped_column(String(16), default="active")  # active | suspended
    status_reason: Mapped[str | None] = mapped_column(Text, default=None)
    history: Mapped[list[Any]] = mapped_column(JSON, default=list)
    created_at: Mapped[dt.datetime] = mapped_column(default=clock.stored_now)


class ProductKey(Base):
    """An API key an operator issued to one customer of a product; only its hash is kept."""

    __tablename__ = "product_keys"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    product_id: Mapped[str] = mapped_column(ForeignKey("products.id"), index=True)
    customer: Mapped[str] = mapped_column(String(200))
    issued_at: Mapped[dt.datetime] = mapped_column(default=clock.stored_now)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(default=None)


class ConsoleSession(Base):
    """A browser signed in to the console. The cookie holds the secret; this row its hash,
    and the hash of the API token it was opened with: a rotated or revoked token ends it."""

    __tablename__ = "console_sessions"
    __table_args__ = (Index("ix_console_sessions_expires", "expires_at"),)
    secret_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    principal_id: Mapped[str] = mapped_column(ForeignKey("principals.id"))
    token_hash: Mapped[str] = mapped_column(String(64))
    csrf: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime]
    expires_at: Mapped[dt.datetime]


class JobOutput(Base):
    __tablename__ = "job_outputs"
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    body: Mapped[dict[str, Any]] = mapped_column(JSON)


class LedgerEntry(Base):
    __tablename__ = "ledger_entries"
    index: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    leaf: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(default=clock.stored_now)


class LedgerNode(Base):
    """Hash of the complete subtree covering leaves [index·2^level, (index+1)·2^level)."""

    __tablename__ = "ledger_nodes"
    level: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    index: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))


class LedgerWitness(Base):
    """A checkpoint co-signed by a witness (the regulator): the bureau's note plus the
    witness's signature line, kept as posted so anyone can re-verify both."""

    __tablename__ = "ledger_witnesses"
    __table_args__ = (UniqueConstraint("size", "public_key"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    size: Mapped[int] = mapped_column(BigInteger, index=True)
    root_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    name: Mapped[str] = mapped_column(String(200))
    public_key: Mapped[str] = mapped_column(String(64))
    note: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=clock.stored_now)


class PrivacyBudget(Base):
    """Differential-privacy budget used per contract × dataset, in whole micro-ε (10⁻⁶).

    The total is a term of the contract version in force, so it is read from the document
    rather than stored twice; `reserved` is held by jobs still queued or running."""

    __tablename__ = "privacy_budgets"
    contract_id: Mapped[str] = mapped_column(ForeignKey("contracts.id"), primary_key=True)
    dataset: Mapped[str] = mapped_column(String(128), primary_key=True)
    spent_micro: Mapped[int] = mapped_column(BigInteger, default=0)
    reserved_micro: Mapped[int] = mapped_column(BigInteger, default=0)


class ReleasedSet(Base):
    """The people (a serialized 64-bit roaring bitmap of entity numbers) of a cell released
    to an operator, one row per distinct set: the release gate's history (disclosure.audit),
    which is the operator's across all its contracts and datasets. `contract_id` and
    `dataset` say where the set was first released."""

    __tablename__ = "released_sets"
    __table_args__ = (UniqueConstraint("operator_id", "digest"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    operator_id: Mapped[str] = mapped_column(ForeignKey("principals.id"), index=True)
    threshold: Mapped[int] = mapped_column(Integer, default=10)
    # What the people were released about: "people" (a group) or "measure:<columns>" (those
    # contributing to a magnitude of those columns); each has its own audit (disclosure.gate).
    space: Mapped[str] = mapped_column(String(300), default="people")
    contract_id: Mapped[str] = mapped_column(ForeignKey("contracts.id"), index=True)
    dataset: Mapped[str] = mapped_column(String(128))
    digest: Mapped[str] = mapped_column(String(64))
    cardinality: Mapped[int] = mapped_column(BigInteger)
    members: Mapped[bytes] = mapped_column(LargeBinary)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"))
    created_at: Mapped[dt.datetime] = mapped_column(default=clock.stored_now)


class JobObservation(Base):
    """What the engine saw of one collect() of a job that the operator does not see
    (`JobResult.observations`), kept for the regulator's detection of attack patterns
    (`sandbox.disclosure.detection`). Detection reads an operator's recent rows of one plan shape on
    every settlement, so they are indexed that way and it reads no JSON: constants are
    compared by digest, refusals by flag."""

    __tablename__ = "job_observations"
    __table_args__ = (
        Index("ix_job_observations_operator_shape_created", "operator_id", "shape", "created_at"),
        Index("ix_job_observations_operator_created", "operator_id", "created_at"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), index=True)
    operator_id: Mapped[str] = mapped_column(ForeignKey("principals.id"))
    contract_id: Mapped[str] = mapped_column(ForeignKey("contracts.id"))
    index: Mapped[int] = mapped_column(Integer)  # the collect's place in the job
    shape: Mapped[str] = mapped_column(String(16))  # hash of the plan, literals blanked
    literals: Mapped[list[Any]] = mapped_column(JSON)  # the plan's literals, params included
    literals_key: Mapped[str] = mapped_column(String(16))  # their digest
    dataset: Mapped[str] = mapped_column(String(128))
    hidden: Mapped[bool] = mapped_column(default=False)  # every cell hidden or group left out
    differenced: Mapped[bool] = mapped_column(default=False)  # a cell refused as near-duplicate
    created_at: Mapped[dt.datetime] = mapped_column(default=clock.stored_now)


class Flag(Base):
    """An attack pattern detection found in a job, for the regulator only (never shown to
    the operator). Unreviewed scores of a contract add up towards its automatic suspension."""

    __tablename__ = "flags"
    __table_args__ = (
        Index("ix_flags_contract_created", "contract_id", "created_at"),
        Index("ix_flags_operator_created", "operator_id", "created_at"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), index=True)
    operator_id: Mapped[str] = mapped_column(ForeignKey("principals.id"))
    contract_id: Mapped[str] = mapped_column(ForeignKey("contracts.id"))
    pattern: Mapped[str] = mapped_column(String(32))
    score: Mapped[int] = mapped_column(Integer)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(default=clock.stored_now)
    reviewed_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    reviewed_by: Mapped[str | None] = mapped_column(ForeignKey("principals.id"), default=None)
    note: Mapped[str | None] = mapped_column(Text, default=None)
