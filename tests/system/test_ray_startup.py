"""`sandbox serve` starts on its own: a private local Ray whatever else ran on the machine, a
bounded wait for a configured cluster, and SIGTERM/Ctrl-C obeyed at any point of its start.

Each test runs real `sandbox serve` processes with a private Ray temp directory (`RAY_TMPDIR`):
that is where Ray looks for the "current cluster" file a `ray start` leaves behind, so the
tests can plant one without touching the Ray instances of anything else on this machine, and
find every Ray process a service started by that directory in its command line.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from live import _free_port, _sandbox, _wait_healthy
from waiting import wait_until

pytestmark = pytest.mark.ray

STARTUP_SECONDS = 45.0
STOP_SECONDS = 5.0
# The address ends where the log line (JSON: a quote) goes on.
STARTED = re.compile(r"started a private local Ray at ([0-9A-Za-z.:\[\]-]+)")


@pytest.fixture
def ray_dir() -> Iterator[Path]:
    # Short, under /tmp: Ray's socket paths live here and their length is limited.
    path = Path(tempfile.mkdtemp(prefix="pds-ray-", dir="/tmp"))
    (path / "ray").mkdir()
    yield path
    with contextlib.suppress(AssertionError):  # the test itself says when they outlive it
        _wait_gone(path, STOP_SECONDS)
    shutil.rmtree(path, ignore_errors=True)


def _env(ray_dir: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k
        not in ("RAY_ADDRESS", "SANDBOX_RAY_ADDRESS", "SANDBOX_EXECUTOR", "SANDBOX_RAY_NUM_CPUS")
    }
    return {**env, "RAY_AUTH_MODE": "disabled", "RAY_TMPDIR": str(ray_dir), **extra}


def _instance(root: Path) -> Path:
    data_dir = root / "instance"
    init = subprocess.run(
        _sandbox("init", "--data-dir", str(data_dir), "--json"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert init.returncode == 0, init.stderr
    return Path(json.loads(init.stdout)["data_dir"])


@contextlib.contextmanager
def _serving(data_dir: Path, env: dict[str, str], log: Path) -> Iterator[str]:
    """A healthy `sandbox serve`, stopped afterwards; its URL."""
    port = _free_port()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            _sandbox("serve", "--data-dir", str(data_dir), "--port", str(port)),
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_healthy(url, proc, log, STARTUP_SECONDS)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _started_at(log: Path) -> str:
    found = STARTED.search(log.read_text())
    assert found, f"no private local Ray in the log:\n{log.read_text()[-3000:]}"
    return found.group(1)


def _ray_processes(ray_dir: Path, kind: str = "") -> list[int]:
    """Processes whose command line names `ray_dir` (and `kind`, e.g. gcs_server)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(ray_dir) in args and kind in args and int(cmdline.parent.name) != os.getpid():
            found.append(int(cmdline.parent.name))
    return found


def _wait_gone(ray_dir: Path, limit: float, message: str = "Ray processes are left") -> None:
    # Not this process's children: nothing tells it when they exit.
    wait_until(lambda: not _ray_processes(ray_dir), limit, interval=0.1, message=message)


def _closed_port() -> int:
    port = _free_port()  # bound and released: nothing listens there now
    return port


def test_a_stale_cluster_file_is_not_joined(tmp_path: Path, ray_dir: Path) -> None:
    # What an interrupted `ray stop` leaves: the file naming a cluster that is gone.
    stale = f"127.0.0.1:{_closed_port()}"
    (ray_dir / "ray" / "ray_current_cluster").write_text(stale)
    log = tmp_path / "serve.log"
    # No CPU cap: a capped ray.init that finds a cluster to join fails at once, an uncapped one
    # retries for minutes, which is what a new user saw.
    with _serving(_instance(tmp_path), _env(ray_dir), log):
        assert _started_at(log) != stale
        assert _ray_processes(ray_dir, "gcs_server"), "the service's own Ray is not running"


