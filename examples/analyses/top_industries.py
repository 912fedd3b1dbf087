"""从业人数最多的五个行业：各行业法人单位的从业人员合计和单位数。

Question: which five industries employ the most people, and how many firms are in each?

Parameters: none.
Outputs: industries (industry, employees, firms), every industry; top_industries, the five
with the most employees, largest first.
"""

industries = (
    table("enterprises")
    .group_by("industry")
    .agg(employees=sum("employees"), firms=count())
    .collect()
)

emit("industries", industries)
emit("top_industries", industries.sort("employees", descending=True).head(5))
