"""Escape attempts: operator code trying to leave the job language, reach the host process or
its channel, or release identifiers and raw values through a crafted plan.

Every attack must end as rejected (refused at submission, or refused by the driver while
running) or failed, with an explanation that names no host path, shows no host traceback and
contains no data value; no attack may release an output.
"""

from __future__ import annotations

from textwrap import dedent
from typing import Any

import pytest

from .conftest import LAX_GRANTS, Attacked, assert_contained, leaks, submit

# A resident ID of the test city. Forged payloads carry it where <ROW> stands, so that any
# echo of a payload in a response is caught as a leaked data value.
ROW = "439908194203116801"


def attack(name: str, code: str, params: dict[str, Any] | None = None) -> Any:
    return pytest.param(dedent(code).lstrip("\n").replace("<ROW>", ROW), params or {}, id=name)


FRAME_WALKS = [
    attack(
        "generator-gi_frame-f_back-f_globals",
        """
        def walk():
            yield 1
        g = walk()
        emit("leak", repr(g.gi_frame.f_back.f_globals))
    """,
    ),
    attack(
        "genexp-gi_frame",
        """
        g = (n for n in [1, 2])
        emit("leak", repr(g.gi_frame.f_globals["emit"]))
    """,
    ),
    attack(
        "traceback-tb_frame",
        """
        try:
            1 / 0
        except Exception as e:
            frame = e.__traceback__.tb_frame
        emit("leak", repr(frame.f_back.f_globals))
    """,
    ),
    attack(
        "traceback-via-with_traceback",
        """
        try:
            params["absent"]
        except Exception as e:
            tb = e.with_traceback(None)
            emit("leak", repr(tb.tb_frame.f_locals))
    """,
    ),
    attack(
        "sys-_getframe",
        """
        emit("leak", repr(sys._getframe(1).f_globals))
    """,
    ),
    attack(
        "exception-context-chain",
        """
        try:
            try:
                1 / 0
            except Exception:
                params["absent"]
        except Exception as e:
            emit("leak", repr(e.__context__.__traceback__))
    """,
    ),
    attack(
        "function-code-object",
        """
        f = lambda: 0
        emit("leak", repr(f.__code__.co_consts))
    """,
    ),
    attack(
        "function-__globals__",
        """
        emit("leak", repr(emit.__globals__["__builtins__"]))
    """,
    ),
]

FORMAT_WALKS = [
    attack(
        "str-format-class-mro",
        """
        emit("leak", "{0.__class__.__mro__}".format(col("income")))
    """,
    ),
    attack(
        "str-format-private-node",
        """
        emit("leak", "{0._node}".format(col("income")))
    """,
    ),
    attack(
        "format_map-channel",
        """
        emit("leak", "{t._channel.out}".format_map({"t": table("population")}))
    """,
    ),
    attack(
        "str-type-format-released-body",
        """
        r = table("population").group_by("district").agg(n=count()).collect()
        emit("leak", str.format("{0._body_json}", r))
    """,
    ),
    attack(
        "fstring-nested-format-spec",
        """
        emit("leak", f"{col('income'):{'{0._node}'}}")
    """,
    ),
    attack(
        "fstring-repr-private-slot",
        """
        emit("leak", f"{table('population')._channel!r:>80}")
    """,
    ),
]

SUBCLASS_WALKS = [
    attack(
        "tuple-base-subclasses",
        """
        subs = ().__class__.__base__.__subclasses__()
        emit("leak", repr([c for c in subs if "wrap_close" in repr(c)]))
    """,
    ),
    attack(
        "mro-then-dunder-subclasses",
        """
        base = str.mro()[-1]
        emit("leak", repr(base.__subclasses__()))
    """,
    ),
    attack(
        "mro-then-public-walk",
        """
        base = Exception.mro()[-1]
        emit("leak", repr(base.subclasses()))
    """,
    ),
    attack(
        "baseexception-swallows-refusal",
        """
        anything = Exception.mro()[1]
        key = "resident" + "_id"
        try:
            table("population").group_by(key).agg(n=count()).collect()
        except anything:
            pass
        emit("ids", table("population").derive(k=col(key)).group_by("k").agg(n=count()).collect())
    """,
    ),
    attack(
        "str-__dict__",
        """
        emit("leak", repr(str.__dict__))
    """,
    ),
    attack(
        "object-__reduce_ex__",
        """
        emit("leak", repr(col("income").__reduce_ex__(2)))
    """,
    ),
]

