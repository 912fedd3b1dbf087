"""Contract terms for disclosure control and differential privacy: strictly validated, and part
of the signed bytes when present (and absent from them when not, so old signatures hold)."""

from datetime import UTC, datetime
from typing import Any

import pytest

from contracts.budget import Epsilon
from contracts.canonical import canonical_bytes
from contracts.document import ContractDocument, parse_application
from contracts.errors import ContractInvalid

CATALOG = {"人口": ["区县", "收入", "身份证号"], "社保": ["缴费基数"]}
LEVELS = {"人口": "L3", "社保": "L4"}
ISSUED = datetime(2026, 3, 1, tzinfo=UTC)
PRIVACY = {"人口": {"epsilon": "1.0", "per_job_epsilon": "0.10"}}


def _body(**changes: Any) -> dict[str, Any]:
    return {
        "datasets": {"人口": {"区县": ["group_by"], "收入": ["aggregate"]}},
        "purpose": "城关区养老服务设施规划",
        "purpose_class": "public_interest",
        "valid_from": "2026-03-01T00:00:00Z",
        "valid_to": "2027-03-01T00:00:00Z",
        **changes,
    }


def _parse(body: Any) -> ContractDocument:
    return parse_application(
        body,
        contract_id="c-12",
        operator_id="op-7",
        issued_at=ISSUED,
        known_columns=CATALOG,
        levels=LEVELS,
    )


def test_terms_parse_normalise_and_round_trip() -> None:
    doc = _parse(_body(privacy=PRIVACY, disclosure={"min_contributors": 20}))
    assert doc.min_contributors == 20
    assert doc.privacy["人口"].epsilon == Epsilon.parse("1")
    assert doc.privacy["人口"].per_job_epsilon == Epsilon.parse("0.1")
    assert doc.to_json()["privacy"] == {"人口": {"epsilon": "1", "per_job_epsilon": "0.1"}}
    assert doc.to_json()["disclosure"] == {"min_contributors": 20}
    assert ContractDocument.from_json(doc.to_json()) == doc


def test_the_terms_change_the_canonical_bytes_only_when_present() -> None:
    plain = _parse(_body())
    assert "privacy" not in plain.to_json() and "disclosure" not in plain.to_json()
    assert plain.min_contributors is None and plain.privacy == {}
    private = _parse(_body(privacy=PRIVACY))
    stricter = _parse(_body(disclosure={"min_contributors": 20}))
    assert len({canonical_bytes(plain), canonical_bytes(private), canonical_bytes(stricter)}) == 3
    assert b'"privacy"' in canonical_bytes(private)
    # One spelling: "1.0" and "1" are the same term, signed as the same bytes.
    same = _parse(_body(privacy={"人口": {"epsilon": "1", "per_job_epsilon": "0.1"}}))
    assert canonical_bytes(same) == canonical_bytes(private)
    assert _parse(_body(privacy={}, disclosure={})).to_json() == plain.to_json()


@pytest.mark.parametrize(
    "privacy, message",
    [
        ({"社保x": {"epsilon": "1", "per_job_epsilon": "0.1"}}, "does not grant"),
        ({"人口": {"epsilon": 1.0, "per_job_epsilon": "0.1"}}, "must be a decimal string"),
        ({"人口": {"epsilon": "1", "per_job_epsilon": "2"}}, "above its total"),
        ({"人口": {"epsilon": "10.5", "per_job_epsilon": "0.1"}}, "out of range"),
        ({"人口": {"epsilon": "0.0005", "per_job_epsilon": "0.0005"}}, "at most 3 decimal places"),
        ({"人口": {"epsilon": "1"}}, "missing 'per_job_epsilon'"),
        ({"人口": "1.0"}, "must be an object"),
        (["人口"], "must be an object mapping dataset names"),
    ],
)
def test_bad_privacy_terms_are_refused_with_a_fix(privacy: Any, message: str) -> None:
    with pytest.raises(ContractInvalid, match=message):
        _parse(_body(privacy=privacy))


@pytest.mark.parametrize(
    "disclosure, message",
    [
        ({"min_contributors": 0}, "from 1 to"),
        ({"min_contributors": "20"}, "whole number"),
        ({"min_contributors": True}, "whole number"),
        ({"dominance": 0.5}, "unknown disclosure term 'dominance'"),
        (20, "must be an object"),
    ],
)
def test_bad_disclosure_terms_are_refused(disclosure: Any, message: str) -> None:
    with pytest.raises(ContractInvalid, match=message):
        _parse(_body(disclosure=disclosure))


def test_an_l4_dataset_is_granted_only_with_privacy_terms() -> None:
    grants = {"社保": {"缴费基数": ["aggregate"]}}
    with pytest.raises(ContractInvalid) as info:
        _parse(_body(datasets=grants))
    assert "L4" in info.value.args[0] and "differential privacy" in info.value.args[0]
    assert '"privacy": {"社保"' in info.value.args[0]
    doc = _parse(
        _body(datasets=grants, privacy={"社保": {"epsilon": "0.5", "per_job_epsilon": "0.05"}})
    )
    assert set(doc.privacy) == {"社保"}


def test_unknown_document_fields_are_still_refused() -> None:
    doc = _parse(_body(privacy=PRIVACY)).to_json()
    with pytest.raises(ContractInvalid, match="unknown field 'delta'"):
        ContractDocument.from_json({**doc, "delta": "1e-6"})
