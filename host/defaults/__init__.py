"""Built-in behaviour shipped as ordinary plugins, registered before everything else.

Their implementations are ``trylast`` so a user plugin can run before them.
"""

from __future__ import annotations

DEFAULT_PLUGINS: tuple[str, ...] = (
    "host.defaults.retention",
    "host.defaults.simulator",
    "host.defaults.routing",
    "host.defaults.events",
    "host.defaults.handler",
)
