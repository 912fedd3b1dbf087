"""Pulling a dataset from a department's own database, on real servers: PostgreSQL and MariaDB
(tests/databases.py finds them, or the tests are skipped saying how to run them).

Each server gets a database of its own for the module, with a table of residents in Chinese
and a reading account with a password of its own, made for the run and dropped afterwards; the
password reaches the connector only through `env:` and `file:` references."""

from __future__ import annotations

import traceback
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from databases import department_database
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Double,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    Time,
    create_engine,
    insert,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import make_url
from waiting import wait_until

from sandbox.catalog.sources import SourceSpec, parse_source, stream
from sandbox.errors import SourceError

ROWS = 2_500
BATCH = 1_000
DISTRICTS = ("城关区", "七里河区", "西固区", "安宁区")
SCHEMA = pa.schema(
    [
        ("编号", pa.int64()),
        ("区县", pa.string()),
        ("收入", pa.float64()),
        ("比例", pa.float64()),
        ("出生日期", pa.date32()),
        ("登记时间", pa.timestamp("us")),
        ("在职", pa.bool_()),
        ("备注", pa.string()),
    ]
)
PASSWORD_ENV = "SANDBOX_TEST_SOURCE_PASSWORD"


def resident(i: int) -> dict[str, Any]:
    """Row i as it is stored. The first batch (ORDER BY 编号) has only NULLs in 收入 and 备注."""
    return {
        "编号": 10**12 + i,
        "区县": None if i % 7 == 0 else DISTRICTS[i % 4],
        "收入": None if i < BATCH else Decimal(i * 3) + Decimal("0.25"),
        "比例": i / 8,
        "出生日期": date(1950, 1, 1) + timedelta(days=i * 9),
        "登记时间": datetime(2026, 1, 1, 8, 30) + timedelta(minutes=i, microseconds=i),
        "在职": None if i % 5 == 0 else i % 3 == 0,
        "备注": None if i < BATCH else f"第{i}号住户",
    }


def pulled(i: int) -> dict[str, Any]:
    """Row i as the connector gives it: decimals as floats, all else as stored."""
    row = resident(i)
    return {**row, "收入": None if row["收入"] is None else float(row["收入"])}


def tables(meta: MetaData) -> tuple[Table, Table]:
    precise = DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
    residents = Table(
        "常住人口",
        meta,
        Column("编号", BigInteger),
        Column("区县", String(20)),
        Column("收入", Numeric(12, 2)),
        Column("比例", Double),
        Column("出生日期", Date),
        Column("登记时间", precise),
        Column("在职", Boolean),
        Column("备注", Text),
        mysql_charset="utf8mb4",
    )
    attachments = Table(
        "附件",
        meta,
        Column("编号", Integer),
        Column("内容", LargeBinary),
        Column("时刻", Time),
        mysql_charset="utf8mb4",
    )
    return residents, attachments


@dataclass(frozen=True)
class Department:
    backend: str
    admin: str  # the department database's URL for its administrator
    reader: str  # the reading account's URL, without its password
    user: str
    password: str

    @property
    def database(self) -> str:
        return str(make_url(self.admin).database)

    def quoted(self, name: str) -> str:
        return f'"{name}"' if self.backend == "postgresql" else f"`{name}`"

    def spec(self, password_ref: str | None = f"env:{PASSWORD_ENV}", **fields: Any) -> SourceSpec:
        return parse_source({"url": self.reader, "password_ref": password_ref, **fields})

    def sessions(self) -> int:
        """Connections the reading account has open right now."""
        sql = (
            "SELECT count(*) FROM pg_stat_activity WHERE usename = '{u}'"
            if self.backend == "postgresql"
            else "SELECT count(*) FROM information_schema.processlist WHERE user = '{u}'"
        )
        engine = create_engine(self.admin)
        try:
            with engine.connect() as c:
                return int(c.exec_driver_sql(sql.format(u=self.user)).scalar_one())
        finally:
            engine.dispose()


def _admin_sql(url: str, *statements: str) -> None:
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as c:
            for sql in statements:
                # As written: a '%' in a password is not a placeholder.
                c.execution_options(no_parameters=True).exec_driver_sql(sql)
    finally:
        engine.dispose()


