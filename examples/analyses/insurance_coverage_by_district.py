"""各区社会保险覆盖率：常住人口中有参保记录的人数和比例。

Question: of everyone living in each district, how many have a social insurance record, and
what share of the district is covered?

Parameters: none.
Outputs: insurance_coverage_by_district (district, residents, insured, coverage), every
resident counted once whether insured or not (a left join), lowest coverage first.
"""

# 左连接：每个常住人口保留一行；没有参保记录的人，参保表的列为空。
insurance = table("social_insurance").select("resident_id", "months_paid")
residents = table("population").join(insurance, on="resident_id", how="left")

coverage = (
    residents.group_by("district")
    .agg(
        residents=count(),
        insured=count_nonnull("months_paid"),
        coverage=mean_of(~col("months_paid").is_null()),
    )
    .collect()
)

emit("insurance_coverage_by_district", coverage.sort("coverage"))
