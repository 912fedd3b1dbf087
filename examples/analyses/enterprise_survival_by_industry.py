"""各行业企业五年存续率：成立满五年的法人单位中，五年后仍存续的比例。

Question: of the enterprises founded at least five years before `as_of`, what share was still
in existence five years after it was founded, by industry?

Parameters: as_of, the date the register describes (YYYY-MM-DD).
Outputs: survival_by_industry (industry, firms, survived, survival_5y), the industries with
the best five-year survival first.
"""

# params: {"as_of": "2024-12-31"}

old_enough = table("enterprises").filter(col("established").years_until(params["as_of"]) >= 5)
# Still registered, or deregistered five or more years after it was founded.
survived = col("deregistered").is_null() | (
    col("established").years_until(col("deregistered")) >= 5
)

by_industry = (
    old_enough.group_by("industry")
    .agg(firms=count(), survived=count_if(survived), survival_5y=mean_of(survived).round(3))
    .collect()
)

emit("survival_by_industry", by_industry.sort("survival_5y", descending=True))
