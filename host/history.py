"""The configuration history (SPEC P3; issue 13 point 5): every version of config/*.toml
the node ran with, who or what brought it, and notes. Kept in the table
``config_history`` (migration m013_history) and owned here.

A **version** is recorded when the files differ from the latest recorded version (by
the SHA-256 ``digest`` of their texts): by the listener of ``host.live`` for each applied
change (a file edit, the API, a revert), by the CLI before it writes the files
(:meth:`History.record`: the server's watcher then applies the same files as a "file"
change, and makes no second entry), and at server start (:meth:`History.start`: the
first start, or files edited while the server was stopped). A version keeps the whole
texts of the files (to revert to: the database holds what the files hold, secrets
written inline included) and the unified diff from the version before, secrets masked
(host.config.masking). Answers never carry the texts: the diff only.

A **note** is an entry of its own (source ``note``), about the configuration as a whole
or about an entry (``about``); entries are never edited. Entries are configuration
records, not traffic: the purge leaves them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from host.config import masking
from host.config.local import shared_digest
from host.config.change import Applied, ConfigChange, Files
from host.errors import ApiError, StoreError
from host.jsontext import dumps, loads
from host.models import utcnow
from host.sqlwhere import where

if TYPE_CHECKING:
    from sqlite_utils import Database

    from host.config.change import LiveConfig
    from host.discovery import Discovery
    from host.store import Store

log = logging.getLogger("smshost.history")
SOURCES = ("start", "file", "api", "admin", "cli", "revert", "note")
MAX_NOTE = 2000
MAX_LIMIT = 500
FOUND_AT_START = "found at server start (edited while the server was stopped)"


def digest(files: Mapping[str, str]) -> str:
    """The SHA-256 of a set of files (names and texts)."""
    return hashlib.sha256(json.dumps(dict(files), sort_keys=True).encode()).hexdigest()


def note_text(value: Any, field: str = "note") -> str | None:
    """A note as given (None or ""), or 400 naming ``field``: a string of at most
    MAX_NOTE characters, without control characters but line breaks."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ApiError(400, "bad_parameter", f"{field} must be a string")
    if len(value) > MAX_NOTE:
        raise ApiError(400, "bad_parameter", f"{field}: at most {MAX_NOTE} characters")
    if any(ord(c) < 32 and c not in "\n\t" or c == "\x7f" for c in value):
        raise ApiError(400, "bad_parameter", f"{field}: no control characters")
    return value.strip() or None


@dataclass(frozen=True, slots=True)
class Query:
    """A page of ``GET /api/history``: newest first, ``before`` an id (the cursor)."""

    since: str | None = None
    until: str | None = None
    source: str | None = None
    before: int | None = None
    limit: int = 50


def secret_keys(discovery: Discovery | None) -> masking.SecretKeys:
    """What is secret, from the settings and what discovery found (sink settings
    classes, the options broker definitions declare not secret)."""
    if discovery is None:
        return masking.SecretKeys()
    sinks = {kind: getattr(cls, "settings_class", None) for kind, cls in
             discovery.sinks.items()}
    public = {name: {o.name for o in bt.definition.options.values() if not o.secret}
              for name, bt in discovery.brokers.items()}
    return masking.SecretKeys({k: v for k, v in sinks.items() if isinstance(v, type)},
                              public)


