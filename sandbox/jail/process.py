"""Starting and supervising one jail process per job.

Each job gets a fresh process (never reused), with OS resource limits, killed hard at its
wall-clock deadline. By default it is forked from a template process that has already started
Python and imported the job language (`jail.forkserver`), so a job does not wait ~70 ms for an
interpreter; the template itself never runs job code. Everything the process sends is
untrusted: the handler that answers it validates plans as it would any other input.
"""

from __future__ import annotations

import dataclasses
import os
import queue
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sandbox.errors import Fault, JobError, JobStatus, ServiceFault
from sandbox.jail import seccomp
from sandbox.jail.forkserver import ForkServer
from sandbox.jail.protocol import FrameError, as_sent, read_frame, write_frame
from sandbox.language.signs import ESCAPE, EXHAUSTION, PROBE, SIGNS
from sandbox.language.straight import Collect, Request, reordered


@dataclass(frozen=True)
class Limits:
    cpu_seconds: int = 10
    memory_bytes: int = 1024 * 1024 * 1024
    wall_seconds: float = 30.0
    max_requests: int = 1000
    # True: job processes are forked from a template that has done the imports; False starts
    # each job's process as a new interpreter.
    fork_template: bool = True
    # False runs jobs even where the system-call filter cannot be installed (never by default).
    require_seccomp: bool = True
    # True answers straight-line jobs' requests read from their code, without a process
    # (`language.straight`); False starts a process for every job.
    read_straight_line: bool = True


class Stop(Exception):  # noqa: N818 - an ending, not an error
    """Raised by a handler to end the run at once: the job process is killed without a reply,
    so its code gets nothing it could catch and go on from (a refusal would be a Python
    exception there). It leaves `run_in_jail` to its caller."""


class Handler(Protocol):
    """Answers the jail's requests. Raising an exception with `code` and `message` refuses the
    request; the job then ends with that refusal."""

    def collect(self, plan: Any) -> dict[str, Any]: ...
    # What the jail sends is untrusted: the handler checks the name too.
    def emit(self, name: Any, value: Any) -> None: ...


@dataclass
class Outcome:
    """How the jail run ended. `status` is succeeded, failed or rejected."""

    status: JobStatus
    error: JobError | None = None
    printed: str = ""
    wall_seconds: float = 0.0
    diagnostics: str = field(default="", repr=False)  # host-side only, never shown to operators
    # What the ending says about the code, for detection (language.signs); never shown.
    sign: str | None = None


def _rlimits(limits: Limits) -> list[tuple[int, tuple[int, int]]]:
    return [
        (resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds + 1)),
        (resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes)),
        (resource.RLIMIT_FSIZE, (0, 0)),
        (resource.RLIMIT_CORE, (0, 0)),
        (resource.RLIMIT_NOFILE, (64, 64)),
        # No new processes (the system-call filter refuses fork too; this limit does not bind
        # a process running as root, the filter does).
        (resource.RLIMIT_NPROC, (0, 0)),
    ]


def apply_limits(limits: Limits) -> None:
    """The limits, set by the job process on itself before any job code (after the
    template's fork)."""
    for kind, value in _rlimits(limits):
        resource.setrlimit(kind, value)


def _limit(pid: int, limits: Limits) -> None:
    """The limits, set on a started job process from outside. Before its first frame is
    sent: the process runs no job code until it reads one."""
    for kind, value in _rlimits(limits):
        resource.prlimit(pid, kind, value)


def _reader(stream: Any, inbox: queue.Queue[Any]) -> None:
    try:
        while True:
            inbox.put(read_frame(stream))
    except (EOFError, FrameError, OSError, ValueError) as e:
        inbox.put(e)


def _drain(stream: Any, sink: list[bytes], cap: int = 64 * 1024) -> None:
    size = 0
    for chunk in iter(lambda: stream.read(4096), b""):
        if size < cap:
            sink.append(chunk[: cap - size])
            size += len(chunk)


def _error(code: str, message: str) -> JobError:
    return JobError(code, message)


