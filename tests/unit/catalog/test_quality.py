"""The quality profile of a version: counts per column, declared rules, check digits, streaming."""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from sandbox.catalog import quality
from sandbox.catalog.models import ColumnInfo
from sandbox.catalog.quality import (
    Profile,
    QualityReport,
    Rules,
    credit_code_valid,
    distinct_band,
    parse_rules,
    resident_id_valid,
)
from sandbox.catalog.synthetic import generate_city
from sandbox.errors import IngestError

ID_WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
CREDIT_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
CREDIT_WEIGHTS = [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28]


def resident_id(body: str) -> str:
    """`body` (17 digits) with its GB 11643 check character, computed here on its own."""
    return body + "10X98765432"[sum(int(c) * w for c, w in zip(body, ID_WEIGHTS)) % 11]


def credit_code(body: str) -> str:
    """`body` (17 characters) with its GB 32100 check character."""
    total = sum(CREDIT_ALPHABET.index(c) * w for c, w in zip(body, CREDIT_WEIGHTS))
    return body + CREDIT_ALPHABET[(31 - total % 31) % 31]


PUBLISHED_IDS = [
    "11010519491231002X",
    resident_id("44030419900307123"),
    resident_id("11010120000229001"),
]
PUBLISHED_CODES = ["91350100M000100Y43", "91110108551385082Q", credit_code("9144030071526726X")]


def one_character_changes(value: str, alphabet: str) -> list[str]:
    return [
        value[:i] + c + value[i + 1 :] for i in range(len(value)) for c in alphabet if c != value[i]
    ]


# --- check digits ----------------------------------------------------------------------------


def test_published_resident_ids_are_valid_and_every_one_character_change_is_not() -> None:
    assert resident_id("11010519491231002") == "11010519491231002X"
    assert resident_id_valid(pa.array(PUBLISHED_IDS)).all()
    for valid in PUBLISHED_IDS:
        changed = one_character_changes(valid, "0123456789X")
        assert not resident_id_valid(pa.array(changed)).any()


def test_published_credit_codes_are_valid_and_every_one_character_change_is_not() -> None:
    assert credit_code("91350100M000100Y4") == "91350100M000100Y43"
    assert credit_code("91110108551385082") == "91110108551385082Q"
    assert credit_code_valid(pa.array(PUBLISHED_CODES)).all()
    for valid in PUBLISHED_CODES:
        changed = one_character_changes(valid, CREDIT_ALPHABET)
        assert not credit_code_valid(pa.array(changed)).any()


def test_the_synthetic_citys_identifiers_are_valid() -> None:
    city = generate_city(500, seed=3)
    assert resident_id_valid(city["population"].table.column("resident_id").chunk(0)).all()
    assert credit_code_valid(city["enterprises"].table.column("credit_code").chunk(0)).all()


@pytest.mark.parametrize(
    ("body", "valid"),
    [
        ("11010520000229001", True),  # 2000 was a leap year
        ("11010519000229001", False),  # 1900 was not
        ("11010520230229001", False),
        ("11010519491331002", False),  # month 13
        ("11010519490001002", False),  # month 0
        ("11010519490431002", False),  # 31 April
        ("11010519490100002", False),  # day 0
        ("11010517991231002", False),  # before anyone alive was born
    ],
)
def test_a_resident_id_needs_a_real_birth_date(body: str, valid: bool) -> None:
    assert resident_id_valid(pa.array([resident_id(body)])).tolist() == [valid]


def test_malformed_codes_are_invalid_and_nulls_are_not_counted() -> None:
    ids = [
        "11010519491231002x",
        "1101051949123100X",
        "11010519491231002XX",
        "",
        "１１０105194912310",
    ]
    assert resident_id_valid(pa.array([*ids, None])).tolist() == [False] * len(ids) + [True]
    codes = ["91350100m000100Y43", "91350100M000100Y4", "91350100I000100Y43", "9135010０M000100Y43"]
    assert credit_code_valid(pa.array([*codes, None])).tolist() == [False] * len(codes) + [True]
    assert len(resident_id_valid(pa.array([], pa.string()))) == 0


def test_check_digits_read_any_layout_of_text() -> None:
    values = pa.array(["x", PUBLISHED_IDS[0], None, "11010519491231002Y", PUBLISHED_IDS[1]])
    expected = [False, True, True, False, True]
    assert resident_id_valid(values).tolist() == expected
    assert resident_id_valid(values.cast(pa.large_string())).tolist() == expected
    assert resident_id_valid(values.dictionary_encode()).tolist() == expected
    assert resident_id_valid(values.slice(1, 3)).tolist() == expected[1:4]
    assert resident_id_valid(pa.array(PUBLISHED_IDS * 3).slice(2, 5)).all()


