"""各区老龄化程度：65 岁及以上常住人口的人数和比例。

Question: how many residents of each district are 65 or older on a given day, and what
share of the district are they (the usual ageing indicator)?

Parameters: as_of, the day ages are taken at ("YYYY-MM-DD").
Outputs: elderly_share_by_district (district, residents, aged_65_plus, share_65_plus), the
oldest districts first.
"""

# params: {"as_of": "2026-01-01"}

age = col("birth_date").age_at(params["as_of"])

elderly = (
    table("population")
    .group_by("district")
    .agg(
        residents=count(),
        aged_65_plus=count_if(age >= 65),
        share_65_plus=mean_of(age >= 65),
    )
    .collect()
)

emit("elderly_share_by_district", elderly.sort("share_65_plus", descending=True))
