from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from contracts.document import USES, ContractDocument, parse_application
from contracts.errors import ContractError, ContractInvalid

CATALOG = {
    "人口": ["区县", "年龄", "收入", "身份证号"],
    "enterprises": ["industry", "employees"],
}
ISSUED = datetime(2026, 3, 1, tzinfo=UTC)


_DROP = object()


def _body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "datasets": {"人口": {"区县": ["group_by", "filter"], "年龄": ["filter", "aggregate"]}},
        "purpose": "城关区养老服务设施规划",
        "purpose_class": "public_interest",
        "valid_from": "2026-03-01T00:00:00+08:00",
        "valid_to": "2027-03-01T00:00:00Z",
        "quotas": {"jobs_per_day": 100},
        "spend_cap": "5000.00",
    }
    body.update(changes)
    return {key: value for key, value in body.items() if value is not _DROP}


def _parse(body: Any) -> ContractDocument:
    return parse_application(
        body, contract_id="c-12", operator_id="op-7", issued_at=ISSUED, known_columns=CATALOG
    )


def test_valid_application_with_chinese_names() -> None:
    doc = _parse(_body())
    assert doc.id == "c-12"
    assert doc.version == 1
    assert doc.operator_id == "op-7"
    assert doc.datasets == {
        "人口": {"区县": ("group_by", "filter"), "年龄": ("filter", "aggregate")}
    }
    assert doc.purpose == "城关区养老服务设施规划"
    assert doc.purpose_class == "public_interest"
    assert doc.valid_from == datetime(2026, 2, 28, 16, tzinfo=UTC)
    assert doc.valid_from.tzinfo is UTC
    assert doc.valid_to == datetime(2027, 3, 1, tzinfo=UTC)
    assert doc.quotas == {"jobs_per_day": 100}
    assert doc.spend_cap == Decimal("5000.00")
    assert doc.issued_at == ISSUED
    assert doc.granted_uses("人口", "区县") == ("group_by", "filter")
    assert doc.granted_uses("人口", "收入") == ()


def test_optional_fields_default() -> None:
    doc = _parse(_body(quotas=_DROP, spend_cap=_DROP))
    assert doc.quotas == {}
    assert doc.spend_cap is None
    assert _parse(_body(quotas=None, spend_cap=None)) == doc


def test_uses_are_deduplicated_and_put_in_canonical_order() -> None:
    doc = _parse(_body(datasets={"人口": {"区县": ["join", "group_by", "join"]}}))
    assert doc.datasets["人口"]["区县"] == ("group_by", "join")


def test_all_uses_accepted() -> None:
    doc = _parse(_body(datasets={"enterprises": {"industry": list(USES)}}))
    assert doc.datasets["enterprises"]["industry"] == USES


@pytest.mark.parametrize(
    ("cap", "expected"),
    [
        ("0", "0.00"),
        ("12.5", "12.50"),
        (" 7 ", "7.00"),
        (300, "300.00"),
        (Decimal("1.25"), "1.25"),
        ("-0", "0.00"),
    ],
)
def test_spend_cap_forms(cap: Any, expected: str) -> None:
    doc = _parse(_body(spend_cap=cap))
    assert doc.spend_cap == Decimal(expected)
    assert doc.to_json()["spend_cap"] == expected


def test_datetime_objects_are_accepted() -> None:
    doc = _parse(
        _body(
            valid_from=datetime(2026, 3, 1, 8, tzinfo=timezone(timedelta(hours=8))),
            valid_to=datetime(2027, 3, 1, tzinfo=UTC),
        )
    )
    assert doc.valid_from == datetime(2026, 3, 1, tzinfo=UTC)


