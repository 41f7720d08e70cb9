"""The node's data directory as the start needs it: writable (or why not), and the API
token generated there when ``api.token`` is not configured (host.core)."""

from __future__ import annotations

import errno
import logging
import os
import secrets
import tempfile
from pathlib import Path

from host.config.secrets import Secret
from host.errors import SmshostError

log = logging.getLogger("smshost")


def writable_data_dir(path: Path) -> None:
    """Create ``path`` if needed and make sure a file can be created in it; say why when not
    (read-only, a file in the way). A full disk does not stop the start: /health reports it."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path, prefix=".smshost-write-check-"):
            pass
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return
        raise SmshostError(
            f"the data directory {path} cannot be written ({exc.strerror or exc}): "
            "smshost keeps its database and API token there. Make it writable for the "
            "user smshost runs as, or choose another with server.data_dir or --data"
        ) from None


def generated_token(path: Path) -> Secret:
    """Read the API token kept in ``path``, creating it (mode 0600) on first start."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        try:
            return Secret(path.read_text(encoding="utf-8").strip(), f"file:{path}")
        except OSError as exc:
            raise SmshostError(f"cannot read the API token file {path}: "
                               f"{exc.strerror or exc}") from None
    token = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(token + "\n")
    log.warning("no api.token configured: generated one in %s", path)
    return Secret(token, f"file:{path}")
