"""Apply a configuration version another node recorded (issue 17 point 3; SPEC X3).

On PostgreSQL the configuration history (host.history) is shared by every node: a
change made on one node (API, admin, CLI, file edit, revert) is recorded there once.
The follower (host.follow) of each other node sees the newer version and calls
:func:`adopt`, which does what a local edit does, minus the history entry:

* the version's files are validated as the editor validates an edit
  (``LiveConfig.check_files``: the settings, the host's check with the plugins, and no
  broker stopped by it); a version that does not validate here (a handler script, a
  plugin or an environment secret missing on this node) is refused: logged once with
  the reasons, kept in ``config.refused`` of /health, and the node keeps its files and
  its ``applied_version``;
* the configuration directory is made the version's files, with this node's own
  listeners, data_dir and role kept (host.config.local), each in one atomic rename
  (host.reverts.write), under the editor's lock;
* the directory is applied through ``LiveConfig.apply`` (source ``cluster``): the same
  live path as a local edit, whose history listener records nothing for it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from host import reverts
from host.config.change import ConfigChange, read_files
from host.config.editor import ConfigEditor, home_of, no_broker_stopped
from host.config.local import with_local
from host.errors import ApiError, ConfigError, ConfigRefused

if TYPE_CHECKING:
    from host.config.change import Files, LiveConfig
    from host.history import History

log = logging.getLogger("smshost.config")


async def adopt(history: History, version: int, files: Files) -> bool | None:
    """Make this node run ``files``, version ``version`` of the shared history; True
    when it runs them now, False when they were refused here, None when not now: a
    change of this node is under way (its files written, not applied or not recorded
    yet) or ``version`` is no longer the latest (the caller looks again)."""
    live = history.live
    directory = live.config_dir
    if directory is None:  # nothing to write: the node runs its start's settings
        return False
    change = ConfigChange("cluster", note=f"version {version}, recorded by another node")
    async with ConfigEditor(live).lock, history.revert_lock:
        current = read_files(directory)
        if live.busy or current != live.files or await history.latest_id() != version:
            return None
        files = with_local(files, current)  # this node's listeners, data_dir and role
        if current != files:
            if not _valid(live, files, change):
                return False
            try:
                reverts.write(directory, files, current)
            except ApiError as exc:
                live.note_refused(change, [ConfigError(exc.message)])
                return False
        try:
            await live.apply(change)
        except ConfigRefused:  # noted and logged by live
            reverts.write(directory, current, files)
            return False
    live.applied_version = version
    log.info("configuration version %d applied (recorded by another node)", version)
    return True


def _valid(live: LiveConfig, files: Files, change: ConfigChange) -> bool:
    try:
        settings = live.check_files(files)
        assert live.config_dir is not None
        no_broker_stopped(live.settings, settings, live.config_dir / home_of("brokers"))
    except ConfigRefused as exc:
        live.note_refused(change, exc.errors)
        return False
    return True
