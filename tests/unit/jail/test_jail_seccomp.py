"""The job process's system-call filter, tried for real in fresh processes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from sandbox.jail import seccomp
from sandbox.jail.process import Limits, run_in_jail

# Each attempt runs after install(); it prints what happened instead of failing the script.
ATTEMPTS = r"""
import json, os, socket, sys
from sandbox.jail.seccomp import install
install()
out = {}
def attempt(name, fn):
    try:
        fn()
        out[name] = "allowed"
    except PermissionError:
        out[name] = "refused"
    except OSError as e:
        out[name] = f"oserror {e.errno}"
attempt("open_read", lambda: open("/etc/hostname").read())
attempt("open_write", lambda: open("/tmp/seccomp-should-not-exist", "w"))
attempt("socket", lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM))
attempt("unix_socket", lambda: socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
attempt("fork", os.fork)
attempt("exec", lambda: os.execv("/bin/true", ["true"]))
attempt("kill_parent", lambda: os.kill(os.getppid(), 0))
attempt("mkdir", lambda: os.mkdir("/tmp/seccomp-dir-should-not-exist"))
attempt("unlink", lambda: os.unlink("/tmp/seccomp-nothing"))
attempt("chdir", lambda: os.chdir("/"))
# What a finished interpreter still needs keeps working:
data = bytearray(50 * 2**20)            # memory
sys.stdout.write(json.dumps(out) + "\n") # writing to an fd it was given
"""


@pytest.fixture(scope="module")
def attempts() -> dict[str, str]:
    if seccomp.probe() is not None:
        pytest.skip(f"seccomp unavailable here: {seccomp.probe()}")
    done = subprocess.run(
        [sys.executable, "-I", "-c", ATTEMPTS], capture_output=True, text=True, timeout=60, cwd="/"
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.parametrize(
    "call",
    [
        "open_read",
        "open_write",
        "socket",
        "unix_socket",
        "fork",
        "exec",
        "kill_parent",
        "mkdir",
        "unlink",
        "chdir",
    ],
)
def test_the_filter_refuses(attempts: dict[str, str], call: str) -> None:
    assert attempts[call] == "refused"


def test_nothing_was_created_behind_the_filter(attempts: dict[str, str]) -> None:
    import os

    assert not os.path.exists("/tmp/seccomp-should-not-exist")
    assert not os.path.exists("/tmp/seccomp-dir-should-not-exist")


def test_the_probe_reports_this_host_as_filtered() -> None:
    # This project's CI and development hosts run Linux with libseccomp: the filter must load.
    assert seccomp.probe() is None


class _NoData:
    def collect(self, plan: object) -> dict[str, object]:
        raise AssertionError("not used")

    def emit(self, name: str, value: object) -> None:
        self.emitted = (name, value)


def test_a_job_runs_normally_behind_the_filter() -> None:
    handler = _NoData()
    outcome = run_in_jail(
        "x = sorted([3, 1, 2])\nemit('s', sum(x) * 2)\n",
        {},
        handler,
        Limits(wall_seconds=10, fork_template=False),
    )
    assert outcome.status == "succeeded", outcome
    assert handler.emitted == ("s", {"kind": "scalar", "value": 12})


def test_a_late_import_inside_the_job_process_fails_cleanly() -> None:
    # An encoding not loaded before the filter needs its module file: the filter refuses the
    # open(), and the job fails with an ordinary error instead of reading the disk.
    outcome = run_in_jail(
        "emit('s', 'x'.encode('cp1252'))\n",
        {},
        _NoData(),
        Limits(wall_seconds=10, fork_template=False),
    )
    assert outcome.status == "failed"
    assert outcome.error is not None
    assert outcome.error.message.startswith("PermissionError: job code may not use files")
    assert "/" not in outcome.error.message  # no host path
