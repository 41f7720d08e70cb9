"""Opt-out (SPEC R6): STOP-family keywords, handled before routing, per account.

A sender who texts a stop word to one of our numbers is opted out for that number;
sending to them from it is refused (``OptedOut``) until they text a start word.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from host.errors import SmshostError
from host.models import Message, utcnow

if TYPE_CHECKING:
    from host.config.routes import OptOutSettings
    from host.store import Store


class OptedOut(SmshostError):
    """The recipient opted out of messages from this number."""

    def __init__(self, local: str, remote: str) -> None:
        self.local = local
        self.remote = remote
        super().__init__(f"{remote} opted out of messages from {local} (they texted STOP); "
                         "a message is allowed again after they text START")


class OptOuts:
    def __init__(self, settings: OptOutSettings, store: Store) -> None:
        self._settings = settings
        self._store = store

    def configure(self, settings: OptOutSettings) -> None:
        """Take new keywords and replies (a live configuration change)."""
        self._settings = settings

    def keyword(self, message: Message) -> str | None:
        """"stop", "start" or "help" when the whole body is such a keyword."""
        settings = self._settings
        if not settings.enabled or message.direction != "in":
            return None
        word = message.body.strip().upper()
        for action, words in (("stop", settings.stop_words), ("start", settings.start_words),
                              ("help", settings.help_words)):
            if word in (w.upper() for w in words):
                return action
        return None

    def reply_text(self, action: str) -> str:
        settings = self._settings
        return {"stop": settings.stop_reply, "start": settings.start_reply,
                "help": settings.help_reply}[action]

    def apply(self, db: Any, message: Message, action: str) -> None:
        """Record an opt-out or opt-in (inside the caller's write)."""
        if action == "stop":
            db.execute("insert into optouts (local, remote, opted_out_at, broker) values "
                       "(?, ?, ?, ?) on conflict do nothing",
                       [message.local or "", message.remote or "", utcnow(), message.broker])
        elif action == "start":
            db.execute("delete from optouts where local = ? and remote = ?",
                       [message.local or "", message.remote or ""])

    async def is_opted_out(self, local: str, remote: str) -> bool:
        row = self._store.read_now(lambda db: db.execute(
            "select 1 from optouts where local = ? and remote = ?", [local, remote]).fetchone())
        return row is not None

    @staticmethod
    def refusal(db: Any, local: str | None, remote: str) -> OptedOut | None:
        """As :meth:`check`, inside a write (host.outbound's): the send is stored only if
        no opt-out was committed before it, with no read of its own. Returned, not
        raised: raised in a group commit, it would roll back every write of the group
        and run them again; the caller raises it once the write returns."""
        if local and db.conn.execute("select 1 from optouts where local = ? and remote = ?",
                                     [local, remote]).fetchone() is not None:
            return OptedOut(local, remote)
        return None

    async def check(self, local: str | None, remote: str) -> None:
        """Raise :class:`OptedOut` when ``remote`` opted out of ``local``."""
        if local and await self.is_opted_out(local, remote):
            raise OptedOut(local, remote)

    async def remove(self, local: str, remote: str) -> bool:
        """Opt ``remote`` back in for ``local`` (an operator's decision, as if they had
        texted a start word, without the confirmation SMS); False when it was not opted
        out."""
        removed: int = await self._store.write(lambda db: db.execute(
            "delete from optouts where local = ? and remote = ?", [local, remote]).rowcount)
        return removed > 0

    async def search(self, text: str = "", *, limit: int = 50, offset: int = 0
                     ) -> tuple[list[dict[str, Any]], bool]:
        """A page of the opted-out pairs whose number or local address contains
        ``text`` (every pair when empty), newest first, and whether more follow."""
        sql = "select local, remote, opted_out_at, broker from optouts"
        args: list[Any] = []
        if text:
            sql += " where instr(remote, ?) > 0 or instr(local, ?) > 0"
            args += [text, text]
        sql += " order by opted_out_at desc, local, remote limit ? offset ?"
        rows = await self._store.read(lambda db: list(db.query(sql, [*args, limit + 1, offset])))
        return rows[:limit], len(rows) > limit

    async def list(self, local: str | None = None) -> list[dict[str, Any]]:
        sql = "select local, remote, opted_out_at, broker from optouts"
        args: list[Any] = []
        if local:
            sql += " where local = ?"
            args.append(local)
        sql += " order by opted_out_at desc"
        return await self._store.read(lambda db: list(db.query(sql, args)))
