"""The language reference and the editor stub: complete, up to date, and true to the engine."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path
from typing import Any

import pytest
from mypy import api as mypy_api
from plans import NoChannel

from sandbox.catalog.models import ColumnInfo, DatasetInfo
from sandbox.engine.validate import check_plan
from sandbox.errors import PlanError
from sandbox.language import api, reference
from sandbox.language import plan as p
from sandbox.language.policy import compile_job, restricted_globals

# One column of each kind, all attributes, so that only kinds decide what is refused.
COLUMNS = {
    "int": ColumnInfo("c_int", "int64", "attribute"),
    "float": ColumnInfo("c_float", "double", "attribute"),
    "string": ColumnInfo("c_string", "string", "attribute"),
    "date": ColumnInfo("c_date", "date32[day]", "attribute"),
    "bool": ColumnInfo("c_bool", "bool", "attribute"),
}
KINDS_TABLE = DatasetInfo(
    name="kinds",
    title="kinds",
    provider_id="pr-1",
    level="L1",
    row_count=10,
    columns=tuple(COLUMNS.values()),
    partitions=(),
)
RELEASED = {
    "kind": "table",
    "columns": [
        {"name": "district", "type": "string"},
        {"name": "gender", "type": "string"},
        {"name": "n", "type": "int64"},
    ],
    "rows": [["城关区", "女", 30], ["城关区", "男", 28], ["北山区", "女", None]],
    "suppressed": [[2, "n"]],
}
PRELUDE = 'pop = table("population")\nres = pop.group_by("district").agg(n=count()).collect()\n'


class CannedChannel:
    """Answers every collect with one released table, as the driver would."""

    def __init__(self) -> None:
        self.emitted: dict[str, Any] = {}

    def collect(self, plan: Any) -> dict[str, Any]:
        p.plan_from_json(plan)  # the plan crosses to the driver as JSON: it must read back
        return RELEASED

    def emit(self, name: str, value: Any) -> None:
        self.emitted[name] = value


def test_the_committed_reference_and_stub_are_up_to_date() -> None:
    for path, text in reference.outputs():
        assert path.read_text(encoding="utf-8") == text, (
            f"{path.name} is out of date: run python -m sandbox.language.reference"
        )
    assert reference.main(["--check"]) == 0


def test_every_name_and_method_is_documented() -> None:
    assert reference.missing() == []
    documented = {m.key for m in reference.everything()}
    assert set(api.LANGUAGE_NAMES) <= documented
    assert {"Table.filter", "Grouped.agg", "Expr.year", "Aggregate.round", "Released.pivot"} <= (
        documented
    )
    text = reference.render()
    for name in api.LANGUAGE_NAMES:
        assert f"### `{name}" in text


def test_a_new_method_without_docs_stops_the_generator(monkeypatch: pytest.MonkeyPatch) -> None:
    def rollup(self: api.Table) -> api.Table:
        return self

    monkeypatch.setattr(api.Table, "rollup", rollup, raising=False)
    gaps = reference.missing()
    assert "Table.rollup: no description; write its docstring (sandbox/language/api.py)" in (gaps)
    assert "Table.rollup: no example in EXAMPLES" in gaps
    assert any(g.startswith("Table.rollup: no entry in NEEDS") for g in gaps)
    with pytest.raises(reference.ReferenceIncomplete, match="rollup"):
        reference.render()
    assert reference.main([]) == 1


def test_a_new_aggregate_must_be_a_documented_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(p.AGGREGATES, "mode", True)
    assert "aggregate mode: not a name of the language (api.LANGUAGE_NAMES)" in (
        reference.missing()
    )


@pytest.mark.parametrize("key", sorted(reference.EXAMPLES))
def test_each_example_is_a_job_the_language_runs(key: str) -> None:
    source = PRELUDE + reference.EXAMPLES[key] + "\n"
    code = compile_job(source)
    channel = CannedChannel()
    exec(code, restricted_globals(api.namespace(channel, {"year": 1959})))


def _kinds_accepted(build: Any) -> dict[str, frozenset[str]]:
    """Each kind of column the engine accepts in the plan `build` makes, with the uses the
    plan makes of that column."""
    accepted = {}
    for kind, column in COLUMNS.items():
        table = api.Table(p.Scan("kinds"), NoChannel())
        try:
            checked = check_plan(build(table, column.name)._node, {"kinds": KINDS_TABLE})
        except PlanError:
            continue
        accepted[kind] = checked.usage["kinds"].get(column.name, frozenset())
    return accepted


def _required(fn: Any) -> int:
    params = inspect.signature(fn).parameters.values()
    return sum(1 for q in params if q.default is q.empty and q.kind is q.POSITIONAL_OR_KEYWORD)


AGGREGATE_ARGS = {"quantile": (0.5,)}


def _aggregates_of_a_column() -> list[str]:
    bound = api.namespace(NoChannel(), {})
    return [
        name
        for name in api.LANGUAGE_NAMES
        if name in reference.NEEDS
        and reference.NEEDS[name].kinds
        and reference.returns(bound[name]) in ("Aggregate", "Any")
    ]


@pytest.mark.parametrize("name", _aggregates_of_a_column())
def test_the_kinds_and_uses_of_each_aggregate_are_the_engines(name: str) -> None:
    make = api.namespace(NoChannel(), {})[name]
    extra = AGGREGATE_ARGS.get(name, ())
    if _required(make) > 1 + len(extra):
        pytest.skip(f"{name} takes more than a column; its example covers it")
    accepted = _kinds_accepted(lambda t, c: t.agg(v=make(api.col(c), *extra)))
    needs = reference.NEEDS[name]
    assert set(accepted) == set(needs.kinds)
    assert all(uses == set(needs.uses) for uses in accepted.values()), accepted


UNARY = [
    m.name
    for m in reference.members(api.Expr)
    if not m.is_operator and m.function is not None and _required(m.function) == 1
]


@pytest.mark.parametrize("method", UNARY)
def test_the_kinds_of_each_expression_method_are_the_engines(method: str) -> None:
    accepted = _kinds_accepted(
        lambda t, c: t.derive(v=getattr(api.col(c), method)()).agg(n=api.count())
    )
    assert set(accepted) == set(reference.NEEDS[f"Expr.{method}"].kinds)


OPERATORS = [
    m.name
    for m in reference.members(api.Expr)
    if m.is_operator and reference.OPERATORS[m.name].function is not None
]


@pytest.mark.parametrize("dunder", OPERATORS)
def test_the_kinds_of_each_operator_are_the_engines(dunder: str) -> None:
    def build(t: api.Table, c: str) -> api.Table:
        operand = api.col(c)
        # A column against itself: the kinds two operands of one kind may have.
        method = getattr(operand, dunder)
        made = method() if _required(method) == 0 else method(api.col(c))
        return t.derive(v=made).agg(n=api.count())

    assert set(_kinds_accepted(build)) == set(reference.NEEDS[f"Expr.{dunder}"].kinds)


def test_the_stub_parses_and_names_every_language_name() -> None:
    tree = ast.parse(reference.render_stub())
    defined = {
        node.name if isinstance(node, ast.FunctionDef | ast.ClassDef) else node.target.id  # type: ignore[attr-defined]
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.ClassDef | ast.AnnAssign)
    }
    assert set(api.LANGUAGE_NAMES) <= defined
    assert set(api.LANGUAGE_TYPES) <= defined
    table = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Table")
    methods = {n.name for n in table.body if isinstance(n, ast.FunctionDef)}
    assert {"filter", "derive", "group_by", "agg", "collect"} <= methods


JOB = """\
from sandbox_job import *