def test_a_second_service_starts_its_own_ray(tmp_path: Path, ray_dir: Path) -> None:
    env = _env(ray_dir, SANDBOX_RAY_NUM_CPUS="1")
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    with _serving(_instance(tmp_path / "a"), env, first_log):
        first = _started_at(first_log)
        # As `ray start` records its cluster: the second service must not join it either.
        (ray_dir / "ray" / "ray_current_cluster").write_text(first)
        with _serving(_instance(tmp_path / "b"), env, second_log):
            assert _started_at(second_log) != first
            assert len(_ray_processes(ray_dir, "gcs_server")) == 2


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A port that accepts connections and never answers, as a wrong service's would."""
    with socket.create_server(("0.0.0.0", 0), backlog=16) as server:
        yield server


@pytest.mark.parametrize(
    "variable,target",
    [
        ("SANDBOX_RAY_ADDRESS", "closed"),
        ("RAY_ADDRESS", "closed"),
        ("SANDBOX_RAY_ADDRESS", "silent"),
    ],
)
def test_an_unreachable_address_fails_fast(
    tmp_path: Path, ray_dir: Path, listener: socket.socket, variable: str, target: str
) -> None:
    port = _closed_port() if target == "closed" else listener.getsockname()[1]
    address = f"127.0.0.1:{port}"
    env = _env(ray_dir, **{variable: address, "SANDBOX_RAY_CONNECT_TIMEOUT": "2"})
    data_dir = _instance(tmp_path)
    started = time.monotonic()
    done = subprocess.run(
        _sandbox("serve", "--data-dir", str(data_dir), "--port", str(_free_port())),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    elapsed = time.monotonic() - started
    assert done.returncode == 1, done.stderr
    assert elapsed < 2 + 10, f"took {elapsed:.1f} s"
    message = " ".join(done.stderr.split())
    assert address in message and variable in message, message
    assert "SANDBOX_RAY_CONNECT_TIMEOUT" in message, message
    assert "Traceback" not in done.stderr
    assert not _ray_processes(ray_dir)


def _serve_in_background(data_dir: Path, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            _sandbox("serve", "--data-dir", str(data_dir), "--port", str(_free_port())),
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _stopped_within(proc: subprocess.Popen[bytes], sig: signal.Signals, log: Path) -> None:
    sent = time.monotonic()
    proc.send_signal(sig)
    try:
        proc.wait(timeout=STOP_SECONDS)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
        pytest.fail(
            f"sandbox serve ignored {sig.name} for {STOP_SECONDS:g} s:\n{log.read_text()[-3000:]}"
        )
    assert proc.returncode == 128 + sig.value, log.read_text()[-3000:]
    assert time.monotonic() - sent < STOP_SECONDS
    assert "Application startup complete" not in log.read_text()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_a_signal_stops_it_while_ray_starts(
    tmp_path: Path, ray_dir: Path, sig: signal.Signals
) -> None:
    log = tmp_path / "serve.log"
    proc = _serve_in_background(_instance(tmp_path), _env(ray_dir, SANDBOX_RAY_NUM_CPUS="1"), log)

    def ray_starting() -> bool:
        assert proc.poll() is None, log.read_text()[-3000:]
        return bool(_ray_processes(ray_dir, "gcs_server"))

    wait_until(
        ray_starting, STARTUP_SECONDS, interval=0.02, message=lambda: log.read_text()[-3000:]
    )
    _stopped_within(proc, sig, log)
    _wait_gone(ray_dir, STOP_SECONDS, "Ray processes outlived the service")


def test_sigterm_stops_it_while_it_waits_for_a_cluster(
    tmp_path: Path, ray_dir: Path, listener: socket.socket
) -> None:
    address = f"127.0.0.1:{listener.getsockname()[1]}"
    env = _env(ray_dir, SANDBOX_RAY_ADDRESS=address, SANDBOX_RAY_CONNECT_TIMEOUT="120")
    log = tmp_path / "serve.log"
    proc = _serve_in_background(_instance(tmp_path), env, log)
    listener.settimeout(STARTUP_SECONDS)
    for _ in range(2):  # the service's reachability check, then Ray's own connection
        listener.accept()[0].close()
    _stopped_within(proc, signal.SIGTERM, log)
