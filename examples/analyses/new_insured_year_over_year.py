"""每年新增参保人数及其同比变化。

Question: how many people were first insured in each year since `from_year`, and by how much
did that number change from the year before?

Parameters: from_year, the first year counted (a whole number).
Outputs: new_insured (year, n), by year; new_insured_change (year, n, change), the same with
the fractional change from the previous year (derived from the released counts).
"""

# params: {"from_year": 2005}

first_insured = table("social_insurance").derive(year=col("insured_since").year())

per_year = (
    first_insured.filter(col("year") >= params["from_year"])
    .group_by("year")
    .agg(n=count())
    .collect()
    .sort("year")
)

emit("new_insured", per_year)
# 同比：由已发布的人数计算；被隐藏的年份，其变化也是隐藏的。
emit("new_insured_change", per_year.pct_change("n", name="change"))
