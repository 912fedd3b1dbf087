"""What the service counts for its operators' dashboards (Prometheus, via prometheus-client).

Counts and durations only: no data value, no token, no name of a dataset's content. Levels
that live in the database (money and ε held by running jobs, the log's size) are read when
scraped, by a collector the API registers (sandbox.api.metrics).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

JOBS = Counter(
    "sandbox_jobs",
    "Jobs settled, by final status and error code ('' when none).",
    ["status", "code"],
    registry=REGISTRY,
)
STAGE = Histogram(
    "sandbox_job_stage_seconds",
    "Seconds per stage of a job: submit (checks, quote, reservation), queue "
    "(waiting to run), run (the driver and its jail), settle (charging, "
    "recording).",
    ["stage"],
    registry=REGISTRY,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
SUPPRESSED = Counter(
    "sandbox_cells_suppressed",
    "Released cells hidden by the disclosure rules, by rule.",
    ["rule"],
    registry=REGISTRY,
)