class History:
    """The history of a node's configuration (see the module text). It listens to
    ``live`` (host.config.change.LiveConfig) for applied changes."""

    def __init__(self, store: Store, live: LiveConfig,
                 discovered: Callable[[], Discovery | None]) -> None:
        self._store = store
        self.live = live
        self._discovered = discovered
        self._reverts: dict[str, int] = {}  # digest -> the version a revert restores
        self.revert_lock = asyncio.Lock()  # one revert at a time (host.reverts)
        live.listeners.append(self.applied)

    @property
    def keys(self) -> masking.SecretKeys:
        return secret_keys(self._discovered())

    async def start(self, serving: bool = True, shared: bool = False
                    ) -> dict[str, Any] | None:
        """At server start (``serving``; nothing for a CLI command): record the files
        when they are not the latest version (the first start: source ``start``; edited
        while the server was stopped: ``file``). ``shared`` (several nodes on one
        database): files that are an older recorded version are a node that was away
        while the others changed the configuration: not recorded, the latest version
        is applied by the follower (host.cluster)."""
        if not serving or self.live.config_dir is None:
            return None
        try:
            latest = await self._store.read(_latest)
            hashed = digest(self.live.files)
            if shared and latest is not None and latest[1] != hashed:
                found = await self._store.read(partial(_shared_version, self.live.files))
                if found == latest[0]:  # another node's, but for its own listeners...
                    self.live.applied_version = found
                    return None
                if found is not None:
                    log.info("the configuration files are version %d; version %d, the "
                             "latest, is applied from the database", found, latest[0])
                    self.live.applied_version = found
                    return None
            change = ConfigChange("start") if latest is None else \
                ConfigChange("file", note=FOUND_AT_START)
            return await self.record(self.live.files, change)
        except StoreError as exc:  # a full disk does not stop the start (host.core)
            log.warning("the configuration history could not record this start: %s", exc)
            return None

    async def applied(self, applied: Applied) -> None:
        """The listener of host.live: record an applied change (a version another node
        recorded, applied here by the follower, is in the history already)."""
        if applied.change.source != "cluster":
            await self.record(applied.after, applied.change)

    async def record(self, files: Files, change: ConfigChange,
                     reverts: int | None = None) -> dict[str, Any] | None:
        """Record ``files`` as a new version brought by ``change``; None when they are
        the latest version already. ``reverts``: the version this one restores."""
        hashed = digest(files)
        reverts = self._reverts.pop(hashed, reverts)
        keys = self.keys  # built here, on the event loop: the writer runs SQL only
        entry_id, recorded = await self._store.write(
            lambda db: _insert_version(db, files, hashed, change, reverts, keys))
        if files == self.live.files:
            self.live.applied_version = entry_id
        if not recorded:
            return None
        log.info("configuration version %d recorded (%s%s)", entry_id, change.source,
                 f", by {change.actor}" if change.actor else "")
        return await self.entry(entry_id)

    @contextlib.contextmanager
    def reverting(self, files: Files, version: int) -> Iterator[None]:
        """Within the block, recording ``files`` records a revert to ``version`` (the
        API's revert applies through host.live, whose listener records it)."""
        key = digest(files)
        self._reverts[key] = version
        try:
            yield
        finally:
            self._reverts.pop(key, None)

    async def note(self, text: Any, actor: str | None, about: int | None = None
                   ) -> dict[str, Any]:
        """Add a note (400 when empty or not text; 404 when ``about`` names no entry)."""
        note = note_text(text)
        if note is None:
            raise ApiError(400, "bad_parameter", "note is required (a non-empty string)")
        entry_id = await self._store.write(lambda db: _insert_note(db, note, actor, about))
        log.info("configuration note %d added%s", entry_id, f" by {actor}" if actor else "")
        return await self.entry(entry_id)

    async def entries(self, query: Query) -> list[dict[str, Any]]:
        """A page of entries, newest first, without diffs."""
        if query.source is not None and query.source not in SOURCES:
            raise ApiError(400, "bad_parameter",
                           f"source must be one of {', '.join(SOURCES)}; got {query.source!r}")
        return await self._store.read(lambda db: _select(db, query))

    async def entry(self, entry_id: int) -> dict[str, Any]:
        """Entry ``entry_id`` with its masked diff; 404 when there is none."""
        found = await self._store.read(lambda db: _one(db, entry_id))
        if found is None:
            raise ApiError(404, "not_found", f"no history entry {entry_id}")
        return found

    async def notes_about(self, entry_id: int, limit: int = MAX_LIMIT) -> list[dict[str, Any]]:
        """The notes about entry ``entry_id``, oldest first (at most ``limit``)."""
        return await self._store.read(lambda db: [_record(r) for r in db.execute(
            f"select {_COLUMNS} from config_history where about = ? order by id limit ?",
            [entry_id, limit]).fetchall()])

    async def latest(self) -> dict[str, Any] | None:
        """The latest recorded version (an entry with its diff), or None."""
        found = await self._store.read(_latest)
        return None if found is None else await self.entry(found[0])

    async def latest_id(self) -> int | None:
        """The id of the latest recorded version, or None."""
        row = await self._store.read(lambda db: db.execute(
            "select max(id) from config_history where digest is not null").fetchone())
        return None if row is None or row[0] is None else int(row[0])

    async def version(self, entry_id: int) -> Files:
        """The files of version ``entry_id`` (for a revert; never answered); 404, or 422
        for a note."""
        row = await self._store.read(lambda db: db.execute(
            "select files from config_history where id = ?", [entry_id]).fetchone())
        if row is None:
            raise ApiError(404, "not_found", f"no history entry {entry_id}")
        if row[0] is None:
            raise ApiError(422, "not_a_version", f"history entry {entry_id} is a note, "
                           "not a version of the configuration")
        files: Files = loads(row[0])
        return files

    async def forget(self, entry_id: int) -> None:
        """Remove entry ``entry_id`` (a version the CLI recorded and then failed to
        write)."""
        await self._store.write(lambda db: db.execute(
            "delete from config_history where id = ?", [entry_id]))


