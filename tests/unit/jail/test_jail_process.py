"""The jail: operator code in a fresh, limited process that only exchanges frames."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import pytest

from sandbox.errors import JobError, QuotaExceeded
from sandbox.jail.child import MAX_PRINT_CHARS
from sandbox.jail.process import Limits, Outcome, run_in_jail
from sandbox.jail.protocol import read_frame, write_frame

BODY = {
    "kind": "table",
    "columns": [{"name": "district", "type": "string"}, {"name": "n", "type": "int64"}],
    "rows": [["城关区", 15], ["湖滨区", None]],
    "suppressed": [[1, "n"]],
}
FAST = Limits(cpu_seconds=5, memory_bytes=512 * 2**20, wall_seconds=10.0)


class Handler:
    """A real handler: answers every collect with BODY and records what it was asked."""

    def __init__(self, refuse_after: int | None = None) -> None:
        self.plans: list[Any] = []
        self.emits: list[tuple[str, Any]] = []
        self.refuse_after = refuse_after

    def collect(self, plan: Any) -> dict[str, Any]:
        self.plans.append(plan)
        if self.refuse_after is not None and len(self.plans) > self.refuse_after:
            raise QuotaExceeded("beyond the rows this job was quoted for")
        return BODY

    def emit(self, name: str, value: Any) -> None:
        self.emits.append((name, value))


def run(
    code: str, handler: Any = None, limits: Limits = FAST, params: dict[str, Any] | None = None
) -> tuple[Outcome, Any]:
    handler = handler if handler is not None else Handler()
    return run_in_jail(code, params or {}, handler, limits), handler


def test_a_program_exchanges_plans_and_outputs_with_its_handler() -> None:
    outcome, h = run(
        "res = table('人口').group_by('district').agg(n=count()).collect()\n"
        "emit('by_district', res)\n"
        "emit('first', res.column('n')[0] * params['factor'])\n"
        "emit('label', res.rows[0][0])\n",
        params={"factor": 2},
    )
    assert outcome.status == "succeeded", outcome
    assert outcome.error is None
    assert h.plans == [
        {
            "op": "aggregate",
            "input": {"op": "scan", "dataset": "人口"},
            "keys": ["district"],
            "aggs": [["n", {"fn": "count", "arg": None}]],
        }
    ]
    assert h.emits == [
        ("by_district", BODY),
        ("first", {"kind": "scalar", "value": 30}),
        ("label", {"kind": "scalar", "value": "城关区"}),
    ]


def test_operator_code_sees_only_the_released_body() -> None:
    # Everything the code can learn comes from BODY: its values, and suppressed cells as None.
    outcome, h = run(
        "res = table('p').group_by('district').agg(n=count()).collect()\n"
        "emit('seen', repr([res.columns, res.rows, res.suppressed, len(res)]))\n"
    )
    assert outcome.status == "succeeded"
    seen = h.emits[0][1]["value"]
    assert seen == repr([["district", "n"], [("城关区", 15), ("湖滨区", None)], [(1, "n")], 2])


@pytest.mark.parametrize(
    "reach", ["res._body_json", "res._body()", "t._channel", "emit.__closure__"]
)
def test_operator_code_cannot_reach_behind_the_proxies(reach: str) -> None:
    outcome, h = run(f"t = table('p').agg(n=count())\nres = t.collect()\nx = {reach}\n")
    assert outcome.status == "rejected"
    assert outcome.error is not None and outcome.error.line == 3
    assert h.plans == []  # refused at compile time, before anything ran


def test_emitting_something_that_is_not_a_released_table_or_scalar_is_refused() -> None:
    outcome, h = run("x = 1\nemit('rows', [['城关区', 1]])\n")
    assert outcome.status == "rejected"
    assert outcome.error.code == "plan_invalid" and outcome.error.line == 2
    assert "emit() takes a collected table" in outcome.error.message
    assert h.emits == []


def test_emitting_a_table_that_was_not_collected_says_to_collect_it() -> None:
    outcome, h = run("t = table('p').agg(n=count())\nemit('t', t)\n")
    assert outcome.status == "rejected"
    assert "call .collect()" in outcome.error.message
    assert h.plans == [] and h.emits == []


def test_an_infinite_loop_ends_as_failed_at_the_cpu_limit_long_before_the_wall_limit() -> None:
    limits = Limits(cpu_seconds=1, memory_bytes=512 * 2**20, wall_seconds=20.0)
    started = time.monotonic()
    outcome, _ = run("while True:\n    pass\n", limits=limits)
    assert outcome.status == "failed"
    assert outcome.error.code == "cpu_limit"
    assert "1 s of CPU" in outcome.error.message
    # Wall time, not CPU time: the suite's other workers share the cores, so a second of CPU
    # may take two; the wall limit (20 s) is far off either way.
    assert time.monotonic() - started < limits.cpu_seconds + 3


@pytest.mark.parametrize(
    "bomb",
    [
        "x = 'a' * (10 ** 10)\n",
        "x = [0] * (10 ** 9)\n",
        "x = []\nwhile True:\n    x.append('b' * 10 ** 6)\n",
    ],
)
def test_a_memory_bomb_fails_cleanly(bomb: str) -> None:
    limits = Limits(cpu_seconds=5, memory_bytes=256 * 2**20, wall_seconds=10.0)
    outcome, _ = run(bomb, limits=limits)
    assert outcome.status == "failed"
    assert "memory" in outcome.error.message
    assert outcome.wall_seconds < 5


def test_the_wall_clock_limit_kills_a_job_that_is_within_its_cpu_limit() -> None:
    limits = Limits(cpu_seconds=30, memory_bytes=512 * 2**20, wall_seconds=0.5)
    started = time.monotonic()
    outcome, _ = run("i = 0\nwhile True:\n    i = (i + 1) % 7\n", limits=limits)
    assert outcome.status == "failed"
    assert outcome.error.code == "timeout"
    assert "0.5 s limit" in outcome.error.message
    assert time.monotonic() - started < 2.5


def test_print_output_is_captured_including_inside_functions() -> None:
    outcome, _ = run("def f(x):\n    print('在函数里', x)\nf(1)\nprint('top', 2)\n")
    assert outcome.status == "succeeded"
    assert outcome.printed == "在函数里 1\ntop 2\n"


def test_print_output_is_capped_quickly() -> None:
    started = time.monotonic()
    outcome, _ = run("for i in range(100000):\n    print('0123456789')\n")
    assert outcome.status == "failed"
    assert f"limited to {MAX_PRINT_CHARS} characters" in outcome.error.message
    assert outcome.error.line == 2
    assert time.monotonic() - started < 2


def test_a_handler_refusal_ends_the_job_as_rejected() -> None:
    outcome, h = run(
        "t = table('p').agg(n=count())\na = t.collect()\nb = t.collect()\nemit('a', a)\n",
        handler=Handler(refuse_after=1),
    )
    assert outcome.status == "rejected"
    assert outcome.error == JobError("quota_exceeded", "beyond the rows this job was quoted for")
    assert len(h.plans) == 2
    assert h.emits == []


@pytest.mark.parametrize("clause", ["except Exception as e:", "except:"])
def test_operator_code_cannot_swallow_a_refusal_and_carry_on(clause: str) -> None:
    code = (
        "t = table('p').agg(n=count())\n"
        "for i in range(5):\n"
        "    try:\n"
        "        r = t.collect()\n"
        f"    {clause}\n"
        "        emit('caught' + str(i), 1)\n"
        "emit('after', 1)\n"
    )
    outcome, h = run(code, handler=Handler(refuse_after=0))
    assert outcome.status == "rejected"
    assert outcome.error.code == "quota_exceeded"
    assert len(h.plans) == 1
    assert h.emits == []


def test_a_handler_error_without_a_code_is_not_turned_into_a_refusal() -> None:
    class Broken(Handler):
        def collect(self, plan: Any) -> dict[str, Any]:
            raise RuntimeError("engine bug")

    started = time.monotonic()
    with pytest.raises(RuntimeError, match="engine bug"):
        run("x = table('p').agg(n=count()).collect()\n", handler=Broken())
    assert time.monotonic() - started < 5


def test_errors_in_operator_code_carry_the_job_line() -> None:
    outcome, _ = run("x = 1\ny = x / 0\n")
    assert outcome.status == "failed"
    assert outcome.error == JobError("job_code_error", "ZeroDivisionError: division by zero", 2)


def test_a_plan_error_in_operator_code_rejects_the_job_with_its_line() -> None:
    outcome, h = run("t = table('p')\n\nr = t.filter(col('a') > 1).collect()\n")
    assert outcome.status == "rejected"
    assert outcome.error.code == "plan_invalid"
    assert outcome.error.line == 3
    assert "aggregates only" in outcome.error.message
    assert h.plans == []


def test_too_many_requests_end_the_job() -> None:
    limits = Limits(cpu_seconds=5, memory_bytes=512 * 2**20, wall_seconds=10.0, max_requests=3)
    outcome, h = run(
        "t = table('p').agg(n=count())\nfor i in range(10):\n    t.collect()\n", limits=limits
    )
    assert outcome.status == "failed"
    assert outcome.error.code == "too_many_requests"
    assert len(h.plans) == 3


def _jail_children_of(pid: int) -> list[int]:
    """Jail processes started by `pid`, directly or forked by its job-process template (and
    nothing else it started, such as Ray)."""
    parents: dict[int, int] = {}
    jail: set[int] = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    stat = f.read()
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    cmdline = f.read()
            except OSError:
                continue
            parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
            if b"sandbox.jail." in cmdline:
                jail.add(int(entry))
    templates = {p for p in jail if parents.get(p) == pid}
    return sorted(p for p in jail if parents.get(p) == pid or parents.get(p) in templates)


def test_a_killed_child_gives_a_failed_outcome_not_a_hang(monkeypatch: pytest.MonkeyPatch) -> None:
    import sandbox.jail.process as jail

    used: list[subprocess.Popen[bytes]] = []
    real_take = jail._pool.take
    monkeypatch.setattr(jail._pool, "take", lambda lim: used.append(real_take(lim)) or used[-1])

    class Killer(Handler):
        def collect(self, plan: Any) -> dict[str, Any]:
            assert used[-1].pid in _jail_children_of(os.getpid())
            os.kill(used[-1].pid, signal.SIGKILL)
            used[-1].wait()  # dead, its pipes closed, before the reply is written
            return super().collect(plan)

    started = time.monotonic()
    outcome, _ = run("x = table('p').agg(n=count()).collect()\nemit('x', x)\n", handler=Killer())
    assert outcome.status == "failed"
    assert outcome.error.code == "jail_crashed"
    assert "exit status -9" in outcome.error.message
    assert time.monotonic() - started < 5


# The child's own entry point, with an audit hook that writes to stdout (both the fd and
# sys.stdout) whenever the job's code is executed, as a noisy library might.
NOISY_CHILD = """
import os, sys
def noise(event, args):
    if event == "exec" and getattr(args[0], "co_filename", "") == "<job>":
        os.write(1, b"JUNK ON FD 1\\n")
        print("junk on sys.stdout")
        sys.stdout.flush()