EXCEPTION_OBJECTS = [
    attack(
        "attributeerror-obj-to-channel",
        """
        try:
            table("population").channel
        except Exception as e:
            ch = e.obj
        ch.emit("forged", {"kind": "table", "columns": [], "rows": []})
    """,
    ),
    attack(
        "attributeerror-name-as-output",
        """
        try:
            col("income").node
        except Exception as e:
            name = e.name
        emit(name, 1)
    """,
    ),
]

GUARD_REPLACEMENT = [
    attack(
        "assign-_getattr_",
        """
        _getattr_ = lambda o, n: o.__dict__[n]
        emit("leak", repr(table("population")._channel))
    """,
    ),
    attack(
        "function-arg-_getattr_",
        """
        def peek(t, _getattr_=None):
            return t._channel
        emit("leak", repr(peek(table("population"))))
    """,
    ),
    attack(
        "default-arg-_getitem_",
        """
        def pick(x, _getitem_=lambda o, k: o):
            return x["anything"]
        emit("leak", repr(pick(table("population"))))
    """,
    ),
    attack(
        "assign-_write_",
        """
        _write_ = lambda o: o
        t = table("population")
        t.channel = None
    """,
    ),
    attack(
        "assign-_print_",
        """
        _print_ = lambda g=None: None
        print("x")
    """,
    ),
    attack(
        "lambda-default-captures-guard",
        """
        grab = lambda g=_getattr_: g(table("population"), "_channel")
        emit("leak", repr(grab()))
    """,
    ),
    attack(
        "walrus-rebinds-_getattr_",
        """
        if (_getattr_ := lambda o, n: o):
            emit("leak", repr(table("population")._node))
    """,
    ),
    attack(
        "walrus-in-comprehension-_getiter_",
        """
        xs = [(_getiter_ := lambda o: [o]) for n in [1]]
        emit("leak", repr(xs))
    """,
    ),
    attack(
        "shadow-isinstance-then-forge",
        """
        isinstance = lambda a, b: True
        emit("forged", {"kind": "table", "columns": [{"name": "id", "type": "string"}],
                        "rows": [["<ROW>"]], "suppressed": []})
    """,
    ),
    attack(
        "try-except-star",
        """
        try:
            1 / 0
        except* ZeroDivisionError as group:
            emit("leak", repr(group.exceptions[0].__traceback__))
    """,
    ),
    attack(
        "decorator-is-table",
        """
        @table
        def population():
            pass
        emit("leak", population.collect())
    """,
    ),
    attack(
        "decorator-steals-globals",
        """
        def spy(fn):
            return fn.__globals__
        @spy
        def probe():
            pass
        emit("leak", repr(probe["_getattr_"]))
    """,
    ),
    attack(
        "decorator-is-col",
        """
        @col
        def resident_id():
            pass
        emit("ids", table("population").group_by(resident_id).agg(n=count()).collect())
    """,
    ),
]

UNICODE = [
    attack(
        "nfkc-fullwidth-exec",
        """
        ｅｘｅｃ("import os")
    """,
    ),
    attack(
        "nfkc-fullwidth-dunder-attribute",
        """
        emit("leak", repr(col("income").__ｃｌａｓｓ__))
    """,
    ),
    attack(
        "fullwidth-low-line-dunder",
        """
        emit("leak", repr((1).＿＿class＿＿))
    """,
    ),
    attack(
        "nfkc-math-italic-eval",
        """
        emit("leak", 𝑒𝑣𝑎𝑙("1 + 1"))
    """,
    ),
    attack(
        "nfkc-guard-name",
        """
        _ｇｅｔａｔｔｒ_ = lambda o, n: o
    """,
    ),
]

