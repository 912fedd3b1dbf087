"""Disclosure attacks through left and anti joins: a determined operator, through the public
HTTP API only, tries to learn one resident's income (see test_disclosure_attacks.py for the
target, the operators and the lax contract: every use of every column, joins included).

In a left join the unmatched left rows have no right-side person, and in an anti join the
right side only takes rows away. The attacks:

1. the right side of a left join filtered to her, everyone else padded around her row (with
   nulls, zeros, a known constant, or keys made null);
2. whether she is on the right side at all, as an oracle on her income: a flag summed, a
   count of the matched rows, a group of its own;
3. an anti join as the complement of her: everyone, minus everyone but her, in one job and
   across two.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from . import test_disclosure_attacks as base
from .test_disclosure_attacks import (
    Operator,
    Target,
    assert_same,
    cell,
    code,
    missed,
    rows,
    same_for_both_secrets,
)

# The instance, its attackers (each attack must raise a flag for the regulator too) and the
# target of the disclosure attacks, for this module too.
attack_world = base.attack_world
new_operator = base.new_operator
operator = base.operator
target = base.target


# Everyone, and her alone with her income as `v`: a left join keeps everyone's row.
EVERYONE_AND_HER = """
everyone = table("population").select("resident_id", "district", "hukou_type")
her = table("population").filter(WHO).derive(v=col("income")).select("resident_id", "v")
joined = everyone.join(her, on="resident_id", how="left")
"""


def _above(target: Target) -> tuple[dict[str, Any], dict[str, Any]]:
    """params for `income > g`: true of the target, then false."""
    return {"g": target.income - 1}, {"g": target.income}


# Everyone, with `m` set where she matched a right side that holds her only when her income
# is above params["g"].
ORACLE = """
everyone = table("population").select("resident_id", "district")
right = (table("population").filter(WHO & (col("income") > params["g"]))
         .derive(m=lit(1)).select("resident_id", "m"))
joined = everyone.join(right, on="resident_id", how="left")
"""


# --- 1. her row padded by everyone else's ----------------------------------------------------


def test_left_join_sum_and_mean_of_a_right_side_of_one(operator: Operator, target: Target) -> None:
    """Left join, right side filtered to her: sum, mean and count of her income."""
    job = operator.run(
        code(
            EVERYONE_AND_HER
            + 'emit("r", joined.agg(n=count(), s=sum("v"), m=mean("v")).collect())',
            target,
        )
    )
    assert cell(job, "n") is not None, rows(job)  # everyone's count is released
    assert missed(cell(job, "s"), target.income), rows(job)
    assert missed(cell(job, "m"), target.income), rows(job)


def test_left_join_grouped_by_her_district(operator: Operator, target: Target) -> None:
    """Left join, right side filtered to her, by district: her district's sum is hers."""
    job = operator.run(
        code(
            EVERYONE_AND_HER
            + 'emit("r", joined.group_by("district").agg(n=count(), s=sum("v")).collect())',
            target,
        )
    )
    assert rows(job), job  # the districts are released, counted by everyone
    assert all(missed(s, target.income) for _, _, s in rows(job) if s is not None), rows(job)


def test_left_join_unmatched_rows_padded_with_zero(operator: Operator, target: Target) -> None:
    """Left join, everyone unmatched padded with 0: the sum is her income."""
    job = operator.run(
        code(
            EVERYONE_AND_HER
            + """
w = case((col("v").is_null(), 0.0), default=col("v"))
emit("r", joined.derive(w=w).agg(n=count(), s=sum("w"), m=mean("w")).collect())
""",
            target,
        )
    )
    n, s, m = (cell(job, c) for c in ("n", "s", "m"))
    assert missed(s, target.income), rows(job)
    assert missed(None if m is None or n is None else m * n, target.income), rows(job)


def test_left_join_unmatched_rows_padded_with_a_constant(
    operator: Operator, target: Target
) -> None:
    """Left join, everyone unmatched padded with 1000: s - 1000 (n - 1) is her income."""
    job = operator.run(
        code(
            EVERYONE_AND_HER
            + """
w = case((col("v").is_null(), 1000.0), default=col("v"))
emit("r", joined.derive(w=w).agg(n=count(), s=sum("w")).collect())
""",
            target,
        )
    )
    n, s = (cell(job, c) for c in ("n", "s"))
    assert missed(None if n is None or s is None else s - 1000 * (n - 1), target.income), rows(job)