sys.addaudithook(noise)
from sandbox.jail.child import main
main()
"""


def test_stdout_writes_cannot_corrupt_the_frame_channel() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-I", "-c", NOISY_CHILD],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    watchdog = threading.Timer(20, proc.kill)
    watchdog.start()
    try:
        assert proc.stdin and proc.stdout and proc.stderr
        write_frame(
            proc.stdin,
            {
                "code": "r = table('p').agg(n=count()).collect()\n"
                "print('printed by the job')\nemit('r', r)\n",
                "params": {},
            },
        )
        first = read_frame(proc.stdout)
        assert first["op"] == "collect"
        write_frame(proc.stdin, {"ok": True, "result": BODY})
        second = read_frame(proc.stdout)
        assert second == {"op": "emit", "name": "r", "value": BODY}
        write_frame(proc.stdin, {"ok": True, "result": None})
        done = read_frame(proc.stdout)
        assert done == {"op": "done", "printed": "printed by the job\n"}
        assert proc.stdout.read() == b""
        assert proc.wait(timeout=10) == 0
        noise = proc.stderr.read()
        assert b"JUNK ON FD 1" in noise and b"junk on sys.stdout" in noise
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def test_forked_processes_are_each_used_for_one_job_only() -> None:
    """A template hides start-up time, but every job gets a process of its own, once."""
    import sandbox.jail.process as jail

    class Pid:
        def collect(self, plan: Any) -> dict[str, Any]:
            raise AssertionError("no plans here")

        def emit(self, name: str, value: Any) -> None:
            pass

    limits = jail.Limits(fork_template=True, wall_seconds=10)
    taken = []
    real_take = jail._pool.take

    def spy(lim: jail.Limits) -> Any:
        proc = real_take(lim)
        taken.append(proc)
        return proc

    jail._pool.take = spy  # type: ignore[method-assign]
    try:
        for _ in range(5):
            assert jail.run_in_jail('emit("x", 1)', {}, Pid(), limits).status == "succeeded"
    finally:
        jail._pool.take = real_take  # type: ignore[method-assign]
    assert len({p.pid for p in taken}) == 5, "every job ran in a process of its own"
    assert all(p.poll() is not None for p in taken), "used processes are gone"
    # The template they were forked from lives on, and is none of them.
    server = jail._pool._server
    assert server is not None and server.alive()
    assert server.process.pid not in {p.pid for p in taken}


def test_forked_job_processes_get_their_limits_and_filter() -> None:
    """What the template forks is as locked down as a freshly started job process."""
    import sandbox.jail.process as jail

    seen: dict[str, str] = {}

    class Inspect:
        def collect(self, plan: Any) -> dict[str, Any]:
            (pid,) = [
                p for p in _jail_children_of(os.getpid()) if p != jail._pool._server.process.pid
            ]  # type: ignore[union-attr]
            with open(f"/proc/{pid}/status") as f:
                seen["status"] = f.read()
            with open(f"/proc/{pid}/limits") as f:
                seen["limits"] = f.read()
            return BODY

        def emit(self, name: str, value: Any) -> None:
            pass

    limits = jail.Limits(
        fork_template=True, wall_seconds=10, cpu_seconds=7, memory_bytes=300 * 2**20
    )
    outcome = jail.run_in_jail("table('p').agg(n=count()).collect()\n", {}, Inspect(), limits)
    assert outcome.status == "succeeded", outcome.error
    assert "Seccomp:\t2" in seen["status"]
    cpu = next(line for line in seen["limits"].splitlines() if line.startswith("Max cpu time"))
    assert cpu.split()[3:5] == ["7", "8"]
    memory = next(
        line for line in seen["limits"].splitlines() if line.startswith("Max address space")
    )
    assert memory.split()[3] == str(300 * 2**20)


def test_driver_work_past_the_deadline_is_not_delivered() -> None:
    """A plan whose evaluation outlasts the job's limit ends the job as timed out, and the
    late result never reaches the job's code."""
    import sandbox.jail.process as jail

    class Slow(Handler):
        def collect(self, plan: Any) -> dict[str, Any]:
            time.sleep(2.5)  # the slow evaluation under test: past the 1.5 s limit
            return super().collect(plan)

    started = time.monotonic()
    outcome = jail.run_in_jail(
        "x = table('p').agg(n=count()).collect()\nemit('x', x)\n",
        {},
        Slow(),
        jail.Limits(wall_seconds=1.5, fork_template=True),
    )
    assert outcome.status == "failed" and outcome.error.code == "timeout"
    assert time.monotonic() - started < 4