def test_a_million_codes_are_checked_by_vector_not_one_by_one() -> None:
    # Checked one code at a time in Python, a million of each take ten seconds and more; by
    # Arrow kernels a tenth of a second alone here. The bound leaves room for a shared,
    # loaded machine and still tells the two apart.
    rng = np.random.default_rng(0)
    n = 1_000_000
    ids = np.frombuffer("".join(PUBLISHED_IDS).encode(), np.uint8).reshape(3, 18)
    codes = np.frombuffer("".join(PUBLISHED_CODES).encode(), np.uint8).reshape(3, 18)
    pick = rng.integers(0, 3, n)
    offsets = pa.py_buffer(np.arange(0, 18 * n + 1, 18, dtype=np.int32).tobytes())
    id_array = pa.StringArray.from_buffers(n, offsets, pa.py_buffer(ids[pick].tobytes()))
    code_array = pa.StringArray.from_buffers(n, offsets, pa.py_buffer(codes[pick].tobytes()))
    start = time.perf_counter()
    ok = resident_id_valid(id_array).all() and credit_code_valid(code_array).all()
    elapsed = time.perf_counter() - start
    assert ok
    assert elapsed < 4.0, f"{elapsed:.2f} s for a million of each"


# --- the profile -----------------------------------------------------------------------------

COLUMNS = (
    ColumnInfo("身份证号", "string", "identifier"),
    ColumnInfo("单位代码", "string", "attribute"),
    ColumnInfo("区县", "string", "attribute"),
    ColumnInfo("年龄", "int64", "quasi_identifier", lower=0, upper=120),
    ColumnInfo("收入", "double", "sensitive", lower=0, upper=1e6),
    ColumnInfo("备注", "string", "attribute"),
)


def city_table(rows: int, seed: int = 0) -> pa.Table:
    """Rows with some of every problem: nulls, repeats, out-of-bounds numbers, bad codes."""
    rng = np.random.default_rng(seed)
    ids = [
        resident_id(f"110105{19500101 + i % 28 + 100 * (i % 12):08d}{i % 997:03d}")
        for i in range(rows)
    ]
    ids = [
        None
        if i % 50 == 7
        else (v[:-1] + "0" if v[-1] != "0" else v[:-1] + "1")
        if i % 40 == 3
        else v
        for i, v in enumerate(ids)
    ]
    codes = [credit_code(f"91110108{i:09d}") for i in range(rows)]
    codes = [v[:-1] + "Ｑ" if i % 33 == 5 else v for i, v in enumerate(codes)]
    ages = rng.integers(-3, 125, rows)
    income = rng.uniform(-100, 1.2e6, rows)
    income[::97] = np.nan
    return pa.table(
        {
            "身份证号": pa.array(ids),
            "单位代码": pa.array(codes),
            "区县": pa.array(rng.choice(["城关区", "湖滨区", "新城区"], rows)),
            "年龄": pa.array(ages, mask=rng.random(rows) < 0.1),
            "收入": pa.array(income),
            "备注": pa.array([None] * rows, pa.string()),
        }
    )


def profile_of(table: pa.Table | pa.RecordBatch, rules: Rules | None = None) -> QualityReport:
    profile = Profile(COLUMNS, rules)
    profile.add(table)
    return profile.report()


def test_the_profile_counts_each_columns_problems() -> None:
    rows = 400
    table = city_table(rows)
    rules = Rules(check_digits={"单位代码": "credit_code"})
    report = profile_of(table, rules)
    by_name = {c.name: c for c in report.columns}
    assert report.rows == rows
    ids = by_name["身份证号"]
    assert ids.nulls == 8 and ids.null_rate == 8 / rows
    # Identifier columns named like identity numbers are checked without a rule.
    assert ids.invalid_check_digits == int(
        (~resident_id_valid(table.column("身份证号").chunk(0))).sum()
    )
    assert ids.invalid_check_digits == len([i for i in range(rows) if i % 40 == 3 and i % 50 != 7])
    assert ids.duplicates == rows - 8 - len(set(table.column("身份证号").drop_null().to_pylist()))
    assert ids.outside_bounds is None
    codes = by_name["单位代码"]
    assert codes.invalid_check_digits == len(range(5, rows, 33)) and codes.duplicates is None
    district = by_name["区县"]
    assert district.distinct_band == "2-9" and district.invalid_check_digits is None
    age = by_name["年龄"]
    ages = [a for a in table.column("年龄").to_pylist() if a is not None]
    assert age.nulls == rows - len(ages)
    assert age.outside_bounds == len([a for a in ages if a < 0 or a > 120])
    assert age.distinct_band == "100-999"
    income = table.column("收入").to_numpy()
    # NaN lies within no bounds.
    assert by_name["收入"].outside_bounds == int((~((income >= 0) & (income <= 1e6))).sum())
    assert by_name["备注"].nulls == rows and by_name["备注"].distinct_band == "0"
    assert report.failures and report.status == "flagged"


