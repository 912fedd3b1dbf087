"""Signs in job code for detection: escape attempts are seen wherever they are in the code,
ordinary analyses and ordinary slips give none (or only the weak `probe`)."""

from __future__ import annotations

from textwrap import dedent

import pytest

from sandbox.language.api import LANGUAGE_TYPES
from sandbox.language.policy import allowed_names
from sandbox.language.signs import ESCAPE, EXHAUSTION, PROBE, runtime_sign, static_signs


def signs(code: str) -> dict[str, list[str]]:
    return static_signs(dedent(code), allowed_names())


ORDINARY = [
    """
    t = table("population").filter(col("district") == "北山区")
    emit("t", t.group_by("hukou_type", "gender").agg(n=count()).collect())
    """,
    """
    r = table("population").group_by("district").agg(人数=count(), 收入=mean("income")).collect()
    for _ in range(2):
        pass
    share = [round(x / 10, 1) for x in r.column("人数")]
    emit("share", str(share))
    emit("r", r)
    """,
    """
    def band(age):
        return case((col("age") >= age, "old"), default="young")
    _x = 1
    emit("t", table("population").derive(b=band(params["age"])).group_by("b")
         .agg(n=count()).collect())
    """,
    'emit("label", f"{params[\'year\']}年 ＡＢＣ科技 (全角)")\n',
]


@pytest.mark.parametrize("code", ORDINARY)
def test_ordinary_code_gives_no_sign(code: str) -> None:
    assert signs(code) == {}


@pytest.mark.parametrize(
    "code, kind",
    [
        ("x = (1).__class__\n", ESCAPE),
        ("f = lambda: 0\ng = f.gi_frame\n", ESCAPE),
        ("e = Exception.mro()\n", ESCAPE),
        ("import os\n", ESCAPE),
        ("from sys import modules\n", ESCAPE),
        ("x = eval('1')\n", ESCAPE),
        ("x = getattr(col('a'), 'x')\n", ESCAPE),
        ('emit("x", "{0._node}".format(col("a")))\n', ESCAPE),
        ("x = f\"{col('a'):{'{0.x}'}}\"\n", ESCAPE),
        ('x = params["__builtins__"]\n', ESCAPE),
        ("def __iter__(self):\n    return 1\n", ESCAPE),
        ("_getattr_ = 1\n", ESCAPE),
        ("ｅｖａｌ('1')\n", ESCAPE),  # full-width letters fold to eval
        ("x = 1\nmatch x:\n    case str(channel=c):\n        pass\n", ESCAPE),
        ("import pandas\n", PROBE),
        ("class A:\n    pass\n", PROBE),
        ("s = set([1, 2])\n", PROBE),
        ("x = (" * 300 + "1" + ")" * 300 + "\n", EXHAUSTION),
    ],
)
def test_the_sign_is_seen(code: str, kind: str) -> None:
    assert kind in signs(code), signs(code)


def test_a_sign_after_the_first_refusal_is_still_seen() -> None:
    """The compiler stops at the import; the frame walk further down is what matters."""
    found = signs("import pandas\nx = 1\ntb = x.tb_frame.f_back\n")
    assert PROBE in found and ESCAPE in found


def test_slips_are_no_escape() -> None:
    for code in (
        "emit('t', table('population').group_by('distrct').agg(n=count()).collect())\n",
        "x = incme + 1\n",  # a typo: unknown name, not a builtin
        "for _ in range(3):\n    pass\n",
        "x = 1 +\n",
    ):  # a syntax error
        assert ESCAPE not in signs(code), code


@pytest.mark.parametrize(
    "exc, kind",
    [
        (MemoryError(), EXHAUSTION),
        (RecursionError("maximum recursion depth"), EXHAUSTION),
        (OSError("no such file"), ESCAPE),
        (ImportError("no module"), ESCAPE),
        (NotImplementedError("Using the format*() methods of `str` is not safe"), ESCAPE),
        (TypeError("attribute-less object (assign or del)"), ESCAPE),
        (TypeError("'Table' object is not iterable"), PROBE),
        (KeyError("__builtins__"), PROBE),
        (ValueError("print() output is limited to 65536 characters"), EXHAUSTION),
        (ZeroDivisionError("division by zero"), None),
        (KeyError("year"), None),
        (TypeError("unsupported operand type(s) for +: 'int' and 'str'"), None),
    ],
)
def test_runtime_signs(exc: BaseException, kind: str | None) -> None:
    assert runtime_sign(exc, LANGUAGE_TYPES) == kind


def test_detection_has_a_pattern_for_each_kind_of_sign() -> None:
    from sandbox.disclosure.detection import CODE_PATTERNS, SCORES
    from sandbox.language.signs import SIGNS

    assert CODE_PATTERNS == SIGNS and SIGNS <= set(SCORES)