@pytest.fixture(scope="module", params=["postgresql", "mariadb"])
def department(request: pytest.FixtureRequest) -> Iterator[Department]:
    backend: str = request.param
    with department_database(backend) as admin:
        meta = MetaData()
        residents, attachments = tables(meta)
        engine = create_engine(admin)
        try:
            meta.create_all(engine)
            with engine.begin() as c:
                c.execute(insert(residents), [resident(i) for i in range(ROWS)])
                c.execute(insert(attachments), [{"编号": 1, "内容": b"\x00\xff", "时刻": None}])
        finally:
            engine.dispose()
        user = f"reader_{uuid.uuid4().hex[:10]}"
        # Characters that mean something in URLs, shells and SQL's LIKE, all in one password.
        password = f"Pw@:/%#?&+=;口令{uuid.uuid4().hex[:8]}"
        database = make_url(admin).database
        if backend == "postgresql":
            _admin_sql(
                admin,
                f"CREATE ROLE {user} LOGIN PASSWORD '{password}'",
                f'GRANT CONNECT ON DATABASE "{database}" TO {user}',
                f"GRANT USAGE ON SCHEMA public TO {user}",
                f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {user}",
                'CREATE SEQUENCE "计数"',
            )
            drop = (f"DROP OWNED BY {user}", f"DROP ROLE {user}")
        else:
            _admin_sql(
                admin,
                f"CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'",
                f"GRANT SELECT ON `{database}`.`常住人口` TO '{user}'@'%'",
                f"GRANT SELECT ON `{database}`.`附件` TO '{user}'@'%'",
                "CREATE SEQUENCE `计数`",
            )
            drop = (f"DROP USER '{user}'@'%'",)
        try:
            reader = make_url(admin).set(username=user, password=None)
            yield Department(
                backend, admin, reader.render_as_string(hide_password=False), user, password
            )
        finally:
            _admin_sql(admin, *drop)


