"""参保年限分布：参保人员自首次参保至统计日的年数，按年限段统计。

Question: how long have insured people been insured (under 1 year, 1–5, 5–10, 10–20,
20–30, 30 years and more)?

Parameters: as_of, the day the years are counted to ("YYYY-MM-DD").
Outputs: years_insured (years_band, n, share), bands in edge order, with each band's share of
all insured people.
"""

# params: {"as_of": "2026-01-01"}

years = table("social_insurance").derive(
    years_band=col("insured_since").years_until(params["as_of"]).bucket([1, 5, 10, 20, 30])
)

distribution = years.group_by("years_band").agg(n=count(), share=share(count())).collect()

emit("years_insured", distribution)
