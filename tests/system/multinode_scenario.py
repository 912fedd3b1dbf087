"""One job of a sandbox instance attached to a three-node local Ray cluster, over HTTP.

Run as a script, in a process of its own (it starts and stops its own Ray cluster):

    python tests/system/multinode_scenario.py WORKDIR [--residents N] [--partition-rows N]
                                              [--threshold N]

It starts a head node without CPUs (the instance's API process attaches there, so no task
can run beside it) and two worker nodes with two CPUs each; every node carries a custom
resource that names it. It points an instance at the cluster through `Settings.ray_address`, ingests a
synthetic population split into several Parquet partitions, runs one grouped aggregate through
the HTTP API and prints one JSON object on stdout: what was released, where the dataset's
partitions lie, and on which node Ray ran each task of the job. `WORKDIR/population.parquet`
is the exact table that was ingested, for an independent check.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# The suite's helpers in tests/conftest.py, as pytest's `pythonpath` gives them to tests.
TESTS = Path(__file__).resolve().parents[1]
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

import pyarrow.parquet as pq
import ray
from conftest import GRANTS, SCHEDULE, World, auth, principals
from fastapi.testclient import TestClient
from ray.cluster_utils import Cluster

from sandbox.api.app import create_app
from sandbox.catalog.synthetic import generate_city
from sandbox.records.principals import bootstrap
from sandbox.settings import Settings

# The custom resource each node carries: Ray reports it with the node, so a task's node id
# can be told apart by name.
NODE_NAMES = ("head", "worker-1", "worker-2")
WORKER_CPUS = 2
CODE = (
    't = table("population").group_by("district", "hukou_type")'
    '.agg(n=count(), total=sum("income")).collect()\n'
    'emit("区户籍收入", t)\n'
)
DRIVER_TASK = "run_job_on_ray"


def start_cluster() -> Cluster:
    head, *workers = NODE_NAMES
    # The API process attaches to the head, which offers no CPU: every task of a job needs
    # one, so none can run on the API's host.
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 0, "resources": {head: 1}, "include_dashboard": False},
    )
    for name in workers:
        cluster.add_node(num_cpus=WORKER_CPUS, resources={name: 1})
    cluster.wait_for_nodes()
    return cluster


def warm_up() -> None:
    """Start one Ray worker process per CPU on every worker node, as on a cluster that has
    run jobs before. Ray hands a job's queued tasks to whichever worker is ready first, and a
    job this small is over before a cold node has started a worker process, so without this
    the spread would depend on start-up timing."""

    @ray.remote(num_cpus=1)
    def ready() -> None:
        time.sleep(0.5)  # overlapping, so each CPU gets its own worker process

    ray.get(
        [
            ready.options(resources={name: 0.01}).remote()
            for name in NODE_NAMES[1:]
            for _ in range(WORKER_CPUS)
        ]
    )


@contextmanager
def instance(settings: Settings) -> Iterator[World]:
    ctx, bureau = bootstrap(settings)
    try:
        with TestClient(create_app(context=ctx)) as client:
            yield World(client, ctx, bureau, **principals(client, bureau))
    finally:
        ctx.close()


def job_tasks() -> dict[str, dict[str, str]]:
    """Every task Ray has events for: task id → function, parent task id and node id.

    Read from the task events Ray's control store keeps (the state API's own source, which
    needs no dashboard). A task's events arrive in several records, so they are merged."""
    from ray._private.state import state

    tasks: dict[str, dict[str, str]] = {}
    for event in state._get_all_task_events():
        task = tasks.setdefault(event.task_id.hex(), {})
        if event.task_info.func_or_class_name:
            task["function"] = event.task_info.func_or_class_name
            task["parent"] = event.task_info.parent_task_id.hex()
        if event.state_updates.node_id:
            task["node_id"] = event.state_updates.node_id.hex()
    return tasks


def _role(driver: bool, function: str) -> str:
    if driver:
        return "driver"
    # The release gate is an actor the driver calls at each release, on the API's host.
    return "release gate" if function.startswith("GateActor.") else "started by the driver"


def placement(expected: int, wait_seconds: float) -> list[dict[str, str]]:
    """The job's driver task and the tasks it started, each with the node it ran on. Events
    reach the control store in batches: this waits until `expected` started tasks are seen."""
    deadline = time.monotonic() + wait_seconds
    while True:
        tasks = job_tasks()
        drivers = {i for i, t in tasks.items() if t.get("function") == DRIVER_TASK}
        placed = [
            {
                "function": t.get("function", ""),
                "node_id": t.get("node_id", ""),
                "role": _role(i in drivers, t.get("function", "")),
            }
            for i, t in tasks.items()
            if i in drivers or t.get("parent") in drivers
        ]
        started = [t for t in placed if t["role"] == "started by the driver" and t["node_id"]]
        if len(started) >= expected or time.monotonic() > deadline:
            return placed
        time.sleep(0.2)


def node_names() -> dict[str, str]:
    """Node id → the custom resource naming that node."""
    out = {}
    for node in ray.nodes():
        named = [n for n in NODE_NAMES if n in node["Resources"]]
        if node["Alive"] and len(named) == 1:
            out[node["NodeID"]] = named[0]
    return out


def run(workdir: Path, residents: int, partition_rows: int, threshold: int) -> dict[str, Any]:
    city = generate_city(residents, seed=11)
    pop = city["population"]
    pq.write_table(pop.table, workdir / "population.parquet")

    cluster = start_cluster()
    try:
        settings = Settings(
            data_dir=(workdir / "instance").resolve(),
            executor="ray",
            ray_address=cluster.address,
            partition_rows=partition_rows,
            threshold_l3=threshold,
            job_wall_seconds=40,
            jail_fork_template=False,
            engine_in_place_rows=0,
        )
        with instance(settings) as w:
            # The instance attached to the cluster rather than starting a Ray of its own.
            attached = {
                "gcs_address": ray.get_runtime_context().gcs_address,
                "nodes": len([n for n in ray.nodes() if n["Alive"]]),
            }
            warm_up()
            r = w.ingest("population", pop.table, pop.level, pop.columns, pop.title)
            assert r.status_code == 201, r.text
            r = w.client.post("/v1/price-schedules", json=SCHEDULE, headers=auth(w.bureau))
            assert r.status_code == 201, r.text
            cid = w.active_contract(GRANTS)
            job = w.run(cid, CODE).json()
            partitions = sorted(
                str(p) for p in (settings.datasets_dir / "population").glob("*.parquet")
            )
            names = node_names()
            waited = 15 if job.get("status") == "succeeded" else 2
            placed = [
                {**t, "node": names.get(t["node_id"], "unknown")}
                for t in placement(len(partitions), waited)
            ]
            return {
                "cluster_address": cluster.address,
                "attached": attached,
                "nodes": sorted(names.values()),
                "partitions": partitions,
                "job": job,
                "tasks": placed,
                "started_tasks_by_node": dict(
                    Counter(t["node"] for t in placed if t["role"] == "started by the driver")
                ),
            }
    finally:
        ray.shutdown()
        cluster.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--residents", type=int, default=3000)
    parser.add_argument("--partition-rows", type=int, default=500)
    parser.add_argument("--threshold", type=int, default=10)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    started = time.monotonic()
    out = run(args.workdir, args.residents, args.partition_rows, args.threshold)
    out["seconds"] = round(time.monotonic() - started, 1)
    print(json.dumps(out, ensure_ascii=False))


if __name__ == "__main__":
    main()
