"""各区人口年龄结构：每个区的少儿（0–14 岁）、劳动年龄（15–64 岁）和老年（65 岁及以上）人口。

Question: how many residents of each district are children, of working age and elderly on
a given day, and what share of the district is each age band?

Parameters: as_of, the day ages are taken at ("YYYY-MM-DD").
Outputs: ageing_by_district (district, age_band, n, share_of_district), one row per district
and band; share_of_district adds up to 1 within a district when none of its cells is hidden.
"""

# params: {"as_of": "2026-01-01"}

# 年龄：出生日期到统计日的整岁数，再分成三段（< 15, [15, 65), >= 65）。
residents = table("population").derive(
    age_band=col("birth_date").age_at(params["as_of"]).bucket([15, 65])
)

bands = (
    residents.group_by("district", "age_band")
    .agg(
        n=count(),
        # 该年龄段占本区常住人口的比例，由引擎按区求和后给出，不需要再扫一遍求合计。
        share_of_district=share(count(), within="district"),
    )
    .collect()
)

emit("ageing_by_district", bands.sort("district"))