BUILTINS = [
    attack("breakpoint", "breakpoint()\n"),
    attack("help", 'emit("leak", repr(help(table)))\n'),
    attack("exec", 'exec("import os")\n'),
    attack("eval", 'emit("leak", eval("1 + 1"))\n'),
    attack("compile", 'c = compile("import os", "x", "exec")\n'),
    attack("open", 'emit("leak", open("/etc/passwd").read())\n'),
    attack("__import__", 'emit("leak", repr(__import__("os").environ))\n'),
    attack("globals", 'emit("leak", repr(globals()["_getattr_"]))\n'),
    attack("vars", 'emit("leak", repr(vars(table("population"))))\n'),
    attack("dir", 'emit("leak", repr(dir(table("population"))))\n'),
    attack("getattr-dunder-class", 'emit("leak", repr(getattr(col("income"), "__class__")))\n'),
    attack("type-of-proxy", 'emit("leak", repr(type(table("population"))))\n'),
    attack("__builtins__", 'emit("leak", __builtins__["open"]("/etc/passwd").read())\n'),
    attack(
        "dict-getitem-on-globals", 'emit("leak", repr(dict.__getitem__(globals(), "_getattr_")))\n'
    ),
    attack(
        "isinstance-__self__-is-builtins",
        """
        emit("leak", isinstance.__self__.open("/etc/passwd").read())
    """,
    ),
    attack(
        "class-with-custom-iter",
        """
        class Rows:
            def __iter__(self):
                return iter(table("population")._node)
        emit("leak", sorted(Rows()))
    """,
    ),
    attack(
        "set-of-custom-iterable",
        """
        emit("leak", repr(set(table("population"))))
    """,
    ),
    attack(
        "sorted-key-reads-slot",
        """
        emit("leak", repr(sorted([table("population")], key=lambda t: t._node)))
    """,
    ),
    attack(
        "min-iterates-table",
        """
        emit("leak", min(table("population").select("resident_id")))
    """,
    ),
    attack(
        "max-iterates-released",
        """
        r = table("population").group_by("district").agg(n=count()).collect()
        emit("leak", max(r))
    """,
    ),
    attack(
        "match-class-pattern",
        """
        match table("population"):
            case str(channel=ch):
                emit("leak", repr(ch))
    """,
    ),
]

PROXIES = [
    attack(
        "params-dunder-walk",
        """
        emit("leak", repr(params.__class__.__init__.__globals__))
    """,
    ),
    attack(
        "params-builtins-key",
        """
        emit("leak", params["__builtins__"]["open"]("/etc/passwd").read())
    """,
        {"区": "城关区"},
    ),
    attack("table-private-node", 'emit("leak", repr(table("population")._node))\n'),
    attack(
        "table-channel-raw-collect",
        """
        ch = table("population")._channel
        emit("rows", ch.collect({"op": "scan", "dataset": "population"}))
    """,
    ),
    attack(
        "released-private-body",
        """
        r = table("population").group_by("district").agg(n=count()).collect()
        emit("leak", repr(r._body_json))
    """,
    ),
    attack("expr-__slots__", 'emit("leak", repr(col("income").__slots__))\n'),
    attack(
        "grouped-private-table",
        """
        g = table("population").group_by("district")
        emit("leak", repr(g._table._channel))
    """,
    ),
    attack(
        "emit-closure-raw-frame",
        """
        ch = emit.__closure__[0].cell_contents
        ch.out.write(b'{"op": "done", "printed": ""}')
    """,
    ),
    attack(
        "forged-table-dict",
        """
        emit("forged", {"kind": "table", "columns": [{"name": "resident_id", "type": "string"}],
                        "rows": [["<ROW>"]], "suppressed": []})
    """,
    ),
    attack(
        "forged-scalar-dict",
        """
        emit("forged", {"kind": "scalar", "value": "<ROW>"})
    """,
    ),
    attack(
        "mutated-released-rows",
        """
        r = table("population").group_by("district").agg(n=count()).collect()
        rows = r.rows
        rows[0] = ("<ROW>", 1)
        emit("forged", {"kind": "table", "columns": [{"name": "district", "type": "string"},
                        {"name": "n", "type": "int64"}], "rows": rows, "suppressed": []})
    """,
    ),
    attack(
        "monkeypatch-released-method",
        """
        r = table("population").group_by("district").agg(n=count()).collect()
        r.column = lambda name: ["<ROW>"]
        emit("leak", r.column("n")[0])
    """,
    ),
    attack(
        "operator-table-into-expression",
        """
        e = col("income") + table("population")
        emit("leak", table("population").agg(s=sum(e)).collect())
    """,
    ),
    attack(
        "operator-expression-truth-value",
        """
        if col("resident_id") == "<ROW>":
            emit("hit", 1)
    """,
    ),
    attack(
        "operator-host-function-as-literal",
        """
        emit("leak", table("population").filter(col("district").isin([emit])).agg(n=count())
             .collect())
    """,
    ),
    attack(
        "lit-wraps-table",
        """
        emit("leak", table("population").derive(t=lit(table("population"))).agg(n=count())
             .collect())
    """,
    ),
    attack(
        "reserved-engine-column-name",
        """
        d = table("population").derive(**{"__row": col("income")})
        emit("leak", d.group_by("__row").agg(n=count()).collect())
    """,
    ),
]

