"""Scale-out: q1 and q3 on a multi-node Ray cluster, where each partition task ran, and what
that predicts for larger data on more nodes.

    python -m benchmarks.scaleout [--nodes 3] [--residents 4000000] [--partition-rows 250000]

The nodes are `ray.cluster_utils.Cluster` nodes on this one machine: a head without CPUs,
where this process (the job driver's stand-in) attaches, and `--nodes` worker nodes of one
CPU each. They share the machine's cores, so the run shows how the work is *distributed*, not
a speed-up. The per-task costs it measures feed a small model (`estimate`) of q1 and q3 at
100 M and 1 B rows on 1 to 64 nodes; `--json FILE` keeps every input of it.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from benchmarks.breakdown import checked_plan
from benchmarks.instance import CITY_DATASETS, Instance, Options, running_instance
from benchmarks.queries import QUERIES
from sandbox.catalog.encryption import decryption_for
from sandbox.engine import compute, join
from sandbox.engine.executor import LocalExecutor, RayExecutor
from sandbox.engine.validate import CheckedPlan

QUERY_NAMES = ("q1", "q3")
MB = 1 << 20
# Task functions of the engine (sandbox.engine.join) and what each does, for the tables.
KINDS = {
    "partial_task": "partition → partial aggregate (q3: a right partition's join, then aggregate)",
    "split_task": "partition → hash buckets on the join key (the shuffle's send side)",
    "entity_split_task": "left partition → the right partitions' ranges of entity numbers",
    "partials_task": "several partitions → their partial aggregates (one task per CPU)",
    "part_task": "small right side's partition, for a broadcast join",
    "concat_task": "the broadcast side, concatenated once",
}

# The model's assumptions, stated once and written to the JSON with the estimates.
MODEL_ROWS = (100_000_000, 1_000_000_000)
MODEL_NODES = (1, 4, 16, 64)
MODEL_CORES_PER_NODE = 8
MODEL_NETWORK_GBIT = 10.0


# --- the cluster ----------------------------------------------------------------------------


def start_cluster(nodes: int, store_mb: int) -> Any:
    from ray.cluster_utils import Cluster

    # The driver attaches to the head, which offers no CPU: every partition task needs one,
    # so all of them run on the worker nodes.
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 0, "include_dashboard": False},
    )
    for i in range(nodes):
        cluster.add_node(
            num_cpus=1, resources={f"node-{i + 1}": 1}, object_store_memory=store_mb * MB
        )
    cluster.wait_for_nodes()
    return cluster


def node_names() -> dict[str, str]:
    """Ray node id → the name this benchmark gave the node (the head: "head")."""
    import ray

    names = {}
    for node in ray.nodes():
        custom = [r for r in node["Resources"] if r.startswith("node-")]
        names[node["NodeID"]] = custom[0] if custom else "head"
    return names


def warm_up(nodes: int) -> None:
    """A worker process on every node before anything is timed: Ray hands queued tasks to
    whichever worker is ready first, so a node still starting its first worker would get
    fewer tasks and the spread would show start-up, not scheduling."""
    import ray

    @ray.remote(num_cpus=1)
    def ready() -> None:
        time.sleep(0.5)

    ray.get([ready.options(resources={f"node-{i + 1}": 0.01}).remote() for i in range(nodes)])


@dataclass(frozen=True)
class TaskCosts:
    """A task's fixed costs on the cluster: the driver's own time to submit one (the driver
    submits without waiting, so this is what it spends per task), and a no-op's round trip
    (submit → result back: the latency a stage of tasks adds once)."""

    submit_ms: float
    round_trip_ms: float


def task_costs(repeat: int = 20, batch: int = 200) -> TaskCosts:
    import ray

    noop = ray.remote(num_cpus=1)(lambda: None)
    ray.get(noop.remote())
    trips = []
    for _ in range(repeat):
        started = time.perf_counter()
        ray.get(noop.remote())
        trips.append(time.perf_counter() - started)
    submits = []
    for _ in range(3):
        started = time.perf_counter()
        refs = [noop.remote() for _ in range(batch)]
        submits.append((time.perf_counter() - started) / batch)
        ray.get(refs)
    return TaskCosts(statistics.median(submits) * 1000, statistics.median(trips) * 1000)


# --- where tasks ran ------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskRecord:
    kind: str
    node: str
    ms: float


def _task_events() -> dict[str, dict[str, Any]]:
    """Every task Ray has events for: id → function, node id and running/finished times.

    Read from the task events of Ray's control store (the state API's own source, which
    needs no dashboard). A task's events arrive in several records, so they are merged."""
    from ray._private.state import state
    from ray.core.generated.common_pb2 import TaskStatus

    running, finished = TaskStatus.Value("RUNNING"), TaskStatus.Value("FINISHED")
    tasks: dict[str, dict[str, Any]] = {}
    for event in state._get_all_task_events():
        task = tasks.setdefault(event.task_id.hex(), {})
        if event.task_info.func_or_class_name:
            task["function"] = event.task_info.func_or_class_name
        if event.state_updates.node_id:
            task["node_id"] = event.state_updates.node_id.hex()
        stamps = event.state_updates.state_ts_ns
        if running in stamps:
            task["start"] = stamps[running]
        if finished in stamps:
            task["end"] = stamps[finished]
    return tasks


