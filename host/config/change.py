"""A change of the running configuration (P11, P3): what asked for it, and what it did.

:class:`LiveConfig` owns the configuration a node runs with. ``apply`` reads the
configuration directory, validates it as a whole, hands the new settings to the host
(``swap``: the host applies what it can while running and says which settings need a
restart) and tells its listeners (the history, /health). A configuration that fails
validation is refused with :class:`~host.errors.ConfigRefused`; the running one stays.

``check_files`` validates files that are not written yet (an edit from the API or the
CLI is checked before it replaces a file). Every applier of a change goes through
``apply``: a file edit (the watcher), the API, the CLI, a revert. Both run the host's
``check`` too (host.reconfigure: what only the plugins can tell, such as a route to a
sink that is not installed), so an edit the swap would refuse is refused before it is
written; the swap may still refuse (ConfigRefused) before it applies anything.

A directory whose files are the ones applied (a save that changed nothing, a touch)
applies nothing: ``apply`` answers an ``Applied`` whose ``changed`` is False, without
calling the swap or the listeners, so listeners (the history) hear real changes only.
It also clears a refusal: the files are the running ones again. A refusal is logged
once (the same refused files saved again are not logged again).
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import logging
import os
import tempfile
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from host.config.loader import load_settings
from host.config.settings import FILES, Settings
from host.errors import ConfigError, ConfigErrors, ConfigRefused

log = logging.getLogger("smshost.config")

Source = Literal["start", "file", "api", "admin", "cli", "revert", "cluster"]
"""``admin``: an edit made on a page of the web admin (host.web.ui.admin); ``cluster``:
a version another node recorded, applied here (host.cluster; the history has it)."""
Files = dict[str, str]
"""The configuration files by name (``routes.toml``), each with its whole text."""


@dataclass(frozen=True, slots=True)
class ConfigChange:
    """Who or what asked for a change: ``source``, the user or token (``actor``) and an
    optional note for the history."""

    source: Source
    actor: str | None = None
    note: str | None = None


@dataclass(frozen=True, slots=True)
class Applied:
    """A change the node applied: the files before and after, the new settings and the
    settings that take effect only after a restart (dotted keys such as ``listeners``)."""

    change: ConfigChange
    before: Files
    after: Files
    settings: Settings
    restart_needed: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        return self.before != self.after


Swap = Callable[[Settings, Settings], Awaitable[tuple[str, ...]]]
Listener = Callable[[Applied], Awaitable[None] | None]


def read_files(config_dir: Path) -> Files:
    """The text of every configuration file present in ``config_dir`` (UTF-8; a file
    that is not UTF-8 reads with U+FFFD, and its validation then fails with file:line)."""
    return {path.name: path.read_text(encoding="utf-8", errors="replace")
            for path in sorted(config_dir.glob("*.toml")) if path.is_file()}


@dataclass
class Refusal:
    """The last refused change, for /health and the API (cleared by a good apply)."""

    change: ConfigChange
    errors: list[str] = field(default_factory=list)
    at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def to_json(self) -> dict[str, object]:
        return {"at": _iso(self.at), "source": self.change.source,
                "actor": self.change.actor, "note": self.change.note,
                "errors": list(self.errors)}


class LiveConfig:
    """The configuration a node runs with, and the one way to change it."""

    def __init__(self, config_dir: Path | None, settings: Settings, swap: Swap,
                 environ: Mapping[str, str] | None = None) -> None:
        self.config_dir = config_dir
        self.settings = settings
        self.files: Files = read_files(config_dir) if config_dir is not None else {}
        self.refused: Refusal | None = None
        self.restart_needed: tuple[str, ...] = ()
        self.listeners: list[Listener] = []
        self.check: Callable[[Settings], object] | None = None  # the host's (see above)
        self.last = ConfigChange("start")
        self.applied_at = datetime.now(UTC)
        self.applied_version: int | None = None
        """The history version (``config_history`` id) whose files this node runs, when
        known: set by the history (host.history) and by the cluster's follower
        (host.cluster); /health shows it as ``config.applied_version``."""
        self._swap = swap
        self._environ = dict(environ) if environ is not None else None
        self._lock = asyncio.Lock()

    def load(self, config_dir: Path) -> Settings:
        return load_settings(config_dir, dict(self._environ) if self._environ is not None
                             else None)

    def check_files(self, files: Mapping[str, str]) -> Settings:
        """Validate ``files`` (the whole directory's, as they would be written) without
        touching the real directory; raise ConfigRefused naming file and line."""
        unknown = [name for name in files if name not in FILES]
        if unknown:
            raise ConfigRefused([ConfigError(f"unknown configuration file {unknown[0]!r}")])
        with tempfile.TemporaryDirectory(prefix="smshost-config-") as scratch:
            for name, text in files.items():
                Path(scratch, name).write_text(text, encoding="utf-8")
            try:
                settings = self.load(Path(scratch))
                if self.check is not None:
                    self.check(settings)
                return settings
            except ConfigErrors as exc:
                raise ConfigRefused([_renamed(e, scratch, self.config_dir) for e in exc]) from None

    async def apply(self, change: ConfigChange) -> Applied:
        """Read, validate and apply the configuration directory; raise ConfigRefused
        (the running configuration stays) when it is not valid as a whole."""
        if self.config_dir is None:
            raise ConfigRefused([ConfigError("this node runs without a configuration "
                                             "directory: nothing to reload")])
        async with self._lock:
            before, after = self.files, read_files(self.config_dir)
            if after == before:  # nothing to apply (see the module text)
                self.refused = None
                return Applied(change, before, after, self.settings, self.restart_needed)
            try:
                settings = self.load(self.config_dir)
                restart = await self._swap(self.settings, settings)
            except ConfigErrors as exc:
                return self._refuse(change, list(exc))
            self.settings, self.restart_needed = settings, restart
            self.files, self.refused = after, None
            self.last, self.applied_at = change, datetime.now(UTC)
            applied = Applied(change, before, after, settings, self.restart_needed)
            for listener in list(self.listeners):
                await _call(listener, applied)
            return applied

    def _refuse(self, change: ConfigChange, errors: list[ConfigError]) -> Applied:
        self.note_refused(change, errors)
        raise ConfigRefused(errors)

    def note_refused(self, change: ConfigChange, errors: list[ConfigError]) -> None:
        """Keep (for /health) and log, once, a refused change; the running one stays."""
        described = [e.describe() for e in errors]
        if self.refused is None or self.refused.errors != described:  # logged once
            log.error("configuration change (%s%s) refused, the running configuration "
                      "stays:\n%s", change.source, f": {change.note}" if change.note else "",
                      "\n".join(described))
        self.refused = Refusal(change, described)

    @property
    def busy(self) -> bool:
        """Whether a change is being applied (its listeners, the history, included)."""
        return self._lock.locked()

    @property
    def version(self) -> str:
        """A digest of the applied files: equal on two nodes with the same files."""
        digest = hashlib.sha256()
        for name, text in sorted(self.files.items()):
            digest.update(f"{name}\0{text}\0".encode())
        return digest.hexdigest()[:16]

    def describe(self) -> dict[str, object]:
        """The running configuration for /health and ``GET /api/config/status``."""
        return {"version": self.version, "applied_version": self.applied_version,
                "applied_at": _iso(self.applied_at),
                "source": self.last.source, "actor": self.last.actor,
                "restart_needed": list(self.restart_needed),
                "refused": self.refused.to_json() if self.refused else None}


def _iso(at: datetime) -> str:
    return at.isoformat(timespec="seconds").replace("+00:00", "Z")


def atomic_write(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` in one rename (a reader sees the old or the new
    file, never half of one), keeping the file's mode."""
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _renamed(error: ConfigError, scratch: str, config_dir: Path | None) -> ConfigError:
    """An error found in the scratch copy, naming the real file instead."""
    if error.file is None or config_dir is None or not error.file.startswith(scratch):
        return error
    real = config_dir / Path(error.file).name
    return ConfigError(error.message, file=real, line=error.line, key=error.key)


async def _call(listener: Listener, applied: Applied) -> None:
    try:
        result = listener(applied)
        if inspect.isawaitable(result):
            await result
    # A listener (history, a plugin) failing must not undo an applied change (BLE001).
    except Exception:  # noqa: BLE001
        log.exception("a listener of configuration changes failed")
