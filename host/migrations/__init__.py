"""The core's tables, as the named migration set ``smshost``.

Plugins add their own sets through the ``register_migrations`` hook. A migration is
never edited once released (none is yet: 0.1.0 is unreleased): a change is a new
migration appended to the newest module of this package (host.migrations.third;
a new era: a new module, imported below after the others, since the order of import is
the order of the migrations).
"""

from __future__ import annotations

from host.migrations.base import core
from host.migrations.first import (m001_messages, m002_brokers, m003_fewer_indexes,
                                   m004_routing, m005_outbox, m006_outbox_accounts,
                                   m007_list_indexes, m008_outbox_parts, m009_purged_by_age)
from host.migrations.second import (m010_people, m011_tokens, m012_access, m013_history,
                                    m014_message_search, m015_status_callbacks)
from host.migrations.third import m016_cluster  # noqa: I001 - registered in this order
from host.migrations.lanes import m018_lanes

__all__ = [
    "core", "m001_messages", "m002_brokers", "m003_fewer_indexes", "m004_routing",
    "m005_outbox", "m006_outbox_accounts", "m007_list_indexes", "m008_outbox_parts",
    "m009_purged_by_age", "m010_people", "m011_tokens", "m012_access", "m013_history",
    "m014_message_search", "m015_status_callbacks", "m016_cluster", "m018_lanes",
]