def tasks_since(seen: set[str], names: dict[str, str], wait_s: float = 15.0) -> list[TaskRecord]:
    """The engine's tasks that finished since `seen` was taken (and adds them to it). Workers
    report events in batches about once a second, so this waits until none is incomplete."""
    deadline = time.monotonic() + wait_s
    while True:
        fresh = {
            tid: t
            for tid, t in _task_events().items()
            if tid not in seen and t.get("function", "").rsplit(".", 1)[-1] in KINDS
        }
        complete = all("start" in t and "end" in t and "node_id" in t for t in fresh.values())
        if (fresh and complete) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    seen.update(fresh)
    return [
        TaskRecord(
            t["function"].rsplit(".", 1)[-1],
            names.get(t.get("node_id", ""), "?"),
            (t["end"] - t["start"]) / 1e6,
        )
        for t in fresh.values()
        if "start" in t and "end" in t
    ]


# --- one query ------------------------------------------------------------------------------


@dataclass
class QueryRun:
    query: str
    rows: dict[str, int]  # rows per dataset read
    partitions: dict[str, int]
    engine_ms: list[float]  # end to end, per run: the first is cold (empty scan cache)
    merge_ms: list[float]  # the driver's merge of the partials alone
    partial_mb: float  # what the partials weigh: contributor sets grow with the rows read
    tasks: list[list[TaskRecord]]  # per run
    bytes_per_row: dict[str, float]  # in-memory bytes of the columns read, per dataset
    equal_to_local: bool | None = None


def _sorted_rows(table: Any) -> list[Any]:
    return sorted(table.to_pylist(), key=repr)


def _read_bytes_per_row(checked: CheckedPlan) -> dict[str, float]:
    """What a row of each dataset weighs in memory, with only the columns the plan reads:
    the shuffle's volume per row for a hash join."""
    out = {}
    for read in checked.reads:
        first = read.dataset.partitions[0]
        columns = sorted(getattr(read, "columns", None) or [])
        table = pq.read_table(
            first, columns=columns or None, decryption_properties=decryption_for(first)
        )
        out[read.dataset.name] = table.nbytes / max(table.num_rows, 1)
    return out


def run_query(
    inst: Instance, name: str, repeat: int, seen: set[str], names: dict[str, str]
) -> QueryRun:
    checked = checked_plan(inst, QUERIES[name])
    result = QueryRun(
        name,
        {r.dataset.name: r.dataset.row_count for r in checked.reads},
        {r.dataset.name: len(r.dataset.partitions) for r in checked.reads},
        engine_ms=[],
        merge_ms=[],
        partial_mb=0.0,
        tasks=[],
        bytes_per_row=_read_bytes_per_row(checked),
    )
    tasks_since(seen, names, wait_s=0)  # whatever ran before is not this query's
    table = None
    for _ in range(repeat + 1):
        # A new executor per run, as the job driver makes one per job; every partition to a
        # task (in_place_max_rows=0), as a plan of this size does anyway.
        started = time.perf_counter()
        table = RayExecutor(in_place_max_rows=0).aggregate(checked).table
        result.engine_ms.append((time.perf_counter() - started) * 1000)
        result.tasks.append(tasks_since(seen, names))
    # The driver's merge alone, on partials computed the same way.
    runner = RayExecutor(in_place_max_rows=0)._runner
    for _ in range(max(repeat, 1)):
        partials = join.run(checked, runner).partials
        started = time.perf_counter()
        compute.merge_all(checked, partials)
        result.merge_ms.append((time.perf_counter() - started) * 1000)
        result.partial_mb = sum(t.nbytes for t in partials) / MB
    tasks_since(seen, names)
    local = LocalExecutor().aggregate(checked).table
    result.equal_to_local = table is not None and _sorted_rows(table) == _sorted_rows(local)
    return result


