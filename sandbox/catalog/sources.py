"""A dataset pulled from a department's own database (PostgreSQL, MariaDB/MySQL), streamed
in Arrow batches.

A source names the database by a SQLAlchemy URL without a password, and the password by a
reference the service resolves at pull time (an environment variable of the service, or a file
only the service's user may read), so that no secret is ever stored with the catalog, shown in
the console or written to a log. It reads one table or one SELECT query through a server-side
cursor, `batch_rows` rows at a time: a pull of any size holds about one batch in memory.

Every batch of a pull has one Arrow schema, fixed before the first row from the types the
database declares for the result's columns (not guessed from values, which may all be NULL in a
batch): integers → int64, floating point and decimals → float64, date → date32, timestamp →
timestamp[us] (an instant — PostgreSQL's timestamptz, MySQL's TIMESTAMP — → timestamp[us,
tz=UTC]), boolean (MySQL's TINYINT(1) too) →
bool, text → string. Columns of other types (binary, JSON, arrays, times of day, intervals…)
are refused before anything is read, naming the column and how to convert it in a query.

The connector only reads: every pull runs in a read-only transaction. That is a second line;
the first is the account the department gives, which should be allowed SELECT and nothing more.

`SourceError` is what a pull that could not be done raises: which host and database failed and
what to check there, never the password.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, quote_plus

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from sqlalchemy import Select, create_engine, literal_column, select, table
from sqlalchemy.engine import URL, Connection, CursorResult, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.pool import NullPool

from sandbox.catalog.schedule import Schedule
from sandbox.errors import IngestError, SourceError

__all__ = [
    "Schedule",
    "SourceSpec",
    "describe",
    "parse_source",
    "resolve_password",
    "stream",
]

# The drivers the service ships (pyproject), by the backend a URL names.
DRIVERS = {"postgresql": "psycopg", "mysql": "pymysql", "mariadb": "pymysql"}
_BACKEND_NAMES = {"postgresql": "PostgreSQL", "mysql": "MySQL", "mariadb": "MariaDB"}
_DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306, "mariadb": 3306}
CONNECT_TIMEOUT_S = 15
# A password file is a line or two; anything larger is not one.
_PASSWORD_FILE_MAX = 4096
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_LEADING_COMMENTS = re.compile(r"^(\s*(--[^\n]*(\n|$)|/\*.*?\*/))*\s*", re.S)
_QUERY_START = re.compile(r"^(select|with)\b", re.I)
# Strings, quoted names and comments, where a ';' does not end the statement.
_QUOTED_OR_COMMENT = re.compile(r"'(?:[^'\\]|\\.)*'|\"[^\"]*\"|`[^`]*`|--[^\n]*|/\*.*?\*/", re.S)
_FIELDS = ("url", "password_ref", "table", "query", "mode", "schedule", "batch_rows")
_EXAMPLE_URL = "postgresql+psycopg://reader@db.example:5432/hr"
_USER_AND_PASSWORD = re.compile(r"://[^@]*:.*@")
_PASSWORD_IN_URL = (
    "the URL contains a password; remove it from the URL and give it through password_ref "
    "instead ('env:NAME' for an environment variable of the service, or 'file:/absolute/path' "
    "for a file only the service's user can read)"
)


class SourceSpec(BaseModel):
    """Where a dataset's rows come from, and how often they are pulled again."""

    # The URL as given may carry the very password this model refuses: never echo input.
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)
    url: str
    password_ref: str | None = None
    table: str | None = None
    query: str | None = None
    mode: Literal["replace", "append"] = "replace"
    schedule: str | None = None
    batch_rows: int = Field(50_000, ge=1_000, le=1_000_000)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        try:
            url = make_url(value.strip())
        except (ArgumentError, ValueError):
            # A password with characters a URL reserves ('@', '/', '#'…) makes it unparsable.
            if _USER_AND_PASSWORD.search(value):
                raise ValueError(_PASSWORD_IN_URL) from None
            raise ValueError(
                f"not a database URL; write it as {_EXAMPLE_URL} or "
                "mysql+pymysql://reader@10.0.0.5:3306/civil"
            ) from None
        if url.password is not None or any("pass" in k.lower() for k in url.query):
            raise ValueError(_PASSWORD_IN_URL)
        backend, _, driver = url.drivername.partition("+")
        if backend not in DRIVERS or driver not in ("", DRIVERS[backend]):
            raise ValueError(
                f"the connector reads PostgreSQL through psycopg and MariaDB/MySQL through "
                f"PyMySQL: start the URL with postgresql+psycopg://, mysql+pymysql:// or "
                f"mariadb+pymysql:// (not {url.drivername}://)"
            )
        if not url.database:
            raise ValueError(
                f"the URL names no database; end it with /DATABASE, e.g. {_EXAMPLE_URL}"
            )
        url = url.set(drivername=f"{backend}+{DRIVERS[backend]}")
        return url.render_as_string(hide_password=False)

    @field_validator("password_ref")
    @classmethod
    def _password_ref(cls, value: str | None) -> str | None:
        if value is None:
            return None
        kind, _, rest = value.strip().partition(":")
        if kind == "env" and _ENV_NAME.match(rest):
            return f"env:{rest}"
        if kind == "file" and rest.startswith("/"):
            return f"file:{rest}"
        raise ValueError(
            "write 'env:NAME' (an environment variable of the service, e.g. env:HR_DB_PASSWORD) "
            "or 'file:/absolute/path' (a file only the service's user can read)"
        )

    @field_validator("table")
    @classmethod
    def _table(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = [p.strip() for p in value.strip().split(".")]
        if (
            len(parts) > 2
            or not all(parts)
            or any(c in p for p in parts for c in "\"'`;")
            or any(not c.isprintable() for p in parts for c in p)
        ):
            raise ValueError(
                "write the table as NAME or SCHEMA.NAME, without quotes (e.g. public.residents "
                "or 常住人口)"
            )
        return ".".join(parts)

    @field_validator("query")
    @classmethod
    def _query(cls, value: str | None) -> str | None:
        if value is None:
            return None
        text = value.strip().removesuffix(";").rstrip()
        body = _LEADING_COMMENTS.sub("", text, count=1)
        if not _QUERY_START.match(body) or ";" in _QUOTED_OR_COMMENT.sub("", body):
            raise ValueError(
                "the query must be one SELECT statement (it may start with WITH; no ';' "
                "inside it); to read a whole table, give table instead"
            )
        return text

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return str(Schedule.parse(value))
        except IngestError as e:
            raise ValueError(e.message) from None

    @model_validator(mode="after")
    def _one_of_table_or_query(self) -> SourceSpec:
        if (self.table is None) == (self.query is None):
            raise ValueError(
                "give either table (a table to read whole) or query (a SELECT), not both"
                if self.table is not None
                else "give table (a table to read whole) or query (a SELECT); neither was given"
            )
        return self

    @property
    def backend(self) -> str:
        return make_url(self.url).get_backend_name()


_HINTS = {
    "url": f" (e.g. {_EXAMPLE_URL})",
    "batch_rows": " (rows per batch, 1000 to 1000000)",
    "mode": " ('replace' swaps in the pulled rows, 'append' adds them)",
}


def parse_source(raw: object) -> SourceSpec:
    """A source from its JSON form; IngestError names the field at fault and the fix."""
    try:
        return SourceSpec.model_validate(raw)
    except ValidationError as e:
        err = e.errors()[0]
        field = ".".join(str(x) for x in err["loc"])
        message = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = f"unknown field; the fields of a source are {', '.join(_FIELDS)}"
        elif err["type"] == "missing":
            message = "missing"
        elif err["type"] in ("model_type", "model_attributes_type", "dict_type"):
            message = "must be an object with url, and table or query"
        where = f"source: {field}" if field else "source"
        raise IngestError(f"{where}: {message}{_HINTS.get(field, '')}") from None


def resolve_password(ref: str) -> str:
    """The password `ref` ("env:NAME" or "file:/absolute/path") stands for. Errors say which
    variable or file and what is wrong with it, never what it holds."""
    kind, _, name = ref.partition(":")
    if kind == "env":
        value = os.environ.get(name)
        if not value:
            raise SourceError(
                f"password_ref {ref!r}: the environment variable {name} is "
                f"{'empty' if value == '' else 'not set'} in the service's environment; set it "
                "where the service is started (e.g. its systemd unit's Environment=)"
            )
        return value
    if kind == "file" and name.startswith("/"):
        return _password_file(Path(name))
    raise SourceError(f"password_ref {ref!r} is neither 'env:NAME' nor 'file:/absolute/path'")


def _password_file(path: Path) -> str:
    try:
        # O_NOFOLLOW: the file checked is the file read, not where a link points.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NOCTTY)
    except OSError as e:
        raise SourceError(
            f"password file {path}: cannot be opened ({e.strerror}); it must be a regular "
            "file (not a link) that the service's user owns and can read"
        ) from None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise SourceError(f"password file {path}: not a regular file")
        if info.st_uid != os.geteuid():
            raise SourceError(
                f"password file {path}: owned by another user (uid {info.st_uid}); the "
                f"service's user (uid {os.geteuid()}) must own it: chown it to that user"
            )
        if info.st_mode & 0o077:
            raise SourceError(
                f"password file {path}: group or others may use it (mode "
                f"{stat.S_IMODE(info.st_mode):04o}); make it readable by its owner only: "
                f"chmod 600 {path}"
            )
        data = f.read(_PASSWORD_FILE_MAX + 1)
    if len(data) > _PASSWORD_FILE_MAX:
        raise SourceError(f"password file {path}: larger than {_PASSWORD_FILE_MAX} bytes")
    try:
        # The line break an editor or `echo` leaves at the end is not part of the password.
        password = data.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError:
        raise SourceError(f"password file {path}: not UTF-8 text") from None
    if not password:
        raise SourceError(f"password file {path}: empty")
    return password


def describe(spec: SourceSpec) -> str:
    """The source for logs and the catalog: its URL (which never holds a password) and the
    table, or a digest of the query (its text may be long, or say more than a log should)."""
    url = make_url(spec.url).render_as_string(hide_password=True)
    if spec.table is not None:
        return f"{url} table {spec.table}"
    digest = hashlib.sha256((spec.query or "").encode("utf-8")).hexdigest()[:16]
    return f"{url} query sha256:{digest}"


# Arrow types of the result's columns, by the type code its driver reports.
Kind = Literal[
    "int",
    "float",
    "decimal",
    "bool",
    "int_bool",
    "date",
    "timestamp",
    "timestamptz",
    "text",
    "text_or_binary",
]
_ARROW: dict[Kind, pa.DataType] = {
    "int": pa.int64(),
    "float": pa.float64(),
    "decimal": pa.float64(),
    "bool": pa.bool_(),
    "int_bool": pa.bool_(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("us"),
    "timestamptz": pa.timestamp("us", tz="UTC"),
    "text": pa.string(),
    "text_or_binary": pa.string(),
}
# PostgreSQL type OIDs (pg_type). A type not named here (an enum, citext, a domain's own
# type…) arrives from psycopg as its text form, so it is read as text; the values are checked.
_POSTGRES: dict[int, Kind] = {
    20: "int", 21: "int", 23: "int", 26: "int",  # int8, int2, int4, oid
    700: "float", 701: "float", 1700: "decimal",  # float4, float8, numeric
    16: "bool", 1082: "date", 1114: "timestamp", 1184: "timestamptz",
    18: "text", 19: "text", 25: "text", 1042: "text", 1043: "text",  # char, name, text, bpchar, varchar
    705: "text", 2950: "text",  # unknown (a bare NULL or string literal), uuid
}  # fmt: skip
_POSTGRES_REFUSED = {
    17: "bytea", 114: "json", 3802: "jsonb", 1083: "time", 1266: "timetz", 1186: "interval",
    790: "money", 142: "xml", 1560: "bit", 1562: "varbit", 600: "point",
}  # fmt: skip
_POSTGRES_CAST = "SELECT …, {name}::text AS {name} (or ::numeric for money)"
# MySQL/MariaDB protocol field types (PyMySQL's FIELD_TYPE). BLOB and BINARY share their
# codes with TEXT and CHAR: a binary value is recognised when it arrives (bytes, not str).
_MYSQL: dict[int, Kind] = {
    1: "int", 2: "int", 3: "int", 8: "int", 9: "int", 13: "int",  # tiny…longlong, int24, year
    4: "float", 5: "float", 0: "decimal", 246: "decimal",
    10: "date", 14: "date", 12: "timestamp", 7: "timestamptz",  # datetime; timestamp, an instant
    6: "text", 245: "text", 247: "text", 248: "text",  # NULL, json, enum, set
    15: "text_or_binary", 249: "text_or_binary", 250: "text_or_binary",  # varchar, blobs
    251: "text_or_binary", 252: "text_or_binary", 253: "text_or_binary", 254: "text_or_binary",
}  # fmt: skip
_MYSQL_REFUSED = {11: "TIME", 16: "BIT", 255: "GEOMETRY"}
_MYSQL_CAST = "SELECT …, CAST({name} AS CHAR) AS {name}"


@dataclass(frozen=True)
class _Column:
    name: str
    kind: Kind

    @property
    def field(self) -> pa.Field:
        return pa.field(self.name, _ARROW[self.kind])


def _columns(description: Sequence[Sequence[Any]], backend: str) -> tuple[_Column, ...]:
    columns = []
    for item in description:
        name, code = str(item[0]), item[1]
        if backend == "postgresql":
            shown = getattr(item, "type_display", None) or f"oid {code}"
            refused = _POSTGRES_REFUSED.get(code) or (shown if shown.endswith("]") else None)
            kind: Kind | None = None if refused else _POSTGRES.get(code, "text")
            cast = _POSTGRES_CAST
        else:
            refused = _MYSQL_REFUSED.get(code)
            kind = None if refused else _MYSQL.get(code)
            refused = refused or f"field type {code}"
            # TINYINT(1) is how MySQL spells BOOLEAN; its display width is the column's length.
            if kind == "int" and code == 1 and item[3] == 1:
                kind = "int_bool"
            cast = _MYSQL_CAST
        if kind is None:
            raise SourceError(
                f"column {name!r} is of type {refused}, which the connector does not read; "
                f"leave it out or convert it in a query, e.g. {cast.format(name=name)}"
            )
        columns.append(_Column(name, kind))
    names = [c.name for c in columns]
    twice = next((n for n in names if names.count(n) > 1), None)
    if twice is not None:
        raise SourceError(
            f"the result has two columns named {twice!r}; name them apart in the query "
            "(… AS another_name)"
        )
    return tuple(columns)


def _convert(column: _Column, values: Sequence[object]) -> pa.Array:
    kind, typ = column.kind, _ARROW[column.kind]
    try:
        if kind == "decimal":
            return pa.array([None if v is None else float(v) for v in values], typ)  # type: ignore[arg-type]
        if kind == "int_bool":
            # MySQL's booleans are integers: zero is false, anything else true, as in MySQL.
            return pa.array(values, pa.int64()).cast(typ)
        if kind == "text_or_binary" and any(type(v) is bytes for v in values):
            raise SourceError(
                f"column {column.name!r} holds binary data (BLOB, BINARY), which the connector "
                f"does not read; leave it out or convert it in a query, e.g. HEX({column.name}) "
                f"AS {column.name}"
            )
        return pa.array(values, typ)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError):
        if kind == "text":
            # Types with no Arrow counterpart that psycopg loads as objects (uuid): their text.
            return pa.array([None if v is None else str(v) for v in values], typ)
        if kind in ("date", "timestamp", "timestamptz") and any(isinstance(v, str) for v in values):
            # MySQL's zero dates ('0000-00-00'), which mean "no date", come as text.
            return pa.array([None if isinstance(v, str) else v for v in values], typ)
        raise SourceError(
            f"column {column.name!r} holds a value that is not {typ} "
            f"({'too large for 64 bits' if kind == 'int' else 'of another type'}); convert it "
            "in a query to a type the connector reads"
        ) from None


def _batch(
    rows: Sequence[Sequence[object]], columns: tuple[_Column, ...], schema: pa.Schema
) -> pa.RecordBatch:
    by_column: list[Sequence[object]] = list(zip(*rows)) if rows else [() for _ in columns]
    arrays = [_convert(c, v) for c, v in zip(columns, by_column)]
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


class _Failure:
    """What a source's failures are said against: where it is, and the secret to keep out."""

    def __init__(self, spec: SourceSpec, secret: str | None) -> None:
        url = make_url(spec.url)
        backend = url.get_backend_name()
        host = url.host or str(url.query.get("host") or "localhost")
        self.where = (
            f"{_BACKEND_NAMES[backend]} database {url.database!r} on "
            f"{host}:{url.port or _DEFAULT_PORTS[backend]}"
            + (f" as user {url.username!r}" if url.username else "")
        )
        self.host, self.database, self.user = host, url.database, url.username
        self.secret = secret
        self.spec = spec

    def scrub(self, text: str) -> str:
        """The driver's words, on one line, short, and without the password in any spelling."""
        if self.secret:
            for form in {self.secret, quote(self.secret, safe=""), quote_plus(self.secret)}:
                text = text.replace(form, "***")
        return " ".join(text.split())[:400]

    def reason(self, exc: BaseException) -> str:
        cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
        # The server's own sentence: psycopg's without the statement it quotes (which shows
        # the cursor's DECLARE), PyMySQL's without its (code, message) tuple.
        primary = getattr(getattr(cause, "diag", None), "message_primary", None)
        if not primary and len(cause.args) == 2 and isinstance(cause.args[1], str):
            primary = cause.args[1]
        return self.scrub(str(primary or cause) or type(cause).__name__)

    def connecting(self, exc: BaseException) -> SourceError:
        reason = self.reason(exc)
        low = reason.lower()
        if any(
            s in low
            for s in (
                "password authentication",
                "access denied",
                "no password supplied",
                "authentication failed",
            )
        ) or (f'role "{self.user}" does not exist' in low):
            check = (
                "the user name in the source's URL, and the password that password_ref "
                f"({self.spec.password_ref}) gives"
                if self.spec.password_ref
                else "the user name in the source's URL; if the account has a password, give "
                "it through password_ref ('env:NAME' or 'file:/absolute/path')"
            )
        elif any(
            s in low
            for s in (
                "name or service not known",
                "translate host name",
                "nodename nor servname",
                "getaddrinfo",
                "temporary failure in name resolution",
            )
        ):
            check = f"the host name {self.host!r}: this machine cannot resolve it (DNS)"
        elif "does not exist" in low or "unknown database" in low:
            check = f"the database name {self.database!r} at the end of the source's URL"
        elif any(
            s in low
            for s in ("refused", "timed out", "timeout", "no route", "unreachable", "can't connect")
        ):
            check = (
                "the host and port in the source's URL, that the database server is running, "
                "and that its firewall lets this machine in"
            )
        else:
            check = "the source's URL, and that the department's database accepts this machine"
        return SourceError(f"could not connect to {self.where}: {_sentence(reason)} Check {check}")

    def reading(self, exc: BaseException, rows: int) -> SourceError:
        reason = self.reason(exc)
        low = reason.lower()
        what = f"table {self.spec.table!r}" if self.spec.table else "the query"
        if rows:
            check = "that the database stayed reachable; the pull may simply be run again"
        elif self.spec.table and any(
            s in low for s in ("does not exist", "doesn't exist", "undefined table")
        ):
            check = (
                f"the table's name (and schema), written as stored, case included, and that "
                f"user {self.user!r} may see it"
            )
        elif any(s in low for s in ("permission denied", "command denied", "access denied")):
            # MySQL says this of a table that does not exist too, to hide which ones do.
            check = (
                f"that {what} exists, written as stored (case included), and that user "
                f"{self.user!r} has been granted SELECT on it"
                if self.spec.table
                else f"that the tables the query reads exist and that user {self.user!r} has "
                "been granted SELECT on them"
            )
        elif any(s in low for s in ("read-only", "read only", "data-modifying")):
            check = "the query: the connector only reads, and the query tried to change data"
        elif any(s in low for s in ("does not exist", "doesn't exist", "unknown column")):
            check = (
                f"the tables and columns the query names, written as stored, case included, "
                f"and that user {self.user!r} may see them"
            )
        else:
            check = f"{what} against the database"
        done = f" after {rows} rows" if rows else ""
        return SourceError(
            f"could not read {what} from {self.where}{done}: {_sentence(reason)} Check {check}"
        )


def _sentence(text: str) -> str:
    return text if text.endswith((".", "?", "!")) else f"{text}."


def _statement(conn: Connection, spec: SourceSpec) -> CursorResult[Any]:
    # Read-only for the whole session, before its first transaction begins.
    conn.exec_driver_sql(
        "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY"
        if spec.backend == "postgresql"
        else "SET SESSION TRANSACTION READ ONLY"
    )
    conn.commit()
    # yield_per: a server-side cursor (psycopg's named cursor, PyMySQL's unbuffered one)
    # fetched `batch_rows` rows at a time, never the whole result.
    streaming = conn.execution_options(yield_per=spec.batch_rows)
    if spec.table is not None:
        schema, _, name = spec.table.rpartition(".")
        whole: Select[Any] = select(literal_column("*")).select_from(
            table(name, schema=schema or None)
        )
        return streaming.execute(whole)
    # Passed to the driver as written: no parameters, so '%' and ':' in it mean themselves.
    return streaming.execution_options(no_parameters=True).exec_driver_sql(spec.query or "")


def _connection(spec: SourceSpec, secret: str | None) -> tuple[URL, dict[str, Any]]:
    """The URL and driver arguments of a pull's one connection."""
    url = make_url(spec.url)
    args: dict[str, Any] = {"connect_timeout": CONNECT_TIMEOUT_S}
    if spec.backend == "postgresql":
        args["client_encoding"] = "utf8"
        if secret is not None:
            url = url.set(password=secret)
    else:
        if "charset" not in url.query:
            # Chinese (and every other) text intact: MySQL's "utf8" is a 3-byte subset.
            url = url.update_query_dict({"charset": "utf8mb4"})
        # A TIMESTAMP is an instant shown in the session's zone: in UTC it reads as PostgreSQL's
        # timestamptz does, whatever zone the department's server is set to.
        args["init_command"] = "SET time_zone = '+00:00'"
        if secret is not None:
            # As bytes: PyMySQL would encode a str as Latin-1, and fail on any other letter.
            args["password"] = secret.encode("utf-8")
    return url, args


def stream(spec: SourceSpec) -> Iterator[pa.RecordBatch]:
    """The source's rows, `spec.batch_rows` per batch (the last may be shorter), all batches
    of one schema; a source without rows gives one empty batch, so that its schema is known."""
    secret = resolve_password(spec.password_ref) if spec.password_ref else None
    failure = _Failure(spec, secret)
    url, args = _connection(spec, secret)
    engine = create_engine(url, poolclass=NullPool, connect_args=args)
    try:
        try:
            conn = engine.connect()
        except Exception as e:
            # Not only the driver's errors: whatever stops the connection is said the same
            # way, and nothing of it (a traceback's locals, an argument) carries the password.
            raise failure.connecting(e) from None
        with conn:
            yield from _pull(conn, spec, failure)
    finally:
        engine.dispose()


def _pull(conn: Connection, spec: SourceSpec, failure: _Failure) -> Iterator[pa.RecordBatch]:
    rows = 0
    try:
        result = _statement(conn, spec)
    except DBAPIError as e:
        raise failure.reading(e, rows) from None
    # Closed however the pull ends (done, failed, or its reader stopped early): cheaply for
    # PostgreSQL; for MySQL after reading the rest of the rows, as its protocol has no way to
    # stop a result midway.
    with result:
        columns = _columns(result.cursor.description, spec.backend)
        schema = pa.schema([c.field for c in columns])
        while True:
            try:
                chunk: Sequence[Any] = result.fetchmany(spec.batch_rows)
            except DBAPIError as e:
                raise failure.reading(e, rows) from None
            if not chunk:
                break
            rows += len(chunk)
            batch = _batch(chunk, columns, schema)
            # The rows go before the next are fetched: one batch's worth in memory, not two.
            del chunk
            yield batch
        if rows == 0:
            yield _batch((), columns, schema)
