"""Revert the configuration to a recorded version (SPEC P3): a new change, with its own
history entry naming the version it restored.

The files of the version are validated first (``check``: host.live.check_files); a
version that no longer validates (a broker definition gone, a sink no longer installed)
is refused with file:line and nothing is written. Then the configuration directory is
made exactly the set of files of the version: each written in one atomic rename, and a
file the version did not have removed (its text stays in the history). A failed write
puts back what was written. ``expected``: the digest of the files as the caller last
saw them (``If-Match``); when the files changed since, 409 and nothing is written.

The API applies the reverted files through host.live (source ``revert``; its listener
records the entry); the CLI records the entry (source ``revert``) before writing and
leaves applying to the running server's watcher, or to the next start.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from host.config.change import ConfigChange, Files, LiveConfig, atomic_write, read_files
from host.errors import ApiError, ConfigRefused
from host.history import History, digest

log = logging.getLogger("smshost.history")
Check = Callable[[Files], object]


def config_dir(live: LiveConfig) -> Path:
    if live.config_dir is None:
        raise ApiError(409, "no_config_dir", "this node runs without a configuration "
                       "directory: there is nothing to revert")
    return live.config_dir


async def prepare(history: History, version: int, expected: str | None,
                  check: Check) -> tuple[Files, Files] | None:
    """The files of ``version`` and the files now, validated; None when they are the
    same (nothing to revert)."""
    files = await history.version(version)
    current = read_files(config_dir(history.live))
    if expected is not None and expected.strip('"') != digest(current):
        raise ApiError(409, "conflict", "the configuration files changed since you read "
                       "them (If-Match does not match); read the history again")
    if files == current:
        return None
    check(files)  # ConfigRefused (file:line) before anything is written
    return files, current


def write(directory: Path, files: Files, current: Files) -> None:
    """Make ``directory``'s configuration exactly ``files``; on a failure put back
    ``current`` (best effort) and raise ApiError 500 naming the file."""
    done: list[str] = []
    try:
        for name, text in sorted(files.items()):
            if current.get(name) != text:
                atomic_write(directory / name, text)
                done.append(name)
        for name in sorted(set(current) - set(files)):
            (directory / name).unlink(missing_ok=True)
            done.append(name)
    except OSError as exc:
        for name in done:
            _put_back(directory / name, current.get(name))
        raise ApiError(500, "write_failed", f"cannot write {exc.filename or directory}: "
                       f"{exc.strerror or exc}; nothing was reverted") from None


def _put_back(path: Path, text: str | None) -> None:
    try:
        if text is None:
            path.unlink(missing_ok=True)
        else:
            atomic_write(path, text)
    except OSError as exc:
        log.error("could not put back %s after a failed revert: %s", path, exc)


async def apply(history: History, version: int, change: ConfigChange,
                expected: str | None = None) -> dict[str, Any] | None:
    """Revert through the running node (the API): validate, write, apply; the new
    entry, or None when the files are version ``version`` already."""
    live = history.live
    async with history.revert_lock:
        prepared = await prepare(history, version, expected, live.check_files)
        if prepared is None:
            return None
        files, current = prepared
        write(config_dir(live), files, current)
        with history.reverting(files, version):
            try:
                await live.apply(change)
            except ConfigRefused:
                write(config_dir(live), current, files)
                raise
    log.info("configuration reverted to version %d%s", version,
             f" by {change.actor}" if change.actor else "")
    return await history.latest()


async def record_and_write(history: History, version: int, change: ConfigChange,
                           check: Check) -> dict[str, Any] | None:
    """Revert from the CLI: validate, record the entry, write the files (the server's
    watcher applies them); the entry, or None when there is nothing to revert."""
    prepared = await prepare(history, version, None, check)
    if prepared is None:
        return None
    files, current = prepared
    entry = await history.record(files, change, reverts=version)
    try:
        write(config_dir(history.live), files, current)
    except ApiError:
        if entry is not None:
            await history.forget(entry["id"])
        raise
    return entry