# --- the model ------------------------------------------------------------------------------


def _sides(run: QueryRun) -> tuple[list[str], list[str]]:
    """The datasets read in partition-sized tasks (the primary, and hash-joined ones), and the
    small ones broadcast to every task (at most join.BROADCAST_MAX_ROWS rows, not the first)."""
    names = list(run.rows)
    small = [d for d in names[1:] if run.rows[d] <= join.BROADCAST_MAX_ROWS]
    return [d for d in names if d not in small], small


def _task_rows(run: QueryRun, kind: str, per_run: float) -> float:
    """Rows one task of `kind` handles on average: a split or (without joins) a partial task
    one partition; a bucket task (a partial task after a hash join) its share of both sides;
    a broadcast read one partition of the small side; the concat all of it."""
    large, small = _sides(run)
    if kind in ("part_task", "concat_task"):
        return sum(run.rows[d] for d in small) / per_run
    if kind == "entity_split_task":
        return run.rows[large[0]] / per_run  # only the left (primary) side is split
    return sum(run.rows[d] for d in large) / per_run


def per_kind(run: QueryRun, warm_only: bool = True) -> dict[str, dict[str, float]]:
    """Per task kind: tasks per run, median ms, and median ms per million rows of input."""
    runs = run.tasks[1:] if warm_only and len(run.tasks) > 1 else run.tasks
    by_kind: dict[str, list[float]] = defaultdict(list)
    for records in runs:
        for r in records:
            by_kind[r.kind].append(r.ms)
    out = {}
    for kind, times in by_kind.items():
        per_run = len(times) / len(runs)
        med = statistics.median(times)
        rows = _task_rows(run, kind, per_run)
        out[kind] = {"tasks_per_run": per_run, "median_ms": med, "ms_per_m_rows": med / rows * 1e6}
    return out


@dataclass(frozen=True)
class Assumptions:
    cores_per_node: int = MODEL_CORES_PER_NODE
    partition_rows: int = 1_000_000
    network_gbit: float = MODEL_NETWORK_GBIT  # per node, full duplex, no oversubscription


