"""python -m benchmarks.ledger: appends per second into a fresh SQLite-backed log, and proof
times at a million entries.

Appends go through `sandbox.ledger.log.append`, the service's own path, on the service's
engine settings (WAL, `BEGIN IMMEDIATE`): once with one event per transaction, once with
events batched per transaction. The large log is built either the same way (`--build direct`)
or in bulk (`--build bulk`, default): leaves and complete-subtree nodes computed with
`merkle.completed_subtrees`, exactly as `append` does, and inserted in large batches. Either
way the store's root is checked against the root computed while building before proofs are
timed. Benchmarks are not tests: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import os
import platform
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import rfc8785
from rich.console import Console
from rich.table import Table
from sqlalchemy import insert
from sqlalchemy.orm import Session, sessionmaker

from sandbox.ledger import log, merkle
from sandbox.store import schema
from sandbox.store.db import make_engine, make_sessionmaker
from sandbox.store.models import LedgerEntry, LedgerNode

TARGET_APPENDS_PER_S = 5000
TARGET_PROOF_MS = 1.0
BULK_CHUNK = 50_000


@dataclass(frozen=True)
class Options:
    size: int
    appends: int
    batch: int
    repeat: int
    proofs: int
    build: str
    seed: int


@dataclass(frozen=True)
class Results:
    single_per_s: float  # medians over the repeats
    batched_per_s: float
    build_s: float
    build_per_s: float
    inclusion_ms: float
    consistency_ms: float
    root_ms: float
    verify_inclusion_ms: float
    verify_consistency_ms: float
    rebuild_per_s: float  # leaves per second a verifier hashes into MemoryTree


def _event(i: int) -> dict[str, object]:
    # The size and shape of a typical logged event (a settled charge).
    return {
        "job": f"j-{i:012x}",
        "contract": "c-5f2a9e01d3b4",
        "quote": "2.34",
        "charge": {
            "amount": "2.34",
            "currency": "CNY",
            "lines": [
                {"unit": "call", "quantity": 1, "amount": "2.00"},
                {"unit": "rows", "quantity": 20000, "amount": "0.34"},
            ],
        },
    }


def _fresh(directory: Path, name: str) -> sessionmaker[Session]:
    path = directory / f"{name}.db"
    path.unlink(missing_ok=True)
    engine = make_engine(f"sqlite:///{path}")
    schema.upgrade(engine)
    return make_sessionmaker(engine)


def appends_per_second(sessions: sessionmaker[Session], count: int, batch: int) -> float:
    start = time.perf_counter()
    done = 0
    while done < count:
        with sessions.begin() as s:
            for _ in range(min(batch, count - done)):
                log.append(s, "charge.settled", None, f"j-{done}", _event(done))
                done += 1
    return count / (time.perf_counter() - start)


def build_direct(sessions: sessionmaker[Session], size: int, batch: int) -> bytes:
    appends_per_second(sessions, size, batch)
    with sessions() as s:
        return log.root(s, size)


def build_bulk(sessions: sessionmaker[Session], size: int) -> bytes:
    """Fill the entry and node tables as `size` appends would, in large inserts.

    When leaf i is appended, each node `completed_subtrees` needs is the newest one of its
    level, so one hash per level stands in for the node table while building.
    """
    newest: list[tuple[int, bytes]] = []

    def node_at(level: int, index: int) -> bytes:
        at, value = newest[level]
        assert at == index, "nodes of one level complete left to right"
        return value

    leaf_of = _leaf_maker()
    with sessions.begin() as s:
        connection = s.connection()
        for chunk_start in range(0, size, BULK_CHUNK):
            entries, nodes = [], []
            for i in range(chunk_start, min(size, chunk_start + BULK_CHUNK)):
                leaf = leaf_of(i)
                entries.append({"index": i, "leaf": leaf})
                for level, index, value in merkle.completed_subtrees(
                    i, merkle.leaf_hash(leaf), node_at
                ):
                    if level == len(newest):
                        newest.append((index, value))
                    newest[level] = (index, value)
                    nodes.append({"level": level, "index": index, "hash": value})
            connection.execute(insert(LedgerEntry), entries)
            connection.execute(insert(LedgerNode), nodes)
    return _root_of_border(size, newest)


def _leaf_maker() -> Callable[[int], bytes]:
    """Leaf i as `log.append` would write it, without paying RFC 8785 a million times.

    Events differ only in a fixed-width hex id, so the canonical form of one event with a
    placeholder id is a template: keys and their order do not depend on the id. Checked
    against rfc8785 itself on a sample.
    """
    stamp = dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")

    def event(i: int) -> dict[str, object]:
        return {
            "type": "charge.settled",
            "actor": None,
            "subject": f"j-{i:012x}",
            "data": _event(i),
            "at": stamp,
        }

    placeholder = b"@" * 12
    template = rfc8785.dumps(event(0)).replace(f"{0:012x}".encode(), placeholder)

    def leaf_of(i: int) -> bytes:
        return template.replace(placeholder, f"{i:012x}".encode())

    for i in (0, 1, 12345, 2**40 - 1):
        assert leaf_of(i) == rfc8785.dumps(event(i)), "the leaf template is not canonical"
    return leaf_of


def _root_of_border(size: int, newest: list[tuple[int, bytes]]) -> bytes:
    """The root from the complete subtrees tiling [0, size): RFC 6962 splits off the largest."""
    border = [newest[level][1] for level in range(size.bit_length()) if size >> level & 1]
    root = border[0]  # smallest subtree first; each larger one is a left sibling
    for left in border[1:]:
        root = merkle.node_hash(left, root)
    return root


def _timed(calls: Iterator[Callable[[], object]]) -> list[float]:
    times = []
    for call in calls:
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return times


def _median_ms(seconds: list[float]) -> float:
    return statistics.median(seconds) * 1000


def measure_proofs(
    sessions: sessionmaker[Session], size: int, root: bytes, count: int, seed: int
) -> dict[str, float]:
    rng = random.Random(seed)
    indexes = [rng.randrange(size) for _ in range(count)]
    firsts = [rng.randrange(1, size) for _ in range(count)]
    with sessions() as s:
        if log.root(s, size) != root:
            raise SystemExit(
                "the store's root differs from the root computed while building; "
                "the node table is wrong, so no proof time would mean anything"
            )
        inclusion = _timed(iter([lambda i=i: log.inclusion_proof(s, i, size) for i in indexes]))
        consistency = _timed(iter([lambda f=f: log.consistency_proof(s, f, size) for f in firsts]))
        roots = _timed(iter([lambda: log.root(s, size)] * count))
        proofs = [log.inclusion_proof(s, i, size) for i in indexes[:200]]
        leaves = {i: s.get(LedgerEntry, i).leaf for i in indexes[:200]}  # type: ignore[union-attr]
        cons = [(f, log.consistency_proof(s, f, size), log.root(s, f)) for f in firsts[:200]]
    verify_inc = _timed(
        iter(
            [
                lambda i=i, p=p: merkle.verify_inclusion(
                    merkle.leaf_hash(leaves[i]), i, size, _unb64(p), root
                )
                for i, p in zip(indexes[:200], proofs)
            ]
        )
    )
    verify_cons = _timed(
        iter(
            [
                lambda f=f, p=p, r=r: merkle.verify_consistency(f, size, r, root, _unb64(p))
                for f, p, r in cons
            ]
        )
    )
    return {
        "inclusion_ms": _median_ms(inclusion),
        "consistency_ms": _median_ms(consistency),
        "root_ms": _median_ms(roots),
        "verify_inclusion_ms": _median_ms(verify_inc),
        "verify_consistency_ms": _median_ms(verify_cons),
    }


def _unb64(proof: list[str]) -> list[bytes]:
    return [base64.b64decode(p) for p in proof]


def rebuild_per_second(sessions: sessionmaker[Session], count: int) -> float:
    """How fast a verifier hashes downloaded leaves into its own tree."""
    with sessions() as s:
        leaves = [e["leaf"] for e in log.entries(s, 0, log.MAX_ENTRIES_PER_PAGE)]
    raw = [base64.b64decode(x) for x in leaves]
    tree = merkle.MemoryTree()
    start = time.perf_counter()
    for i in range(count):
        tree.append_data(raw[i % len(raw)])
    return count / (time.perf_counter() - start)


def run(options: Options, directory: Path, console: Console) -> Results:
    single, batched = [], []
    for r in range(options.repeat):
        single.append(appends_per_second(_fresh(directory, f"single-{r}"), options.appends, 1))
        batched.append(
            appends_per_second(
                _fresh(directory, f"batched-{r}"), options.appends * 5, options.batch
            )
        )
        console.print(
            f"  appends, run {r + 1}/{options.repeat}: {single[-1]:,.0f}/s single, "
            f"{batched[-1]:,.0f}/s batched"
        )
    sessions = _fresh(directory, "large")
    console.print(f"  building {options.size:,} entries ({options.build}) …")
    start = time.perf_counter()
    root = (
        build_bulk(sessions, options.size)
        if options.build == "bulk"
        else build_direct(sessions, options.size, options.batch)
    )
    build_s = time.perf_counter() - start
    proofs = measure_proofs(sessions, options.size, root, options.proofs, options.seed)
    return Results(
        statistics.median(single),
        statistics.median(batched),
        build_s,
        options.size / build_s,
        rebuild_per_s=rebuild_per_second(sessions, 200_000),
        **proofs,
    )


def print_results(console: Console, options: Options, results: Results) -> None:
    console.print(
        f"Python {sys.version.split()[0]}, SQLite {sqlite3.sqlite_version}, "
        f"{os.cpu_count()} cores, {platform.platform()}"
    )
    table = Table("measure", "median", "target", "", title="Transparency log (SQLite)")

    def row(what: str, value: str, target: str = "", met: bool | None = None) -> None:
        mark = "" if met is None else ("[green]met[/]" if met else "[red]missed[/]")
        table.add_row(what, value, target, mark)

    row(
        f"appends, one event per transaction ({options.appends:,} × {options.repeat})",
        f"{results.single_per_s:,.0f}/s",
    )
    row(
        f"appends, {options.batch} events per transaction",
        f"{results.batched_per_s:,.0f}/s",
        f"≥ {TARGET_APPENDS_PER_S:,}/s",
        results.batched_per_s >= TARGET_APPENDS_PER_S,
    )
    row(
        f"build {options.size:,} entries ({options.build})",
        f"{results.build_s:,.1f} s ({results.build_per_s:,.0f}/s)",
    )
    row(
        f"inclusion proof at {options.size:,}",
        f"{results.inclusion_ms:.3f} ms",
        f"≤ {TARGET_PROOF_MS:g} ms",
        results.inclusion_ms <= TARGET_PROOF_MS,
    )
    row(
        f"consistency proof at {options.size:,}",
        f"{results.consistency_ms:.3f} ms",
        f"≤ {TARGET_PROOF_MS:g} ms",
        results.consistency_ms <= TARGET_PROOF_MS,
    )
    row(f"root at {options.size:,}", f"{results.root_ms:.3f} ms")
    row("verify an inclusion proof (client)", f"{results.verify_inclusion_ms:.3f} ms")
    row("verify a consistency proof (client)", f"{results.verify_consistency_ms:.3f} ms")
    row("verifier rebuilding the tree", f"{results.rebuild_per_s:,.0f} leaves/s")
    console.print(table)


def parser() -> argparse.ArgumentParser:
    a = argparse.ArgumentParser(
        prog="python -m benchmarks.ledger",
        description=("Appends per second and proof times of the SQLite-backed transparency log."),
    )
    a.add_argument("--size", type=int, default=1_000_000, help="entries of the large log")
    a.add_argument(
        "--appends",
        type=int,
        default=2000,
        help="events per single-transaction run (batched runs append 5× as many)",
    )
    a.add_argument("--batch", type=int, default=100, help="events per batched transaction")
    a.add_argument("--repeat", type=int, default=3, help="runs of each append measurement")
    a.add_argument("--proofs", type=int, default=1000, help="proofs timed of each kind")
    a.add_argument(
        "--build",
        choices=("bulk", "direct"),
        default="bulk",
        help="fill the large log in bulk (default) or through log.append",
    )
    a.add_argument("--seed", type=int, default=2026)
    a.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="where the databases go (default: a temporary directory)",
    )
    a.add_argument("--json", type=Path, default=None, help="also write the numbers as JSON")
    return a


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    options = Options(
        args.size, args.appends, args.batch, args.repeat, args.proofs, args.build, args.seed
    )
    console = Console()
    with tempfile.TemporaryDirectory(prefix="ledger-bench-") as tmp:
        directory = args.dir or Path(tmp)
        directory.mkdir(parents=True, exist_ok=True)
        results = run(options, directory, console)
    print_results(console, options, results)
    if args.json is not None:
        args.json.write_text(
            json.dumps({"options": asdict(options), "results": asdict(results)}, indent=2),
            encoding="utf-8",
        )


if __name__ == "__main__":
    main()
