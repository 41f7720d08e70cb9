"""Edits of the configuration files by the API and the CLI (issue 13 point 4, P11).

An edit reads one file of the configuration directory as a tomlkit document, changes
it (what it does not touch stays as written), validates the whole directory as it
would be (``LiveConfig.check_files``), replaces the file in one atomic write and applies
the directory (``LiveConfig.apply``, with who asked and why). One edit runs at a time
per node. ``expected``, the ETag the editor read the file with, refuses an edit of a
file that changed since (409, with the current ETag); an invalid result is refused
with ConfigRefused (file:line per problem) and nothing is written.
"""

from __future__ import annotations

import asyncio
import re
import weakref
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import tomlkit
from tomlkit.exceptions import TOMLKitError
from tomlkit.toml_document import TOMLDocument

from host.config.change import ConfigChange, LiveConfig, atomic_write, read_files
from host.config.documents import etag
from host.config.settings import FILES, Settings
from host.errors import ApiError, ConfigError, ConfigRefused

T = TypeVar("T")
_LOCKS: weakref.WeakKeyDictionary[LiveConfig, asyncio.Lock] = weakref.WeakKeyDictionary()
HEADER = "# {name}: written by smshost's configuration editor; docs/operators.md describes " \
         "every key.\n"
_SCRATCH = re.compile(r"\S*/(?=[^/\s:]+\.toml)")  # the scratch directory of check_files


def home_of(key: str) -> str:
    """The file that holds top-level key ``key`` (host.config.settings.FILES)."""
    return next(name for name, keys in FILES.items() if key in keys)


@dataclass
class Draft:
    """A file as read for an edit: its document and the ETag of its bytes."""

    name: str
    doc: TOMLDocument
    etag: str
    text: str
    exists: bool


class ConfigEditor:
    """Reads and edits the files of ``live.config_dir`` (see the module text)."""

    def __init__(self, live: LiveConfig) -> None:
        self.live = live
        self.lock = _LOCKS.setdefault(live, asyncio.Lock())

    @property
    def config_dir(self) -> Path:
        if self.live.config_dir is None:
            raise ApiError(409, "no_config_dir", "this node runs without a configuration "
                           "directory: there are no files to edit")
        return self.live.config_dir

    def read(self, name: str) -> Draft:
        """File ``name`` (one of FILES) as a document; an absent file is empty."""
        path = self.config_dir / name
        data = path.read_bytes() if path.is_file() else b""
        text = data.decode("utf-8", errors="replace")
        try:
            doc = tomlkit.parse(text)
        except TOMLKitError as exc:
            raise ConfigRefused([ConfigError(f"TOML syntax error: {exc}; fix the file "
                                             "first", file=path,
                                             line=getattr(exc, "line", None))]) from None
        return Draft(name, doc, etag(data), text, path.is_file())

    async def edit(self, name: str, expected: Collection[str] | None,
                   change: Callable[[TOMLDocument], T], who: ConfigChange) -> tuple[T, str]:
        """Apply ``change`` to file ``name`` and the result to the node; answer what
        ``change`` answered and the file's new ETag. ``expected``: the ETags the
        caller accepts (an If-Match list); None: whatever the file holds now."""
        async with self.lock:
            draft = self.read(name)
            if expected is not None and draft.etag not in tuple(expected):
                raise ApiError(409, "changed", f"{name} changed since it was read (its "
                               f"ETag is now {draft.etag}); read it again and redo the "
                               "edit", headers={"ETag": draft.etag})
            answer = change(draft.doc)
            text = draft.doc.as_string()
            if text and not text.endswith("\n"):
                text += "\n"
            if not draft.exists and text.strip():
                text = HEADER.format(name=name) + "\n" + text.lstrip("\n")
            if text != draft.text:
                await self._write(draft, text, who)
            else:
                await self.live.apply(who)
            return answer, etag(text.encode("utf-8"))

    async def _write(self, draft: Draft, text: str, who: ConfigChange) -> None:
        files = read_files(self.config_dir)
        files[draft.name] = text
        no_broker_stopped(self.live.settings, self.live.check_files(files),
                           self.config_dir / home_of("brokers"))
        path = self.config_dir / draft.name
        atomic_write(path, text)
        try:
            await self.live.apply(who)
        # Refused (the directory changed under it) or failed while applying: the file
        # goes back, so the files stay the configuration the node runs.
        except BaseException:
            if draft.exists:
                atomic_write(path, draft.text)
            else:
                path.unlink(missing_ok=True)
            raise


def no_broker_stopped(old: Settings, new: Settings, path: Path) -> None:
    """Refuse (ConfigRefused) an edit after which a broker that had no problem, or a new
    one, has one: a problem inside a [[brokers]] table does not refuse the files, it
    keeps that broker from starting (host.config.loader). Messages without values."""
    had = {broker.name for broker in old.brokers if broker.config_problems}
    stopped = [broker for broker in new.brokers
               if broker.config_problems and broker.name not in had]
    if stopped:
        raise ConfigRefused([ConfigError(
            f"broker {broker.name!r} would not start: "
            + "; ".join(_SCRATCH.sub("", p) for p in broker.config_problems), file=path)
            for broker in stopped])