def test_several_batches_give_the_same_report_as_one(monkeypatch: pytest.MonkeyPatch) -> None:
    # Small merges and a small distinct cap, so that the batches cross both.
    monkeypatch.setattr(quality, "_MERGE_MIN", 16)
    monkeypatch.setattr(quality, "DISTINCT_CAP", 300)
    table = city_table(3000, seed=1)
    rules = Rules(
        not_null=("身份证号",),
        unique=("单位代码", "区县"),
        max_null_rate={"年龄": 0.05},
        within_bounds=("年龄", "收入"),
        check_digits={"单位代码": "credit_code"},
        min_rows=10,
    )
    whole = profile_of(table, rules)
    streamed = Profile(COLUMNS, rules)
    for batch in table.to_batches(max_chunksize=250):
        streamed.add(batch)
    assert streamed.report() == whole
    chunked = Profile(COLUMNS, rules)
    chunked.add(pa.concat_tables([table.slice(0, 1), table.slice(1, 1700), table.slice(1701)]))
    assert chunked.report() == whole
    assert {c.name: c.distinct_band for c in whole.columns}["收入"] == ">= 300"
    # The identifier keeps every hash, past the cap: its repeats are exact.
    assert {c.name: c.duplicates for c in whole.columns}["单位代码"] == 0


def test_a_million_distinct_values_are_banded_as_such() -> None:
    columns = (ColumnInfo("序号", "int64", "attribute"), ColumnInfo("编号", "int64", "identifier"))
    profile = Profile(columns)
    for start in range(0, 1_000_000, 50_000):
        numbers = pa.array(np.arange(start, start + 50_000))
        profile.add(pa.record_batch([numbers, numbers], names=["序号", "编号"]))
    profile.add(pa.record_batch([pa.array([1, 2]), pa.array([1, 2])], names=["序号", "编号"]))
    report = profile.report()
    assert [c.distinct_band for c in report.columns] == [">= 1000000", ">= 1000000"]
    assert [c.duplicates for c in report.columns] == [None, 2]


def test_an_empty_version_has_zero_rates() -> None:
    report = Profile(COLUMNS).report()
    assert report.rows == 0 and report.status == "passed"
    assert {(c.nulls, c.null_rate, c.distinct_band) for c in report.columns} == {(0, 0.0, "0")}


@pytest.mark.parametrize(
    ("count", "band"),
    [(0, "0"), (1, "1"), (2, "2-9"), (9, "2-9"), (10, "10-99"), (999, "100-999")]
    + [(123_456, "100000-999999"), (999_999, "100000-999999"), (10**6, ">= 1000000")],
)
def test_distinct_bands(count: int, band: str) -> None:
    assert distinct_band(count) == band


def test_batches_must_carry_the_datasets_columns_and_may_carry_entity_numbers() -> None:
    table = city_table(10)
    profile = Profile(COLUMNS)
    profile.add(table.append_column("__entity", pa.array(np.arange(10, dtype=np.uint64))))
    assert profile.report().rows == 10
    with pytest.raises(IngestError, match="lacks column '区县'"):
        profile.add(table.drop_columns(["区县"]))
    with pytest.raises(IngestError, match="does not declare"):
        profile.add(table.append_column("新列", pa.array(range(10))))
    with pytest.raises(IngestError, match="bounds apply to numeric columns"):
        profile.add(table.set_column(3, "年龄", pa.array(["秘密"] * 10)))


def test_other_column_types_are_profiled() -> None:
    columns = (
        ColumnInfo("日期", "date32[day]", "attribute"),
        ColumnInfo("是否", "bool", "attribute"),
        ColumnInfo("字节", "binary", "attribute"),
        ColumnInfo("类别", "dictionary<values=string, indices=int32, ordered=0>", "attribute"),
        ColumnInfo("列表", "list<item: int64>", "attribute"),
    )
    batch = pa.record_batch(
        [
            pa.array([0, 1, 1, None], pa.date32()),
            pa.array([True, False, None, True]),
            pa.array([b"a", b"b", b"a", b"c"]),
            pa.array(["x", "y", "x", "x"]).dictionary_encode(),
            pa.array([[1], [2], None, []]),
        ],
        names=[c.name for c in columns],
    )
    profile = Profile(columns)
    profile.add(batch)
    report = profile.report()
    assert [c.distinct_band for c in report.columns] == ["2-9", "2-9", "2-9", "2-9", None]
    assert [c.nulls for c in report.columns] == [1, 1, 0, 0, 1]


