"""各区未参保人口：常住人口中没有任何社会保险参保记录的人数。

Question: how many residents of each district have no social insurance record at all?

Parameters: none.
Outputs: uninsured_by_district (district, uninsured), most uninsured first.
"""

# 反连接：只保留在参保表中找不到公民身份号码的常住人口。
insured = table("social_insurance").select("resident_id")
uninsured = table("population").join(insured, on="resident_id", how="anti")

by_district = uninsured.group_by("district").agg(uninsured=count()).collect()

emit("uninsured_by_district", by_district.sort("uninsured", descending=True))
