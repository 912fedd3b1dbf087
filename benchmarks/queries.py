"""The benchmark queries: each one as operator job code and as the equivalent DuckDB SQL.

Job code emits its released table as the output ``result``; the SQL returns the same columns
under the same names, so the two can be compared cell by cell. Queries whose aggregates or
table operations the job language does not offer yet are defined all the same: the runner
reports them as not yet supported until the engine grows the names in ``needs``.
"""

from __future__ import annotations

from dataclasses import dataclass

OUTPUT = "result"
SMALL_DATASET = "population_sample"

# Ages are whole years at the synthetic city's reference date, 2024-12-31.
REFERENCE_YEAR = 2024
HISTOGRAM_EDGES = (0, 3000, 6000, 10000, 20000)


@dataclass(frozen=True)
class Query:
    name: str
    title: str
    datasets: tuple[str, ...]  # scanned; the first is the one whose rows are reported
    keys: tuple[str, ...]  # group keys: how released rows are matched to SQL rows
    code: str  # job code; emits OUTPUT
    sql: str  # DuckDB SQL over views named like the datasets
    needs: tuple[str, ...] = ()  # language features beyond count/sum/mean, by name
    rel_tol: float = 1e-9  # floats compare within this relative tolerance

    def __post_init__(self) -> None:
        if not self.datasets or f'emit("{OUTPUT}"' not in self.code:
            raise ValueError(f"query {self.name} must scan a dataset and emit {OUTPUT!r}")


def elderly_by_district(name: str, dataset: str, title: str) -> Query:
    """Filter + group by one key: residents aged 65 and over by district, count and mean."""
    code = f'''\
pop = table("{dataset}")
aged = pop.derive(age={REFERENCE_YEAR} - col("birth_date").year()).filter(col("age") >= 65)
res = aged.group_by("district").agg(n=count(), avg_income=mean("income")).collect()
emit("{OUTPUT}", res)
'''
    sql = f"""
SELECT district, count(*) AS n, avg(income) AS avg_income
FROM {dataset}
WHERE {REFERENCE_YEAR} - year(birth_date) >= 65
GROUP BY district
"""
    return Query(name, title, (dataset,), ("district",), code, sql)


def _bucket_sql(column: str, edges: tuple[int, ...]) -> str:
    """The band label bucket() gives: below the first edge, [a, b) between edges, and at or
    above the last edge."""
    whens = [f"WHEN {column} < {edges[0]} THEN '< {edges[0]}'"]
    whens += [f"WHEN {column} < {b} THEN '[{a}, {b})'" for a, b in zip(edges, edges[1:])]
    return f"CASE {' '.join(whens)} ELSE '>= {edges[-1]}' END"


Q1 = elderly_by_district("q1", "population", "filter, group by 1 key: count, mean")

Q2 = Query(
    "q2",
    "group by 2 keys: count_distinct",
    ("population",),
    ("district", "hukou_type"),
    code=f'''\
pop = table("population")
res = (pop.group_by("district", "hukou_type")
          .agg(n=count(), birth_dates=count_distinct("birth_date"))
          .collect())
emit("{OUTPUT}", res)
''',
    sql="""
SELECT district, hukou_type, count(*) AS n, count(DISTINCT birth_date) AS birth_dates
FROM population
GROUP BY district, hukou_type
""",
    needs=("count_distinct",),
)

Q3 = Query(
    "q3",
    "population ⋈ social insurance ⋈ enterprises",
    ("population", "social_insurance", "enterprises"),
    ("industry",),
    code=f'''\
people = table("population").select("resident_id", "income")
insured = table("social_insurance").select("resident_id", "credit_code", "contribution_base")
firms = table("enterprises").select("credit_code", "industry")
joined = insured.join(people, on="resident_id").join(firms, on="credit_code")
res = (joined.group_by("industry")
             .agg(n=count(), avg_income=mean("income"), avg_base=mean("contribution_base"))
             .collect())
emit("{OUTPUT}", res)
''',
    sql="""
SELECT e.industry, count(*) AS n, avg(p.income) AS avg_income,
       avg(s.contribution_base) AS avg_base
FROM social_insurance s
JOIN population p ON p.resident_id = s.resident_id
JOIN enterprises e ON e.credit_code = s.credit_code
GROUP BY e.industry
""",
    needs=("join",),
)

# The histogram's bins follow bucket(): below the first edge, [a, b) between edges, and at or
# above the last edge. Quantiles are compared with DuckDB's interpolating quantile_cont within
# 1 %, which also admits a mergeable approximate sketch.
Q4 = Query(
    "q4",
    "quantiles and a histogram of income, by district",
    ("population",),
    ("district", "bin"),
    code=f'''\
earners = table("population").filter(col("income") > 0)
res = (earners.derive(bin=col("income").bucket({list(HISTOGRAM_EDGES)}))
              .group_by("district", "bin")
              .agg(n=count(), median_income=quantile("income", 0.5),
                   p90_income=quantile("income", 0.9))
              .collect())
emit("{OUTPUT}", res)
''',
    sql=f"""
SELECT district, {_bucket_sql("income", HISTOGRAM_EDGES)} AS bin, count(*) AS n,
       quantile_cont(income, 0.5) AS median_income,
       quantile_cont(income, 0.9) AS p90_income
FROM population
WHERE income > 0
GROUP BY ALL
""",
    # Quantiles of a sensitive column are released to 2 significant figures: within 5 %.
    rel_tol=0.05,
)

Q5 = elderly_by_district("q5", SMALL_DATASET, "small job: q1 on a sample (p50)")

QUERIES: dict[str, Query] = {q.name: q for q in (Q1, Q2, Q3, Q4, Q5)}
