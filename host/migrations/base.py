"""The core's named migration set (``smshost``); its migrations are in the modules of
this package, by era, registered in order when :mod:`host.migrations` is imported."""

from __future__ import annotations

from sqlite_utils import Migrations

core = Migrations("smshost")