IDENTIFIER_PLANS = [
    attack("collect-raw-table", 'emit("rows", table("population").collect())\n'),
    attack(
        "select-identifier-collect",
        'emit("ids", table("population").select("resident_id").collect())\n',
    ),
    attack(
        "group-by-resident_id",
        """
        emit("ids", table("population").group_by("resident_id").agg(n=count()).collect())
    """,
    ),
    attack(
        "group-by-name",
        """
        emit("names", table("population").group_by("name").agg(n=count()).collect())
    """,
    ),
    attack(
        "derive-launders-identifier",
        """
        t = table("population").derive(x=col("resident_id"))
        emit("ids", t.group_by("x").agg(n=count()).collect())
    """,
    ),
    attack(
        "derive-cast-arith-identifier",
        """
        t = table("population").derive(x=col("resident_id").cast("int") + 0)
        emit("ids", t.group_by("x").agg(n=count()).collect())
    """,
    ),
    attack(
        "computed-identifier-key",
        """
        key = "resident" + "_" + "id"
        emit("ids", table("population").group_by(key).agg(n=count()).collect())
    """,
    ),
    attack(
        "case-encodes-identifier",
        """
        t = table("population").derive(
            hit=case((col("resident_id") == "<ROW>", "yes"), default="no"))
        emit("hit", t.group_by("hit").agg(m=mean("income")).collect())
    """,
    ),
    attack(
        "count_distinct-grouped-by-id-prefix",
        """
        t = table("population").derive(p=col("resident_id").startswith("4399021942"))
        emit("p", t.group_by("p").agg(n=count_distinct("resident_id")).collect())
    """,
    ),
    attack(
        "max-of-identifier",
        """
        emit("id", table("population").agg(m=max("resident_id")).collect())
    """,
    ),
    attack(
        "quantile-of-identifier-number",
        """
        t = table("population").derive(x=col("resident_id").cast("float"))
        emit("id", t.agg(q=quantile("x", 0.5)).collect())
    """,
    ),
    attack(
        "histogram-of-identifier-number",
        """
        t = table("population").derive(x=col("resident_id").cast("float"))
        emit("id", t.histogram("x", [0, 439905000000000000, 439999999999999999]).collect())
    """,
    ),
    attack(
        "min-of-quasi-identifier",
        """
        emit("oldest", table("population").agg(b=min("birth_date")).collect())
    """,
    ),
]

OUTPUTS = [
    attack(
        "released-value-in-output-path",
        """
        r = table("population").group_by("district").agg(n=count()).collect()
        emit("../../" + str(r.rows[0][1]) + "/x", r)
    """,
    ),
    attack(
        "released-value-formatted-into-name",
        """
        r = table("population").agg(n=count()).collect()
        emit("n={}".format(r.rows[0][0]), r)
    """,
    ),
    attack(
        "print-huge-output",
        """
        print("x" * 200000)
    """,
    ),
]

ESCAPES = (
    FRAME_WALKS
    + FORMAT_WALKS
    + SUBCLASS_WALKS
    + EXCEPTION_OBJECTS
    + GUARD_REPLACEMENT
    + UNICODE
    + BUILTINS
    + PROXIES
    + IDENTIFIER_PLANS
    + OUTPUTS
)