@pytest.fixture
def env_password(department: Department, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(PASSWORD_ENV, department.password)
    return department.password


def password_file(tmp_path: Path, password: str, mode: int = 0o600) -> str:
    path = tmp_path / "department.password"
    path.write_text(password + "\n", encoding="utf-8")
    path.chmod(mode)
    return f"file:{path}"


def source_error(spec: SourceSpec) -> SourceError:
    with pytest.raises(SourceError) as info:
        for _ in stream(spec):
            pass
    return info.value


def everything_said(error: BaseException) -> str:
    """All a log could show of an error: its text, its repr and its printed traceback."""
    return "\n".join([str(error), repr(error), *traceback.format_exception(error)])


# --- pulls ---------------------------------------------------------------------------------


def test_a_table_is_pulled_in_batches_of_one_schema(
    department: Department, env_password: str
) -> None:
    batches = list(stream(department.spec(table="常住人口", batch_rows=BATCH)))
    assert [b.num_rows for b in batches] == [1000, 1000, 500]
    assert all(b.schema == SCHEMA for b in batches)
    rows = pa.Table.from_batches(batches).sort_by("编号").to_pylist()
    assert rows == [pulled(i) for i in range(ROWS)]


def test_a_table_may_be_named_with_its_schema(department: Department, env_password: str) -> None:
    # PostgreSQL's schema; MySQL's database.
    schema = "public" if department.backend == "postgresql" else department.database
    pulled_rows = stream(department.spec(table=f"{schema}.常住人口", batch_rows=2_000))
    assert [b.num_rows for b in pulled_rows] == [2_000, 500]


def test_a_query_is_pulled_and_a_first_batch_of_nulls_fixes_no_type(
    department: Department, tmp_path: Path
) -> None:
    ref = password_file(tmp_path, department.password)
    query = (
        "SELECT 编号, 区县, 收入, 比例, 出生日期, 登记时间, 在职, 备注 FROM 常住人口 "
        "WHERE 区县 LIKE '%区' OR 区县 IS NULL ORDER BY 编号"
    )
    batches = list(stream(department.spec(password_ref=ref, query=query, batch_rows=BATCH)))
    assert [b.num_rows for b in batches] == [1000, 1000, 500]
    assert all(b.schema == SCHEMA for b in batches)
    first = batches[0]
    assert first.column("收入").null_count == first.column("备注").null_count == BATCH
    assert pa.Table.from_batches(batches).to_pylist() == [pulled(i) for i in range(ROWS)]


def test_a_query_computes_columns_named_in_chinese(
    department: Department, env_password: str
) -> None:
    query = (
        "SELECT 区县, COUNT(*) AS 人数, SUM(收入) AS 总收入, MIN(出生日期) AS 最早, "
        "MAX(比例) AS 最大比例 FROM 常住人口 WHERE 区县 = '城关区' GROUP BY 区县"
    )
    (batch,) = stream(department.spec(query=query))
    assert batch.schema == pa.schema(
        [
            ("区县", pa.string()),
            ("人数", pa.int64()),
            ("总收入", pa.float64()),
            ("最早", pa.date32()),
            ("最大比例", pa.float64()),
        ]
    )
    ours = [pulled(i) for i in range(ROWS) if pulled(i)["区县"] == "城关区"]
    assert batch.to_pylist() == [
        {
            "区县": "城关区",
            "人数": len(ours),
            "总收入": float(
                sum(
                    resident(i)["收入"] or 0 for i in range(ROWS) if resident(i)["区县"] == "城关区"
                )
            ),
            "最早": min(r["出生日期"] for r in ours),
            "最大比例": max(r["比例"] for r in ours),
        }
    ]


def test_other_types_that_come_as_text_are_read_as_text(department: Department) -> None:
    # A uuid (psycopg loads an object) and an enum (a type of the database's own: any OID).
    if department.backend == "postgresql":
        _admin_sql(department.admin, "CREATE TYPE 季节 AS ENUM ('春', '夏')")
        query = "SELECT gen_random_uuid() AS 标识, '夏'::季节 AS 季节"
    else:
        query = "SELECT UUID() AS 标识, CAST('夏' AS CHAR) AS 季节"
    (batch,) = stream(parse_source({"url": department.admin, "query": query}))
    assert batch.schema == pa.schema([("标识", pa.string()), ("季节", pa.string())])
    (row,) = batch.to_pylist()
    assert str(uuid.UUID(row["标识"])) == row["标识"] and row["季节"] == "夏"


def test_an_instant_is_read_in_utc_whatever_the_server_shows(department: Department) -> None:
    # 08:30 in Shanghai, stored as an instant (timestamptz; MySQL's TIMESTAMP), is 00:30Z.
    if department.backend == "postgresql":
        setup = ("SET TIME ZONE 'Asia/Shanghai'", "CREATE TABLE 时刻表 (t timestamptz)")
    else:
        setup = ("SET time_zone = '+08:00'", "CREATE TABLE 时刻表 (t TIMESTAMP NULL)")
    _admin_sql(department.admin, *setup, "INSERT INTO 时刻表 VALUES ('2026-01-01 08:30:00')")
    (batch,) = stream(parse_source({"url": department.admin, "table": "时刻表"}))
    assert batch.schema == pa.schema([("t", pa.timestamp("us", tz="UTC"))])
    assert batch.column("t")[0].as_py() == datetime(2026, 1, 1, 0, 30, tzinfo=UTC)


def test_mysql_zero_dates_mean_no_date(department: Department) -> None:
    if department.backend == "postgresql":
        pytest.skip("PostgreSQL has no zero dates")
    _admin_sql(
        department.admin,
        "SET SESSION sql_mode = ''",
        "CREATE TABLE 零日期 (d DATE, t DATETIME)",
        "INSERT INTO 零日期 VALUES ('0000-00-00', '0000-00-00 00:00:00'), ('2026-12-06', NULL)",
    )
    (batch,) = stream(parse_source({"url": department.admin, "table": "零日期"}))
    assert batch.to_pylist() == [{"d": None, "t": None}, {"d": date(2026, 12, 6), "t": None}]


def test_a_source_without_rows_gives_one_empty_batch_of_its_schema(
    department: Department, env_password: str
) -> None:
    query = (
        "SELECT 编号, 区县, 收入, 比例, 出生日期, 登记时间, 在职, 备注 FROM 常住人口 WHERE 1 = 0"
    )
    (batch,) = stream(department.spec(query=query))
    assert batch.num_rows == 0 and batch.schema == SCHEMA


def test_a_reader_that_stops_early_leaves_no_connection_behind(
    department: Department, env_password: str
) -> None:
    pull = stream(department.spec(table="常住人口", batch_rows=BATCH))
    assert next(pull).num_rows == BATCH
    pull.close()
    wait_until(lambda: department.sessions() == 0, 10, message="the pull's connection stayed open")
    assert sum(b.num_rows for b in stream(department.spec(table="常住人口"))) == ROWS


def test_rows_are_fetched_as_they_are_read_not_all_at_once(department: Department) -> None:
    """Ten million rows: a cursor that fetched the whole result first would take many seconds
    and gigabytes before the first batch. PostgreSQL only: MySQL's protocol cannot stop a
    result midway, so leaving it early reads the rest."""
    if department.backend != "postgresql":
        pytest.skip("a MySQL result abandoned midway is read to its end (see sources._pull)")
    spec = parse_source(
        {
            "url": department.admin,
            "query": "SELECT generate_series(1, 10000000) AS n",
            "batch_rows": 1000,
        }
    )
    pull = stream(spec)
    assert next(pull).column("n").to_pylist() == list(range(1, 1001))
    assert next(pull).column("n").to_pylist()[0] == 1001
    pull.close()


# --- failures ------------------------------------------------------------------------------


def test_a_wrong_password_says_where_and_what_to_check_never_the_password(
    department: Department, tmp_path: Path
) -> None:
    wrong = f"Wr0ng@:/%#?错误{uuid.uuid4().hex[:8]}"
    spec = department.spec(password_ref=password_file(tmp_path, wrong), table="常住人口")
    try:
        for _ in stream(spec):
            pass
    except SourceError as e:
        error = e
    else:
        pytest.skip(
            f"{department.backend} at {make_url(department.admin).host} accepts any password "
            "from this host (pg_hba.conf 'trust'), so a wrong one cannot be refused here"
        )
    said = everything_said(error)
    assert wrong not in said and department.password not in said
    host = make_url(department.admin).host
    assert (
        f"could not connect to {'PostgreSQL' if department.backend == 'postgresql' else 'MySQL'}"
        in error.message
    )
    assert f"database {department.database!r} on {host}" in error.message
    assert f"as user {department.user!r}" in error.message
    assert (
        "Check the user name in the source's URL, and the password that password_ref"
        in error.message
    )


def test_a_password_the_server_quotes_back_is_blotted_out(
    department: Department, env_password: str
) -> None:
    # The server names the missing table in its error: here the table is the password.
    error = source_error(department.spec(query=f"SELECT * FROM {department.quoted(env_password)}"))
    said = everything_said(error)
    assert env_password not in said and "***" in error.message
    assert error.message.startswith("could not read the query from ")


def test_an_unknown_host(department: Department, env_password: str) -> None:
    url = (
        make_url(department.reader).set(host="nohost.invalid").render_as_string(hide_password=False)
    )
    error = source_error(
        parse_source({"url": url, "table": "常住人口", "password_ref": f"env:{PASSWORD_ENV}"})
    )
    assert f"database {department.database!r} on nohost.invalid:" in error.message
    assert (
        "Check the host name 'nohost.invalid': this machine cannot resolve it (DNS)"
        in error.message
    )
    assert env_password not in everything_said(error)


def test_a_closed_port(department: Department, env_password: str) -> None:
    url = make_url(department.reader).set(port=1).render_as_string(hide_password=False)
    error = source_error(
        parse_source({"url": url, "table": "常住人口", "password_ref": f"env:{PASSWORD_ENV}"})
    )
    assert "on 127.0.0.1:1 " in error.message or ":1 as user" in error.message
    assert (
        "that the database server is running, and that its firewall lets this machine in"
        in error.message
    )
    assert env_password not in everything_said(error)


def test_an_unknown_database(department: Department, env_password: str) -> None:
    url = (
        make_url(department.reader).set(database="no_such_db").render_as_string(hide_password=False)
    )
    error = source_error(
        parse_source({"url": url, "table": "常住人口", "password_ref": f"env:{PASSWORD_ENV}"})
    )
    assert "database 'no_such_db' on" in error.message
    # MariaDB answers a database the account may not see as access denied, naming it.
    assert "Check the database name 'no_such_db'" in error.message or "no_such_db" in error.message
    assert env_password not in everything_said(error)


def test_an_unknown_table(department: Department, env_password: str) -> None:
    error = source_error(department.spec(table="不存在的表"))
    assert (
        error.message.startswith("could not read table '不存在的表' from ")
        and f"database {department.database!r}" in error.message
    )
    # PostgreSQL says the table does not exist; MariaDB, to an account without rights on the
    # whole database, that it may not read it (so as not to tell which tables exist).
    assert "written as stored" in error.message and f"user {department.user!r}" in error.message
    assert env_password not in everything_said(error)


def test_a_table_the_account_may_not_read(department: Department, env_password: str) -> None:
    _admin_sql(department.admin, "CREATE TABLE 机密 (x INTEGER)")
    try:
        error = source_error(department.spec(table="机密"))
    finally:
        _admin_sql(department.admin, "DROP TABLE 机密")
    assert "could not read table '机密'" in error.message
    assert f"user {department.user!r}" in error.message


@pytest.mark.parametrize("column", ["时刻", "内容"])
def test_a_column_of_a_type_not_read_is_named_with_its_fix(
    department: Department, env_password: str, column: str
) -> None:
    error = source_error(department.spec(query=f"SELECT 编号, {column} FROM 附件"))
    assert f"column {column!r}" in error.message
    assert "leave it out or convert it in a query" in error.message


def test_the_connector_only_reads(department: Department) -> None:
    # As the database's administrator, who may change anything: the session refuses.
    next_value = "nextval('计数')" if department.backend == "postgresql" else "NEXTVAL(`计数`)"
    spec = parse_source({"url": department.admin, "query": f"SELECT {next_value} AS n"})
    error = source_error(spec)
    assert "read-only" in error.message.lower() or "read only" in error.message.lower()
    assert "the connector only reads" in error.message