def _refusal(exc: Exception) -> dict[str, Any]:
    code = getattr(exc, "code", None)
    # The service's own failure (a lost worker, an unreadable file) is no answer to the job:
    # it ends the run, and the driver settles it as the service's fault.
    if code is None or isinstance(exc, (ServiceFault, Stop)):
        raise exc
    return {"code": code, "message": getattr(exc, "message", None) or str(exc)}


def _environment() -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}


def _child_args(limits: Limits) -> tuple[str, ...]:
    return () if limits.require_seccomp else (seccomp.ALLOW_UNFILTERED,)


def _spawn(limits: Limits) -> subprocess.Popen[bytes]:
    # No preexec_fn: Python code between fork and exec in a parent with other threads (Arrow's,
    # DuckDB's) can crash or deadlock the child; the limits are set from here once it runs.
    proc = subprocess.Popen(
        [sys.executable, "-I", "-m", "sandbox.jail.child", *_child_args(limits)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        env=_environment(),
        cwd="/",
    )
    try:
        _limit(proc.pid, limits)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return proc


class _Starter:
    """Where job processes come from: forked from a template that has done the imports (one
    per driver process, restarted if it dies), or, with `fork_template=False`, each started as a
    new interpreter. Either way a process runs one job and is gone."""

    def __init__(self) -> None:
        self._server: ForkServer | None = None
        self._lock = threading.Lock()

    def take(self, limits: Limits) -> Any:
        if not limits.fork_template:
            return _spawn(limits)
        return self._template().fork(dataclasses.asdict(limits), _child_args(limits))

    def _template(self) -> ForkServer:
        with self._lock:
            if self._server is None or not self._server.alive():
                self._server = ForkServer(_environment())
            return self._server


_pool = _Starter()


def prepare(limits: Limits) -> None:
    """Start this process's job-process template now, so that its first job does not wait
    for the template's interpreter and imports (a second or more on a busy machine)."""
    if limits.fork_template:
        _pool._template()


def run_in_jail(code: str, params: dict[str, Any], handler: Handler, limits: Limits) -> Outcome:
    started = time.monotonic()
    proc = _pool.take(limits)
    assert proc.stdin and proc.stdout and proc.stderr
    inbox: queue.Queue[Any] = queue.Queue()
    stderr: list[bytes] = []
    threading.Thread(target=_reader, args=(proc.stdout, inbox), daemon=True).start()
    drain = threading.Thread(target=_drain, args=(proc.stderr, stderr), daemon=True)
    drain.start()
    try:
        write_frame(proc.stdin, {"code": code, "params": params})
        outcome = _converse(proc, inbox, handler, limits, started + limits.wall_seconds)
    except (BrokenPipeError, OSError):
        outcome = None
    finally:
        if proc.poll() is None:
            _kill(proc.pid)
        proc.wait()
        drain.join(timeout=1)
    if outcome is None:
        outcome = _crash_outcome(proc.returncode, limits)
    outcome.wall_seconds = time.monotonic() - started
    outcome.diagnostics = b"".join(stderr).decode("utf-8", "replace")
    return outcome


def answer_in_place(requests: Sequence[Request], handler: Handler, limits: Limits) -> Outcome:
    """A straight-line job (`language.straight`) run without a process: its requests, read
    from its code, answered in order as `_converse` answers a job process's, each message and
    reply through a frame's JSON as over the pipe; it ends where the process would have."""
    started = time.monotonic()
    deadline = started + limits.wall_seconds
    bodies: list[Any] = []
    outcome = Outcome(JobStatus.SUCCEEDED)
    assert len(requests) < limits.max_requests, "a job process would have been refused"
    for request in requests:
        if isinstance(request, Collect):
            message = as_sent({"op": "collect", "plan": request.plan})
        else:
            value = (
                reordered(bodies[request.collect], request.steps)
                if request.collect is not None
                else {"kind": "scalar", "value": request.value}
            )
            message = as_sent({"op": "emit", "name": request.name, "value": value})
        reply, sign = _answer(handler, message["op"], message)
        if time.monotonic() > deadline:
            outcome = _timeout(limits)
            break
        reply = as_sent(reply)
        if not reply["ok"]:
            outcome = Outcome(JobStatus.REJECTED, JobError.from_json(reply["error"]), sign=sign)
            break
        if isinstance(request, Collect):
            bodies.append(reply["result"])
    outcome.wall_seconds = time.monotonic() - started
    return outcome


def _kill(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        # A forked child that has not yet started its own session: kill it alone.
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _crash_outcome(returncode: int, limits: Limits) -> Outcome:
    if returncode == -signal.SIGXCPU:
        return Outcome(
            JobStatus.FAILED,
            _error(
                "cpu_limit",
                f"the job used more than {limits.cpu_seconds} "
                "s of CPU time; make it do less work per run",
            ),
            sign=EXHAUSTION,
        )
    # Killed by the system-call filter: the job asked the kernel for something it may not.
    sign = ESCAPE if returncode == -signal.SIGSYS else EXHAUSTION
    return Outcome(
        JobStatus.FAILED,
        _error(
            "jail_crashed",
            "the job's process ended unexpectedly "
            f"(exit status {returncode}); this is often a memory limit "
            f"of {limits.memory_bytes // 2**20} MiB being reached",
        ),
        sign=sign,
    )


def _converse(
    proc: subprocess.Popen[bytes],
    inbox: queue.Queue[Any],
    handler: Handler,
    limits: Limits,
    deadline: float,
) -> Outcome | None:
    assert proc.stdin
    for _ in range(limits.max_requests):
        try:
            message = inbox.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            return _timeout(limits)
        if isinstance(message, Exception):
            return None
        op = message.get("op") if isinstance(message, dict) else None
        if op == "done":
            printed = message.get("printed")
            return Outcome(JobStatus.SUCCEEDED, printed=printed if isinstance(printed, str) else "")
        if op == "failed":
            error = message.get("error") if isinstance(message.get("error"), dict) else {}
            status = JobStatus.REJECTED if message.get("rejected") is True else JobStatus.FAILED
            sign = error.get("sign") if error.get("sign") in SIGNS else None
            return Outcome(status, _clean_error(error), sign=sign)
        if op == "refused":
            return Outcome(JobStatus.REJECTED, _clean_error(message.get("error") or {}))
        reply, sign = _answer(handler, op, message)
        if time.monotonic() > deadline:
            # The driver's own work (validating and computing a plan) ran past the job's
            # limit: nothing computed after the deadline reaches the job.
            return _timeout(limits)
        write_frame(proc.stdin, reply)
        if not reply["ok"]:
            return Outcome(JobStatus.REJECTED, JobError.from_json(reply["error"]), sign=sign)
    return Outcome(
        JobStatus.FAILED,
        _error("too_many_requests", f"the job made more than {limits.max_requests} requests"),
        sign=EXHAUSTION,
    )


def _timeout(limits: Limits) -> Outcome:
    return Outcome(
        JobStatus.FAILED,
        _error(
            "timeout",
            f"the job ran longer than its {limits.wall_seconds:g} s limit and was "
            "stopped; make it do less work per run",
        ),
        sign=EXHAUSTION,
    )


def _answer(
    handler: Handler, op: Any, message: dict[str, Any]
) -> tuple[dict[str, Any], str | None]:
    """The reply to one request, and the sign a refusal gives (kept from the job)."""
    try:
        if op == "collect":
            return {"ok": True, "result": handler.collect(message.get("plan"))}, None
        if op == "emit":
            handler.emit(message.get("name"), message.get("value"))
            return {"ok": True, "result": None}, None
    except Exception as exc:  # noqa: BLE001 - domain errors become refusals, others re-raise
        return {"ok": False, "error": _refusal(exc)}, getattr(exc, "sign", None)
    return {
        "ok": False,
        "error": _error("protocol", "unknown request from job process").to_json(),
    }, PROBE


# Failures the job process reports before any operator code ran: the service's, not charged.
SERVICE_FAULTS = frozenset({"jail_misconfigured", "jail_unfiltered"})


def _clean_error(error: dict[str, Any]) -> JobError:
    """The jail is untrusted: keep only well-typed fields of what it reports."""
    code, message, line = error.get("code"), error.get("message"), error.get("line")
    code = code if isinstance(code, str) else "job_code_error"
    message = message if isinstance(message, str) else "job failed"
    line = line if isinstance(line, int) else None
    return JobError(
        code[:64], message[:2000], line, Fault.SERVICE if code in SERVICE_FAULTS else None
    )
