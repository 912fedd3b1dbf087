"""The contract document: what an operator may do with which data, for what purpose, when.

An operator's application is parsed into a ContractDocument by ``parse_application``; the
document's JSON form (``to_json``) is what gets canonicalized and signed, so it uses JSON
types only and one spelling for every value.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from contracts.budget import PrivacyTerm
from contracts.errors import ContractInvalid

Use = Literal["group_by", "filter", "aggregate", "join"]
USES: tuple[Use, ...] = ("group_by", "filter", "aggregate", "join")
PurposeClass = Literal["public_interest", "commercial"]
PURPOSE_CLASSES: tuple[PurposeClass, ...] = ("public_interest", "commercial")

Grants = Mapping[str, Mapping[str, tuple[Use, ...]]]

_CENT = Decimal("0.01")
_EXAMPLE_GRANTS = '{"population": {"district": ["group_by"], "age": ["filter"]}}'
_APPLICATION_REQUIRED = ("datasets", "purpose", "purpose_class", "valid_from", "valid_to")
_APPLICATION_FIELDS = (
    *_APPLICATION_REQUIRED,
    "quotas",
    "spend_cap",
    "disclosure",
    "privacy",
    "review",
)
_DOCUMENT_FIELDS = (
    "id",
    "version",
    "operator_id",
    "datasets",
    "purpose",
    "purpose_class",
    "valid_from",
    "valid_to",
    "quotas",
    "spend_cap",
    "issued_at",
)
# Written only when set, so documents without them keep their canonical bytes (and signatures).
_OPTIONAL_FIELDS = ("disclosure", "privacy", "review", "crypto_suite")
CRYPTO_SUITES = ("international", "sm")
DISCLOSURE_TERMS: tuple[str, ...] = ("min_contributors",)
# templates_only: jobs run only as approved templates; outputs: every release is held for
# people to check before the job's code receives it.
REVIEW_TERMS: tuple[str, ...] = ("templates_only", "outputs")
MAX_MIN_CONTRIBUTORS = 10_000


@dataclass(frozen=True)
class ContractDocument:
    """One version of a contract's terms; immutable once issued.

    The term is the half-open interval [valid_from, valid_to). ``spend_cap`` is in yuan.
    Construction normalizes (UTC datetimes, uses in USES order, cap to fen) and validates,
    so two documents with the same terms compare equal and canonicalize identically.

    ``disclosure`` can only make disclosure control stricter than the service's defaults
    (``min_contributors`` raises the per-cell threshold). A dataset named in ``privacy`` is
    analysed only under differential privacy, within the ε budget its term sets.
    ``review`` can ask that only approved templates run, and that every release be checked
    by people before the job receives it.
    """

    id: str
    version: int
    operator_id: str
    datasets: Grants
    purpose: str
    purpose_class: PurposeClass
    valid_from: datetime
    valid_to: datetime
    quotas: Mapping[str, int]
    spend_cap: Decimal | None
    issued_at: datetime
    disclosure: Mapping[str, int] = field(default_factory=dict)
    privacy: Mapping[str, PrivacyTerm] = field(default_factory=dict)
    review: Mapping[str, bool] = field(default_factory=dict)
    # The suite both parties sign with (operators.suite); written only when it is not the
    # default, so documents of international instances keep their bytes.
    crypto_suite: str = "international"

    def __post_init__(self) -> None:
        _check_identifier(self.id, "id")
        _check_identifier(self.operator_id, "operator_id")
        if isinstance(self.version, bool) or not isinstance(self.version, int) or self.version < 1:
            raise ContractInvalid(
                f"version must be a positive integer, got {self.version!r}; "
                "the first version of a contract is 1"
            )
        valid_from = _parse_time(self.valid_from, "valid_from")
        valid_to = _parse_time(self.valid_to, "valid_to")
        _check_term(valid_from, valid_to)
        object.__setattr__(self, "datasets", _parse_grants(self.datasets, known_columns=None))
        object.__setattr__(self, "purpose", _parse_purpose(self.purpose))
        object.__setattr__(self, "purpose_class", _parse_purpose_class(self.purpose_class))
        object.__setattr__(self, "valid_from", valid_from)
        object.__setattr__(self, "valid_to", valid_to)
        object.__setattr__(self, "quotas", _parse_quotas(self.quotas))
        object.__setattr__(self, "spend_cap", _parse_spend_cap(self.spend_cap))
        object.__setattr__(self, "issued_at", _parse_time(self.issued_at, "issued_at"))
        object.__setattr__(self, "disclosure", _parse_disclosure(self.disclosure))
        object.__setattr__(self, "privacy", _parse_privacy(self.privacy, self.datasets))
        object.__setattr__(self, "review", _parse_review(self.review))
        if self.crypto_suite not in CRYPTO_SUITES:
            raise ContractInvalid(
                f"crypto_suite must be one of {', '.join(CRYPTO_SUITES)}, got "
                f"{self.crypto_suite!r}; it is set by the service, not by the application"
            )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "version": self.version,
            "operator_id": self.operator_id,
            "datasets": {
                dataset: {column: sorted(uses) for column, uses in columns.items()}
                for dataset, columns in self.datasets.items()
            },
            "purpose": self.purpose,
            "purpose_class": self.purpose_class,
            "valid_from": format_time(self.valid_from),
            "valid_to": format_time(self.valid_to),
            "quotas": dict(self.quotas),
            "spend_cap": None if self.spend_cap is None else str(self.spend_cap),
            "issued_at": format_time(self.issued_at),
            **({"disclosure": dict(self.disclosure)} if self.disclosure else {}),
            **(
                {"privacy": {name: term.to_json() for name, term in self.privacy.items()}}
                if self.privacy
                else {}
            ),
            **({"review": dict(self.review)} if self.review else {}),
            **({"crypto_suite": self.crypto_suite} if self.crypto_suite != "international" else {}),
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> ContractDocument:
        """Read back what ``to_json`` wrote.

        Unknown fields are refused rather than dropped: dropping one would change the
        canonical bytes and so break every signature over the document.
        """
        _check_fields(
            obj,
            allowed=(*_DOCUMENT_FIELDS, *_OPTIONAL_FIELDS),
            required=_DOCUMENT_FIELDS,
            what="contract document",
        )
        return cls(
            id=obj["id"],
            version=obj["version"],
            operator_id=obj["operator_id"],
            datasets=obj["datasets"],
            purpose=obj["purpose"],
            purpose_class=obj["purpose_class"],
            valid_from=obj["valid_from"],
            valid_to=obj["valid_to"],
            quotas=obj["quotas"],
            spend_cap=obj["spend_cap"],
            issued_at=obj["issued_at"],
            disclosure=obj.get("disclosure", {}),
            privacy=obj.get("privacy", {}),
            review=obj.get("review", {}),
            crypto_suite=obj.get("crypto_suite", "international"),
        )

    @property
    def min_contributors(self) -> int | None:
        """The contract's own per-cell threshold, if it sets one (the service takes the
        stricter of it and the level's default)."""
        return self.disclosure.get("min_contributors")

    @property
    def templates_only(self) -> bool:
        """Jobs under this contract run only as templates the departments approved."""
        return bool(self.review.get("templates_only"))

    @property
    def review_outputs(self) -> bool:
        """Every release under this contract is held until reviewers release it."""
        return bool(self.review.get("outputs"))

    def granted_uses(self, dataset: str, column: str) -> tuple[Use, ...]:
        """The uses granted on one column, empty when the column is not granted."""
        return tuple(self.datasets.get(dataset, {}).get(column, ()))


