"""A handler that stops the run (a release held for review): the job's process is killed
without a reply, so its code has nothing to catch and carry on from."""

from __future__ import annotations

import time
from typing import Any

import pytest
from test_jail_process import BODY, FAST

from sandbox.jail.process import Stop, run_in_jail


class Stopping:
    def __init__(self) -> None:
        self.plans: list[Any] = []
        self.emits: list[tuple[str, Any]] = []

    def collect(self, plan: Any) -> dict[str, Any]:
        self.plans.append(plan)
        if len(self.plans) > 1:
            raise Stop("held")
        return BODY

    def emit(self, name: str, value: Any) -> None:
        self.emits.append((name, value))


CODE = (
    "t = table('population').group_by('district').agg(n=count())\n"
    "first = t.collect()\n"
    "emit('before', 1)\n"
    "try:\n"
    "    second = t.collect()\n"
    "except:\n"
    "    emit('caught', 1)\n"
    "emit('after', 1)\n"
    "while True:\n"
    "    pass\n"
)


def test_a_stop_kills_the_job_before_its_code_can_catch_anything() -> None:
    handler = Stopping()
    started = time.monotonic()
    with pytest.raises(Stop):
        run_in_jail(CODE, {}, handler, FAST)
    # At once, not at the job's time or CPU limit.
    assert time.monotonic() - started < FAST.cpu_seconds
    assert len(handler.plans) == 2
    assert [name for name, _ in handler.emits] == ["before"]
