"""Every setting of the service, read from `SANDBOX_*` environment variables.

Each field's description is the documentation; `tests/unit/test_settings.py` checks that
the README documents every one.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

LOG_FORMATS = ("json", "text")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SANDBOX_", frozen=True)

    data_dir: Path = Field(
        Path("sandbox-data"),
        description=(
            "Directory holding the SQLite database, the bureau key and the datasets' Parquet files."
        ),
    )
    database_url: str | None = Field(
        None,
        description=(
            "SQLAlchemy URL of the database; default: a SQLite file `sandbox.db` in the data directory."
        ),
    )
    ray_address: str | None = Field(
        None,
        description=(
            "Address of an existing Ray cluster (`RAY_ADDRESS` is honoured too); default: start a "
            "private local Ray, whatever other Ray instances run on the machine."
        ),
    )
    ray_connect_timeout: float = Field(
        10.0,
        gt=0,
        description=(
            "Seconds the service waits at start-up for the Ray cluster at `SANDBOX_RAY_ADDRESS` "
            "(or `RAY_ADDRESS`) to answer; past it the start fails with an error naming the "
            "address."
        ),
    )
    executor: str = Field(
        "ray",
        pattern="^(ray|local)$",
        description=(
            "`ray` runs jobs and partition work as Ray tasks; `local` runs them in the API process "
            "(development only)."
        ),
    )
    ray_num_cpus: int | None = Field(
        None,
        ge=1,
        description=(
            "CPUs for a locally started Ray; default: all of this machine's. Also how many "
            "partition tasks run at once, each holding about one partition's working set."
        ),
    )
    ray_object_store_mb: int | None = Field(
        None,
        ge=75,
        description=(
            "Size of the object store (shared memory) of a locally started Ray, in MiB; objects "
            "beyond it spill to disk, and the scan cache keeps at most a quarter of it. It "
            "bounds the shared memory only, not what Ray's worker processes hold themselves, "
            "which is most of a large job's peak. Default: Ray's (about 30 % of the memory "
            "free when Ray starts)."
        ),
    )
    partition_rows: int = Field(
        1_000_000,
        ge=1,
        description=(
            "Rows per Parquet partition when a dataset is ingested; partitions are the unit of "
            "parallel work."
        ),
    )
    job_wall_seconds: float = Field(
        30.0,
        gt=0,
        description=("Wall-clock limit of one job; the job's process is killed at this deadline."),
    )
    job_cpu_seconds: int = Field(10, ge=1, description="CPU-time limit of one job's code process.")
    job_memory_mb: int = Field(
        1024, ge=64, description=("Address-space limit of one job's code process, in MiB.")
    )
    jail_fork_template: bool = Field(
        True,
        description=(
            "Fork each job's code process from a template process (one per worker) that has "
            "already started Python and imported the job language, ~2 ms instead of ~70 ms; "
            "every job still gets a fresh process of its own. `false` starts a new interpreter "
            "per job."
        ),
    )
    jail_require_seccomp: bool = Field(
        True,
        description=(
            "Refuse to run jobs where the job process's system-call filter (seccomp) cannot be "
            "installed; `false` runs them anyway, with only the language's and rlimits' walls "
            "(the service warns at start)."
        ),
    )
    jail_read_straight_line: bool = Field(
        True,
        description=(
            "Answer a straight-line job (only the language's calls on literals and "
            '`params["name"]`, names assigned once, no loop, condition or function) from '
            "its requests read "
            "off its code, without starting a job process: its code is never run, only read "
            "(a few ms less per job). `false` starts a process for every job."
        ),
    )
    engine_in_place_rows: int = Field(
        250_000,
        ge=0,
        description=(
            "A plan reading at most this many rows (all its datasets together) runs inside the "
            "job's driver task on its Ray worker, instead of one Ray task per partition, which "
            "costs more than such a scan; 0 always fans out."
        ),
    )
    engine_worker_tables_mb: int = Field(
        256,
        ge=0,
        description=(
            "Partition tables each Ray worker that reads partitions keeps for the next job "
            "that reads them, in MiB (0: none). With the partition size and the number of "
            "Ray CPUs it bounds the engine's memory: a worker holds these tables and one "
            "task's working set; after a task it keeps freed memory up to half this bound "
            "for its next task and returns the rest to the system."
        ),
    )
    threshold_l1: int = Field(
        1, ge=1, description="Minimum contributors per released cell, L1 data."
    )
    threshold_l2: int = Field(
        5, ge=1, description="Minimum contributors per released cell, L2 data."
    )
    threshold_l3: int = Field(
        10, ge=1, description="Minimum contributors per released cell, L3 data."
    )
    threshold_l4: int = Field(
        10, ge=1, description="Minimum contributors per released cell, L4 data."
    )
    dominance_rules: str = Field(
        "1:50,2:67",
        pattern=r"^\s*(\d+\s*:\s*\d+(\.\d+)?\s*(,\s*|$))*$",
        description=(
            "Dominance rules for released sums and means, as `n:percent` pairs: a cell is "
            "suppressed when its n largest contributions exceed that share of its total; empty "
            "turns the rule off."
        ),
    )
    log_origin: str = Field(
        "public-data-sandbox",
        description=(
            "Origin line of the ledger's signed checkpoints: names this log to verifiers."
        ),
    )
    max_upload_mb: int = Field(
        1024, ge=1, description="Largest dataset file accepted by ingest, in MiB."
    )
    flag_suspend_score: int = Field(
        10,
        ge=0,
        description=(
            "A contract is suspended automatically, pending the regulator's review, once the "
            "scores of its unreviewed flags (attack patterns detected in its jobs) of the last "
            "`SANDBOX_FLAG_WINDOW_DAYS` days reach this; 0 never suspends."
        ),
    )
    console_session_hours: float = Field(
        8.0,
        gt=0,
        le=24 * 30,
        description=(
            "How long a sign-in to the browser console lasts; signing out, or a rotated or "
            "revoked API token, ends it sooner."
        ),
    )
    version_retention_days: float = Field(
        30.0,
        ge=0,
        description=(
            "How long the files of a dataset version are kept after a newer version replaced "
            "it (jobs submitted before read the version they were submitted against); longer "
            "while a queued or running job still reads it."
        ),
    )
    refresh_check_seconds: float = Field(
        60.0,
        gt=0,
        description=(
            "How often each API process looks for datasets whose scheduled pull from their "
            "source is due (one process runs each pull)."
        ),
    )
    recovery_interval_seconds: float = Field(
        15.0,
        gt=0,
        description=(
            "How often each API process looks for jobs left queued or running by a process "
            "that died (several workers serve one database), and fails them uncharged."
        ),
    )
    timing_quantum_seconds: float = Field(
        1.0,
        ge=0,
        le=60,
        description=(
            "Reported compute time is rounded up to a whole number of these seconds, so the "
            "report does not show how long the engine worked on the data; a job under "
            "differential privacy also ends (its status and results appear) only at such a "
            "boundary from its start. 0 reports milliseconds and holds no job."
        ),
    )
    dummy_needs_contract: bool = Field(
        True,
        description=(
            "Whether an operator needs a contract in force that covers a dataset to download "
            "its dummy data (generated from the published schema only); false lets any "
            "signed-in principal download it."
        ),
    )
    charge_all_suppressed: bool = Field(
        True,
        description=(
            "Whether a job whose every released cell was suppressed is charged; false charges "
            "such a job nothing, as the bureau's price rules may ask (an empty table is "
            "charged either way: whether its groups were too small is not told)."
        ),
    )
    review_levels: str = Field(
        "L4",
        pattern=r"^\s*(L[1-4]\s*(,\s*|$))*$",
        description=(
            "A release reading data of any of these levels (comma-separated, e.g. `L3,L4`) is "
            "held until reviewers release it, before the job's code receives it; empty holds "
            "none for its level."
        ),
    )
    review_max_cells: int = Field(
        0,
        ge=0,
        description=(
            "A release of more cells than this (rows × aggregates) is held for review; 0 holds "
            "none for its size."
        ),
    )
    reviewers: int = Field(
        1,
        ge=1,
        le=10,
        description=(
            "Independent reviewers (bureau, or a department owning data it reads) who must "
            "release a held release; any one refusal refuses it."
        ),
    )
    reviewers_l4: int = Field(
        2,
        ge=1,
        le=10,
        description=(
            "Independent reviewers who must release a held release that reads L4 data (at "
            "least `SANDBOX_REVIEWERS`)."
        ),
    )
    flag_window_days: int = Field(
        7,
        ge=1,
        description=(
            "Days over which a contract's unreviewed flag scores are added up for the automatic "
            "suspension."
        ),
    )

    log_format: str = Field(
        "json",
        description=(
            "How the service writes its log (stderr): `json`, one JSON object per line for a "
            "log collector, or `text` for a person at a terminal."
        ),
    )
    log_level: str = Field(
        "info",
        description="Least severe log lines written: `debug`, `info`, `warning` or `error`.",
    )

    @field_validator("log_format")
    @classmethod
    def _log_format(cls, value: str) -> str:
        if value.strip().lower() not in LOG_FORMATS:
            raise ValueError(
                f"SANDBOX_LOG_FORMAT must be one of {', '.join(LOG_FORMATS)} "
                "(json for a log collector, text for a terminal)"
            )
        return value.strip().lower()

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        if value.strip().lower() not in LOG_LEVELS:
            raise ValueError(f"SANDBOX_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}")
        return value.strip().lower()

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        # Partition paths travel to Ray workers, which resolve a relative path elsewhere.
        return value.expanduser().resolve()

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'sandbox.db').resolve()}"

    @property
    def resolved_ray_address(self) -> str | None:
        return self.ray_address or os.environ.get("RAY_ADDRESS") or None

    @property
    def thresholds(self) -> dict[str, int]:
        return {
            "L1": self.threshold_l1,
            "L2": self.threshold_l2,
            "L3": self.threshold_l3,
            "L4": self.threshold_l4,
        }

    @property
    def review_level_set(self) -> frozenset[str]:
        return frozenset(x.strip() for x in self.review_levels.split(",") if x.strip())

    @property
    def key_path(self) -> Path:
        return self.data_dir / "keys" / "bureau.pem"

    @property
    def run_dir(self) -> Path:
        """Files of the processes serving the instance (their leases, shared metrics)."""
        return self.data_dir / "run"

    @property
    def datasets_dir(self) -> Path:
        return self.data_dir / "datasets"
