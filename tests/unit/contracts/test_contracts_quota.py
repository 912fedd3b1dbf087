import datetime as dt

import pytest

from contracts.document import ContractDocument
from contracts.errors import ContractInvalid, ContractQuotaExceeded
from contracts.quota import BEIJING, check_quotas, day_start, month_start


def _doc(**quotas: int) -> ContractDocument:
    return ContractDocument(
        id="c-1",
        version=1,
        operator_id="o-1",
        datasets={"population": {"district": ("group_by",)}},
        purpose="规划",
        purpose_class="commercial",
        valid_from="2026-01-01T00:00:00Z",
        valid_to="2027-01-01T00:00:00Z",
        quotas=quotas,
        spend_cap=None,
        issued_at="2026-01-01T00:00:00Z",
    )


def test_no_quotas_means_no_limit() -> None:
    check_quotas(_doc(), jobs_today=10**6, rows_this_month=10**12, job_rows=10**9)


def test_jobs_per_day_admits_up_to_the_quota_and_names_it_when_refusing() -> None:
    doc = _doc(jobs_per_day=3)
    check_quotas(doc, jobs_today=2, rows_this_month=0, job_rows=0)
    with pytest.raises(ContractQuotaExceeded, match="3 job\\(s\\) per day"):
        check_quotas(doc, jobs_today=3, rows_this_month=0, job_rows=0)


def test_rows_per_month_counts_the_job_s_own_bound() -> None:
    doc = _doc(rows_per_month=1000)
    check_quotas(doc, jobs_today=0, rows_this_month=400, job_rows=600)
    with pytest.raises(ContractQuotaExceeded, match="1000 rows scanned per month") as e:
        check_quotas(doc, jobs_today=0, rows_this_month=400, job_rows=601)
    assert e.value.code == "contract_quota"


def test_unknown_quota_names_are_refused_rather_than_signed_unenforced() -> None:
    with pytest.raises(ContractInvalid, match="unknown quota 'jobs'"):
        _doc(jobs=5)


def test_days_and_months_follow_beijing_time() -> None:
    # 2026-03-31 17:00 UTC is already 1 April in Beijing.
    moment = dt.datetime(2026, 3, 31, 17, 0, tzinfo=dt.UTC)
    assert day_start(moment) == dt.datetime(2026, 4, 1, tzinfo=BEIJING)
    assert month_start(moment) == dt.datetime(2026, 4, 1, tzinfo=BEIJING)
    assert month_start(moment).astimezone(dt.UTC) == dt.datetime(2026, 3, 31, 16, 0, tzinfo=dt.UTC)
