"""Plan validation: types, columns, identifier refusal, lineage and the usage map."""

from __future__ import annotations

from typing import Any

import pytest
from plans import NoChannel

from sandbox.catalog.models import ColumnInfo, DatasetInfo
from sandbox.engine.validate import CheckedPlan, Field, _Typer, check_plan, kind_of
from sandbox.errors import DisclosureRefused, PlanError
from sandbox.language import plan as p
from sandbox.language.api import (
    Expr,
    Table,
    case,
    col,
    count,
    count_distinct,
    lit,
    max_,
    mean,
    min_,
    quantile,
    std,
    sum_,
    var,
)

PEOPLE = DatasetInfo(
    name="people",
    title="人口",
    provider_id="pr-1",
    level="L3",
    row_count=100,
    columns=(
        ColumnInfo("resident_id", "string", "identifier"),
        ColumnInfo("serial", "int64", "identifier"),
        ColumnInfo("district", "string", "attribute"),
        ColumnInfo("age", "int64", "quasi_identifier", distinct=90),
        ColumnInfo("income", "double", "sensitive"),
        ColumnInfo("birth_date", "date32[day]", "quasi_identifier"),
        ColumnInfo("employed", "bool", "attribute"),
    ),
    partitions=(),
)


def people() -> Table:
    return Table(p.Scan("people"), NoChannel())


def check(t: Table) -> CheckedPlan:
    return check_plan(t._node, {"people": PEOPLE})


def plan_error(t: Table) -> str:
    with pytest.raises(PlanError) as info:
        check(t)
    return info.value.message


@pytest.mark.parametrize(
    ("arrow", "kind"),
    [
        ("int64", "int"),
        ("uint8", "int"),
        ("double", "float"),
        ("decimal128(10, 2)", "float"),
        ("string", "string"),
        ("large_string", "string"),
        ("date32[day]", "date"),
        ("timestamp[us]", "date"),
        ("bool", "bool"),
        ("list<item: int64>", "other"),
    ],
)
def test_kind_of_arrow_types(arrow: str, kind: str) -> None:
    assert kind_of(arrow) == kind


def test_comparing_a_string_column_with_an_int_names_the_expression() -> None:
    message = plan_error(people().filter(col("district") == 3).agg(n=count()))
    assert "eq(col('district'), 3)" in message
    assert "string and int" in message


def test_year_of_a_non_date_names_the_expression() -> None:
    message = plan_error(people().filter(col("age").year() == 1990).agg(n=count()))
    assert "year(col('age'))" in message and "a date column" in message


def test_bucket_with_non_increasing_edges_names_the_expression() -> None:
    message = plan_error(
        people().derive(b=col("age").bucket([60, 18])).group_by("b").agg(n=count())
    )
    assert "bucket(col('age'), [60, 18])" in message
    assert "strictly increasing" in message
    message = plan_error(
        people().derive(b=col("age").bucket([18, 18])).group_by("b").agg(n=count())
    )
    assert "bucket(col('age'), [18, 18])" in message


@pytest.mark.parametrize(
    ("build", "fragment"),
    [
        (lambda t: t.filter(col("age") + "x" > 1), "add needs numbers"),
        (lambda t: t.filter(col("age")), "needs a condition"),
        (lambda t: t.filter((col("age") > 1) & col("age")), "and needs conditions"),
        (lambda t: t.filter(col("district").isin([1, 2])), "list values of the column's type"),
        (lambda t: t.filter(col("age").between("a", 9)), "between needs values of comparable"),
        (lambda t: t.filter(col("age").startswith("1")), "a string column and a literal string"),
        (lambda t: t.filter(col("district").startswith(col("district"))), "literal string"),
        (lambda t: t.derive(b=col("district").bucket([1, 2])).group_by("b"), "numeric column"),
        (lambda t: t.filter(col("age") == lit([1, 2])), "only be used with isin() or bucket()"),
    ],
)
def test_type_errors_are_plan_errors(build: Any, fragment: str) -> None:
    assert fragment in plan_error(build(people()).agg(n=count()))


def test_sum_of_a_string_is_refused_as_not_numeric() -> None:
    assert "sum(col('district')) needs a numeric column, got string" in plan_error(
        people().agg(s=sum_("district"))
    )


def test_an_unknown_column_lists_the_available_ones() -> None:
    message = plan_error(people().filter(col("salary") > 1).agg(n=count()))
    assert "'salary'" in message
    assert "age, birth_date, district, employed, income, resident_id, serial" in message


def test_an_unknown_group_key_lists_the_available_ones_including_derived() -> None:
    message = plan_error(
        people().derive(band=col("age").bucket([18])).group_by("nope").agg(n=count())
    )
    assert "group_by(): no column 'nope'" in message and "band" in message


def test_select_narrows_what_later_steps_see() -> None:
    message = plan_error(people().select("district").group_by("district").agg(s=sum_("income")))
    assert "no column 'income'" in message and "available: district" in message


def test_derived_columns_see_the_table_before_their_derive() -> None:
    assert "no column 'x'" in plan_error(people().derive(x=col("age"), y=col("x")).agg(n=count()))


