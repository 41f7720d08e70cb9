"""A PostgreSQL connection with the face smshost's SQL code uses of ``sqlite_utils``.

The store's functions take a ``db`` and call ``db.execute(sql, params)``,
``db.conn.execute``, ``db.conn.executemany``, ``db.query`` (rows as dicts) and read a
cursor's ``fetchone``/``fetchall``/``rowcount``/``lastrowid``/``description``. This
module gives them the same on a psycopg 3 connection, with every statement translated
once (:mod:`host.pg.dialect`), so one function serves both stores.

Values go to the server untyped (as SQLite takes them) and the server infers each
parameter's type from where it is used: a number compared with a text column, a flag
``True`` stored in an integer column, work as on SQLite; a float goes as ``double
precision`` (compared with an integer, stored in an integer column, as on SQLite).
``numeric`` results (``sum``) come back as ``int`` when whole. Errors are raised as the
DB-API classes of :mod:`sqlite3` (``IntegrityError``, ``OperationalError``, ...), so a
caller catches one family whatever the store.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import pq
from psycopg.adapt import Buffer, Dumper, Loader

from host.pg.dialect import inserted, returns_id, translate

__all__ = ["PgDatabase", "connect", "mask_url"]

Params = Sequence[Any] | dict[str, Any] | None


class _Untyped(Dumper):
    """A Python value sent as text of unknown type: the server types it in context."""

    oid = 0

    def dump(self, obj: Any) -> Buffer:
        return str(obj).encode()


class _Real(Dumper):
    """A float as ``double precision``: the server would type an untyped one by its
    context, an integer beside ``? > 0``, and refuse ``10.0`` there (SQLite compares
    any number with any)."""

    oid = 701

    def dump(self, obj: Any) -> Buffer:
        return repr(float(obj)).encode()


class _Flag(Dumper):
    oid = 0

    def dump(self, obj: Any) -> Buffer:
        return b"1" if obj else b"0"


class _Number(Loader):
    """``numeric`` (a sum, an average) as ``int`` when whole, else ``float``."""

    def load(self, data: Buffer) -> int | float:
        text = bytes(data).decode()
        return float(text) if "." in text or "e" in text.lower() or "N" in text else int(
            text)


def connect(url: str, *, autocommit: bool = True) -> psycopg.Connection[Any]:
    """A connection to ``url`` with smshost's adapters (module docstring)."""
    conn = psycopg.connect(url, autocommit=autocommit, connect_timeout=10)
    adapters = conn.adapters
    for kind in (int, str):
        adapters.register_dumper(kind, _Untyped)
    adapters.register_dumper(float, _Real)
    adapters.register_dumper(bool, _Flag)
    adapters.register_loader("numeric", _Number)
    return conn


def mask_url(url: str) -> str:
    """``url`` with its password (if any) masked, for logs and messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


# SQLSTATEs (or their classes, two characters) of the server refusing work for a reason
# outside the statement, as the SQLite result code of the same meaning, so that
# host.writepath.refusal() names the same kind (/health, 503) on either store.
_REFUSALS = {"53100": sqlite3.SQLITE_FULL,  # disk_full
             "53200": sqlite3.SQLITE_NOMEM,  # out_of_memory
             "53": sqlite3.SQLITE_FULL,  # insufficient resources (too many connections...)
             "25006": sqlite3.SQLITE_READONLY,  # read_only_sql_transaction (a standby)
             "42501": sqlite3.SQLITE_PERM,  # insufficient_privilege
             "55P03": sqlite3.SQLITE_BUSY,  # lock_not_available (lock_timeout)
             "57P01": sqlite3.SQLITE_IOERR,  # admin_shutdown
             "57P02": sqlite3.SQLITE_IOERR,  # crash_shutdown
             "57P03": sqlite3.SQLITE_IOERR,  # cannot_connect_now
             "58": sqlite3.SQLITE_IOERR,  # system error (I/O)
             "08": sqlite3.SQLITE_IOERR}  # connection exception


def _error(exc: psycopg.Error) -> sqlite3.Error:
    """``exc`` as the sqlite3 class of the same meaning (with the SQLite result code of
    a refusal: :data:`_REFUSALS`)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    error: sqlite3.Error
    if isinstance(exc, psycopg.IntegrityError):
        error = sqlite3.IntegrityError(text)
    elif isinstance(exc, psycopg.DataError):
        error = sqlite3.DataError(text)
    elif isinstance(exc, psycopg.InternalError | psycopg.NotSupportedError):
        error = sqlite3.InternalError(text)
    else:
        error = sqlite3.OperationalError(text)
    state = exc.sqlstate or ("08000" if isinstance(exc, psycopg.OperationalError) else "")
    code = _REFUSALS.get(state, _REFUSALS.get(state[:2]))
    if code is not None:
        error.sqlite_errorcode = code
    return error