def _latest(db: Database) -> tuple[int, str, Files] | None:
    row = db.execute("select id, digest, files from config_history where digest is not "
                     "null order by id desc limit 1").fetchone()
    return None if row is None else (row[0], row[1], loads(row[2]))


def _shared_version(files: Files, db: Database, recent: int = 200) -> int | None:
    """The latest of the ``recent`` versions that ``files`` are but for a node's own
    settings (host.config.local: listeners, data_dir, role)."""
    mine = shared_digest(files)
    for version, texts in db.execute(
            "select id, files from config_history where digest is not null order by id "
            "desc limit ?", [recent]).fetchall():
        if shared_digest(loads(texts)) == mine:
            return int(version)
    return None


def _insert_version(db: Database, files: Files, hashed: str, change: ConfigChange,
                    reverts: int | None, keys: masking.SecretKeys) -> tuple[int, bool]:
    """The id of the version of ``files`` and whether it was recorded now (False: it is
    the latest already)."""
    latest = _latest(db)
    if latest is not None and latest[1] == hashed:
        return latest[0], False
    before = latest[2] if latest is not None else {}
    changed = sorted(n for n in set(before) | set(files) if before.get(n) != files.get(n))
    cursor = db.execute(
        "insert into config_history (at, source, actor, note, digest, files, changed, "
        "sections, diff, reverts) values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [utcnow(), change.source, change.actor, change.note, hashed, dumps(files),
         dumps(changed), dumps(masking.sections(before, files)),
         masking.diff(before, files, keys), reverts])
    assert cursor.lastrowid is not None
    return cursor.lastrowid, True


def _insert_note(db: Database, note: str, actor: str | None, about: int | None) -> int:
    if about is not None and db.execute("select 1 from config_history where id = ?",
                                        [about]).fetchone() is None:
        raise ApiError(404, "not_found", f"about: no history entry {about}")
    cursor = db.execute("insert into config_history (at, source, actor, note, about) "
                        "values (?, 'note', ?, ?, ?)", [utcnow(), actor, note, about])
    assert cursor.lastrowid is not None
    return cursor.lastrowid


_COLUMNS = "id, at, source, actor, note, digest, changed, sections, reverts, about"


def _record(row: Any) -> dict[str, Any]:
    return {"id": row[0], "at": row[1], "source": row[2], "actor": row[3], "note": row[4],
            "version": row[5] is not None, "digest": row[5], "files": loads(row[6]),
            "sections": loads(row[7]), "reverts": row[8], "about": row[9]}


def _select(db: Database, query: Query) -> list[dict[str, Any]]:
    condition, args = where((("at >= ?", query.since), ("at < ?", query.until),
                             ("source = ?", query.source), ("id < ?", query.before)))
    rows = db.execute(f"select {_COLUMNS} from config_history{condition} "
                      "order by id desc limit ?", [*args, query.limit]).fetchall()
    return [_record(r) for r in rows]


def _one(db: Database, entry_id: int) -> dict[str, Any] | None:
    row = db.execute(f"select {_COLUMNS}, diff from config_history where id = ?",
                     [entry_id]).fetchone()
    if row is None:
        return None
    return {**_record(row), "diff": row[10]}
