"""A template process that forks one fresh job process per job.

Starting an interpreter and importing the job language costs ~70 ms of CPU; forking a process
that has already done so costs ~2 ms. The template (`python -I -m sandbox.jail.forkserver`)
imports what a job process needs, then only ever forks: it never runs operator code, never
holds data, and never installs the system-call filter itself (it must go on forking). Each
forked child is a new process, used for one job: it starts its own session, takes the three
pipe ends its driver created as fds 0–2, closes everything else, applies the job's rlimits and
runs the ordinary job-process entry point, which installs the filter before reading the job.

The driver talks to the template over a SOCK_SEQPACKET pair (one message per datagram, pipe
fds passed with SCM_RIGHTS): `fork` returns the child's pid; `poll` and `wait` return its exit
status, as `subprocess.Popen.returncode` would (negative for a signal), since only the
template, its parent, can reap it. The template exits when its driver goes away.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from typing import IO, Any, cast

MAX_MESSAGE = 64 * 1024


def _status(raw: int) -> int:
    return -os.WTERMSIG(raw) if os.WIFSIGNALED(raw) else os.WEXITSTATUS(raw)


class ForkedProcess:
    """A job process forked by the template, with the parts of `Popen` the jail uses."""

    def __init__(
        self, server: ForkServer, pid: int, stdin: IO[bytes], stdout: IO[bytes], stderr: IO[bytes]
    ) -> None:
        self._server = server
        self.pid, self.stdin, self.stdout, self.stderr = pid, stdin, stdout, stderr
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self._server.request({"op": "poll", "pid": self.pid})["status"]
        return self.returncode

    def wait(self) -> int:
        if self.returncode is None:
            self.returncode = self._server.request({"op": "wait", "pid": self.pid})["status"]
        assert self.returncode is not None
        return self.returncode


class ForkServer:
    """The driver's side: starts the template and asks it for job processes."""

    def __init__(self, env: dict[str, str]) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._sock = ours
        self._lock = threading.Lock()
        self.process = subprocess.Popen(
            [sys.executable, "-I", "-m", "sandbox.jail.forkserver", str(theirs.fileno())],
            pass_fds=(theirs.fileno(),),
            stdin=subprocess.DEVNULL,
            env=env,
            cwd="/",
            start_new_session=True,
        )
        theirs.close()

    def alive(self) -> bool:
        return self.process.poll() is None

    def request(self, message: dict[str, Any], fds: tuple[int, ...] = ()) -> dict[str, Any]:
        with self._lock:
            data = json.dumps(message).encode()
            if fds:
                socket.send_fds(self._sock, [data], list(fds))
            else:
                self._sock.send(data)
            reply = self._sock.recv(MAX_MESSAGE)
        if not reply:
            raise OSError("the job-process template has exited")
        # The template answers each request with one JSON object.
        return cast(dict[str, Any], json.loads(reply))

    def fork(self, limits: dict[str, Any], args: tuple[str, ...]) -> ForkedProcess:
        pipes = [os.pipe() for _ in range(3)]
        child_ends = (pipes[0][0], pipes[1][1], pipes[2][1])
        try:
            pid = self.request({"op": "fork", "limits": limits, "args": list(args)}, child_ends)[
                "pid"
            ]
        except BaseException:
            for r, w in pipes:
                os.close(r)
                os.close(w)
            raise
        for fd in child_ends:
            os.close(fd)
        return ForkedProcess(
            self,
            int(pid),
            os.fdopen(pipes[0][1], "wb"),
            os.fdopen(pipes[1][0], "rb"),
            os.fdopen(pipes[2][0], "rb"),
        )

    def close(self) -> None:
        self._sock.close()
        self.process.wait(timeout=5)


# --- the template process ------------------------------------------------------------------


def _run_child(fds: list[int], limits: dict[str, Any], args: list[str]) -> None:
    from sandbox.jail import child, process

    status = 0
    try:
        os.setsid()
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        os.closerange(3, os.sysconf("SC_OPEN_MAX") if hasattr(os, "sysconf") else 1024)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        process.apply_limits(process.Limits(**limits))
        sys.argv = ["sandbox.jail.child", *args]
        child.main()
    except BaseException:  # noqa: BLE001 - the child must never return into the template
        status = 70
    finally:
        try:
            sys.stderr.flush()
        finally:
            os._exit(status)


def serve(sock: socket.socket) -> None:
    # Everything a job process imports, imported once, here: the filter too, built but not
    # loaded (importing its library and building it cost a job several ms); only the
    # children ever load it.
    import sandbox.jail.child  # noqa: F401
    import sandbox.jail.process  # noqa: F401
    from sandbox.jail import seccomp

    seccomp.preload()
    children: set[int] = set()
    try:
        _serve(sock, children)
    finally:
        # The driver has gone (a lost Ray worker, say): no job it started may run on alone.
        for pid in children:
            _kill_session(pid)


def _kill_session(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        # Not yet the leader of its own session: kill it alone.
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _serve(sock: socket.socket, children: set[int]) -> None:
    while True:
        try:
            data, fds, _flags, _addr = socket.recv_fds(sock, MAX_MESSAGE, 3)
        except OSError:
            return
        if not data:
            return  # the driver has gone
        request = json.loads(data)
        op = request.get("op")
        if op == "fork":
            pid = os.fork()
            if pid == 0:
                sock.close()
                _run_child(fds, request["limits"], request["args"])
            for fd in fds:
                os.close(fd)
            children.add(pid)
            reply: dict[str, Any] = {"pid": pid}
        elif op in ("poll", "wait"):
            try:
                done, raw = os.waitpid(int(request["pid"]), 0 if op == "wait" else os.WNOHANG)
                reply = {"status": _status(raw) if done else None}
                if done:
                    children.discard(done)
            except ChildProcessError:
                children.discard(int(request["pid"]))
                reply = {"status": None if op == "poll" else -signal.SIGKILL}
        else:
            reply = {"error": "unknown request"}
        sock.send(json.dumps(reply).encode())


if __name__ == "__main__":
    serve(socket.socket(fileno=int(sys.argv[1])))
