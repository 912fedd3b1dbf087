"""A job run on the operator's own machine, on dummy data, under the service's rules.

Every mistake in a job costs its operator a submission, a fee and a wait, and they cannot look
at the data to find it. So `sandbox dev run` runs the job here, on the dummy tables of
`catalog.dummy`, through the same pieces the service uses: the request's own model (params),
the contract's lifecycle check, `submission.compile_code` and `submission.check_names`, the
quote's scan bounds, and the driver (`driver.run_job`) with the in-process executor — plan
checks against the contract's grants, disclosure control with the thresholds by level,
dominance, secondary suppression, and the audit of the job's releases against each other. A
job that runs here runs on the service, and one refused here is refused there with the same
error code; only the values differ, and those mean nothing.

What this cannot know is the service's state: the operator's earlier releases (audited across
jobs there), quotas and money spent, privacy budget left, and releases held for review.

A dummy data directory holds, per dataset, `<name>.parquet` (the table) and `<name>.json`
(`dummy_catalog`: the catalog entry and the disclosure rules in force), or just the Parquet file
as the service serves it, which carries the same JSON in its metadata.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from pydantic import ValidationError

from contracts.document import ContractDocument
from contracts.lifecycle import Status, check_usable
from sandbox.catalog import dummy
from sandbox.catalog.models import DatasetInfo
from sandbox.common import clock
from sandbox.disclosure.dominance import DominanceRule, parse_rules
from sandbox.engine.executor import LocalExecutor
from sandbox.engine.validate import MAX_RAW_QUASI_GROUPS
from sandbox.errors import BadRequest
from sandbox.jail.process import Limits
from sandbox.pipeline import submission
from sandbox.pipeline.driver import JobResult, JobSpec, run_job
from sandbox.records import budgets, money
from sandbox.settings import Settings

CATALOG_SUFFIX = ".json"
TABLE_SUFFIX = ".parquet"
# Where a downloaded Parquet file carries its `dummy_catalog`, so the file alone will do.
CATALOG_KEY = b"sandbox.dummy_catalog"
NOTICE = (
    "Dummy data, generated from the catalog's published schema only: no real value and no "
    "real distribution. Results computed on it mean nothing; it shows whether code runs and "
    "is accepted."
)


class RequestInvalid(BadRequest):
    """What the service's request model refuses (params that are not a JSON object, or that
    the log cannot hold); the service answers these with the same code."""

    code = "invalid_request"


class DummyDataMissing(BadRequest):
    """The job reads a dataset whose dummy data is not in the directory: a local problem,
    never a service refusal."""

    code = "dummy_data_missing"


@dataclass(frozen=True)
class Rules:
    """The disclosure rules in force at the service, as its dummy catalog publishes them."""

    thresholds: Mapping[str, int]
    dominance: tuple[DominanceRule, ...]
    dominance_text: str = "1:50,2:67"

    @classmethod
    def of(cls, settings: Settings) -> Rules:
        return cls(
            dict(settings.thresholds),
            parse_rules(settings.dominance_rules),
            settings.dominance_rules,
        )

    def to_json(self) -> dict[str, Any]:
        return {"thresholds": dict(self.thresholds), "dominance": self.dominance_text}

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Rules:
        text = str(body.get("dominance", ""))
        return cls(
            {str(k): int(v) for k, v in dict(body["thresholds"]).items()}, parse_rules(text), text
        )


def dummy_catalog(info: DatasetInfo, settings: Settings) -> dict[str, Any]:
    """The JSON a local run reads next to a dataset's dummy table: the catalog entry and the
    disclosure rules in force."""
    raw = frozenset(
        c.name
        for c in info.columns
        if c.role == "quasi_identifier"
        and c.distinct is not None
        and c.distinct <= MAX_RAW_QUASI_GROUPS
    )
    return {
        "dataset": dummy.entry(info, raw),
        "disclosure": Rules.of(settings).to_json(),
        "notice": NOTICE,
    }


@dataclass(frozen=True)
class LocalData:
    """The dummy datasets of one directory, and the rules they came with."""

    datasets: Mapping[str, DatasetInfo]
    rules: Rules | None = None

    @classmethod
    def load(cls, directory: Path) -> LocalData:
        if not directory.is_dir():
            raise DummyDataMissing(
                f"{directory} is not a directory; download dummy data into it with "
                "`sandbox datasets dummy NAME --out DIR`"
            )
        datasets: dict[str, DatasetInfo] = {}
        rules: Rules | None = None
        for table in sorted(directory.glob("*" + TABLE_SUFFIX)):
            body = _described(table)
            if body is None:
                continue
            rows = pq.read_metadata(table).num_rows
            info = dummy.from_entry(body["dataset"], (str(table.resolve()),), rows)
            datasets[info.name] = info
            if rules is None and "disclosure" in body:
                rules = Rules.from_json(body["disclosure"])
        return cls(datasets, rules)


def _described(table: Path) -> dict[str, Any] | None:
    """A dummy table's `dummy_catalog`: the JSON file next to it, else the one the download
    wrote into the Parquet file's metadata; None for a file that is neither."""
    meta = table.with_suffix(CATALOG_SUFFIX)
    if meta.exists():
        body = json.loads(meta.read_text(encoding="utf-8"))
    else:
        stored = pq.read_schema(table).metadata or {}
        if CATALOG_KEY not in stored:
            return None
        body = json.loads(stored[CATALOG_KEY].decode("utf-8"))
    return body if isinstance(body, dict) and "dataset" in body else None