# (case id, application body, fragments the message must contain)
INVALID: list[tuple[str, Any, list[str]]] = [
    ("body-not-object", ["not", "an", "object"], ["must be a JSON object"]),
    (
        "unknown-field",
        _body(purpose_clas="commercial"),
        ["unknown field 'purpose_clas'", "allowed fields: datasets"],
    ),
    ("missing-field", _body(purpose=_DROP), ["missing 'purpose'", "required fields"]),
    ("datasets-not-object", _body(datasets=["人口"]), ["datasets must be an object", "e.g."]),
    ("datasets-empty", _body(datasets={}), ["datasets is empty", "at least one dataset"]),
    (
        "unknown-dataset",
        _body(datasets={"户籍": {"区县": ["filter"]}}),
        ["dataset '户籍' is not in the catalog", "known datasets: enterprises, 人口"],
    ),
    ("dataset-empty", _body(datasets={"人口": {}}), ["dataset '人口' grants no columns", "e.g."]),
    (
        "dataset-not-object",
        _body(datasets={"人口": ["区县"]}),
        ["dataset '人口' grants no columns"],
    ),
    (
        "unknown-column",
        _body(datasets={"人口": {"姓名": ["filter"]}}),
        ["column '姓名' is not in dataset '人口'", "its columns: 区县, 年龄, 收入, 身份证号"],
    ),
    (
        "uses-empty",
        _body(datasets={"人口": {"区县": []}}),
        ["column '区县' of dataset '人口' lists no uses", "group_by, filter, aggregate, join"],
    ),
    (
        "uses-string",
        _body(datasets={"人口": {"区县": "group_by"}}),
        ["lists no uses", "give a list"],
    ),
    (
        "unknown-use",
        _body(datasets={"人口": {"区县": ["sort"]}}),
        [
            "use 'sort' for column '区县' of dataset '人口' is not a valid use",
            "valid uses: group_by, filter, aggregate, join",
        ],
    ),
    ("purpose-empty", _body(purpose=""), ["purpose must be a non-empty string", "describe"]),
    ("purpose-blank", _body(purpose="   "), ["purpose must be a non-empty string"]),
    ("purpose-number", _body(purpose=42), ["purpose must be a non-empty string"]),
    (
        "purpose-class",
        _body(purpose_class="research"),
        ["purpose_class 'research' is not valid", "public_interest, commercial"],
    ),
    (
        "naive-from",
        _body(valid_from="2026-03-01T00:00:00"),
        ["valid_from", "has no time zone", "'Z'", "+08:00"],
    ),
    ("naive-to", _body(valid_to="2027-03-01T00:00:00"), ["valid_to", "has no time zone"]),
    (
        "naive-from-object",
        _body(valid_from=datetime(2026, 3, 1)),
        ["valid_from", "has no time zone"],
    ),
    (
        "bad-datetime",
        _body(valid_from="next monday"),
        ["valid_from 'next monday' is not an ISO 8601 date-time", "2026-01-01T00:00:00Z"],
    ),
    (
        "datetime-number",
        _body(valid_to=20270301),
        ["valid_to must be an ISO 8601 date-time string", "got a number"],
    ),
    (
        "to-past",
        _body(valid_from="2026-03-01T00:00:00+08:00", valid_to="2026-03-01T00:00:00+08:00"),
        ["valid_to 2026-02-28T16:00:00Z is not after the time of application"],
    ),
    (
        "to-equals-from",
        _body(valid_from="2027-03-01T00:00:00Z"),
        [
            "valid_to 2027-03-01T00:00:00Z is not after valid_from 2027-03-01T00:00:00Z",
            "must end after it starts",
        ],
    ),
    (
        "to-before-from",
        _body(valid_from="2027-06-01T00:00:00Z"),
        ["is not after valid_from", "must end after it starts"],
    ),
    (
        "term-already-over",
        _body(valid_from="2026-01-01T00:00:00Z", valid_to="2026-02-01T00:00:00Z"),
        ["is not after the time of application 2026-03-01T00:00:00Z", "in the future"],
    ),
    (
        "cap-negative",
        _body(spend_cap="-1.00"),
        ["spend_cap '-1.00' is negative", "omit it for no cap"],
    ),
    (
        "cap-not-decimal",
        _body(spend_cap="五千"),
        ["spend_cap '五千' is not a decimal number", "decimal string"],
    ),
    (
        "cap-float",
        _body(spend_cap=12.5),
        ["spend_cap must be a decimal string, got a number", '"5000.00"'],
    ),
    ("cap-bool", _body(spend_cap=True), ["spend_cap must be a decimal string"]),
    ("cap-nan", _body(spend_cap="NaN"), ["is not a finite number"]),
    ("cap-infinite", _body(spend_cap="Infinity"), ["is not a finite number"]),
    (
        "cap-sub-fen",
        _body(spend_cap="0.005"),
        ["has fractions of a fen", "at most 2 decimal places"],
    ),
    ("cap-too-large", _body(spend_cap="1e40"), ["is too large"]),
    (
        "quota-negative",
        _body(quotas={"jobs_per_day": -1}),
        ["quota 'jobs_per_day' must be a non-negative integer"],
    ),
    (
        "quota-string",
        _body(quotas={"jobs_per_day": "100"}),
        ["quota 'jobs_per_day' must be a non-negative integer", "without quotes"],
    ),
    (
        "quota-float",
        _body(quotas={"jobs_per_day": 1.5}),
        ["quota 'jobs_per_day' must be a non-negative integer"],
    ),
    (
        "quota-bool",
        _body(quotas={"jobs_per_day": True}),
        ["quota 'jobs_per_day' must be a non-negative integer"],
    ),
    ("quotas-not-object", _body(quotas=[100]), ["quotas must be an object"]),
    ("quota-empty-name", _body(quotas={"": 1}), ["quota names must be non-empty strings"]),
]


@pytest.mark.parametrize(
    ("body", "fragments"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID]
)
def test_invalid_applications(body: Any, fragments: list[str]) -> None:
    with pytest.raises(ContractInvalid) as info:
        _parse(body)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, message
    assert info.value.code == "contract_invalid"
    assert isinstance(info.value, ContractError)


def test_empty_catalog_is_named() -> None:
    with pytest.raises(ContractInvalid, match=r"known datasets: \(none\)"):
        parse_application(
            _body(), contract_id="c-1", operator_id="op-1", issued_at=ISSUED, known_columns={}
        )


def test_document_refuses_bad_identity_fields() -> None:
    doc = _parse(_body())
    fields = doc.to_json()
    with pytest.raises(ContractInvalid, match="version must be a positive integer"):
        ContractDocument.from_json({**fields, "version": 0})
    with pytest.raises(ContractInvalid, match="id must be a non-empty string"):
        ContractDocument.from_json({**fields, "id": ""})
    with pytest.raises(ContractInvalid, match="operator_id must be a non-empty string"):
        ContractDocument.from_json({**fields, "operator_id": None})
