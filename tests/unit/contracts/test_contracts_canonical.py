import dataclasses
import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
import rfc8785

from contracts.canonical import CONTRACT_DOMAIN, canonical_bytes
from contracts.document import ContractDocument
from contracts.errors import ContractInvalid

DOC = ContractDocument(
    id="c-12",
    version=1,
    operator_id="op-7",
    datasets={
        "人口": {"区县": ("filter", "group_by"), "年龄": ("aggregate",)},
        "enterprises": {"industry": ("join",)},
    },
    purpose="城关区养老服务设施规划",
    purpose_class="commercial",
    valid_from=datetime(2026, 3, 1, tzinfo=UTC),
    valid_to=datetime(2027, 3, 1, tzinfo=UTC),
    quotas={"jobs_per_day": 100, "rows_per_month": 10_000_000},
    spend_cap=Decimal("5000"),
    issued_at=datetime(2026, 2, 20, 9, 30, 15, 250000, tzinfo=UTC),
)


def test_to_json_uses_json_types_only() -> None:
    assert DOC.to_json() == {
        "id": "c-12",
        "version": 1,
        "operator_id": "op-7",
        "datasets": {
            "人口": {"区县": ["filter", "group_by"], "年龄": ["aggregate"]},
            "enterprises": {"industry": ["join"]},
        },
        "purpose": "城关区养老服务设施规划",
        "purpose_class": "commercial",
        "valid_from": "2026-03-01T00:00:00Z",
        "valid_to": "2027-03-01T00:00:00Z",
        "quotas": {"jobs_per_day": 100, "rows_per_month": 10_000_000},
        "spend_cap": "5000.00",
        "issued_at": "2026-02-20T09:30:15.250000Z",
    }
    assert json.loads(json.dumps(DOC.to_json())) == DOC.to_json()


def test_to_json_null_spend_cap() -> None:
    assert dataclasses.replace(DOC, spend_cap=None).to_json()["spend_cap"] is None


def test_json_round_trip() -> None:
    assert ContractDocument.from_json(DOC.to_json()) == DOC
    assert ContractDocument.from_json(json.loads(json.dumps(DOC.to_json()))) == DOC


def test_from_json_refuses_unknown_and_missing_fields() -> None:
    with pytest.raises(ContractInvalid, match="unknown field 'extra'"):
        ContractDocument.from_json({**DOC.to_json(), "extra": 1})
    partial = DOC.to_json()
    del partial["issued_at"]
    with pytest.raises(ContractInvalid, match="missing 'issued_at'"):
        ContractDocument.from_json(partial)


def test_canonical_bytes_layout() -> None:
    data = canonical_bytes(DOC)
    assert CONTRACT_DOMAIN == b"public-data-sandbox/contract/v1\n"
    assert data == CONTRACT_DOMAIN + rfc8785.dumps(DOC.to_json())
    body = data[len(CONTRACT_DOMAIN) :]
    assert body.startswith(b'{"datasets":{"enterprises":')
    assert "城关区".encode() in body
    assert b"\n" not in body and b" " not in body


def test_canonical_bytes_are_stable() -> None:
    assert canonical_bytes(DOC) == canonical_bytes(DOC)
    assert canonical_bytes(DOC) == canonical_bytes(ContractDocument.from_json(DOC.to_json()))


def _reverse_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _reverse_keys(value[key]) for key in reversed(list(value))}
    return value


def test_canonical_bytes_ignore_key_order_and_whitespace() -> None:
    pretty = json.dumps(_reverse_keys(DOC.to_json()), indent=4, ensure_ascii=True)
    assert pretty != json.dumps(DOC.to_json())
    again = ContractDocument.from_json(json.loads(pretty))
    assert canonical_bytes(again) == canonical_bytes(DOC)


def test_same_terms_in_other_spellings_canonicalize_identically() -> None:
    beijing = timezone(timedelta(hours=8))
    other = ContractDocument(
        id="c-12",
        version=1,
        operator_id="op-7",
        datasets={
            "enterprises": {"industry": ["join", "join"]},
            "人口": {"年龄": ["aggregate"], "区县": ["group_by", "filter"]},
        },
        purpose="  城关区养老服务设施规划 ",
        purpose_class="commercial",
        valid_from=datetime(2026, 3, 1, 8, tzinfo=beijing),
        valid_to="2027-03-01T08:00:00+08:00",  # type: ignore[arg-type]
        quotas={"rows_per_month": 10_000_000, "jobs_per_day": 100},
        spend_cap=Decimal("5000.000"),
        issued_at=datetime(2026, 2, 20, 17, 30, 15, 250000, tzinfo=beijing),
    )
    assert other == DOC
    assert canonical_bytes(other) == canonical_bytes(DOC)


@pytest.mark.parametrize(
    "change",
    [
        {"id": "c-13"},
        {"version": 2},
        {"operator_id": "op-8"},
        {"datasets": {"人口": {"区县": ("filter", "group_by"), "年龄": ("aggregate",)}}},
        {
            "datasets": {
                "人口": {"区县": ("filter",), "年龄": ("aggregate",)},
                "enterprises": {"industry": ("join",)},
            }
        },
        {
            "datasets": {
                "人口": {"区县": ("filter", "group_by"), "年龄": ("aggregate", "filter")},
                "enterprises": {"industry": ("join",)},
            }
        },
        {"purpose": "城关区养老服务设施规划。"},
        {"purpose_class": "public_interest"},
        {"valid_from": datetime(2026, 3, 1, 0, 0, 1, tzinfo=UTC)},
        {"valid_to": datetime(2027, 2, 28, tzinfo=UTC)},
        {"quotas": {"jobs_per_day": 101, "rows_per_month": 10_000_000}},
        {"quotas": {"jobs_per_day": 100}},
        {"spend_cap": Decimal("5000.01")},
        {"spend_cap": None},
        {"issued_at": datetime(2026, 2, 20, 9, 30, 15, tzinfo=UTC)},
    ],
)
def test_any_term_change_changes_the_bytes(change: dict[str, Any]) -> None:
    changed = dataclasses.replace(DOC, **change)
    assert changed != DOC
    assert canonical_bytes(changed) != canonical_bytes(DOC)
