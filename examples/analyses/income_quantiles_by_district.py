"""各区月收入分位数：P25、中位数、P75 和 P90。

Question: how spread out are incomes in each district?

Parameters: none.
Outputs: income_quantiles_by_district (district, n, p25, p50, p75, p90); quantiles of a
sensitive column are released to two significant figures.
"""

quantiles = (
    table("population")
    .group_by("district")
    .agg(
        n=count(),
        p25=quantile("income", 0.25),
        p50=quantile("income", 0.5),
        p75=quantile("income", 0.75),
        p90=quantile("income", 0.9),
    )
    .collect()
)

emit("income_quantiles_by_district", quantiles.sort("p50", descending=True))