def estimate(
    rows: int,
    nodes: int,
    ratios: dict[str, float],
    broadcast: list[str],
    costs: dict[str, dict[str, float]],
    submit_ms: float,
    round_trip_ms: float,
    merge_ms_per_m_rows: float,
    shuffle_bytes_per_row: float,
    a: Assumptions,
) -> dict[str, float]:
    """Seconds for a query whose first table has `rows` rows (the others in the measured
    `ratios` to it) on `nodes` nodes, from measured per-task costs (ms per million rows).

    Tasks run in waves of nodes × cores slots, one core each; a wave lasts as long as one
    task of its kind on a full partition (Parquet read from the node's local disk, as here).
    Without a join of large tables (q1) there is one wave kind: a partition → its partial.
    With a hash join: the broadcast side's reads, then a split of every partition of the
    large tables, then one task per bucket (as many as the larger side has partitions, at
    most join.MAX_BUCKETS) that joins its share and aggregates. With a join cut by entity
    numbers (q3 as measured, `entity_split_task`): a split of the left (first) table's
    partitions only, then one task per partition of the right table, which reads it where it
    lies and joins the left rows in its range; only the left rows move. Each stage adds a
    no-op task's round trip once; the driver submits every task one after another
    (`submit_ms` each). The driver's merge grows with the rows read (the partials carry
    contributor sets for disclosure control): `merge_ms_per_m_rows` over all tables' rows,
    linear. The shuffle moves every row it splits once, (N−1)/N of it to another node,
    spread over all nodes' links."""
    slots = nodes * a.cores_per_node
    m = a.partition_rows / 1e6
    split = "split_task" in costs
    by_entity = "entity_split_task" in costs
    large = {d: rows * r for d, r in ratios.items() if d not in broadcast}
    parts = {d: math.ceil(n / a.partition_rows) for d, n in large.items()}
    small_rows = sum(rows * r for d, r in ratios.items() if d in broadcast)
    small_parts = math.ceil(small_rows / a.partition_rows) if broadcast else 0
    waves_s = 0.0
    if broadcast:
        waves_s += math.ceil(small_parts / slots) * costs["part_task"]["ms_per_m_rows"] * m
        waves_s += costs["concat_task"]["ms_per_m_rows"] * small_rows / 1e6
    shuffle_s = 0.0
    if by_entity or split:
        # What the join splits and what moves: the left table alone when it is cut by the
        # right partitions' ranges of entity numbers (one task per right partition), every
        # large table into hash buckets otherwise.
        if by_entity:
            left, *right = large
            kind, n_split, moved = "entity_split_task", parts[left], large[left]
            buckets = sum(parts[d] for d in right)
        else:
            kind, n_split, moved = "split_task", sum(parts.values()), sum(large.values())
            buckets = max(1, min(join.MAX_BUCKETS, max(parts.values())))
        waves_s += math.ceil(n_split / slots) * costs[kind]["ms_per_m_rows"] * m
        per_bucket = sum(large.values()) / buckets / 1e6
        waves_s += math.ceil(buckets / slots) * costs["partial_task"]["ms_per_m_rows"] * per_bucket
        tasks = small_parts + 1 * bool(broadcast) + n_split + buckets
        stages = 2 + bool(broadcast)
        if nodes > 1:
            volume = moved * shuffle_bytes_per_row * (nodes - 1) / nodes
            shuffle_s = volume / (nodes * a.network_gbit * 1e9 / 8)
    else:
        partials = sum(parts.values())
        # Grouped one task per slot when they outnumber the slots: the same waves, one task.
        per_m = (costs.get("partial_task") or costs["partials_task"])["ms_per_m_rows"]
        waves_s += math.ceil(partials / slots) * per_m * m
        tasks = small_parts + 1 * bool(broadcast) + partials
        stages = 1 + bool(broadcast)
    all_rows = rows * sum(ratios.values())
    merge_s = merge_ms_per_m_rows * all_rows / 1e6 / 1000
    driver_s = (tasks * submit_ms + stages * round_trip_ms) / 1000 + merge_s
    compute_s = waves_s / 1000
    return {
        "seconds": compute_s + shuffle_s + driver_s,
        "compute_s": compute_s,
        "shuffle_s": shuffle_s,
        "driver_s": driver_s,
        "merge_s": merge_s,
        "tasks": tasks,
    }


def model_inputs(run: QueryRun, fixed: TaskCosts) -> dict[str, Any]:
    """Everything `estimate` needs besides rows, nodes and assumptions, from one query's run."""
    costs = per_kind(run)
    # Sizes are population's rows (q1's only table, q3's middle one); the others scale with it.
    base = "population" if "population" in run.rows else next(iter(run.rows))
    large, small = _sides(run)
    return {
        "ratios": {d: n / run.rows[base] for d, n in run.rows.items()},
        "broadcast": small,
        "costs": costs,
        "submit_ms": fixed.submit_ms,
        "round_trip_ms": fixed.round_trip_ms,
        "merge_ms_per_m_rows": statistics.median(run.merge_ms) / sum(run.rows.values()) * 1e6,
        "shuffle_bytes_per_row": _shuffled_bytes_per_row(run, large),
    }


def _shuffled_bytes_per_row(run: QueryRun, large: list[str]) -> float:
    """In-memory bytes per row of what the join moves: the left table's rows when it is cut
    by entity numbers, every large table's otherwise."""
    moved = large[:1] if any(r.kind == "entity_split_task" for t in run.tasks for r in t) else large
    return sum(run.bytes_per_row[d] * run.rows[d] for d in moved) / sum(run.rows[d] for d in moved)


def estimates(inputs: dict[str, dict[str, Any]], a: Assumptions) -> list[dict[str, Any]]:
    return [
        {"query": query, "rows": rows, "nodes": nodes} | estimate(rows, nodes, a=a, **given)
        for query, given in inputs.items()
        for rows in MODEL_ROWS
        for nodes in MODEL_NODES
    ]


