"""smshost: an SMS server.

The public plugin API lives here: plugin authors write ``from host import hookimpl``
and never import pluggy themselves.
"""

from __future__ import annotations

import pluggy

__version__ = "0.1.0"

hookimpl = pluggy.HookimplMarker("smshost")
"""Marker for smshost hook implementations (``@hookimpl`` or ``@hookimpl(trylast=True)``)."""

__all__ = ["__version__", "hookimpl"]