def test_the_suite_has_distinct_attacks() -> None:
    codes = [p.values[0] for p in ESCAPES]
    assert len(set(codes)) == len(codes) >= 40


@pytest.mark.parametrize("code,params", ESCAPES)
def test_escape_is_contained(
    roomy_world: Attacked, lax_contract: str, code: str, params: dict[str, Any]
) -> None:
    outcome, _ = submit(roomy_world, lax_contract, code, params)
    assert_contained(roomy_world, outcome)


# --- disclosure by differencing -------------------------------------------------------------
# Two released aggregates, each over many people, whose difference is one person's value.

EVERYONE = 'emit("everyone", {base}.agg(s=sum("income")).collect())\n'
OTHERS = 'emit("others", {base}.filter(~({cell})).agg(s=sum("income")).collect())\n'
# How the two releases are spread over jobs: in one job either way round, or in two jobs of
# the same contract.
SPLITS = {
    "one-job": [EVERYONE + OTHERS],
    "one-job-reversed": [OTHERS + EVERYONE],
    "two-jobs": [EVERYONE, OTHERS],
}


def _first_earner(city: Any) -> tuple[str, int]:
    t = city["population"].table.slice(0, 100)
    return next(
        (rid, inc)
        for rid, inc in zip(t["resident_id"].to_pylist(), t["income"].to_pylist())
        if inc > 0
    )


def _unique_quasi_person(city: Any) -> dict[str, Any]:
    """A resident alone in their (district, gender, birth_date) cell, with a non-zero income."""
    rows = (
        city["population"].table.select(["district", "gender", "birth_date", "income"]).to_pylist()
    )
    cells: dict[tuple[Any, ...], list[int]] = {}
    for r in rows:
        cells.setdefault((r["district"], r["gender"], r["birth_date"]), []).append(r["income"])
    for (district, gender, born), incomes in cells.items():
        if len(incomes) == 1 and incomes[0] > 0:
            return {"d": district, "g": gender, "b": born.isoformat(), "income": incomes[0]}
    raise AssertionError("the synthetic city has no resident unique by district, gender, birth")


def _difference(
    target: Attacked,
    contract_id: str,
    jobs: list[str],
    base: str,
    cell: str,
    params: dict[str, Any],
) -> Any:
    """Run the jobs; everyone − others when both sums were released, else None."""
    outputs: dict[str, Any] = {}
    for template in jobs:
        outcome, _ = submit(target, contract_id, template.format(base=base, cell=cell), params)
        assert not leaks(target, outcome.text)
        outputs.update(outcome.outputs)
    sums = [(outputs.get(n) or {}).get("rows") for n in ("everyone", "others")]
    if not all(rows and isinstance(rows[0][0], (int, float)) for rows in sums):
        return None
    return sums[0][0][0] - sums[1][0][0]  # type: ignore[index]


@pytest.mark.parametrize("split", list(SPLITS))
def test_differencing_by_identifier_filter(roomy_world: Attacked, city: Any, split: str) -> None:
    """Sum of income over everyone, minus the sum over everyone but one resident_id."""
    who, income = _first_earner(city)
    # A fresh contract: the releases of other tests must not be what stops this attack.
    cid = roomy_world.world.active_contract(LAX_GRANTS)
    diff = _difference(
        roomy_world,
        cid,
        SPLITS[split],
        'table("population")',
        'col("resident_id") == params["who"]',
        {"who": who},
    )
    assert diff != income, f"a resident's income {income} was released"


@pytest.mark.parametrize("split", list(SPLITS))
def test_differencing_by_quasi_identifiers(roomy_world: Attacked, city: Any, split: str) -> None:
    """With the demo's grants: the sum of income in a district, minus the same sum without the
    one resident born on a given day with a given gender there."""
    who = _unique_quasi_person(city)
    cid = roomy_world.world.active_contract()
    diff = _difference(
        roomy_world,
        cid,
        SPLITS[split],
        'table("population").filter(col("district") == params["d"])',
        '(col("gender") == params["g"]) & (col("birth_date") == params["b"])',
        {k: who[k] for k in ("d", "g", "b")},
    )
    assert diff != who["income"], f"a resident's income {who['income']} was released"
