"""按户籍类型的月收入：本地城镇、本地农村、外地城镇、外地农村四类人口的人数与收入水平。

Question: how do residents' monthly incomes differ by hukou type (户籍类型)?

Parameters: none.
Outputs: income_by_hukou (hukou_type, n, mean_income, median_income); the mean is rounded
to whole yuan at the source, so the exact value never reaches the job.
"""

income = (
    table("population")
    .group_by("hukou_type")
    .agg(
        n=count(),
        mean_income=mean("income").round(0),
        # 中位数：收入是敏感列，发布时保留两位有效数字。
        median_income=quantile("income", 0.5),
    )
    .collect()
)

emit("income_by_hukou", income.sort("mean_income", descending=True))