def test_left_join_padded_with_the_left_sides_own_income(
    operator: Operator, target: Target
) -> None:
    """Left join, unmatched rows take their own income, her row twice hers: the sum less
    everyone's total is her income."""
    job = operator.run(
        code(
            """
everyone = table("population").derive(own=col("income")).select("resident_id", "own")
her = table("population").filter(WHO).derive(v=col("income")).select("resident_id", "v")
joined = everyone.join(her, on="resident_id", how="left")
w = case((col("v").is_null(), col("own")), default=col("own") + col("v"))
emit("all", table("population").agg(s=sum("income")).collect())
emit("r", joined.derive(w=w).agg(s=sum("w")).collect())
""",
            target,
        )
    )
    total, padded = cell(job, "s", name="all"), cell(job, "s")
    assert missed(None if total is None or padded is None else padded - total, target.income), (
        rows(job, "all"),
        rows(job),
    )


def test_left_join_with_null_keys_for_everyone_but_her(operator: Operator, target: Target) -> None:
    """Left join whose left keys are null but hers: everyone kept, only she matches the
    right side of everyone's incomes."""
    job = operator.run(
        code(
            """
keys = table("population").derive(
    resident_id=case((WHO, col("resident_id")), default=None)).select("resident_id", "district")
incomes = table("population").derive(v=col("income")).select("resident_id", "v")
emit("r", keys.join(incomes, on="resident_id", how="left")
     .agg(n=count(), s=sum("v"), m=mean("v")).collect())
""",
            target,
        )
    )
    assert missed(cell(job, "s"), target.income), rows(job)
    assert missed(cell(job, "m"), target.income), rows(job)


# --- 2. whether she matched, as an oracle --------------------------------------------------


def test_left_join_match_flag_summed(new_operator: Callable[..., Operator], target: Target) -> None:
    """Left join oracle: the number of rows that matched is 1 when her income is above g."""
    text = code(
        ORACLE
        + """
flag = case((col("m").is_null(), 0), default=1)
emit("r", joined.derive(flag=flag).agg(n=count(), f=sum("flag")).collect())
""",
        target,
    )
    assert_same(*same_for_both_secrets(new_operator, text, _above(target)))


def test_left_join_matched_rows_counted(
    new_operator: Callable[..., Operator], target: Target
) -> None:
    """Left join oracle: the matched rows kept by a filter, and counted."""
    text = code(
        ORACLE + 'emit("r", joined.filter(~col("m").is_null()).agg(n=count()).collect())',
        target,
    )
    assert_same(*same_for_both_secrets(new_operator, text, _above(target)))


def test_left_join_match_as_a_group_key(
    new_operator: Callable[..., Operator], target: Target
) -> None:
    """Left join oracle: whether a "matched" group appears."""
    text = code(
        ORACLE
        + """
flag = case((col("m").is_null(), "no"), default="yes")
emit("r", joined.derive(flag=flag).group_by("flag").agg(n=count()).collect())
""",
        target,
    )
    true, false = same_for_both_secrets(new_operator, text, _above(target))
    # The "no" group is everyone but her, or everyone: counts the operator cannot tell apart
    # without a release of everyone, which the audit then stops (section 3). The "yes"
    # group must never appear.
    for seen in (true, false):
        released = seen["outputs"]["r"]["rows"]
        assert [r[0] for r in released] == ["no"], released


# --- 3. an anti join as her complement --------------------------------------------------------

ANTI = """
pop = table("population").filter(DISTRICT)
her = table("population").filter(WHO).select("resident_id")
"""


def test_anti_join_complement_within_one_job(operator: Operator, target: Target) -> None:
    """Her district, then her district anti-joined with her: the difference is hers."""
    job = operator.run(
        code(
            ANTI
            + """
emit("all", pop.agg(n=count(), s=sum("income")).collect())
emit("rest", pop.join(her, on="resident_id", how="anti").agg(n=count(), s=sum("income")).collect())
""",
            target,
        )
    )
    whole, rest = cell(job, "s", name="all"), cell(job, "s", name="rest")
    assert missed(None if whole is None or rest is None else whole - rest, target.income), (
        rows(job, "all"),
        rows(job, "rest"),
    )


