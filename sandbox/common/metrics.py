"""What the service counts for its operators' dashboards (Prometheus, via prometheus-client).

Counts and durations only: no data value, no token, no name of a dataset's content. Levels
that live in the database (money and ε held by running jobs, the log's size) are read when
scraped, by a collector the API registers (sandbox.api.metrics).
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

# Set (by `sandbox serve --workers N`) before any worker imports prometheus-client: each
# worker then keeps its counts in files there, and a scrape of any worker sums them all.
MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"

REGISTRY = CollectorRegistry(auto_describe=True)

JOBS = Counter(
    "sandbox_jobs",
    "Jobs settled, by final status and error code ('' when none).",
    ["status", "code"],
    registry=REGISTRY,
)
STAGE = Histogram(
    "sandbox_job_stage_seconds",
    "Seconds per stage of a job: submit (checks, quote, reservation; compile, "
    "the code's part of it), queue (waiting to run), run (the driver and its jail; "
    "engine and disclosure, the parts of it spent computing and applying the "
    "disclosure rules), settle (charging, recording).",
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


def exposition() -> bytes:
    """The counts of this process, or of every worker of the service when there are several."""
    shared = os.environ.get(MULTIPROCESS_DIR)
    if not shared:
        return generate_latest(REGISTRY)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=shared)  # type: ignore[no-untyped-call]
    return generate_latest(registry)
