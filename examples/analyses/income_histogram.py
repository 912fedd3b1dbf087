"""月收入分布：按收入段统计人数。

Question: how are residents' monthly incomes distributed over the bands the bureau uses in
its reports (无收入, 3000 元以下, 3000–5000, 5000–8000, 8000–12000, 12000–20000, 20000 以上)?

Parameters: none.
Outputs: income_histogram (bin, n), one row per band in edge order (< 1, [1, 3000), …,
>= 20000); the bin column carries each band's numeric bounds.
"""

# 收入段的分界（元/月）：第一段 "< 1" 即无收入，最后一段 ">= 20000" 为 2 万元及以上。
edges = [1, 3000, 5000, 8000, 12000, 20000]

histogram = table("population").histogram("income", edges).collect()

emit("income_histogram", histogram)