def test_dates_compare_with_iso_strings() -> None:
    checked = check(people().filter(col("birth_date") >= "1960-01-01").agg(n=count()))
    assert checked.usage == {"people": {"birth_date": frozenset({"filter"})}}


def test_an_unknown_dataset_lists_the_available_ones() -> None:
    t = Table(p.Scan("secret"), NoChannel()).agg(n=count())
    with pytest.raises(PlanError, match="'secret' is not available to this job; available: people"):
        check(t)


def test_only_an_aggregate_can_be_checked() -> None:
    with pytest.raises(PlanError, match="only aggregated tables"):
        check_plan(p.Scan("people"), {"people": PEOPLE})


def test_an_aggregate_cannot_be_aggregated_again() -> None:
    inner = p.Aggregate(p.Scan("people"), ("district",), (("n", p.Agg("count")),))
    outer = p.Aggregate(inner, (), (("m", p.Agg("count")),))
    with pytest.raises(PlanError, match="cannot be aggregated again"):
        check_plan(outer, {"people": PEOPLE})


@pytest.mark.parametrize(
    "build",
    [
        lambda t: t.group_by("resident_id").agg(n=count()),
        lambda t: t.derive(x=col("resident_id")).group_by("x").agg(n=count()),
        lambda t: (
            t.derive(x=col("serial") + col("age"))
            .derive(y=col("x") * 2)
            .group_by("y")
            .agg(n=count())
        ),
        lambda t: t.derive(b=col("serial").bucket([1000])).group_by("district", "b").agg(n=count()),
    ],
)
def test_grouping_by_an_identifier_or_anything_derived_from_one_is_refused(build: Any) -> None:
    with pytest.raises(DisclosureRefused) as info:
        check(build(people()))
    assert "identifiers can never be grouped by" in info.value.message
    assert info.value.code == "disclosure_refused"


@pytest.mark.parametrize("agg", [sum_("serial"), mean("serial"), sum_(col("serial") * 0 + 1)])
def test_aggregating_an_identifier_is_refused(agg: Any) -> None:
    with pytest.raises(DisclosureRefused, match="identifier column 'serial' is not allowed"):
        check(people().group_by("district").agg(v=agg))


def test_counting_rows_filtered_on_an_identifier_is_a_filter_use() -> None:
    checked = check(people().filter(col("resident_id").startswith("4399")).agg(n=count()))
    assert checked.usage == {"people": {"resident_id": frozenset({"filter"})}}


def test_usage_follows_lineage_through_derived_columns() -> None:
    t = (
        people()
        .derive(band=col("age").bucket([18, 60]), ratio=col("income") / (col("age") + 1))
        .filter((col("band") != "< 18") & col("employed"))
        .group_by("district", "band")
        .agg(n=count(), total=sum_("ratio"), avg=mean("income"))
    )
    checked = check(t)
    assert checked.usage == {
        "people": {
            "age": frozenset({"filter", "group_by", "aggregate"}),
            "district": frozenset({"group_by"}),
            "employed": frozenset({"filter"}),
            "income": frozenset({"aggregate"}),
        }
    }
    assert checked.output_kinds == (
        ("district", "string"),
        ("band", "string"),
        ("n", "int"),
        ("total", "float"),
        ("avg", "float"),
    )


def test_scan_columns_are_the_minimal_set_in_catalog_order() -> None:
    t = (
        people()
        .derive(unused=col("resident_id"), x=col("income") * 2)
        .select("district", "x", "age", "unused")
        .filter(col("x") > 0)
        .group_by("district")
        .agg(n=count())
    )
    assert check(t).scan_columns == ("district", "income")
    assert check(people().agg(n=count())).scan_columns == ()
    assert check(people().group_by("age").agg(s=sum_("income"))).scan_columns == ("age", "income")


def test_output_kinds_follow_the_aggregates() -> None:
    checked = check(people().agg(n=count(), s=sum_("age"), f=sum_("income"), m=mean("age")))
    assert checked.output_kinds == (("n", "int"), ("s", "int"), ("f", "float"), ("m", "float"))
    assert checked.dataset is PEOPLE


def test_a_fine_quasi_identifier_is_grouped_only_when_coarsened() -> None:
    fine = DatasetInfo(
        "people",
        "t",
        "p",
        "L3",
        100,
        (
            ColumnInfo("district", "string", "attribute"),
            ColumnInfo("birth_date", "date32[day]", "quasi_identifier", distinct=5000),
            ColumnInfo("income", "int64", "sensitive"),
        ),
        (),
    )

    def plan(keys: tuple[str, ...], derive: tuple[tuple[str, p.Expr], ...] = ()) -> p.Aggregate:
        node: p.Node = p.Scan("people")
        if derive:
            node = p.Derive(node, derive)
        return p.Aggregate(node, keys, (("n", p.Agg("count")),))

    with pytest.raises(DisclosureRefused, match="'birth_date'.*coarsened"):
        check_plan(plan(("birth_date",)), {"people": fine})
    with pytest.raises(DisclosureRefused, match="'birth_date'"):  # renaming keeps it fine
        check_plan(plan(("d",), (("d", p.Col("birth_date")),)), {"people": fine})
    year = p.Call("year", (p.Col("birth_date"),))
    check_plan(plan(("y",), (("y", year),)), {"people": fine})
    check_plan(plan(("a",), (("a", p.Call("sub", (p.Lit(2024), year))),)), {"people": fine})
    unknown = DatasetInfo(
        "people",
        "t",
        "p",
        "L3",
        100,
        (ColumnInfo("birth_date", "date32[day]", "quasi_identifier"),),
        (),
    )
    with pytest.raises(DisclosureRefused):  # no recorded cardinality: assume fine-grained
        check_plan(plan(("birth_date",)), {"people": unknown})