class PgCursor:
    """The part of a sqlite3 cursor smshost reads."""

    def __init__(self, cursor: psycopg.Cursor[Any], lastrowid: int | None = None) -> None:
        self._cursor = cursor
        self.lastrowid = lastrowid

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def description(self) -> Any:
        return self._cursor.description

    def fetchone(self) -> Any:
        return self._cursor.fetchone() if self._cursor.description else None

    def fetchall(self) -> list[Any]:
        return self._cursor.fetchall() if self._cursor.description else []

    def fetchmany(self, size: int) -> list[Any]:
        return self._cursor.fetchmany(size) if self._cursor.description else []

    def __iter__(self) -> Iterator[Any]:
        return iter(self.fetchall())


class PgDatabase:
    """One connection; also its own ``conn`` (callers write ``db.conn.execute``)."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.raw = conn
        self.with_id: set[str] | None = None  # tables whose inserts return their id
        self.notified: set[str] = set()  # tables whose inserts the writer notifies
        self.wrote: set[str] = set()  # of those, the ones this transaction inserted into

    @property
    def conn(self) -> PgDatabase:
        return self

    @property
    def in_transaction(self) -> bool:
        return self.raw.info.transaction_status != pq.TransactionStatus.IDLE

    def execute(self, sql: str, params: Params = None) -> PgCursor:
        table = returns_id(sql)
        text = translate(sql)
        if table is not None and table in self._tables_with_id():
            text += " returning id"
        else:
            table = None
        cursor = self.raw.cursor()
        try:
            cursor.execute(text, _params(params))
        except psycopg.Error as exc:
            raise _error(exc) from exc
        if self.notified:
            self.wrote.update(self.notified.intersection(inserted(sql)))
        lastrowid = None
        if table is not None:
            rows = cursor.fetchall()
            lastrowid = rows[-1][0] if rows else None
        return PgCursor(cursor, lastrowid)

    def executemany(self, sql: str, rows: Iterable[Params]) -> PgCursor:
        cursor = self.raw.cursor()
        try:
            cursor.executemany(translate(sql), [_params(r) for r in rows])
        except psycopg.Error as exc:
            raise _error(exc) from exc
        if self.notified:
            self.wrote.update(self.notified.intersection(inserted(sql)))
        return PgCursor(cursor)

    def executescript(self, sql: str) -> None:
        for statement in sql.split(";"):
            if statement.strip():
                self.execute(statement)

    def query(self, sql: str, params: Params = None) -> Iterator[dict[str, Any]]:
        cursor = self.execute(sql, params)
        names = [d[0] for d in cursor.description or ()]
        for row in cursor.fetchall():
            yield dict(zip(names, row, strict=True))

    def table_names(self) -> list[str]:
        """The tables of the schema (sqlite_utils' ``Database.table_names``)."""
        cursor = self.raw.execute(
            "select table_name from information_schema.tables where table_schema = "
            "current_schema() and table_type = 'BASE TABLE' order by table_name")
        return [row[0] for row in cursor.fetchall()]

    def close(self) -> None:
        self.raw.close()

    def _tables_with_id(self) -> set[str]:
        if self.with_id is None:
            cursor = self.raw.execute(
                "select table_name from information_schema.columns where column_name = "
                "'id' and is_identity = 'YES' and table_schema = current_schema()")
            self.with_id = {row[0] for row in cursor.fetchall()}
        return self.with_id


def _params(params: Params) -> Sequence[Any] | dict[str, Any]:
    if params is None:
        return ()
    if isinstance(params, dict):
        return params
    return tuple(params)
