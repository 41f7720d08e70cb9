"""A PostgreSQL connection with the face smshost's SQL code uses of ``sqlite_utils``.

The store's functions take a ``db`` and call ``db.execute(sql, params)``,
``db.conn.execute``, ``db.conn.executemany``, ``db.query`` (rows as dicts) and read a
cursor's ``fetchone``/``fetchall``/``rowcount``/``lastrowid``/``description``. This
module gives them the same on a psycopg 3 connection, with every statement translated
once (:mod:`host.pg.dialect`), so one function serves both stores.

Values go to the server untyped (as SQLite takes them) and the server infers each
parameter's type from where it is used: a number compared with a text column, a flag
``True`` stored in an integer column, work as on SQLite. ``numeric`` results (``sum``)
come back as ``int`` when whole. Errors are raised as the DB-API classes of
:mod:`sqlite3` (``IntegrityError``, ``OperationalError``, ...), so a caller catches one
family whatever the store.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import pq
from psycopg.adapt import Buffer, Dumper, Loader

from host.pg.dialect import returns_id, translate

__all__ = ["PgDatabase", "connect", "mask_url"]

Params = Sequence[Any] | dict[str, Any] | None


class _Untyped(Dumper):
    """A Python value sent as text of unknown type: the server types it in context."""

    oid = 0

    def dump(self, obj: Any) -> Buffer:
        return str(obj).encode()


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
    for kind in (int, float, str):
        adapters.register_dumper(kind, _Untyped)
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


def _error(exc: psycopg.Error) -> sqlite3.Error:
    """``exc`` as the sqlite3 class of the same meaning."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, psycopg.IntegrityError):
        return sqlite3.IntegrityError(text)
    if isinstance(exc, psycopg.DataError):
        return sqlite3.DataError(text)
    if isinstance(exc, psycopg.InternalError | psycopg.NotSupportedError):
        return sqlite3.InternalError(text)
    return sqlite3.OperationalError(text)


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