# --- output ---------------------------------------------------------------------------------


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def report(
    args: argparse.Namespace, runs: list[QueryRun], fixed: TaskCosts, a: Assumptions
) -> dict:
    print()
    print(
        f"{args.nodes} worker nodes of 1 CPU each (+ a head without CPUs for the driver), all on "
        f"this machine's {os.cpu_count()} cores: the nodes share the same cores, so this shows "
        "how the work is distributed, not a speed-up."
    )
    print(
        f"a task on the cluster: the driver submits one in {fixed.submit_ms:.2f} ms; a no-op's "
        f"round trip {fixed.round_trip_ms:.2f} ms (medians)"
    )
    for run in runs:
        print()
        rows = ", ".join(
            f"{d} {n:,} rows / {run.partitions[d]} partitions" for d, n in run.rows.items()
        )
        print(f"{run.query}: {rows}")
        warm = run.engine_ms[1:] or run.engine_ms
        print(
            f"  engine end to end: first (cold scan cache) {run.engine_ms[0]:.0f} ms, then median "
            f"{_median(warm):.0f} ms over {len(warm)} runs; driver's merge "
            f"{_median(run.merge_ms):.1f} ms of {run.partial_mb:.1f} MB of partials"
        )
        nodes = sorted({r.node for records in run.tasks for r in records})
        print(
            f"  {'task kind':<18}{'tasks/run':>10}  "
            + "".join(f"{n:>9}" for n in nodes)
            + f"{'median ms':>11}{'cold ms':>9}{'ms/M rows':>11}"
        )
        costs = per_kind(run)
        cold = per_kind(
            QueryRun(**{**asdict_shallow(run), "tasks": run.tasks[:1]}), warm_only=False
        )
        for kind, c in costs.items():
            per_node = Counter(r.node for records in run.tasks for r in records if r.kind == kind)
            share = "".join(f"{per_node[n] / len(run.tasks):>9.1f}" for n in nodes)
            print(
                f"  {kind:<18}{c['tasks_per_run']:>10.0f}  {share}{c['median_ms']:>11.1f}"
                f"{cold.get(kind, {}).get('median_ms', float('nan')):>9.1f}{c['ms_per_m_rows']:>11.1f}"
            )
        print("  (per node: tasks per run, averaged over all runs)")
        print(
            "  same plan on the local executor: "
            + ("equal" if run.equal_to_local else "MISMATCH: the merged tables differ")
        )
    inputs = {run.query: model_inputs(run, fixed) for run in runs}
    rows = estimates(inputs, a)
    print()
    print(
        "Estimate (a model, not a measurement; `estimate` in benchmarks/scaleout.py, inputs in "
        "the JSON). Rows are population's; q3's other tables grow with it in the measured "
        f"proportion. Nodes of {a.cores_per_node} cores, each core as fast as one here; "
        f"partitions of {a.partition_rows:,} rows read from the node's local disk; tasks run "
        "in waves of nodes × cores and cost the warm medians above per million rows; the driver "
        "submits every task and merges the partials, which carry contributor sets and so grow "
        "with the rows (merge cost linear in rows, as measured here); q3's join sends every "
        "row it splits once (cut by entity numbers: social insurance's rows only; by key "
        f"hashes: both large tables'), (N−1)/N of it over a {a.network_gbit:g} "
        "Gbit/s link per node. Not modelled: stragglers, skew, spilling, disk bandwidth, q3's "
        "enterprises outgrowing the broadcast limit."
    )
    print(f"  {'query':<6}{'rows':>15}" + "".join(f"{f'N={n}':>10}" for n in MODEL_NODES))
    for query in inputs:
        for nrows in MODEL_ROWS:
            cells = [r["seconds"] for r in rows if r["query"] == query and r["rows"] == nrows]
            print(f"  {query:<6}{nrows:>15,}" + "".join(f"{s:>9.1f}s" for s in cells))
    print("  of which, at 1 B rows: tasks' compute / shuffle / driver (submit + merge), seconds")
    for query in inputs:
        cells = [
            f"{r['compute_s']:.0f}/{r['shuffle_s']:.0f}/{r['driver_s']:.0f}"
            for r in rows
            if r["query"] == query and r["rows"] == MODEL_ROWS[-1]
        ]
        print(f"  {query:<6}{'':>15}" + "".join(f"{c:>10}" for c in cells))
    for query, given in inputs.items():
        outgrown = [
            d
            for d in given["broadcast"]
            if MODEL_ROWS[-1] * given["ratios"][d] > join.BROADCAST_MAX_ROWS
        ]
        if outgrown:
            print(
                f"  {query}: {', '.join(outgrown)} is broadcast as measured; at the larger "
                "sizes the engine hash-joins it instead, which the model does not follow"
            )
        print(
            f"  {query} inputs: "
            + ", ".join(
                f"{k} {v['ms_per_m_rows']:.0f} ms/M rows" for k, v in given["costs"].items()
            )
            + f"; driver's merge {given['merge_ms_per_m_rows']:.0f} ms/M rows"
            + (f"; {given['shuffle_bytes_per_row']:.0f} B/row shuffled" if query == "q3" else "")
        )
    return {
        "nodes": args.nodes,
        "residents": args.residents,
        "partition_rows": args.partition_rows,
        "cpu_count": os.cpu_count(),
        "task_costs": asdict(fixed),
        "runs": [asdict(run) for run in runs],
        "model": {"assumptions": asdict(a), "inputs": inputs, "estimates": rows},
    }