@pytest.mark.parametrize("fn", [min_, max_])
@pytest.mark.parametrize(
    ("column", "role"),
    [("age", "quasi-identifier"), ("income", "sensitive"), ("serial", "identifier")],
)
def test_min_and_max_are_refused_on_columns_that_are_not_attributes(
    fn: Any, column: str, role: str
) -> None:
    with pytest.raises(DisclosureRefused) as info:
        check(people().agg(x=fn(col(column) + 1)))
    message = info.value.message
    assert repr(column) in message or "identifier" in message
    if role != "identifier":
        assert f"a {role} column" in message and "one individual's value" in message


def test_min_and_max_of_attributes_keep_the_column_type() -> None:
    c = check(people().derive(d=col("district")).agg(lo=min_("d"), hi=max_("district")))
    assert c.output_kinds == (("lo", "string"), ("hi", "string"))
    assert c.usage["people"]["district"] == frozenset({"aggregate"})


def test_min_of_a_boolean_is_a_type_error() -> None:
    assert "needs a number, string or date" in plan_error(people().agg(x=min_("employed")))


def test_new_aggregates_have_their_output_kinds() -> None:
    c = check(
        people()
        .group_by("district")
        .agg(d=count_distinct("resident_id"), v=var("age"), s=std("income"), q=quantile("age", 0.5))
    )
    assert c.output_kinds == (
        ("district", "string"),
        ("d", "int"),
        ("v", "float"),
        ("s", "float"),
        ("q", "float"),
    )
    assert c.usage["people"]["resident_id"] == frozenset({"aggregate"})


@pytest.mark.parametrize(
    "agg", [lambda: var("district"), lambda: std("birth_date"), lambda: quantile("district", 0.5)]
)
def test_var_std_quantile_need_numbers(agg: Any) -> None:
    assert "needs a numeric column" in plan_error(people().agg(x=agg()))


@pytest.mark.parametrize("agg", [lambda: var("serial"), lambda: quantile("serial", 0.5)])
def test_var_and_quantile_of_an_identifier_are_refused(agg: Any) -> None:
    with pytest.raises(DisclosureRefused, match="identifier column 'serial'"):
        check(people().agg(x=agg()))


def test_quantiles_derived_from_sensitive_columns_are_coarsened() -> None:
    c = check(
        people()
        .derive(k=col("income") / 1000)
        .agg(a=quantile("k", 0.5), b=quantile("age", 0.5), m=mean("income"))
    )
    assert c.coarsen == ("a",)


@pytest.mark.parametrize(
    ("build", "kind"),
    [
        (lambda: col("age").cast("float"), "float"),
        (lambda: col("district").cast("int"), "int"),
        (lambda: col("birth_date").cast("string"), "string"),
        (lambda: col("income").abs(), "float"),
        (lambda: col("age").round(-1), "int"),
        (lambda: case((col("age") > 60, 1), default=0.5), "float"),
        (lambda: case((col("age") > 60, "老"), default=None), "string"),
    ],
)
def test_kinds_of_new_expressions(build: Any, kind: str) -> None:
    schema = {c.name: Field(kind_of(c.type), frozenset({c.name})) for c in PEOPLE.columns}
    assert _Typer(schema).kind(build()._node) == kind
    check(people().derive(x=build()).agg(n=count_distinct("x")))  # and it runs through check


@pytest.mark.parametrize(
    ("build", "fragment"),
    [
        (lambda: col("birth_date").cast("int"), "to become int"),
        (lambda: col("district").abs(), "needs a number"),
        (lambda: Expr(p.Call("round", (p.Col("age"), p.Lit(1.5)))), "whole number of digits"),
        (lambda: Expr(p.Call("cast", (p.Col("age"), p.Lit("date")))), "one of 'int', 'float'"),
        (lambda: case((col("age"), 1), default=0), "conditions (booleans)"),
        (lambda: case((col("age") > 1, 1), default="x"), "values of one type"),
    ],
)
def test_new_expression_type_errors_name_the_expression(build: Any, fragment: str) -> None:
    assert fragment in plan_error(people().derive(x=build()).agg(n=count()))


def test_case_of_literal_values_is_coarse_enough_to_group_by() -> None:
    t = people().derive(band=case((col("age") >= 65, "老"), default="其他"))
    assert check(t.group_by("band").agg(n=count())).output_kinds[0] == ("band", "string")
