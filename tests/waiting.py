"""Waiting for something the test cannot be told of, such as another process's state, Ray's
asynchronous bookkeeping, or a server that starts listening."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T],
    timeout: float,
    interval: float = 0.05,
    message: str | Callable[[], str] = "the condition did not hold",
) -> T:
    """The first true value of `predicate`, asked every `interval` s; AssertionError with
    `message` (a callable: made when needed) after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{message() if callable(message) else message} (waited {timeout:g} s)"
            )
        time.sleep(interval)
    return value