def test_job_processes_do_not_outlive_the_driver_of_their_template() -> None:
    """A driver that dies (a lost Ray worker) leaves no operator code running: its template
    sees it go and kills every job process it forked."""
    from sandbox.jail.forkserver import ForkServer
    from sandbox.jail.process import _child_args, _environment

    server = ForkServer(_environment())
    # The job process waits for its job on stdin, which this test keeps open: nothing but
    # the template's clean-up can end it.
    proc = server.fork(
        {**FAST.__dict__, "wall_seconds": 30}, _child_args(Limits(require_seccomp=True))
    )
    assert os.path.exists(f"/proc/{proc.pid}")
    server._sock.close()  # the driver is gone
    server.process.wait(timeout=10)

    def gone() -> bool:
        try:
            with open(f"/proc/{proc.pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] == "Z"
        except OSError:
            return True

    deadline = time.monotonic() + 10
    while not gone() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gone(), "the job process ran on after its driver and template were gone"
    proc.stdin.close()


def test_a_service_fault_in_the_handler_ends_the_run_instead_of_refusing() -> None:
    """A damaged data file is no answer to the job: the run stops and the fault goes up to
    the driver, which settles the job as the service's failure."""
    from sandbox.errors import DataUnavailable

    class Damaged(Handler):
        def collect(self, plan: Any) -> dict[str, Any]:
            raise DataUnavailable.of("人口", "/data/人口/part-00000.parquet", OSError("gone"))

    with pytest.raises(DataUnavailable) as caught:
        run("x = table('p').agg(n=count()).collect()\n", handler=Damaged())
    assert caught.value.job_error().fault == "service"
    assert "part-00000" not in caught.value.message