def parse_application(
    body: Mapping[str, Any],
    *,
    contract_id: str,
    operator_id: str,
    issued_at: datetime,
    known_columns: Mapping[str, Collection[str]],
    levels: Mapping[str, str] | None = None,
) -> ContractDocument:
    """Validate an operator's ``POST /v1/contracts`` body into version 1 of a contract.

    ``known_columns`` is the catalog: dataset name → its column names; ``levels`` maps dataset
    names to classification levels (L4 data is only granted under differential privacy).
    """
    if not isinstance(body, Mapping):
        raise ContractInvalid(
            f"the application must be a JSON object, got {_json_type(body)}; send "
            '{"datasets": …, "purpose": …, "purpose_class": …, "valid_from": …, "valid_to": …}'
        )
    _check_fields(
        body, allowed=_APPLICATION_FIELDS, required=_APPLICATION_REQUIRED, what="application"
    )
    datasets = _parse_grants(body["datasets"], known_columns=known_columns)
    valid_to = _parse_time(body["valid_to"], "valid_to")
    issued = _parse_time(issued_at, "issued_at")
    if valid_to <= issued:
        raise ContractInvalid(
            f"valid_to {format_time(valid_to)} is not after the time of application "
            f"{format_time(issued)}; choose an end of term in the future"
        )
    doc = ContractDocument(
        id=contract_id,
        version=1,
        operator_id=operator_id,
        datasets=datasets,
        purpose=body["purpose"],
        purpose_class=body["purpose_class"],
        valid_from=body["valid_from"],
        valid_to=valid_to,
        quotas={} if body.get("quotas") is None else body["quotas"],
        spend_cap=body.get("spend_cap"),
        issued_at=issued,
        disclosure={} if body.get("disclosure") is None else body["disclosure"],
        privacy={} if body.get("privacy") is None else body["privacy"],
        review={} if body.get("review") is None else body["review"],
    )
    _check_l4_privacy(doc, levels or {})
    return doc


