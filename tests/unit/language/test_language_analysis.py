"""Static facts about a job's source, used to quote it and to refuse early."""

from __future__ import annotations

from sandbox.language.analysis import CodeFacts, analyse
from sandbox.language.policy import check_source


def facts(source: str) -> CodeFacts:
    return analyse(check_source(source))


JOB = """
pop = table("population")
firms = table("enterprises")
old = pop.filter((col("age") >= 65) & col("hukou_type").isin(["本地"]))
by_d = old.derive(band=col("age").bucket([65, 80])).group_by("district", "band").agg(
    n=count(), total=sum("income"), avg=mean("income"))
res = by_d.collect()
emit("elderly", res)
emit("share", res.column("n")[0] / 100)
emit("firms", firms.select("industry").agg(k=count()).collect())
"""


def test_literal_dataset_names_are_known() -> None:
    f = facts(JOB)
    assert f.datasets == frozenset({"population", "enterprises"})


def test_collect_and_emit_call_sites_are_counted() -> None:
    f = facts(JOB)
    assert f.collects == 2
    assert f.emits == 3


def test_loops_count_call_sites_not_iterations() -> None:
    f = facts(
        "t = table('p').agg(n=count())\nfor i in range(9):\n    emit('x' + str(i), t.collect())\n"
    )
    assert (f.collects, f.emits) == (1, 1)


def test_literal_column_names_are_collected() -> None:
    f = facts(JOB)
    assert f.columns == frozenset({"age", "hukou_type", "district", "band", "income", "industry"})


def test_names_the_code_defines_are_derived_or_aggregate_names() -> None:
    assert facts(JOB).defined == frozenset({"band", "n", "total", "avg", "k"})


def test_a_computed_dataset_name_makes_the_datasets_dynamic() -> None:
    assert facts("name = params['d']\nt = table(name)\n").datasets is None
    assert facts("t = table('pop' + 'ulation')\n").datasets is None
    assert facts("t = table()\n").datasets is None


def test_code_without_tables_has_no_datasets() -> None:
    f = facts("emit('answer', 42)\n")
    assert f.datasets == frozenset()
    assert (f.collects, f.emits, f.columns) == (0, 1, frozenset())


def test_sum_of_a_list_names_no_column() -> None:
    assert facts("x = sum([1, 2])\n").columns == frozenset()


NEW_AGGREGATES = """
t = table("population")
r = t.group_by("district").agg(d=count_distinct("hukou_type"), v=var("income"),
    s=std(col("age") * 2), lo=min("birth_year"), hi=max("birth_year"),
    q=quantile("wage", 0.5))
h = t.histogram("savings", [0, 1000, 5000]).collect()
x = min([1, 2]) + max(3, 4)
"""


def test_new_aggregates_count_their_columns_as_aggregated() -> None:
    f = facts(NEW_AGGREGATES)
    for column in ("hukou_type", "income", "age", "birth_year", "wage"):
        assert f.uses[column] == frozenset({"aggregate"}), column
    assert f.columns >= {"hukou_type", "income", "age", "birth_year", "wage", "savings"}


def test_a_histogram_column_is_grouped_by_and_defines_bin_and_n() -> None:
    f = facts(NEW_AGGREGATES)
    assert f.uses["savings"] == frozenset({"group_by"})
    assert {"bin", "n"} <= f.defined


def test_min_and_max_of_python_values_name_no_column() -> None:
    f = facts("x = min([1, 2]) + max(3, 4)\n")
    assert f.columns == frozenset() and f.uses == {}