def test_named_checks_are_for_identifiers_named_so() -> None:
    columns = (
        ColumnInfo("resident_id", "string", "identifier"),
        ColumnInfo("Credit-Code", "string", "identifier"),
        ColumnInfo("统一社会信用代码", "string", "identifier"),
        ColumnInfo("id_number", "string", "quasi_identifier"),  # not an identifier column
        ColumnInfo("身份证号码", "int64", "identifier"),  # not text
        ColumnInfo("客户编号", "string", "identifier"),  # a name that says nothing
    )
    values = ["11010519491231002X", "91350100M000100Y43", "not a code"]
    batch = pa.record_batch(
        [pa.array(values)] * 4 + [pa.array([1, 2, 3]), pa.array(values)],
        names=[c.name for c in columns],
    )
    profile = Profile(columns)
    profile.add(batch)
    report = profile.report()
    assert [c.invalid_check_digits for c in report.columns] == [2, 2, 2, None, None, None]
    # Found without a rule, reported without failing the version.
    assert report.status == "passed"


# --- rules -----------------------------------------------------------------------------------

GOOD = {
    "身份证号": [PUBLISHED_IDS[0], PUBLISHED_IDS[1], None, PUBLISHED_IDS[2]],
    "单位代码": [PUBLISHED_CODES[0], PUBLISHED_CODES[1], PUBLISHED_CODES[2], PUBLISHED_CODES[0]],
    "区县": ["城关区", "湖滨区", "新城区", "城关区"],
    "年龄": [30, 0, None, 120],
    "收入": [5000.5, 0.0, 1e6, None],
    "备注": ["甲", "乙", "丙", "丁"],
}

# Each rule, the rows that keep it and the change that breaks it.
CASES: dict[str, tuple[dict[str, Any], dict[str, list[Any]]]] = {
    "not_null": ({"not_null": ["区县"]}, {"区县": ["城关区", None, "新城区", "城关区"]}),
    "unique": (
        {"unique": ["身份证号"]},
        {"身份证号": [*PUBLISHED_IDS[:2], None, PUBLISHED_IDS[1]]},
    ),
    "max_null_rate": ({"max_null_rate": {"年龄": 0.25}}, {"年龄": [30, None, None, 120]}),
    "within_bounds": ({"within_bounds": ["年龄"]}, {"年龄": [30, 0, None, 121]}),
    "check_digits": (
        {"check_digits": {"单位代码": "credit_code"}},
        {"单位代码": [*PUBLISHED_CODES[:3], "91350100M000100Y44"]},
    ),
    "min_rows": ({"min_rows": 4}, {k: v[:3] for k, v in GOOD.items()}),
}


def test_the_good_rows_keep_every_rule_at_once() -> None:
    raw: dict[str, Any] = {}
    for rule, _ in CASES.values():
        raw.update(rule)
    report = profile_of(pa.table(GOOD), parse_rules(raw, COLUMNS))
    assert report.failures == () and report.status == "passed"


@pytest.mark.parametrize("rule", sorted(CASES))
def test_each_rule_fails_when_broken_and_only_then(rule: str) -> None:
    raw, change = CASES[rule]
    rules = parse_rules({**raw, "on_failure": "refuse"}, COLUMNS)
    assert profile_of(pa.table(GOOD), rules).status == "passed"
    report = profile_of(pa.table({**GOOD, **change}), rules)
    assert report.status == "refused"
    assert [f.rule for f in report.failures] == [rule]
    column = next(iter(change)) if rule != "min_rows" else None
    assert report.failures[0].column == column


def test_a_null_rate_at_the_limit_passes() -> None:
    rules = parse_rules({"max_null_rate": {"年龄": 0.5}}, COLUMNS)
    assert profile_of(pa.table({**GOOD, "年龄": [None, 1, None, 2]}), rules).status == "passed"
    report = profile_of(pa.table({**GOOD, "年龄": [None, 1, None, None]}), rules)
    assert "75.00%" in report.failures[0].message and "50.00%" in report.failures[0].message


