"""The job language's compile policy: what is refused, where, and how it is explained."""

from __future__ import annotations

import pytest

from sandbox.errors import CompileError
from sandbox.language.policy import MAX_SOURCE_BYTES, check_source, compile_job


def refused(source: str) -> CompileError:
    with pytest.raises(CompileError) as info:
        compile_job(source)
    return info.value


@pytest.mark.parametrize(
    ("source", "line", "hint"),
    [
        ("x = 1\nimport os\n", 2, "imports are not available"),
        ("x = 1\n\nfrom os import path\n", 3, "imports are not available"),
        ("f = open('/etc/passwd')\n", 1, "name 'open' is not available"),
        ("y = 2\neval('1 + 1')\n", 2, "name 'eval' is not available"),
        ("exec('x = 1')\n", 1, "name 'exec' is not available"),
        ("__import__('os')\n", 1, "name '__import__' is not available"),
        ("x = getattr(1, 'real')\n", 1, "name 'getattr' is not available"),
        ("x = 1\ny = x.__class__\n", 2, "__class__"),
        ("x = [].__class__.__bases__\n", 1, "starts with"),
        ("t = table('population')\nc = t._channel\n", 2, "_channel"),
        ("x = 1\n\n\nclass A:\n    pass\n", 4, "classes are not available"),
        ("def g():\n    yield 1\n", 2, "generators are not available"),
        ("def g():\n    yield from [1]\n", 2, "generators are not available"),
        ("x = (i for i in range(3))\n", 1, "list comprehension"),
        ("async def f():\n    pass\n", 1, "async code is not available"),
        ("with x:\n    pass\n", 1, "'with' is not available"),
        ("def f():\n    global y\n", 2, "'global' is not available"),
        ("x = (\n", 1, "syntax error"),
    ],
)
def test_forbidden_code_is_refused_with_its_line_and_a_reason(
    source: str, line: int, hint: str
) -> None:
    err = refused(source)
    assert err.line == line
    assert hint in err.message
    assert err.message.startswith(f"line {line}: ")
    assert err.code == "code_rejected"


def test_an_unknown_name_lists_what_is_available() -> None:
    err = refused("x = open\n")
    for name in ("table", "col", "count", "sum", "mean", "emit", "params"):
        assert name in err.message


def test_an_import_explains_that_everything_is_built_in() -> None:
    assert "table, col, count, sum, mean, emit, params" in refused("import numpy\n").message


def test_the_earliest_violation_is_reported() -> None:
    # A nested violation on line 2 comes before a top-level one on line 4.
    err = refused("def f():\n    import os\n\nimport sys\n")
    assert err.line == 2


def test_code_over_64_kib_is_refused_before_parsing() -> None:
    source = "x = 1\n" * (MAX_SOURCE_BYTES // 6 + 1)
    assert len(source.encode()) > MAX_SOURCE_BYTES
    err = refused(source)
    assert "64 KiB" in err.message
    assert err.line is None


def test_the_limit_counts_utf8_bytes_not_characters() -> None:
    # Each Chinese character is 3 bytes: under the limit in characters, over it in bytes.
    source = "x = '" + "人" * (MAX_SOURCE_BYTES // 3) + "'\n"
    assert len(source) < MAX_SOURCE_BYTES < len(source.encode())
    with pytest.raises(CompileError, match="64 KiB"):
        check_source(source)


def test_code_just_under_the_limit_compiles() -> None:
    source = "x = 1\n" * (MAX_SOURCE_BYTES // 6)
    assert len(source.encode()) <= MAX_SOURCE_BYTES
    assert compile_job(source) is not None


VALID = """
pop = table("population")
old = pop.filter((col("age") >= 65) & col("district").isin(["城关区", "湖滨区"]))
by_d = old.group_by("district").agg(n=count(), avg_income=mean("income"))
res = by_d.collect()
emit("elderly_by_district", res)
total = sum([r[1] for r in res.rows if r[1] is not None])
def share(part, whole):
    return part / whole if whole else 0.0
emit("share", share(res.column("n")[0], total))
f = lambda x: x + 1
for i, row in enumerate(res.rows):
    a, b = row[0], row[1]
try:
    v = params["threshold"]
except KeyError:
    v = 10
print("rows", len(res))
"""


def test_a_program_in_the_job_language_compiles() -> None:
    code = compile_job(VALID)
    assert code.co_filename == "<job>"


def test_names_bound_anywhere_in_the_program_are_known() -> None:
    source = "def f(a, *rest, k=1, **kw):\n    return a\nfor q in [1]:\n    pass\nz = f(q)\n"
    assert compile_job(source) is not None


def test_an_unknown_method_names_what_exists() -> None:
    from sandbox.language.api import Table
    from sandbox.language.plan import Scan
    from sandbox.language.policy import guarded_getattr

    table = Table(Scan("population"), channel=None)  # type: ignore[arg-type]
    with pytest.raises(
        AttributeError, match="Table has no attribute 'pivot'; available: .*filter.*join"
    ):
        guarded_getattr(table, "pivot")
    assert guarded_getattr(table, "pivot", "fallback") == "fallback"
    with pytest.raises(AttributeError):
        guarded_getattr(table, "_node")  # private names stay refused


def test_min_and_max_in_job_code_are_aggregates_of_columns_and_pythons_of_values() -> None:
    from typing import Any

    from sandbox.language.api import Aggregate, namespace
    from sandbox.language.policy import restricted_globals

    class NoChannel:
        def collect(self, plan: Any) -> dict[str, Any]:
            raise AssertionError("not used")

        def emit(self, name: str, value: Any) -> None:
            raise AssertionError("not used")

    scope = restricted_globals(namespace(NoChannel(), {}))
    exec(
        compile_job("a = min('age')\nb = max(col('age'))\nc = min([3, 1])\nd = max(2, 5)\n"), scope
    )
    assert isinstance(scope["a"], Aggregate) and isinstance(scope["b"], Aggregate)
    assert (scope["c"], scope["d"]) == (1, 5)


def test_compiling_a_checked_source_does_not_check_it_again() -> None:
    # Submission and the check endpoint parse and check the source once, then compile it.
    from unittest import mock

    from sandbox.language import policy

    with mock.patch.object(policy, "check_source", wraps=policy.check_source) as checked:
        assert policy.compile_checked(VALID) is not None
        assert checked.call_count == 0
        assert policy.compile_job(VALID) is not None
        assert checked.call_count == 1
    with pytest.raises(CompileError):
        policy.compile_job("import os\n")  # compile_job alone still applies the rules
