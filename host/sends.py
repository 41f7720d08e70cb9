"""What a send asks for and what it gets (SPEC O1): the request, its result, and the
error that refuses it. :mod:`host.outbound` carries sends out; these are shared with
the API, handlers and sinks that make them."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from host.errors import SmshostError
from host.models import Message


class SendError(SmshostError):
    """A message cannot be queued: ``status`` is the HTTP status the API answers."""

    def __init__(self, status: int, code: str, message: str) -> None:
        self.status = status
        self.code = code
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class SendRequest:
    to: str
    text: str
    broker: str | None = None
    account: str | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    source: str = "api"
    optout_exempt: bool = False  # only the STOP/START confirmations themselves
    workgroup: str | None = None
    user: str | None = None
    classification: str | None = None
    # The classifications the caller holds, when it named none and is held to them
    # (host.rights): the route is used with one of them. None: not held (handlers).
    held: tuple[str, ...] | None = None
    idempotency_key: str | None = None
    # The inbound message this answers: it goes out through the broker, account and
    # number that received it (B8), whatever the outbound routes say.
    reply_to: Message | None = None
    # Not before this time (Unix seconds, the outbox's clock): stored ``scheduled``
    # until then (host.schedule). None: now.
    send_at: float | None = None
    # Where each status change of its messages is POSTed (host.callbacks), checked
    # against ``[callbacks]`` when queued.
    status_callback: str | None = None
    # The login of the user whose request made it (kept in its first event: only that
    # user, or an admin, may cancel it).
    by: str | None = None

    def fingerprint(self) -> str:
        """What a retried request with the same Idempotency-Key must repeat (the fields
        added later only when given: keys stored before them still match)."""
        later = [{k: v for k, v in (("send_at", self.send_at),
                                    ("status_callback", self.status_callback)) if v}]
        later = later if later[0] else []
        return json.dumps([self.to, self.text, self.broker, self.account, self.workgroup,
                           self.user, self.classification, self.attrs, *later],
                          sort_keys=True)


@dataclass(frozen=True, slots=True)
class Queued:
    """The result of a send: the stored messages (several when split)."""

    messages: list[Message]
    encoding: str
    segments: int
    route: str | None = None
    replayed: bool = False  # an Idempotency-Key seen before: nothing new was queued
    consolidated: bool = False  # merged into a message that was already waiting
    error: str | None = None  # refused (send_or_record): the code; messages[0] failed
