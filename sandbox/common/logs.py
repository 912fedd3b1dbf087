"""The service's log lines: one JSON object per line (or plain text for a person at a
terminal), each carrying the ids of the request, job, contract and principal it concerns.

What a line may hold: a fixed message, ids, codes and numbers. Never a data value, a token,
a key, a job's code or parameters. Exceptions are written as their types and the frames they
passed through, never their text: an error raised by the engine or a job's process may quote
a value.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from typing import Any

from sandbox.settings import LOG_FORMATS, LOG_LEVELS

Scalar = str | int | float | bool | None

# Ids only: each names a row the bureau can look up, none says anything about the data.
REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)
JOB_ID: ContextVar[str | None] = ContextVar("job_id", default=None)
CONTRACT_ID: ContextVar[str | None] = ContextVar("contract_id", default=None)
PRINCIPAL_ID: ContextVar[str | None] = ContextVar("principal_id", default=None)
_IDS: dict[str, ContextVar[str | None]] = {
    "request_id": REQUEST_ID,
    "job_id": JOB_ID,
    "contract_id": CONTRACT_ID,
    "principal_id": PRINCIPAL_ID,
}

# The attribute of a record that holds a line's own fields (`fields(...)`).
_FIELDS = "sandbox_fields"

# uvicorn's loggers: written through the service's handler, not their own.
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")


def bind(
    *,
    request_id: str | None = None,
    job_id: str | None = None,
    contract_id: str | None = None,
    principal_id: str | None = None,
) -> None:
    """Set the given ids for the rest of this context (a thread, a task); None leaves one as
    it is. Where the context outlives the work (a pool's thread), use `bound`."""
    for var, value in _given(request_id, job_id, contract_id, principal_id):
        var.set(value)


@contextmanager
def bound(
    *,
    request_id: str | None = None,
    job_id: str | None = None,
    contract_id: str | None = None,
    principal_id: str | None = None,
) -> Iterator[None]:
    """The given ids on every line logged inside the block, as before after it."""
    tokens: list[tuple[ContextVar[str | None], Token[str | None]]] = [
        (var, var.set(value))
        for var, value in _given(request_id, job_id, contract_id, principal_id)
    ]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def _given(*values: str | None) -> list[tuple[ContextVar[str | None], str]]:
    return [(var, v) for var, v in zip(_IDS.values(), values, strict=True) if v is not None]


def current() -> dict[str, str]:
    """The ids bound here now."""
    return {name: value for name, var in _IDS.items() if (value := var.get()) is not None}


def fields(**values: Scalar) -> dict[str, Any]:
    """A line's own fields, for `extra=`: `logger.info("job finished", extra=fields(...))`."""
    return {_FIELDS: values}


def _utc(created: float) -> str:
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")


def _exception(record: logging.LogRecord) -> str | None:
    """The exception's types and frames, without its text (which may quote a value)."""
    if not record.exc_info or record.exc_info[1] is None:
        return None
    _, exc, tb = record.exc_info
    lines: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        frames = traceback.extract_tb(current.__traceback__ if current is not exc else tb)
        for frame in frames:
            lines.append(f'  File "{frame.filename}", line {frame.lineno}, in {frame.name}')
        lines.append(f"{type(current).__module__}.{type(current).__qualname__}")
        current = current.__cause__ or current.__context__
    return "\n".join(lines)


def _entry(record: logging.LogRecord) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "time": _utc(record.created),
        "level": record.levelname.lower(),
        "logger": record.name,
        "message": record.getMessage(),
    }
    entry.update(current())
    own: Mapping[str, Scalar] = getattr(record, _FIELDS, {})
    entry.update({k: v for k, v in own.items() if k not in entry})
    error = _exception(record)
    if error is not None:
        entry["exception"] = error
    return entry


class JsonFormatter(logging.Formatter):
    """One JSON object per line, UTF-8 as written (Chinese names stay readable)."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(_entry(record), ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """`time level logger: message key=value …`, for a person reading a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        entry = _entry(record)
        head = f"{entry.pop('time')} {entry.pop('level').upper():<7} {entry.pop('logger')}: "
        head += str(entry.pop("message"))
        error = entry.pop("exception", None)
        tail = "".join(f" {k}={_plain(v)}" for k, v in entry.items())
        return head + tail + (f"\n{error}" if error else "")


_PLAIN = re.compile(r"[\w.:/@+-]*")


def _plain(value: Any) -> str:
    """A field's value as is when it is one plain word, else quoted: a space or line break
    sent by a client cannot make a field, or a line, of its own."""
    text = str(value)
    return text if _PLAIN.fullmatch(text) else json.dumps(text, ensure_ascii=False)


class PathWithoutQuery(logging.Filter):
    """uvicorn's access line names the path without its query string: a client may put
    something there that must not be kept (a token, say), whatever the API asks for."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 5:
            client, method, path, version, status = args
            path = str(path).split("?", 1)[0]
            record.args = (client, method, path, version, status)
            setattr(record, _FIELDS, {"method": method, "path": path, "status": status})
        return True


def formatter(format: str) -> logging.Formatter:
    if format not in LOG_FORMATS:
        raise ValueError(f"log format {format!r} is not one of {', '.join(LOG_FORMATS)}")
    return JsonFormatter() if format == "json" else TextFormatter()


def configure(format: str, level: str) -> None:
    """Every line of this process, the service's and uvicorn's, through one handler on
    stderr in the given format, at the given level and above."""
    if level.lower() not in LOG_LEVELS:
        raise ValueError(f"log level {level!r} is not one of {', '.join(LOG_LEVELS)}")
    chosen = logging.getLevelName(level.upper())
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(format))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    # Debug lines only from code whose lines are known to hold no value: another library's
    # debug output may quote what it handles (a request body, a statement's parameters).
    root.setLevel(max(chosen, logging.INFO))
    logging.getLogger("sandbox").setLevel(chosen)
    logging.getLogger("alembic").setLevel(max(chosen, logging.WARNING))
    for name in UVICORN_LOGGERS:
        logger = logging.getLogger(name)
        for old in list(logger.handlers):
            logger.removeHandler(old)
        logger.propagate = True
        logger.setLevel(max(chosen, logging.INFO))
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, PathWithoutQuery) for f in access.filters):
        access.addFilter(PathWithoutQuery())
    logging.captureWarnings(True)