pop = table("population")
aged = pop.derive(age=params["year"] - col("birth_date").year()).filter(col("age") >= 60)
res = (
    aged.derive(band=col("age").bucket([60, 70, 80]))
    .group_by("district", "band")
    .agg(n=count(), total=sum("income"), avg=mean("income").round(-2))
    .collect()
)
emit("by_district", res.sort("n", descending=True).head(5))
emit("groups", len(res))
n: int = len(res.rows)
"""

WRONG_JOB = """\
from sandbox_job import *

pop = table("population")
pop.order_by("district")
"""


def _mypy(tmp_path: Path, job: str) -> tuple[str, int]:
    (tmp_path / "sandbox_job.pyi").write_text(reference.render_stub(), encoding="utf-8")
    (tmp_path / "job.py").write_text(job, encoding="utf-8")
    out, err, status = mypy_api.run(
        [
            "--strict",
            "--no-incremental",
            "--cache-dir",
            str(tmp_path / ".mypy_cache"),
            "--config-file",
            "",
            str(tmp_path / "job.py"),
            str(tmp_path / "sandbox_job.pyi"),
        ]
    )
    return out + err, status


def test_mypy_accepts_a_job_written_against_the_stub(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    output, status = _mypy(tmp_path, JOB)
    assert status == 0, output


def test_mypy_refuses_a_method_the_language_lacks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    output, status = _mypy(tmp_path, WRONG_JOB)
    assert status == 1 and '"Table" has no attribute "order_by"' in output, output
