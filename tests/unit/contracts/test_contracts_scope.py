from datetime import UTC, datetime

import pytest

from contracts.document import ContractDocument
from contracts.errors import ContractScopeError
from contracts.scope import check_scope

DOC = ContractDocument(
    id="c-12",
    version=1,
    operator_id="op-7",
    datasets={
        "population": {
            "district": ("group_by", "filter"),
            "name": ("filter", "aggregate"),
            "age": ("filter",),
        },
        "人口": {"区县": ("group_by",)},
    },
    purpose="elderly care planning",
    purpose_class="public_interest",
    valid_from=datetime(2026, 3, 1, tzinfo=UTC),
    valid_to=datetime(2027, 3, 1, tzinfo=UTC),
    quotas={},
    spend_cap=None,
    issued_at=datetime(2026, 2, 20, tzinfo=UTC),
)


@pytest.mark.parametrize(
    "usage",
    [
        {},
        {"population": {}},
        {"population": {"district": ["group_by"], "age": {"filter"}}},
        {
            "population": {"district": ("filter", "group_by"), "name": ["aggregate"]},
            "人口": {"区县": ["group_by"]},
        },
    ],
)
def test_usage_within_the_grants_passes(usage: dict) -> None:
    check_scope(DOC, usage)


def _message(usage: dict) -> str:
    with pytest.raises(ContractScopeError) as info:
        check_scope(DOC, usage)
    assert info.value.code == "contract_scope"
    return str(info.value)


def test_use_not_granted() -> None:
    message = _message({"population": {"name": ["group_by"]}})
    assert message.startswith(
        "column 'name' is not granted for group_by in contract c-12; granted uses: filter, aggregate"
    )
    assert "dataset 'population'" in message
    assert "apply for a contract that grants it" in message


def test_dataset_not_granted() -> None:
    message = _message({"enterprises": {"industry": ["group_by"]}})
    assert message.startswith(
        "dataset 'enterprises' is not part of contract c-12; granted datasets: population, 人口"
    )


def test_column_not_granted() -> None:
    message = _message({"人口": {"身份证号": ["join"]}})
    assert message.startswith(
        "column '身份证号' of dataset '人口' is not granted in contract c-12; granted columns: 区县"
    )


def test_first_problem_in_deterministic_order() -> None:
    usage_a = {"population": {"name": ["join", "group_by"], "district": ["aggregate"]}, "zzz": {}}
    usage_b = {"zzz": {}, "population": {"district": ["aggregate"], "name": ["group_by", "join"]}}
    # Datasets by name: population before zzz; columns by name: district before name.
    assert _message(usage_a) == _message(usage_b)
    assert _message(usage_a).startswith("column 'district' is not granted for aggregate")


def test_uses_checked_in_uses_order() -> None:
    assert _message({"population": {"age": ["join", "group_by"]}}).startswith(
        "column 'age' is not granted for group_by"
    )


def test_unknown_use_is_reported() -> None:
    assert _message({"population": {"age": ["filter", "pivot"]}}).startswith(
        "column 'age' is not granted for pivot in contract c-12; granted uses: filter"
    )