def test_anti_join_complement_across_two_jobs(operator: Operator, target: Target) -> None:
    """Her district in one job, her district anti-joined with her in the next."""
    first = operator.run(
        code(ANTI + 'emit("r", pop.agg(n=count(), s=sum("income")).collect())', target)
    )
    second = operator.run(
        code(
            ANTI + 'emit("r", pop.join(her, on="resident_id", how="anti")'
            '.agg(n=count(), s=sum("income")).collect())',
            target,
        )
    )
    whole, rest = cell(first, "s"), cell(second, "s")
    assert missed(None if whole is None or rest is None else whole - rest, target.income), (
        rows(first),
        rows(second),
    )


def test_anti_join_complement_counted_then_summed(operator: Operator, target: Target) -> None:
    """The count of her complement first (no magnitude), then the sums of both."""
    operator.run(
        code(
            ANTI
            + 'emit("r", pop.join(her, on="resident_id", how="anti").agg(n=count()).collect())',
            target,
        )
    )
    rest = operator.run(
        code(
            ANTI + 'emit("r", pop.join(her, on="resident_id", how="anti")'
            '.agg(s=sum("income")).collect())',
            target,
        )
    )
    whole = operator.run(code(ANTI + 'emit("r", pop.agg(s=sum("income")).collect())', target))
    a, b = cell(whole, "s"), cell(rest, "s")
    assert missed(None if a is None or b is None else a - b, target.income), (
        rows(whole),
        rows(rest),
    )


def test_left_join_of_her_district_and_everyone_else(operator: Operator, target: Target) -> None:
    """A left join of everyone with everyone but her: her income is everyone's total less
    the sum of the matched incomes."""
    job = operator.run(
        code(
            """
everyone = table("population").filter(DISTRICT).select("resident_id")
others = (table("population").filter(DISTRICT & ~WHO)
          .derive(v=col("income")).select("resident_id", "v"))
emit("all", table("population").filter(DISTRICT).agg(s=sum("income")).collect())
emit("r", everyone.join(others, on="resident_id", how="left").agg(n=count(), s=sum("v")).collect())
""",
            target,
        )
    )
    whole, others = cell(job, "s", name="all"), cell(job, "s")
    assert missed(None if whole is None or others is None else whole - others, target.income), (
        rows(job, "all"),
        rows(job),
    )


@pytest.mark.parametrize(
    "aggregate",
    ['sum(case((col("m").is_null(), 0), default=1))', 'sum("m")', 'count_distinct("u")'],
    ids=["flag", "literal", "distinct"],
)
def test_left_join_match_counts_differenced_across_two_jobs(
    new_operator: Callable[..., Operator], target: Target, aggregate: str
) -> None:
    """Left join oracle by differencing: how many of her district earn above g, with and
    without her on the right side; the two counts differ by one when she does."""
    operator = new_operator()
    g = target.income - 1
    released = []
    for right in ("DISTRICT & ~WHO", "DISTRICT"):
        job = operator.run(
            code(
                f"""
everyone = table("population").select("resident_id", "hukou_type")
right = (table("population").filter({right} & (col("income") > {g}))
         .derive(m=lit(1), u=col("resident_id")).select("resident_id", "m", "u"))
emit("r", everyone.join(right, on="resident_id", how="left").agg(a={aggregate}).collect())
""",
                target,
            )
        )
        released.append(cell(job, "a"))
    first, second = released
    assert first is not None, released  # the first is released: the attack is not refused
    assert second is None or second - first != 1, released


def test_anti_join_count_of_everyone_but_those_above_g(operator: Operator, target: Target) -> None:
    """Counts only: her district, then her district less whoever of her earns above g. The
    counts differ by one exactly when her income is above g (here it is)."""
    g = target.income - 1
    job = operator.run(
        code(
            ANTI
            + f"""
above = table("population").filter(WHO & (col("income") > {g})).select("resident_id")
emit("all", pop.agg(n=count()).collect())
emit("rest", pop.join(above, on="resident_id", how="anti").agg(n=count()).collect())
""",
            target,
        )
    )
    whole, rest = cell(job, "n", name="all"), cell(job, "n", name="rest")
    assert whole is not None, rows(job, "all")
    assert rest is None or whole - rest != 1, (whole, rest)
