"""The jail's system-call filter (Linux seccomp, through libseccomp via `pyseccomp`).

Installed by the job process after it has imported everything it needs and before it reads
its job: from then on the process cannot open or create files, open sockets, start programs
or processes, signal other processes, or reconfigure the system. Refused calls fail with
EPERM, so the operator sees an ordinary, explained failure. The process keeps what a finished
interpreter needs: reading and writing the pipes it was given, memory, time, and exiting.

The language already denies operator code every route to these calls; the filter is the
second wall, for a flaw in the first. `no_new_privs` is set with it, so the filter cannot be
shed by executing a privileged program (which it forbids anyway).
"""

from __future__ import annotations

import errno
import functools
import subprocess
import sys
from typing import Any

DENIED: tuple[str, ...] = (
    # files: opening, creating, renaming, removing, linking, changing ownership or mode
    "open",
    "openat",
    "openat2",
    "creat",
    "open_by_handle_at",
    "name_to_handle_at",
    "truncate",
    "link",
    "linkat",
    "unlink",
    "unlinkat",
    "rename",
    "renameat",
    "renameat2",
    "mkdir",
    "mkdirat",
    "rmdir",
    "symlink",
    "symlinkat",
    "chmod",
    "fchmod",
    "fchmodat",
    "chown",
    "fchown",
    "lchown",
    "fchownat",
    "mknod",
    "mknodat",
    "memfd_create",
    "chdir",
    "fchdir",
    "chroot",
    # network
    "socket",
    "socketpair",
    "connect",
    "bind",
    "listen",
    "accept",
    "accept4",
    # programs and processes
    "execve",
    "execveat",
    "fork",
    "vfork",
    "clone",
    "clone3",
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "kill",
    "tkill",
    "tgkill",
    "pidfd_open",
    "pidfd_getfd",
    "pidfd_send_signal",
    # the system
    "mount",
    "umount2",
    "pivot_root",
    "setns",
    "unshare",
    "bpf",
    "perf_event_open",
    "keyctl",
    "add_key",
    "request_key",
    "init_module",
    "finit_module",
    "delete_module",
    "kexec_load",
    "kexec_file_load",
    "reboot",
    "swapon",
    "swapoff",
    "setuid",
    "setgid",
    "setreuid",
    "setregid",
    "setresuid",
    "setresgid",
    "setgroups",
    "personality",
    "userfaultfd",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "ioperm",
    "iopl",
    "acct",
    "settimeofday",
    "clock_settime",
    "sethostname",
    "setdomainname",
    "quotactl",
)


# The job process's argument from a service configured to run jobs even where the filter
# cannot load.
ALLOW_UNFILTERED = "--allow-unfiltered"


class FilterUnavailable(Exception):
    """The filter could not be installed here (no libseccomp, not Linux, or refused)."""


def preload() -> None:
    """Build the filter now, unloaded (a template process does, for the processes it forks:
    building it costs a job a millisecond or more); a missing library is reported later, by
    install()."""
    try:
        _built()
    except FilterUnavailable:
        pass


def install() -> None:
    """Install the filter on the calling process, for good."""
    f = _built()
    try:
        f.load()
    except OSError as e:
        raise FilterUnavailable(f"the kernel refused the filter: {e}") from None


@functools.cache
def _built() -> Any:
    """The filter's rules, compiled by libseccomp but not yet loaded into any process."""
    try:
        import pyseccomp
    except (ImportError, OSError) as e:  # OSError: libseccomp.so.2 missing
        raise FilterUnavailable(f"libseccomp is not available: {e}") from None
    try:
        f = pyseccomp.SyscallFilter(pyseccomp.ALLOW)
        for name in DENIED:
            try:
                f.add_rule(pyseccomp.ERRNO(errno.EPERM), name)
            except (ValueError, OSError):
                continue  # a call this architecture does not have
    except OSError as e:
        raise FilterUnavailable(f"the filter could not be built: {e}") from None
    return f


_PROBE = """
import sys
from sandbox.jail.seccomp import install, FilterUnavailable
try:
    install()
except FilterUnavailable as e:
    print(e); sys.exit(3)
try:
    open("/proc/self/status")
except PermissionError:
    sys.exit(0)
print("the filter loaded but did not refuse open()"); sys.exit(4)
"""


@functools.cache
def probe() -> str | None:
    """None when a fresh process can install the filter and it holds; else why not."""
    try:
        done = subprocess.run(
            [sys.executable, "-I", "-c", _PROBE],
            capture_output=True,
            timeout=30,
            cwd="/",
            text=True,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"the probe process could not run: {e}"
    if done.returncode == 0:
        return None
    if done.returncode in (3, 4) and done.stdout.strip():
        return done.stdout.strip()
    return f"the probe process failed (exit status {done.returncode})"
