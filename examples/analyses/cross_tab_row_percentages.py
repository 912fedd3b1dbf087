"""各区户籍构成交叉表：区 × 户籍类型的人数、行百分比（占本区的比例）和合计。

Question: what is the hukou mix of each district, with district totals, hukou-type totals
and the grand total?

Parameters: none.
Outputs: district_by_hukou (district, hukou_type, n, row_pct) in long form, with total rows
(None in a key means "all"; the table's margins list them); district_by_hukou_n and
district_by_hukou_pct, the counts and the row percentages pivoted to one row per district, with
a "total" column and a total row.
"""

cross = (
    table("population")
    .group_by("district", "hukou_type")
    .agg(n=count(), row_pct=share(count(), within="district"))
    .with_totals()
    .collect()
)

emit("district_by_hukou", cross)
# 透视：一区一行，一类户籍一列。
emit("district_by_hukou_n", cross.pivot("district", "hukou_type", "n"))
emit("district_by_hukou_pct", cross.pivot("district", "hukou_type", "row_pct"))