@dataclass(frozen=True)
class LocalContract:
    """A contract as the operator downloads it (`GET /v1/contracts/{id}`), or its document."""

    document: ContractDocument
    status: Status | None = None

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> LocalContract:
        if "document" in body and isinstance(body["document"], Mapping):
            status = body.get("status")
            return cls(
                ContractDocument.from_json(body["document"]),
                Status(status) if status is not None else None,
            )
        return cls(ContractDocument.from_json(body))


@dataclass(frozen=True)
class LocalRun:
    result: JobResult
    datasets: tuple[str, ...] = field(default_factory=tuple)


def run_locally(
    code: str,
    params: Any,
    contract: LocalContract,
    data: LocalData,
    settings: Settings | None = None,
    at: dt.datetime | None = None,
) -> LocalRun:
    """Run `code` as the service would under `contract`, on `data`'s dummy tables.

    Raises what the service's submission raises before a job runs (same classes, same codes);
    what happens while it runs is in the result, as on the service."""
    settings = settings or Settings()
    try:
        req = submission.JobRequest(contract_id=contract.document.id, code=code, params=params)
    except ValidationError as exc:
        raise RequestInvalid(_validation_message(exc)) from None
    if contract.status is not None:
        check_usable(contract.document, contract.status, at or clock.now())
    facts = submission.compile_code(req.code)
    wanted = facts.datasets if facts.datasets is not None else frozenset(contract.document.datasets)
    datasets = _datasets(contract.document, data, wanted)
    submission.check_names(contract.document, facts, datasets)
    bound = money.upper_bound(facts, contract.document, datasets, settings.job_wall_seconds)
    epsilon = budgets.job_epsilon(contract.document, facts, None)
    rules = data.rules or Rules.of(settings)
    spec = JobSpec(
        job_id="local",
        code=req.code,
        params=req.params,
        contract=contract.document,
        datasets=datasets,
        thresholds=rules.thresholds,
        limits=Limits(
            cpu_seconds=settings.job_cpu_seconds,
            memory_bytes=settings.job_memory_mb * 2**20,
            wall_seconds=settings.job_wall_seconds,
            fork_template=False,
            # The operator's machine need not filter system calls: nothing secret is here.
            require_seccomp=False,
        ),
        max_rows=bound.max_rows,
        max_outputs=bound.max_outputs,
        epsilon={name: str(eps) for name, eps in sorted(epsilon.items())},
        collect_sites=max(facts.collects, 1),
        dominance=rules.dominance,
    )
    return LocalRun(run_job(spec, LocalExecutor()), tuple(sorted(datasets)))


def _datasets(
    contract: ContractDocument, data: LocalData, wanted: frozenset[str]
) -> dict[str, DatasetInfo]:
    """The contract's datasets with dummy data here (as the service registers the contract's
    datasets); a dataset the code names and the contract grants must have its dummy data."""
    missing = sorted(n for n in wanted if n in contract.datasets and n not in data.datasets)
    if missing:
        raise DummyDataMissing(
            f"no dummy data for {', '.join(repr(n) for n in missing)} here; download it with "
            f"`sandbox datasets dummy {missing[0]} --out DIR` and pass that DIR as --data"
        )
    return {n: info for n, info in data.datasets.items() if n in contract.datasets}


def _validation_message(exc: ValidationError) -> str:
    # The same words as the service's answer to an invalid request body.
    parts = []
    for err in exc.errors()[:3]:
        where = ".".join(str(x) for x in err.get("loc", ()) if x != "body") or "body"
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return "invalid request: " + "; ".join(parts)
