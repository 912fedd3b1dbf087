"""分行业参保情况：社会保险参保人员按参保单位所属行业统计人数和平均缴费基数。

Question: in which industries do insured people work, and what is their mean contribution
base (缴费基数)?

Parameters: none.
Outputs: insurance_by_industry (industry, insured, mean_base), the industries with the most
insured people first.
"""

# 参保记录（社会保险参保信息库）通过统一社会信用代码关联法人单位（法人单位基础信息库）的行业。
firms = table("enterprises").select("credit_code", "industry")
insured = table("social_insurance").select("resident_id", "credit_code", "contribution_base")

by_industry = (
    insured.join(firms, on="credit_code")
    .group_by("industry")
    .agg(
        # 参保人数：不同的公民身份号码个数（一人多条记录只算一次）。
        insured=count_distinct("resident_id"),
        mean_base=mean("contribution_base").round(0),
    )
    .collect()
)

emit("insurance_by_industry", by_industry.sort("insured", descending=True))
