"""Entry point of the jail process: `python -I -m sandbox.jail.child`.

The process receives the job's code and parameters, compiles and runs them under the
language policy, and talks to its driver only through frames on fds 0 and 1. It never
receives rows: `collect()` sends a plan and gets back a released aggregate.
"""

from __future__ import annotations

import os
import sys
import traceback

# Loaded lazily by the compiler (to normalise non-ASCII identifiers such as 人数); the
# system-call filter would refuse opening it later.
import unicodedata  # noqa: F401
from typing import IO, Any

from RestrictedPython.PrintCollector import PrintCollector

from sandbox.errors import CompileError, PlanError, SandboxError
from sandbox.jail import seccomp
from sandbox.jail.protocol import FrameError, read_frame, write_frame
from sandbox.language.api import LANGUAGE_TYPES, Released, Table, namespace
from sandbox.language.policy import FILENAME, compile_job, restricted_globals
from sandbox.language.signs import EXHAUSTION, runtime_sign

MAX_PRINT_CHARS = 64 * 1024
DATA_MODULES = ("pyarrow", "numpy", "pandas", "ray", "duckdb", "sqlalchemy")


class Refused(BaseException):
    """The driver refused a request; the job ends. A BaseException so that operator code's
    `except Exception` cannot swallow it and carry on probing."""

    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(error.get("message", "refused"))
        self.error = error


class CappedPrint(PrintCollector):
    def __init__(self, _getattr_: Any = None) -> None:
        super().__init__(_getattr_)  # type: ignore[no-untyped-call]  # RestrictedPython
        self.size = 0  # a running total: summing self.txt per write is quadratic

    def write(self, text: str) -> None:
        if self.size + len(text) > MAX_PRINT_CHARS:
            raise ValueError(f"print() output is limited to {MAX_PRINT_CHARS} characters")
        self.size += len(text)
        super().write(text)


def _output_value(value: Any) -> dict[str, Any]:
    if isinstance(value, Released):
        return value._body()
    if value is None or isinstance(value, (bool, int, float, str)):
        return {"kind": "scalar", "value": value}
    hint = "; call .collect() on an aggregated table first" if isinstance(value, Table) else ""
    # Forgetting collect() is a slip; handing emit() anything else is trying its walls.
    raise PlanError(
        "emit() takes a collected table or a single number, string or boolean; "
        f"got {type(value).__name__}{hint}",
        sign=None if hint else "probe",
    )


class PipeChannel:
    def __init__(self, inp: IO[bytes], out: IO[bytes]) -> None:
        self.inp, self.out = inp, out

    def _request(self, message: dict[str, Any]) -> Any:
        write_frame(self.out, message)
        reply = read_frame(self.inp)
        if not reply.get("ok"):
            raise Refused(reply.get("error") or {})
        return reply.get("result")

    def collect(self, plan: Any) -> dict[str, Any]:
        result: dict[str, Any] = self._request({"op": "collect", "plan": plan})
        return result

    def emit(self, name: str, value: Any) -> None:
        if not isinstance(name, str):
            raise PlanError("emit() takes an output name (a string) and a value", sign="probe")
        self._request({"op": "emit", "name": name, "value": _output_value(value)})


def _job_line(tb: Any) -> int | None:
    line = None
    for frame, lineno in traceback.walk_tb(tb):
        if frame.f_code.co_filename == FILENAME:
            line = lineno
    return line


def _describe(exc: BaseException) -> dict[str, Any]:
    """Exception → operator-facing error: type, message and job line; never a host traceback."""
    line = getattr(exc, "line", None) or _job_line(exc.__traceback__)
    if isinstance(exc, CompileError):
        return {"code": exc.code, "message": exc.message, "line": exc.line, "sign": exc.sign}
    if isinstance(exc, SandboxError):
        return {"code": exc.code, "message": exc.message, "line": line, "sign": exc.sign}
    if isinstance(exc, RecursionError):
        message = "recursion too deep"
    elif isinstance(exc, MemoryError):
        message = "the job ran out of memory"
    elif isinstance(exc, (OSError, ImportError)):
        # Their messages name host files; what matters is that the walls held.
        message = (
            f"{type(exc).__name__}: job code may not use files, the network, other "
            "programs or modules"
        )
    else:
        message = f"{type(exc).__name__}: {exc}"[:2000]
    # For detection only: the driver takes `sign` out before the operator sees the error.
    sign = EXHAUSTION if isinstance(exc, FrameError) else runtime_sign(exc, LANGUAGE_TYPES)
    return {"code": "job_code_error", "message": message, "line": line, "sign": sign}


def main() -> None:
    # Private copies of the channel fds; fd 1 then points at stderr so that stray writes
    # cannot corrupt the frame stream.
    inp = os.fdopen(os.dup(0), "rb")
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    sys.stdout = sys.stderr

    # Defence in depth: this process must hold no data library that could reach raw data.
    loaded = sorted(m for m in DATA_MODULES if m in sys.modules)
    if loaded:
        write_frame(
            out,
            {
                "op": "failed",
                "rejected": False,
                "error": {
                    "code": "jail_misconfigured",
                    "message": "the job process was not isolated; nothing ran",
                    "line": None,
                },
            },
        )
        return
    # Everything the job needs is imported by now: from here on, no file, socket or process.
    try:
        seccomp.install()
        unfiltered = None
    except seccomp.FilterUnavailable as e:
        unfiltered = str(e)
    init = read_frame(inp)
    if unfiltered is not None and seccomp.ALLOW_UNFILTERED not in sys.argv:
        write_frame(
            out,
            {
                "op": "failed",
                "rejected": False,
                "error": {
                    "code": "jail_unfiltered",
                    "line": None,
                    "message": "this host cannot install the "
                    "job process's system-call filter, so jobs are not run here; nothing ran. The "
                    "bureau must fix the host (Linux with libseccomp) or explicitly allow unfiltered "
                    "jobs",
                },
            },
        )
        return
    channel = PipeChannel(inp, out)
    # RestrictedPython makes one collector per function body; sharing one keeps what
    # functions print, and the cap applies to the whole job.
    printed = CappedPrint()
    try:
        code = compile_job(init["code"])
        glb = restricted_globals(namespace(channel, init.get("params") or {}))
        glb["_print_"] = lambda _getattr_=None: printed
        exec(code, glb)
    except Refused as r:
        write_frame(out, {"op": "refused", "error": r.error})
        return
    except BaseException as exc:  # noqa: BLE001 - every failure becomes a described outcome
        rejected = isinstance(exc, (CompileError, PlanError))
        write_frame(out, {"op": "failed", "rejected": rejected, "error": _describe(exc)})
        return
    write_frame(out, {"op": "done", "printed": printed()})


if __name__ == "__main__":
    main()