def _check_l4_privacy(doc: ContractDocument, levels: Mapping[str, str]) -> None:
    for dataset in doc.datasets:
        if levels.get(dataset) == "L4" and dataset not in doc.privacy:
            raise ContractInvalid(
                f"dataset '{dataset}' is classified L4 and may only be analysed under "
                "differential privacy; add privacy terms for it, e.g. "
                f'"privacy": {{"{dataset}": {{"epsilon": "1.0", "per_job_epsilon": "0.1"}}}}'
            )


def format_time(moment: datetime) -> str:
    """ISO 8601 in UTC with a ``Z`` suffix, the one spelling used in documents."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _check_fields(
    obj: Mapping[str, Any], *, allowed: tuple[str, ...], required: tuple[str, ...], what: str
) -> None:
    if not isinstance(obj, Mapping):
        raise ContractInvalid(f"a {what} must be a JSON object, got {_json_type(obj)}")
    unknown = sorted(str(key) for key in obj if key not in allowed)
    if unknown:
        raise ContractInvalid(
            f"unknown field '{unknown[0]}' in the {what}; allowed fields: {', '.join(allowed)}"
        )
    missing = [key for key in required if key not in obj]
    if missing:
        raise ContractInvalid(
            f"the {what} is missing '{missing[0]}'; required fields: {', '.join(required)}"
        )


def _check_identifier(value: object, field: str) -> None:
    if not isinstance(value, str) or not value:
        raise ContractInvalid(f"{field} must be a non-empty string, got {value!r}")


def _parse_grants(
    raw: object, *, known_columns: Mapping[str, Collection[str]] | None
) -> dict[str, dict[str, tuple[Use, ...]]]:
    """Grants as dataset → column → uses (USES order); catalog-checked when given one."""
    if not isinstance(raw, Mapping):
        raise ContractInvalid(
            f"datasets must be an object mapping dataset names to granted columns and "
            f"uses, got {_json_type(raw)}; e.g. {_EXAMPLE_GRANTS}"
        )
    if not raw:
        raise ContractInvalid(
            "datasets is empty; name at least one dataset with the columns and uses "
            f"you need, e.g. {_EXAMPLE_GRANTS}"
        )
    grants: dict[str, dict[str, tuple[Use, ...]]] = {}
    for dataset in sorted(raw, key=str):
        _check_name(dataset, "dataset")
        if known_columns is not None and dataset not in known_columns:
            raise ContractInvalid(
                f"dataset '{dataset}' is not in the catalog; known datasets: "
                f"{_names(known_columns)} (GET /v1/datasets lists them)"
            )
        columns = known_columns[dataset] if known_columns is not None else None
        grants[dataset] = _parse_dataset_grants(dataset, raw[dataset], columns)
    return grants


def _parse_dataset_grants(
    dataset: str, raw: object, known: Collection[str] | None
) -> dict[str, tuple[Use, ...]]:
    if not isinstance(raw, Mapping) or not raw:
        raise ContractInvalid(
            f"dataset '{dataset}' grants no columns; give an object mapping each column "
            'you need to its uses, e.g. {"district": ["group_by"]}'
        )
    granted: dict[str, tuple[Use, ...]] = {}
    for column in sorted(raw, key=str):
        _check_name(column, f"column of dataset '{dataset}'")
        if known is not None and column not in known:
            raise ContractInvalid(
                f"column '{column}' is not in dataset '{dataset}'; its columns: {_names(known)}"
            )
        granted[column] = _parse_uses(dataset, column, raw[column])
    return granted


def _check_name(name: object, what: str) -> None:
    if not isinstance(name, str) or not name:
        raise ContractInvalid(f"every {what} name must be a non-empty string, got {name!r}")


def _parse_uses(dataset: str, column: str, raw: object) -> tuple[Use, ...]:
    # A bare string is a Collection too; refuse it so "group_by" is not read as letters.
    if isinstance(raw, (str, bytes)) or not isinstance(raw, Collection) or not raw:
        raise ContractInvalid(
            f"column '{column}' of dataset '{dataset}' lists no uses; give a list with "
            f"at least one of: {', '.join(USES)}"
        )
    for use in raw:
        if use not in USES:
            raise ContractInvalid(
                f"use '{use}' for column '{column}' of dataset '{dataset}' is not a valid "
                f"use; valid uses: {', '.join(USES)}"
            )
    return tuple(use for use in USES if use in raw)


def _parse_purpose(raw: object) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise ContractInvalid(
            "purpose must be a non-empty string; describe what the analysis is for in a sentence, "
            "e.g. '城关区养老服务设施规划'"
        )
    return raw.strip()


def _parse_purpose_class(raw: object) -> PurposeClass:
    if raw not in PURPOSE_CLASSES:
        raise ContractInvalid(
            f"purpose_class {raw!r} is not valid; use one of: {', '.join(PURPOSE_CLASSES)}"
        )
    return raw


def _parse_time(raw: object, field: str) -> datetime:
    if isinstance(raw, datetime):
        moment = raw
    elif isinstance(raw, str):
        try:
            moment = datetime.fromisoformat(raw)
        except ValueError:
            raise ContractInvalid(
                f"{field} {raw!r} is not an ISO 8601 date-time; "
                "write it like '2026-01-01T00:00:00Z' or '2026-01-01T08:00:00+08:00'"
            ) from None
    else:
        raise ContractInvalid(
            f"{field} must be an ISO 8601 date-time string like '2026-01-01T00:00:00Z', "
            f"got {_json_type(raw)}"
        )
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ContractInvalid(
            f"{field} {_show_time(raw)} has no time zone; add 'Z' for UTC or an offset "
            "such as '+08:00'"
        )
    return moment.astimezone(UTC)


def _check_term(valid_from: datetime, valid_to: datetime) -> None:
    if valid_to <= valid_from:
        raise ContractInvalid(
            f"valid_to {format_time(valid_to)} is not after valid_from "
            f"{format_time(valid_from)}; the term must end after it starts"
        )


QUOTAS: tuple[str, ...] = ("jobs_per_day", "rows_per_month")


def _parse_quotas(raw: object) -> dict[str, int]:
    if not isinstance(raw, Mapping):
        raise ContractInvalid(
            f"quotas must be an object of non-negative integers, got {_json_type(raw)}; "
            'e.g. {"jobs_per_day": 100}'
        )
    quotas: dict[str, int] = {}
    for name in sorted(raw, key=str):
        value = raw[name]
        if not isinstance(name, str) or not name:
            raise ContractInvalid(f"quota names must be non-empty strings, got {name!r}")
        if name not in QUOTAS:
            # A term the service would not enforce must not be signed as if it were.
            raise ContractInvalid(f"unknown quota {name!r}; quotas are: {', '.join(QUOTAS)}")
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ContractInvalid(
                f"quota '{name}' must be a non-negative integer, got {value!r}; "
                "write whole numbers without quotes, e.g. 100"
            )
        quotas[name] = value
    return quotas


def _parse_spend_cap(raw: object) -> Decimal | None:
    """A cap in yuan with at most two decimal places (fen); None means no cap."""
    if raw is None:
        return None
    how = 'send it as a decimal string of yuan with at most 2 decimal places, e.g. "5000.00"'
    # Floats are refused outright: 0.1 has no exact binary form, and money must be exact.
    if isinstance(raw, (bool, float)) or not isinstance(raw, (str, int, Decimal)):
        raise ContractInvalid(f"spend_cap must be a decimal string, got {_json_type(raw)}; {how}")
    try:
        cap = Decimal(raw)
    except InvalidOperation:
        raise ContractInvalid(f"spend_cap {raw!r} is not a decimal number; {how}") from None
    if not cap.is_finite():
        raise ContractInvalid(f"spend_cap {raw!r} is not a finite number; {how}")
    if cap < 0:
        raise ContractInvalid(f"spend_cap {raw!r} is negative; {how}, or omit it for no cap")
    try:
        exact = cap.quantize(_CENT)
    except InvalidOperation:
        raise ContractInvalid(f"spend_cap {raw!r} is too large; {how}") from None
    if exact != cap:
        raise ContractInvalid(f"spend_cap {raw!r} has fractions of a fen; {how}")
    # Decimal("-0") is not negative but would print as "-0.00" in the signed document.
    return exact if exact else Decimal("0.00")


def _names(names: Collection[str]) -> str:
    return ", ".join(sorted(names)) if names else "(none)"


def _show_time(raw: object) -> str:
    return repr(raw.isoformat()) if isinstance(raw, datetime) else repr(raw)


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float, Decimal)):
        return "a number"
    if isinstance(value, str):
        return "a string " + json.dumps(value, ensure_ascii=False)[:40]
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, (list, tuple)):
        return "a list"
    return f"a {type(value).__name__}"


def _parse_disclosure(raw: object) -> dict[str, int]:
    how = 'e.g. {"min_contributors": 20}'
    if not isinstance(raw, Mapping):
        raise ContractInvalid(f"disclosure must be an object, got {_json_type(raw)}; {how}")
    terms: dict[str, int] = {}
    for name in sorted(raw, key=str):
        if name not in DISCLOSURE_TERMS:
            # A term the service would not enforce must not be signed as if it were.
            raise ContractInvalid(
                f"unknown disclosure term {name!r}; terms are: "
                f"{', '.join(DISCLOSURE_TERMS)} ({how})"
            )
        value = raw[name]
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or not 1 <= value <= MAX_MIN_CONTRIBUTORS
        ):
            raise ContractInvalid(
                f"disclosure {name} must be a whole number from 1 to {MAX_MIN_CONTRIBUTORS}, "
                f"got {value!r}; it can only make the service's threshold stricter ({how})"
            )
        terms[name] = value
    return terms


def _parse_review(raw: object) -> dict[str, bool]:
    how = 'e.g. {"templates_only": true, "outputs": true}'
    if not isinstance(raw, Mapping):
        raise ContractInvalid(f"review must be an object, got {_json_type(raw)}; {how}")
    terms: dict[str, bool] = {}
    for name in sorted(raw, key=str):
        if name not in REVIEW_TERMS:
            raise ContractInvalid(
                f"unknown review term {name!r}; terms are: {', '.join(REVIEW_TERMS)} ({how})"
            )
        if not isinstance(raw[name], bool):
            raise ContractInvalid(f"review {name} must be true or false ({how})")
        # Only the terms that ask for something are written: false is the default.
        if raw[name]:
            terms[name] = True
    return terms


def _parse_privacy(raw: object, datasets: Grants) -> dict[str, PrivacyTerm]:
    example = '{"population": {"epsilon": "1.0", "per_job_epsilon": "0.1"}}'
    if not isinstance(raw, Mapping):
        raise ContractInvalid(
            f"privacy must be an object mapping dataset names to their "
            f"epsilon budgets, got {_json_type(raw)}; e.g. {example}"
        )
    terms: dict[str, PrivacyTerm] = {}
    for dataset in sorted(raw, key=str):
        _check_name(dataset, "privacy dataset")
        if dataset not in datasets:
            raise ContractInvalid(
                f"privacy names dataset '{dataset}', which the contract does not grant; "
                f"granted datasets: {_names(list(datasets))}"
            )
        terms[dataset] = PrivacyTerm.parse(dataset, raw[dataset])
    return terms
