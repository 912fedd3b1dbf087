"""Straight-line jobs: what is read from their code is what their job process would send, and
whatever leaves the fragment is left to the job process."""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks.queries import QUERIES
from sandbox.jail.process import Limits, run_in_jail
from sandbox.jail.protocol import as_sent
from sandbox.language import straight
from sandbox.language.straight import Collect, Emit

BODY = {
    "kind": "table",
    "columns": [{"name": "district"}, {"name": "n"}],
    "rows": [["城关区", 30]],
    "suppressed": [],
}


class Recording:
    """What a job process sends, each collect() answered with the same released table."""

    def __init__(self) -> None:
        self.sent: list[tuple[Any, ...]] = []

    def collect(self, plan: Any) -> dict[str, Any]:
        self.sent.append(("collect", plan))
        return BODY

    def emit(self, name: Any, value: Any) -> None:
        self.sent.append(("emit", name, value))


def read(code: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
    """The requests read from the code, as the driver receives them."""
    found = straight.requests(code, params or {})
    assert found is not None, "expected a straight-line job"
    out: list[tuple[Any, ...]] = []
    for r in found:
        if isinstance(r, Collect):
            out.append(("collect", as_sent(r.plan)))
        else:
            value = (
                straight.reordered(BODY, r.steps)
                if r.collect is not None
                else {"kind": "scalar", "value": r.value}
            )
            out.append(("emit", r.name, as_sent(value)))
    return out


STRAIGHT = [
    *(q.code for q in QUERIES.values()),
    '"""年龄结构。"""\n'
    "# 统计日\n"
    "people = table('人口').derive(年龄=2024 - col('出生日期').year())\n"
    "old = people.filter((col('年龄') >= params['min_age']) & ~col('区').isin(params['skip']))\n"
    "res = old.group_by('区').agg(人数=count(), 收入=mean('收入').round(0),\n"
    "    中位=quantile('收入', 0.5), 占比=share(count(), within='区'))\n"
    "out = res.collect()\n"
    "emit('按区', out)\n"
    "emit('说明', '年满 65 岁')\n"
    "emit('n', -3)\n",
    "a = table('a').select('k', 'x')\n"
    "b = table('b').select('k', 'y')\n"
    "t = a.join(b, on='k', how='left').derive(\n"
    "    band=case((col('x') < 10, 'low'), (col('x') < -1.5, 'neg'), default='high'),\n"
    "    z=-col('x') / 2 + 1, w=lit(3) * col('y'))\n"
    "first = t.group_by('band').agg(n=count(), s=sum('z'), v=var('w')).collect()\n"
    "second = t.agg(n=count_if(col('y').is_null()), m=min('x'), mx=max('x')).collect()\n"
    "emit('first', first)\n"
    "emit('second', second)\n"
    "emit('again', first)\n",
    "r = table('people').group_by('district').agg(n=count()).collect()\n"
    "top = r.sort('n', descending=True).head(1)\n"
    "emit('top', top)\n"
    "emit('all', r.sort(column='district'))\n"
    "emit('first', r.head())\n",
]


@pytest.mark.parametrize("code", STRAIGHT)
def test_what_is_read_is_what_the_job_process_sends(code: str) -> None:
    params = {"min_age": 65, "skip": ["新城区"]}
    recording = Recording()
    outcome = run_in_jail(code, params, recording, Limits(wall_seconds=20))
    assert outcome.status == "succeeded", outcome
    assert read(code, params) == recording.sent


LEFT_TO_THE_JAIL = {
    "a loop": "for d in ['a']:\n    emit(d, 1)\n",
    "a condition": "if True:\n    emit('a', 1)\n",
    "a function": "def f():\n    return 1\nemit('a', 1)\n",
    "a lambda": "f = lambda: 1\nemit('a', 1)\n",
    "a comprehension": "x = [c for c in 'ab']\nemit('a', 1)\n",
    "print": "print('hi')\nemit('a', 1)\n",
    "arithmetic on plain values": "emit('a', 'x' * 1000)\n",
    "a power": "t = table('p').derive(x=col('a') + 10 ** 9)\n",
    "an f-string": "emit(f'a{1}', 1)\n",
    "a chained comparison": "t = table('p').filter(1 < col('a') < 3)\n",
    "and/or": "t = table('p').filter(col('a') > 1 and col('b') > 2)\n",
    "a released table's method": (
        "r = table('p').group_by('d').agg(n=count()).collect()\nemit('a', r.pivot('d', 'd', 'n'))\n"
    ),
    "a sort by a column the table lacks": (
        "r = table('p').group_by('d').agg(n=count()).collect()\nemit('a', r.sort('m'))\n"
    ),
    "a sort whose order is not a boolean": (
        "r = table('p').group_by('d').agg(n=count()).collect()\nemit('a', r.sort('n', 1))\n"
    ),
    "a negative head": (
        "r = table('p').group_by('d').agg(n=count()).collect()\nemit('a', r.head(-1))\n"
    ),
    "a head of a boolean": (
        "r = table('p').group_by('d').agg(n=count()).collect()\nemit('a', r.head(True))\n"
    ),
    "a sorted table used but not emitted": (
        "r = table('p').group_by('d').agg(n=count()).collect()\n"
        "t = table('p').filter(col('d').isin(r.sort('n')))\n"
    ),
    "a sort with an unknown argument": (
        "r = table('p').group_by('d').agg(n=count()).collect()\nemit('a', r.sort('n', by=1))\n"
    ),
    "a released table as an argument": (
        "r = table('p').group_by('d').agg(n=count()).collect()\n"
        "t = table('p').filter(col('d').isin(r))\n"
    ),
    "a dunder attribute": "x = table('p').__class__\n",
    "a private method": "x = col('a')._node\n",
    "an attribute of a function": "x = col.__globals__\n",
    "a builtin": "open('/etc/passwd')\n",
    "__import__": "__import__('os').system('true')\n",
    "getattr": "getattr(col('a'), '__class__')\n",
    "a subscript": "x = [1, 2][0]\nemit('a', x)\n",
    "params.get": "t = table('p').filter(col('a') > params.get('x', 1))\n",
    "an unknown parameter": "t = table('p').filter(col('a') > params['nope'])\n",
    "a starred argument": "t = table('p').select(*['a'])\n",
    "keyword unpacking": "t = table('p').group_by('d').agg(**{'n': count()})\n",
    "an augmented assignment": "x = 1\nx += 1\n",
    "unpacking": "a, b = 1, 2\n",
    "a walrus": "emit('a', (x := 1))\n",
    "a shadowed language name": "col = table\nx = col('p')\n",
    "calling a variable": "f = 1\nf()\n",
    "emit_table": "emit_table('a', ['x'], [[1]])\n",
    "an infinity": "t = table('p').filter(col('a') < 1e999)\n",
    "a complex number": "t = table('p').filter(col('a') < 1j)\n",
    "min of plain values": "emit('a', min(1, 2))\n",
    "a refusal by the language": "r = table('p').collect()\n",
    "a name that is not bound": "emit('a', x)\n",
    "a with block": "with x:\n    pass\n",
    "try": "try:\n    emit('a', 1)\nexcept Exception:\n    pass\n",
    "a syntax error": "emit('a',\n",
    "deep nesting": "x = " + "col('a') + " * 3000 + "1\n",
    "a class": "class A:\n    pass\n",
    "a non-text output name": "emit(1, 2)\n",
    "a global": "global x\n",
    "a dunder called": "x = table('p').__class__('q')\n",
    "an attribute of a method": "x = col('a').isin.__self__\n",
    "a function as a value": "emit('a', table)\n",
    "a function as an argument": "t = table('p').derive(x=col)\n",
    "a dunder keyword": "t = table('p').derive(__class__=col('a'))\n",
    "a method of a plain value": "x = 'a'.join(['b'])\n",
}


@pytest.mark.parametrize("code", LEFT_TO_THE_JAIL.values(), ids=LEFT_TO_THE_JAIL.keys())
def test_anything_outside_the_fragment_is_left_to_the_job_process(code: str) -> None:
    assert straight.requests(code, {"x": 1}) is None


def test_reading_runs_nothing_of_the_code() -> None:
    # The only calls made are the language's own; a name the code binds is never called.
    code = "import os\nos.system('touch /tmp/straight-was-run')\n"
    assert straight.requests(code, {}) is None
    code = "x = table('p')\nemit('a', x.collect)\n"  # a bound method is not a value
    assert straight.requests(code, {}) is None


def test_a_released_table_is_emitted_by_its_collect() -> None:
    code = (
        "a = table('p').group_by('d').agg(n=count()).collect()\n"
        "b = table('p').agg(n=count()).collect()\n"
        "emit('second', b)\nemit('first', a)\nemit('flag', True)\n"
    )
    found = straight.requests(code, {})
    assert found is not None
    assert [type(r) for r in found] == [Collect, Collect, Emit, Emit, Emit]
    assert [(r.name, r.collect, r.value) for r in found[2:] if isinstance(r, Emit)] == [
        ("second", 1, None),
        ("first", 0, None),
        ("flag", None, True),
    ]
