"""The job driver: runs one job's operator code in a jail and answers its plans.

The driver is trusted code next to the data: it validates each plan the jail sends, checks it
against the contract, keeps the scan within what the job was quoted for, runs it on an
executor, applies disclosure control, and hands back only the released table. Under the Ray
executor the driver itself runs as a Ray task, so operator code never runs on the API host.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import math
import os
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, ROUND_UP, Decimal, localcontext
from fractions import Fraction
from typing import Any

import pyarrow as pa

from contracts.budget import ZERO, Epsilon
from contracts.document import ContractDocument
from contracts.scope import check_scope
from sandbox.catalog import revisions
from sandbox.catalog.models import DatasetInfo
from sandbox.common import clock
from sandbox.disclosure import audit, control, dp
from sandbox.disclosure import gate as gates
from sandbox.disclosure.control import Policy
from sandbox.disclosure.dominance import DEFAULT_RULES, DominanceRule
from sandbox.disclosure.gate import Gate
from sandbox.disclosure.review import ReviewRules, hold
from sandbox.disclosure.threshold import cell_threshold
from sandbox.engine import internal, protection, ready
from sandbox.engine.cache import WORKER_TABLES_BYTES
from sandbox.engine.executor import (
    IN_PLACE_MAX_ROWS,
    AggregateResult,
    DeadlinePassed,
    Executor,
    released,
)
from sandbox.engine.validate import CheckedPlan, check_plan
from sandbox.errors import (
    DisclosureRefused,
    JobError,
    JobStatus,
    PlanError,
    QuotaExceeded,
    ServiceFault,
)
from sandbox.jail.process import Limits, Outcome, Stop, answer_in_place, prepare, run_in_jail
from sandbox.language import derived, signs, straight
from sandbox.language import plan as p
from sandbox.language.plan import plan_from_json
from sandbox.language.policy import allowed_names

OUTPUT_NAME = re.compile(r"^[\w.\-]{1,128}$")
MAX_SCALAR_CHARS = 10_000
# Released tables are summaries: a collect() releases at most this many groups, in key order
# (the cap also bounds what crosses into the job process).
MAX_RELEASED_ROWS = 10_000
# Arrow type names of a released table's columns, by the kinds the plan check gives them.
ARROW_TYPES = {
    "int": "int64",
    "float": "double",
    "string": "string",
    "bool": "bool",
    "date": "date32[day]",
}


@dataclass(frozen=True)
class JobSpec:
    job_id: str
    code: str
    params: Mapping[str, Any]
    contract: ContractDocument
    datasets: Mapping[str, DatasetInfo]
    thresholds: Mapping[str, int]
    limits: Limits
    max_rows: int  # scan budget the quote covers
    max_outputs: int
    # Differential privacy: the ε this job reserved per dataset the contract puts under it
    # (exact decimal strings), spread over the code's collect() call sites.
    epsilon: Mapping[str, str] = field(default_factory=dict)
    collect_sites: int = 1
    dominance: tuple[DominanceRule, ...] = DEFAULT_RULES
    # The release gate (disclosure.gate: in-process, or a handle to its Ray actor) and whose
    # releases these are: every release is audited against all of the operator's.
    operator_id: str = ""
    gate: Any = None
    # Plans reading at most this many rows run in the driver's own Ray task.
    in_place_max_rows: int = IN_PLACE_MAX_ROWS
    # Bytes of partition tables each reading worker keeps (settings.engine_worker_tables_mb).
    worker_tables_bytes: int = WORKER_TABLES_BYTES
    # Reported compute time is a whole number of these seconds (0: milliseconds).
    timing_quantum: float = 0.0
    # Which releases people check before the code receives them (None: none).
    review: ReviewRules | None = None
    # A held job resumed: what its earlier runs did (`Replay`).
    replay: Replay | None = None


@dataclass(frozen=True)
class Replay:
    """What a held job's earlier runs did, for the run that resumes it once its reviewers
    released the held release: the releases in order (each with the sha256 of its plan's
    canonical JSON, the body, the release's report), then the usage and observations so far.
    The code's first collects are answered from these, not computed, audited, spent or
    counted again."""

    releases: tuple[dict[str, Any], ...] = ()
    rows_by_dataset: Mapping[str, int] = field(default_factory=dict)
    epsilon_by_dataset: Mapping[str, str] = field(default_factory=dict)
    compute_seconds: str = "0"
    observations: tuple[dict[str, Any], ...] = ()

    @classmethod
    def from_json(cls, state: Mapping[str, Any], held: Mapping[str, Any]) -> Replay:
        """From a review's `state` and its released `held` entry, which comes last."""
        return cls(
            tuple([*state.get("releases", []), dict(held)]),
            dict(state.get("rows_by_dataset", {})),
            dict(state.get("epsilon_by_dataset", {})),
            str(state.get("compute_seconds", "0")),
            tuple(state.get("observations", [])),
        )


@dataclass(frozen=True)
class JobResult:
    status: JobStatus  # succeeded | failed | rejected
    outputs: dict[str, Any]
    usage: dict[str, Any]
    disclosure: dict[str, Any]
    error: JobError | None
    printed: str = ""
    # The sets of people this job released, per dataset, each with the threshold it was
    # released under, for the operator's recorded history.
    released_sets: dict[str, list[tuple[bytes, int, str]]] = field(default_factory=dict)
    # Per collect, what the engine saw that the operator does not (`_observe`): the input of
    # the regulator's detection. Never part of what the operator sees.
    observations: list[dict[str, Any]] = field(default_factory=list)
    # A service fault's details for the bureau's log (which file, what failed); never shown.
    incident: str = ""
    # Seconds the engine and the disclosure rules took, all collects together: for the
    # bureau's metrics, never for the operator (that would time the work on the data).
    stage_seconds: dict[str, float] = field(default_factory=dict)
    # A HELD result: the held release ("held": plan hash, body, report, "reasons",
    # "required", "index") and what resuming needs ("state", `Replay.from_json`).
    review: dict[str, Any] | None = None


class Held(Stop):
    """A release a rule holds: the run ends before the code receives it."""

    def __init__(self, index: int, reasons: tuple[str, ...], required: int) -> None:
        super().__init__("release held for review")
        self.index, self.reasons, self.required = index, reasons, required


class ReplayMismatch(Stop):
    """A resumed job's code asked for another plan than its earlier run at that collect."""

    def __init__(self, index: int) -> None:
        super().__init__("replay mismatch")
        self.index = index


def plan_digest(plan_json: Any) -> str:
    return hashlib.sha256(_canonical(plan_json).encode("utf-8")).hexdigest()


def _canonical(body: Any) -> str:
    return json.dumps(body, sort_keys=True, ensure_ascii=False)


@dataclass
class _Handler:
    spec: JobSpec
    executor: Executor
    rows_by_dataset: dict[str, int] = field(default_factory=dict)
    releases: list[dict[str, Any]] = field(default_factory=list)
    released: set[str] = field(default_factory=set)
    outputs: dict[str, Any] = field(default_factory=dict)
    epsilon_used: dict[str, Epsilon] = field(default_factory=dict)
    new_sets: dict[str, list[tuple[bytes, int, str]]] = field(default_factory=dict)
    observations: list[dict[str, Any]] = field(default_factory=list)
    # When the job's time runs out (time.monotonic()): partition work stops there.
    deadline: float | None = None
    # The gate releases are audited by: the instance's, or (a job run on its own, without
    # one) a gate of the job's own, so that its releases are still audited together.
    gate: Any = None
    stage_seconds: dict[str, float] = field(default_factory=dict)
    # Per release this run made or replayed: plan hash, body and report, for a hold.
    made: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.gate is None:
            self.gate = self.spec.gate if self.spec.gate is not None else Gate(lambda _: ())
        replay = self.spec.replay
        if replay is not None:
            # What the earlier runs read and spent counts once, with what this run adds.
            self.rows_by_dataset.update(replay.rows_by_dataset)
            self.epsilon_used.update(
                {name: Epsilon(Fraction(e)) for name, e in replay.epsilon_by_dataset.items()}
            )
            self.observations.extend(replay.observations)

    @property
    def rows_scanned(self) -> int:
        return sum(self.rows_by_dataset.values())

    def rows_by_level(self) -> dict[str, int]:
        levels: dict[str, int] = {}
        for name, rows in self.rows_by_dataset.items():
            level = self.spec.datasets[name].level
            levels[level] = levels.get(level, 0) + rows
        return dict(sorted(levels.items()))

    def collect(self, plan_json: Any) -> dict[str, Any]:
        try:
            return self._collect(plan_json)
        except DisclosureRefused as exc:
            # A plan the rules refuse outright is itself a sign, for the regulator's eyes.
            self.observations.append(
                {"index": len(self.releases), "refused": exc.code, "reason": str(exc)[:300]}
            )
            raise

    def _collect(self, plan_json: Any) -> dict[str, Any]:
        digest = plan_digest(plan_json)
        replayed = self.spec.replay.releases if self.spec.replay is not None else ()
        index = len(self.releases)
        if index < len(replayed):
            return self._replay(replayed[index], digest, index)
        body = self._compute(plan_json)
        self.made.append({"plan": digest, "body": body, "release": self.releases[-1]})
        review = self.spec.review
        if review is not None:
            levels = [self.spec.datasets[n].level for n in self._read_names(self.releases[-1])]
            held = hold(review, levels, int(self.releases[-1]["cells"]))
            if held is not None:
                raise Held(index, held.reasons, held.required)
        return body

    def _replay(self, entry: Mapping[str, Any], digest: str, index: int) -> dict[str, Any]:
        if entry.get("plan") != digest:
            raise ReplayMismatch(index)
        body: dict[str, Any] = entry["body"]
        self.releases.append(dict(entry["release"]))
        self.released.add(_canonical(body))
        self.made.append(dict(entry))
        return body

    @staticmethod
    def _read_names(release: Mapping[str, Any]) -> list[str]:
        return [str(release["dataset"]), *release.get("joined", [])]

    def _compute(self, plan_json: Any) -> dict[str, Any]:
        checked = check_plan(plan_from_json(plan_json), dict(self.spec.datasets))
        check_scope(self.spec.contract, checked.usage)
        # The primary (left-most) dataset's rows are a cell's contributors; a join reads more.
        ds, read = checked.dataset, checked.datasets
        _refuse_private_join(self.spec.contract, read)
        _refuse_many_to_many(checked)
        more = sum(d.row_count for d in read)
        if self.rows_scanned + more > self.spec.max_rows:
            raise QuotaExceeded(
                f"this collect() would scan {more} more rows of "
                f"{', '.join(repr(d.name) for d in read)}, beyond the "
                f"{self.spec.max_rows} rows this job was quoted for; each collect() call site is "
                "quoted once, so avoid calling collect() in a loop",
                sign="exhaustion",
            )
        epsilon = self._private_share(ds.name)
        # A joined cell is as sensitive as the most sensitive dataset it draws on.
        threshold = max(
            cell_threshold(d.level, dict(self.spec.thresholds), self.spec.contract.min_contributors)
            for d in read
        )
        if epsilon is not None:
            if p.margin_sets(checked.plan):
                raise DisclosureRefused(
                    f"totals and shares are not available under differential privacy yet; "
                    f"dataset '{ds.name}' is analysed under it by this contract, so collect "
                    "the cells and add them up in the job"
                )
            checked = dp.prepare(checked)
            # Spent once data is read, whatever happens next: a collect that reads data and
            # then ends in a refusal must cost what a release costs, or the refusal is free.
            self.epsilon_used[ds.name] = self.epsilon_used.get(ds.name, ZERO) + epsilon
        else:
            checked = dataclasses.replace(checked, disclosure_stats=True, quantile_window=threshold)
        try:
            with self._timed("engine"):
                result = self.executor.aggregate(checked, self.deadline)
        except DeadlinePassed:
            # The jail's conversation turns this into the job's timeout.
            raise PlanError("this collect() was stopped at the job's time limit") from None
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            # Evaluation is total, so this is a residual failure of the engine on this data.
            # It must not become the job's outcome (an oracle on values never released): the
            # collect releases nothing, and the rows it would have read count as read.
            result = None
        if result is None:
            for d in read:
                self.rows_by_dataset[d.name] = self.rows_by_dataset.get(d.name, 0) + d.row_count
            released = control.unevaluable(
                checked.plan.keys,
                [(name, ARROW_TYPES.get(kind, "null")) for name, kind in checked.output_kinds],
            )
            noise: tuple[dp.Noise, ...] = ()
        else:
            for name, rows in result.rows_by_dataset.items():
                self.rows_by_dataset[name] = self.rows_by_dataset.get(name, 0) + rows
            with self._timed("disclosure"):
                released, noise = self._release(checked, result, threshold, epsilon)
        self.observations.append(_observe(checked, result, released, threshold, len(self.releases)))
        self.releases.append(
            {
                "index": len(self.releases),
                "dataset": ds.name,
                "keys": list(checked.plan.keys),
                **({"joined": [d.name for d in read[1:]]} if len(read) > 1 else {}),
                "rows": len(released.body["rows"]),
                "cells": len(released.body["rows"]) * len(checked.plan.aggs),
                "suppressed": list(released.suppressed),
                **({"noise": [n.to_json() for n in noise]} if noise else {}),
                **({"coarsened": list(released.coarsened)} if released.coarsened else {}),
                **({"truncated": released.truncated} if released.truncated else {}),
                **({"left_out": released.small} if released.small else {}),
            }
        )
        body = rounded(with_bounds(released.body, checked.plan), checked.plan)
        self.released.add(_canonical(body))
        return body

    @contextlib.contextmanager
    def _timed(self, stage: str) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            spent = time.monotonic() - started
            self.stage_seconds[stage] = self.stage_seconds.get(stage, 0.0) + spent

    def _release(
        self,
        checked: CheckedPlan,
        result: AggregateResult,
        threshold: int,
        epsilon: Epsilon | None,
    ) -> tuple[control.Release, tuple[dp.Noise, ...]]:
        ds, table = checked.dataset, result.table
        if epsilon is not None:
            # Noisy values: the noise protects cells and composes across releases, so only
            # the minimum-contributor rule is kept (on noisy counts), and the groups shown are
            # chosen privately too.
            table, noise = dp.privatize(table, checked, epsilon)
            table = dp.select_partitions(table, checked, noise)
            return control.release(
                table,
                checked.plan.keys,
                Policy(threshold, dominance=(), secondary=False, max_rows=MAX_RELEASED_ROWS),
            ), noise
        measures = tuple(
            (name, m) for (name, _), m in zip(checked.plan.aggs, checked.measures) if m is not None
        )
        released = control.release(
            table,
            checked.plan.keys,
            Policy(
                threshold,
                self.spec.dominance,
                max_rows=MAX_RELEASED_ROWS,
                measures=measures,
                revisions=tuple(
                    revisions.load(r.dataset.revisions) if r.dataset.revisions else None
                    for r in checked.reads
                ),
                conditions=tuple(n for n, a in checked.plan.aggs if a.fn in p.CONDITIONAL),
            ),
            functools.partial(self._audit, threshold),
            _margins(checked.plan, result.groupings),
        )
        for space, blob in released.new_sets:
            self.new_sets.setdefault(ds.name, []).append((blob, threshold, space))
        return released, ()

    def _audit(self, threshold: int, rows: list[control.Sets | None]) -> list[Any]:
        """The gate's verdict on each row: the sets go as digests, and their members only
        where the gate asks for them (a release repeated costs its digests)."""
        sent = gates.entries(rows, gates.INLINE_BYTES)
        verdicts = self._at_gate(threshold, sent)
        wanted = {i for i, v in enumerate(verdicts) if isinstance(v, gates.Needed)}
        if wanted:
            again = self._at_gate(threshold, gates.with_sets(rows, sent, wanted))
            verdicts = [again[i] if i in wanted else v for i, v in enumerate(verdicts)]
        return verdicts

    def _at_gate(self, threshold: int, rows: gates.Entries) -> list[Any]:
        gate, operator, job = self.gate, self.spec.operator_id, self.spec.job_id
        if hasattr(gate.release, "remote"):  # the Ray actor
            import ray

            return ray.get(gate.release.remote(operator, rows, threshold, job))  # type: ignore[no-any-return]
        return gate.release(operator, rows, threshold, job)  # type: ignore[no-any-return]

    def _private_share(self, dataset: str) -> Epsilon | None:
        """The ε one collect() of `dataset` spends, or None when the contract does not put
        it under differential privacy. Refuses once the job's ε for it is used up."""
        if dataset not in self.spec.contract.privacy:
            return None
        reserved = self.spec.epsilon.get(dataset)
        if reserved is None:
            raise DisclosureRefused(
                f"dataset '{dataset}' is analysed under differential privacy and this job "
                "reserved no ε for it; name it literally, table('" + dataset + "'), so the "
                "submission reserves its ε"
            )
        total = Epsilon.parse(reserved)
        share = total / max(self.spec.collect_sites, 1)
        if self.epsilon_used.get(dataset, ZERO) + share > total:
            raise QuotaExceeded(
                f"this job's ε of {total} for dataset '{dataset}' is used up: each collect() "
                f"of it spends ε/{max(self.spec.collect_sites, 1)}, one share per collect() "
                "call site. Put the aggregates you need into one collect(), and avoid "
                "calling collect() in a loop",
                sign="exhaustion",
            )
        return share

    def emit(self, name: Any, value: Any) -> None:
        if not isinstance(name, str) or not OUTPUT_NAME.match(name):
            raise PlanError(
                "output names are 1–128 letters, digits, '_', '-' or '.'", sign=_name_sign(name)
            )
        if name in self.outputs:
            raise PlanError(f"output {name!r} was already emitted; use a different name")
        if len(self.outputs) >= self.spec.max_outputs:
            raise QuotaExceeded(
                f"this job was quoted for {self.spec.max_outputs} output(s); each emit() call "
                "site is quoted once, so avoid emit() in a loop",
                sign="exhaustion",
            )
        self.outputs[name] = _check_output(value, self.released)


def _margins(plan: p.Aggregate, groupings: tuple[tuple[str, ...], ...]) -> control.Margins | None:
    if not groupings:
        return None
    return control.Margins(
        groupings,
        p.shown_margins(plan),
        tuple((name, a.within) for name, a in plan.aggs if a.within is not None),
    )


def rounded(body: dict[str, Any], plan: p.Aggregate) -> dict[str, Any]:
    """A released table with each aggregate the code asked to round (`.round(n)`) rounded
    half away from zero, here, before the job's process receives it."""
    names = [c["name"] for c in body["columns"]]
    digits = {names.index(name): a.digits for name, a in plan.aggs if a.digits is not None}
    if not digits:
        return body
    rows = [
        [_round(v, digits[i]) if i in digits else v for i, v in enumerate(row)]
        for row in body["rows"]
    ]
    return {**body, "rows": rows}


def _round(value: Any, digits: int) -> Any:
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return value
    if isinstance(value, float) and not math.isfinite(value):
        return value
    step = Decimal(1).scaleb(-digits)
    # Precision enough for any double's digits and an int64's: rounding never fails.
    with localcontext(prec=400):
        exact = Decimal(repr(value)).quantize(step, rounding=ROUND_HALF_UP)
    return int(exact) if isinstance(value, int) else float(exact)


def with_bounds(body: dict[str, Any], plan: p.Aggregate) -> dict[str, Any]:
    """A released table whose banded key columns (bucket(), histogram()) say their bands'
    numeric bounds, [low, high) in order, beside the labels."""
    columns = []
    for c in body["columns"]:
        edges = p.bucket_edges(plan.input, c["name"]) if c["name"] in plan.keys else None
        columns.append(c if edges is None else {**c, "bounds": p.bucket_bounds(edges)})
    return {**body, "columns": columns}


def _selected(table: pa.Table, read: int) -> int:
    """How many people of read `read` the plan selected: for a left join's right side, those
    who matched (the others stand in for themselves, engine.protection), as far as the
    released cells tell."""
    matched = [c for c in table.column_names if c.startswith(protection.matched_set(read, ""))]
    columns = matched or [protection.ids(read)]
    return protection.merged(b for c in columns for b in table.column(c).to_pylist())[1]


def _observe(
    checked: CheckedPlan,
    result: AggregateResult | None,
    released: control.Release,
    threshold: int,
    index: int,
) -> dict[str, Any]:
    """What the engine saw of one collect that the operator does not: how many people its
    filters selected (per table read), the plan's shape and constants, what the rules hid.
    For the regulator's detection of attack patterns (never shown to the operator)."""
    form, literals = p.shape(checked.plan)
    rules: dict[str, int] = {}
    for cell in released.suppressed:
        rules[cell["rule"]] = rules.get(cell["rule"], 0) + 1
    table = result.table if result is not None else None
    selected = (
        []
        if table is None
        else [_selected(table, j) for j in range(protection.reads_in(table.column_names))]
    )
    sensitive = any(
        c is not None and c.role == "sensitive"
        for read in checked.reads
        for name in read.columns
        if (c := read.dataset.column(name)) is not None
    )
    return {
        "index": index,
        "dataset": checked.dataset.name,
        "shape": hashlib.sha256(_canonical(form).encode("utf-8")).hexdigest()[:16],
        "literals": literals[:64],
        "threshold": threshold,
        "sensitive": sensitive,
        "selected": selected,
        "groups": (table.num_rows if table is not None else 0),
        "rules": rules,
        "left_out": released.small,
        "cells": len(released.body["rows"]) * len(checked.plan.aggs),
        "padded": _padded(table, threshold) if table is not None else 0,
        "evaluated": result is not None,
        "private": checked.clamp is not None,
        "pinpoints": _pinpoints(checked, form),
        "extremes": [
            name
            for name, a in checked.plan.aggs
            if a.fn == "quantile"
            and a.param is not None
            and not EXTREME_Q <= a.param <= 1 - EXTREME_Q
        ],
        # Cells the audit refused because their set is nearly an earlier one.
        "near": sum(
            1 for cell in released.suppressed if cell["rule"] == audit.RULE and cell.get("near")
        ),
    }


# Quantiles this close to 0 or 1 ask for the extremes, which a release never gives exactly.
EXTREME_Q = 0.01
# Quasi-identifiers with more distinct values than this single people out when matched
# exactly (an exact birth date); ordinary analyses take ranges or coarsened forms of them.
PINPOINT_DISTINCT = 100


def _pinpoints(checked: CheckedPlan, form: Any) -> list[str]:
    """Columns the plan (`form`: its JSON with literals blanked, `plan.shape`) matches
    exactly against constants that name few people: identifiers and fine quasi-identifiers
    compared with `==` or `isin` (in a filter, a case() or any expression). Decided from the
    code and the catalog alone."""
    fine = {
        c.name
        for read in checked.reads
        for c in read.dataset.columns
        if c.role == "identifier"
        or (c.role == "quasi_identifier" and (c.distinct or 0) > PINPOINT_DISTINCT)
    }
    found: set[str] = set()
    stack: list[Any] = [form]
    while stack:
        x = stack.pop()
        if isinstance(x, dict):
            if x.get("fn") in ("eq", "isin") and isinstance(x.get("args"), list):
                names = {a["col"] for a in x["args"] if isinstance(a, dict) and "col" in a}
                if any(isinstance(a, dict) and "lit" in a for a in x["args"]):
                    found |= names & fine
            stack.extend(x.values())
        elif isinstance(x, list):
            stack.extend(x)
    return sorted(found)


def _padded(table: pa.Table, threshold: int) -> int:
    """Cells whose rows with a value would pass the threshold but whose contributions from
    the sensitive data do not: everyone else padded with values that ignore it."""
    padded = 0
    for name in table.column_names:
        if not name.startswith(internal.VALUED):
            continue
        valued = table.column(name).to_pylist()
        counted = table.column(internal.contributors(internal.aggregate_of(name))).to_pylist()
        padded += sum(
            1 for v, c in zip(valued, counted) if (v or 0) >= threshold and (c or 0) < threshold
        )
    return padded


def _refuse_many_to_many(checked: CheckedPlan) -> None:
    """A join must match each row of one side to at most one row of the other, through a
    key the catalog records unique: otherwise a few people's rows can be multiplied onto
    many (fan-out), and how long the job takes depends on who matched. Decided from the
    catalog alone, so the refusal says nothing about the data."""
    if checked.many_to_many:
        keys = ", ".join(repr(k) for k in checked.many_to_many[0])
        raise DisclosureRefused(
            f"join(on={keys}): neither table holds these keys once per row (no column the "
            "catalog records as a unique identifier among them), so rows could match many "
            "times over; join on an identifier that is unique in one of the tables, e.g. "
            "population's resident_id or enterprises' credit_code"
        )


def _refuse_private_join(contract: ContractDocument, read: tuple[DatasetInfo, ...]) -> None:
    private = [d.name for d in read if d.name in contract.privacy]
    if len(read) > 1 and private:
        raise DisclosureRefused(
            f"dataset '{private[0]}' is analysed under differential privacy in this contract, "
            "and joins with such a dataset are not available yet; analyse it on its own, "
            "without join()"
        )


def _name_sign(name: Any) -> str | None:
    if not isinstance(name, str):
        return "probe"
    # A path in an output name is aimed at wherever outputs are stored.
    return "escape" if "/" in name or "\\" in name or ".." in name else None


def _check_output(value: Any, released: set[str]) -> dict[str, Any]:
    """The jail is untrusted: an output must be a table this job released, a table derived
    in the job from released values (its shape checked again here), or one scalar."""
    if isinstance(value, dict) and value.get("kind") == "table":
        if value.get("derived") is True:
            derived.check(value)
            return value
        if _canonical(value) not in released:
            raise PlanError(
                "emit() of a table must pass a collected result, or a table derived from "
                "one (sort, head, pivot, lag, pct_change, emit_table)",
                sign="probe",
            )
        return value
    if (
        isinstance(value, dict)
        and value.get("kind") == "scalar"
        and set(value) == {"kind", "value"}
    ):
        v = value["value"]
        if isinstance(v, float) and not math.isfinite(v):
            raise PlanError("emit() of a number needs a finite value")
        if (
            v is None
            or isinstance(v, (bool, int, float))
            or (isinstance(v, str) and len(v) <= MAX_SCALAR_CHARS)
        ):
            return value
    raise PlanError(
        "emit() takes a collected table or a single number, string or boolean", sign="probe"
    )


def reported_seconds(wall: float, limit: float, quantum: float = 0.0) -> str:
    """The compute time a job is reported (and billed) for: its wall time, at most its limit,
    rounded up to milliseconds, or to a whole number of `quantum` seconds so that how long
    the engine worked on the data shows only in steps that coarse."""
    seconds = min(Decimal(repr(wall)), Decimal(repr(limit))).quantize(Decimal("0.001"), ROUND_UP)
    if quantum <= 0:
        return str(seconds)
    step = Decimal(repr(quantum))
    return str((clock.whole_steps(seconds, step) * step).quantize(Decimal("0.001"), ROUND_UP))


def run_job(spec: JobSpec, executor: Executor) -> JobResult:
    handler = _Handler(spec, executor, deadline=time.monotonic() + spec.limits.wall_seconds)
    started = time.monotonic()
    incident = ""
    held: Held | None = None
    try:
        outcome = _run_code(spec, handler)
    except ServiceFault as exc:
        # Settled as the service's failure; what the code was shown so far stays recorded.
        # (Over Ray the fault may arrive wrapped in the task's error, which delegates to it.)
        outcome = Outcome(JobStatus.FAILED, exc.job_error())
        outcome.wall_seconds = time.monotonic() - started
        incident = exc.incident
    except Held as exc:
        # The job process is gone: its code never saw this release, or any sign of it.
        held = exc
        outcome = Outcome(JobStatus.HELD, wall_seconds=time.monotonic() - started)
    except ReplayMismatch as exc:
        outcome = Outcome(
            JobStatus.FAILED,
            JobError(
                "replay_mismatch",
                f"this job was held for review and resumed once released; its code must "
                f"repeat its earlier plans in the same order, but collect() number "
                f"{exc.index + 1} asked for a different plan than before. Make the code's "
                "plans depend only on its parameters and on what earlier collect()s returned",
            ),
            wall_seconds=time.monotonic() - started,
        )
    compute = reported_seconds(outcome.wall_seconds, spec.limits.wall_seconds, spec.timing_quantum)
    if spec.replay is not None:
        compute = str(Decimal(spec.replay.compute_seconds) + Decimal(compute))
    usage = {
        "rows_scanned": handler.rows_scanned,
        "rows_by_level": handler.rows_by_level(),
        "rows_by_dataset": dict(sorted(handler.rows_by_dataset.items())),
        "compute_seconds": compute,
        "collects": len(handler.releases),
        "outputs": len(handler.outputs) if _delivers(outcome) else 0,
    }
    if handler.epsilon_used:
        # Charged in whole micro-ε, rounded up, so the budget never under-counts.
        usage["epsilon_by_dataset"] = {
            name: str(Epsilon.from_micro(eps.micro()))
            for name, eps in sorted(handler.epsilon_used.items())
        }
    observations = [
        *handler.observations,
        *code_observation(spec.code, len(handler.releases), outcome.sign),
    ]
    review = None
    if held is not None:
        made = handler.made
        review = {
            "index": held.index,
            "reasons": list(held.reasons),
            "required": held.required,
            "held": made[-1],
            "state": {
                "releases": made[:-1],
                "rows_by_dataset": dict(handler.rows_by_dataset),
                # Exact fractions: a share of ε need not be a decimal.
                "epsilon_by_dataset": {
                    n: f"{e.value.numerator}/{e.value.denominator}"
                    for n, e in handler.epsilon_used.items()
                },
                "compute_seconds": compute,
                # The code's own signs are observed once, when the job ends.
                "observations": handler.observations,
            },
        }
    return JobResult(
        status=outcome.status,
        outputs=handler.outputs if _delivers(outcome) else {},
        usage=usage,
        disclosure=_disclosure(handler, _delivers(outcome)),
        error=outcome.error,
        printed=outcome.printed,
        incident=incident,
        stage_seconds=handler.stage_seconds,
        # Whatever the outcome, the job's code saw these cells (and may have printed them).
        released_sets=handler.new_sets,
        observations=observations,
        review=review,
    )


def _run_code(spec: JobSpec, handler: _Handler) -> Outcome:
    """The job's code in its jail process; or, for a straight-line job, its requests read from
    the code and answered here, with no process and without running the code at all."""
    limits = spec.limits
    read = straight.requests(spec.code, spec.params) if limits.read_straight_line else None
    if read is not None and len(read) < limits.max_requests:
        return answer_in_place(read, handler, limits)
    return run_in_jail(spec.code, dict(spec.params), handler, limits)


def carried_usage(replay: Replay, levels: Mapping[str, str]) -> dict[str, Any]:
    """The usage of a held job's earlier runs, ended there (its release refused): what it read
    and spent counts, as for a job refused part-way."""
    by_level: dict[str, int] = {}
    for name, rows in replay.rows_by_dataset.items():
        by_level[levels[name]] = by_level.get(levels[name], 0) + rows
    usage: dict[str, Any] = {
        "rows_scanned": sum(replay.rows_by_dataset.values()),
        "rows_by_level": dict(sorted(by_level.items())),
        "rows_by_dataset": dict(sorted(replay.rows_by_dataset.items())),
        "compute_seconds": replay.compute_seconds,
        "collects": len(replay.releases),
        "outputs": 0,
    }
    if replay.epsilon_by_dataset:
        usage["epsilon_by_dataset"] = {
            name: str(Epsilon.from_micro(Epsilon(Fraction(e)).micro()))
            for name, e in sorted(replay.epsilon_by_dataset.items())
        }
    return usage


def _delivers(outcome: Outcome) -> bool:
    """Whether the job's outputs reach the operator: when it succeeded, and when its own code
    failed after emitting some (what it paid to collect is not lost to a later slip). Where
    the code raised depends only on what was released to it; a timeout, a crash or a refusal
    by the rules delivers nothing."""
    if outcome.status == JobStatus.SUCCEEDED:
        return True
    return (
        outcome.status == JobStatus.FAILED
        and outcome.error is not None
        and outcome.error.code == CODE_ERROR
    )


# The error of a job whose own code raised (sandbox.jail.child).
CODE_ERROR = "job_code_error"


def _disclosure(handler: _Handler, delivered: bool) -> dict[str, Any]:
    """The job's disclosure report: each release, and which outputs the job derived itself
    from released values (post-processing: they reveal nothing the releases did not)."""
    made = sorted(
        name
        for name, value in handler.outputs.items()
        if delivered and value.get("derived") is True
    )
    return {"releases": handler.releases, **({"derived": made} if made else {})}


def code_observation(code: str, index: int, ending: str | None = None) -> list[dict[str, Any]]:
    """What the code itself and the way it ended say (language.signs), as an observation
    for detection; none when they say nothing."""
    found = {kind: list(whats) for kind, whats in _static_signs(code)}
    if ending is not None:
        found.setdefault(ending, []).append("how the job ended")
    return [{"index": index, "signs": found}] if found else []


@functools.lru_cache(maxsize=256)
def _static_signs(code: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    # Kept per source text: the same job is submitted again and again (a dashboard's refresh),
    # and reading it is pure.
    return tuple((k, tuple(v)) for k, v in signs.static_signs(code, allowed_names()).items())


def run_job_on_ray(spec: JobSpec) -> JobResult:
    """Body of the Ray task that drives one job; its partition work fans out as Ray tasks
    (or, for a small scan, runs right here)."""
    try:
        return run_job(spec, _ray_executor(spec.in_place_max_rows, spec.worker_tables_bytes))
    finally:
        released()


def ready_worker(limits: Limits) -> int:
    """Body of the Ray task that readies a worker before any job needs it: the worker has
    imported what drivers and partition tasks run (this module) when it runs this; here it
    takes the Arrow paths they take once (`ready.exercise`) and starts the job-process
    template. Returns the worker's process id.

    It holds its worker for at least `READY_HOLD_SECONDS`: a worker that is ready already
    would finish it at once and be handed the next one, and the others would stay cold."""
    import ray

    started = time.monotonic()
    ready.exercise(ray)
    prepare(limits)
    time.sleep(max(0.0, READY_HOLD_SECONDS - (time.monotonic() - started)))
    return os.getpid()


READY_HOLD_SECONDS = 0.3


@functools.cache
def _ray_executor(in_place_max_rows: int, worker_tables_bytes: int) -> Executor:
    # One per worker process: registering the partition task with Ray costs milliseconds.
    from sandbox.engine.executor import RayExecutor

    return RayExecutor(in_place_max_rows=in_place_max_rows, keep_bytes=worker_tables_bytes)


def output_digest(body: Any) -> str:
    return hashlib.sha256(_canonical(body).encode("utf-8")).hexdigest()