@pytest.mark.parametrize(("on_failure", "status"), [("flag", "flagged"), ("refuse", "refused")])
def test_a_failure_flags_or_refuses_the_version_as_declared(on_failure: str, status: str) -> None:
    rules = parse_rules({"not_null": ["年龄"], "on_failure": on_failure}, COLUMNS)
    assert profile_of(pa.table(GOOD), rules).status == status
    assert profile_of(pa.table({**GOOD, "年龄": [1, 2, 3, 4]}), rules).status == "passed"
    assert Rules().on_failure == "flag"


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ({"not_null": ["人口"]}, "not_null names column '人口', which the dataset does not have"),
        ({"unique": ["x"]}, "its columns are: 身份证号, 单位代码"),
        ({"max_null_rate": {"nope": 0.1}}, "max_null_rate names column 'nope'"),
        ({"max_null_rate": {"年龄": 1.5}}, "outside 0..1; give the highest share"),
        ({"max_null_rate": {"年龄": -0.1}}, "outside 0..1"),
        ({"max_null_rate": {"年龄": float("nan")}}, "outside 0..1"),
        ({"within_bounds": ["区县"]}, "'区县', which has no declared bounds; declare"),
        ({"check_digits": {"年龄": "resident_id"}}, "check digits apply to text columns"),
        ({"check_digits": {"身份证号": "passport"}}, "check_digits.身份证号: Input should be"),
        ({"min_rows": -1}, "min_rows: Input should be greater than or equal to 0"),
        ({"on_failure": "ignore"}, "on_failure: Input should be 'refuse' or 'flag'"),
        ({"notnull": ["区县"]}, "(the rules are: not_null, unique"),
        ({"not_null": "区县"}, "not_null: Input should be a valid tuple"),
        (["not_null"], "quality rules: rules: Input should be"),
    ],
)
def test_rules_that_do_not_fit_say_what_is_wrong(raw: Any, says: str) -> None:
    with pytest.raises(IngestError) as e:
        parse_rules(raw, COLUMNS)
    assert says in e.value.message


def test_rules_parse_from_json_and_none_means_none() -> None:
    assert parse_rules(None, COLUMNS) == Rules()
    rules = parse_rules(
        json.loads('{"not_null": ["区县"], "check_digits": {"身份证号": "resident_id"}}'), COLUMNS
    )
    assert rules.not_null == ("区县",) and rules.check_digits == {"身份证号": "resident_id"}
    with pytest.raises(Exception, match="frozen"):
        rules.min_rows = 3  # type: ignore[misc]
    with pytest.raises(IngestError, match="which the dataset does not have"):
        Profile(COLUMNS, Rules(unique=("不存在",)))


# --- no values -------------------------------------------------------------------------------


def test_a_report_never_shows_a_value_of_the_data() -> None:
    secret_id = "11010519491231002X"
    values = {
        "身份证号": [secret_id, secret_id, None, "QZ身份证秘密"],
        "单位代码": ["91350100M000100Y44", "绝密单位甲", None, "绝密单位甲"],
        "区县": ["秘密区县", None, "秘密区县", "秘密区县"],
        "年龄": [987654, -424242, None, 77777],
        "收入": [31415926.5, None, -27182.8, float("nan")],
        "备注": [None, None, None, "私密备注内容"],
    }
    rules = parse_rules(
        {
            "not_null": list(values),
            "unique": list(values),
            "max_null_rate": {name: 0.0 for name in values},
            "within_bounds": ["年龄", "收入"],
            "check_digits": {"身份证号": "resident_id", "单位代码": "credit_code"},
            "min_rows": 1000,
            "on_failure": "refuse",
        },
        COLUMNS,
    )
    report = profile_of(pa.table(values), rules)
    assert {f.rule for f in report.failures} == set(Rules.model_fields) - {"on_failure"}
    text = json.dumps(report.to_json(), ensure_ascii=False)
    shown = [str(v) for column in values.values() for v in column if v is not None]
    shown += ["31415926", "27182", "3.14159", "987654", "424242", "77777", "秘密", "绝密", "私密"]
    for value in shown:
        assert value not in text, value
    assert "nan" not in text.lower()


def test_the_report_in_json() -> None:
    rules = Rules(not_null=("年龄",), on_failure="refuse")
    body = profile_of(pa.table({**GOOD}), rules).to_json()
    assert body["rows"] == 4 and body["status"] == "refused"
    assert body["failures"] == [
        {
            "rule": "not_null",
            "column": "年龄",
            "message": "column '年龄' has 1 null value of 4; the rules allow none",
        }
    ]
    assert body["columns"][0] == {
        "name": "身份证号",
        "nulls": 1,
        "null_rate": 0.25,
        "outside_bounds": None,
        "invalid_check_digits": 0,
        "duplicates": 0,
        "distinct_band": "2-9",
    }
    assert json.loads(json.dumps(body, ensure_ascii=False)) == body