def asdict_shallow(run: QueryRun) -> dict[str, Any]:
    return {f: getattr(run, f) for f in QueryRun.__dataclass_fields__}


def parser() -> argparse.ArgumentParser:
    a = argparse.ArgumentParser(
        prog="python -m benchmarks.scaleout", description=__doc__.split("\n")[0]
    )
    a.add_argument("--nodes", type=int, default=3, help="worker nodes of 1 CPU each")
    a.add_argument("--residents", type=int, default=4_000_000)
    a.add_argument("--partition-rows", type=int, default=250_000)
    a.add_argument("--repeat", type=int, default=3, help="warm runs per query, after a cold one")
    a.add_argument("--node-store-mb", type=int, default=1024, help="object store of each node")
    a.add_argument("--seed", type=int, default=2026)
    a.add_argument("--cache", type=Path, default=None, help="keep the city's Parquet files here")
    a.add_argument("--model-cores", type=int, default=MODEL_CORES_PER_NODE)
    a.add_argument("--model-partition-rows", type=int, default=1_000_000)
    a.add_argument("--model-network-gbit", type=float, default=MODEL_NETWORK_GBIT)
    a.add_argument("--json", type=Path, default=None)
    return a


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    import ray

    # A private Ray directory: the cluster's "current cluster" file must not be what a bare
    # ray.init() elsewhere on the machine picks up.
    ray_dir = os.environ["RAY_TMPDIR"] = tempfile.mkdtemp(prefix="pds-ray-", dir="/tmp")
    print(f"starting a Ray cluster: head (0 CPUs) + {args.nodes} nodes of 1 CPU …", flush=True)
    cluster = start_cluster(args.nodes, args.node_store_mb)
    try:
        ray.init(address=cluster.address, log_to_driver=False, logging_level=logging.WARNING)
        warm_up(args.nodes)
        names = node_names()
        fixed = task_costs()
        opts = Options(
            residents=args.residents,
            small_rows=0,
            seed=args.seed,
            executor="ray",  # ensure_ray finds this process attached to the cluster
            partition_rows=args.partition_rows,
            ingest="direct",
            datasets=frozenset(CITY_DATASETS),
            cache_dir=args.cache,
        )
        print(f"building the city: {args.residents:,} residents …", flush=True)
        seen: set[str] = set()
        runs = []
        with running_instance(opts) as inst:
            for name in QUERY_NAMES:
                print(f"running {name} …", flush=True)
                runs.append(run_query(inst, name, args.repeat, seen, names))
        a = Assumptions(args.model_cores, args.model_partition_rows, args.model_network_gbit)
        out = report(args, runs, fixed, a)
    finally:
        ray.shutdown()
        cluster.shutdown()
        shutil.rmtree(ray_dir, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1, default=str))
        print(f"numbers written to {args.json}")
    return 0 if all(r.equal_to_local for r in runs) else 1


if __name__ == "__main__":
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        sys.exit(main())
