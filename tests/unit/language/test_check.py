"""The source check: what it finds is what the job would certainly meet at run time, and it
finds nothing in code the language runs."""

from __future__ import annotations

import ast

import pytest

from sandbox.language import api
from sandbox.language.check import members, problems


def found(code: str) -> list[tuple[int | None, str, str]]:
    return [(p.line, p.severity, p.message) for p in problems(ast.parse(code))]


def test_members_are_read_from_the_language_itself() -> None:
    assert members(api.Table)["group_by"] is api.Grouped
    assert members(api.Grouped) == {"agg": api.Table}
    assert members(api.Released)["sort"] is api.Released
    assert members(api.Expr)["age_at"] is api.Expr
    assert "rows" in members(api.Released) and members(api.Released)["rows"] is None


@pytest.mark.parametrize(
    "code",
    [
        # Names bound more than once are not followed: nothing certain to say about them.
        't = table("population")\nt = 3\nt.order_by("x")',
        'for t in [table("population")]:\n    t.order_by("x")',
        # A parameter, an exception or a pattern of the same name is another binding.
        't = table("population")\ndef f(t):\n    return t.order_by("x")',
        't = table("population")\nf = lambda t: t.order_by("x")',
        't = table("population")\ntry:\n    x = 1\nexcept ValueError as t:\n    t.order_by("x")',
        't = table("population")\nmatch 1:\n    case t:\n        t.order_by("x")',
        # Methods the language has; Python's own on plain values.
        'r = table("p").group_by("d").agg(n=count()).collect()\nx = r.rows\ny = [1].count(1)',
        'x = col("a").isin([1]).between(0, 1)',
        # count_distinct takes a condition; min/max are refused by other rules, not here.
        'table("p").agg(n=count_distinct(col("a") > 1))',
        # Python's sum, min and max of released values; a function of the job's own name.
        "x = min(1, 2, 3)\ny = sum([1, 2], 0)\nz = max([1], default=0)",
        "def share(a, b, c):\n    return a\nshare(1, 2, 3)",
        # What *args and **kwargs hold is known only when the job runs.
        'k = {"descending": True}\nr = table("p").agg(n=count()).collect()\nr.sort("n", **k)',
    ],
)
def test_nothing_is_found_where_nothing_is_certain(code: str) -> None:
    assert [p for p in found(code) if p[1] == "error"] == []


def test_what_is_found_comes_with_its_line() -> None:
    code = (
        'p = table("population")\n'
        'g = p.group_by("district")\n'
        'x = g.agg(n=count()).collect().order_by("n")\n'
        'flag = (col("age") >= 65) & col("d").isin(["a"])\n'
        "y = p.agg(s=mean(flag))\n"
        "while True:\n"
        '    emit("z", p.agg(n=count()).collect())\n'
    )
    assert [(line, sev) for line, sev, _ in found(code)] == [
        (3, "error"),
        (5, "error"),
        (7, "warning"),
        (7, "warning"),
    ]
    messages = [m for _, _, m in found(code)]
    assert "a released table has no 'order_by'" in messages[0]
    assert "mean() of a condition" in messages[1]


@pytest.mark.parametrize(
    "code, message",
    [
        (
            'r = table("p").group_by("d").agg(n=count()).collect()\nr.sort("n", desc=True)',
            "sort(): got an unexpected keyword argument 'desc'; it takes: column, descending",
        ),
        ('emit("x", 1, 2)', "emit(): too many positional arguments; it takes: name, value"),
        ('c = count_if(col("a") > 1, 2)', "count_if(): too many positional arguments"),
        ('x = col("a").bucket()', "bucket(): missing a required argument: 'edges'"),
        ('x = share(count(), within_keys="d")', "unexpected keyword argument 'within_keys'"),
    ],
)
def test_a_call_the_language_cannot_take_is_found_free(code: str, message: str) -> None:
    (problem,) = found(code)
    assert problem[1] == "error" and message in problem[2], problem
