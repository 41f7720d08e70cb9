"""Queuing outbound messages: the one path for the API, CLI and handler scripts (SPEC O1).

``submit`` checks the sender (a broker instance and account), refuses a recipient who
opted out, and stores the message as ``queued`` for the outbound worker to send.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from host.errors import SmshostError
from host.messages import NewMessage
from host.models import Message
from host.numbers import normalize

if TYPE_CHECKING:
    from host.brokers.instances import BrokerInstance
    from host.config.brokers import AccountSettings
    from host.core import Host


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


class Outbound:
    def __init__(self, host: Host) -> None:
        self._host = host

    def sender(self, broker: str | None, account: str | None
               ) -> tuple[BrokerInstance, AccountSettings]:
        """The broker instance and account a message goes out from."""
        instances = [i for i in self._host.brokers.values() if i.settings.mt_active]
        if broker is not None:
            instances = [i for i in instances if i.name == broker]
            if not instances:
                raise SendError(422, "unknown_broker",
                                f"no broker {broker!r} is configured to send")
        for instance in instances:
            if account is None:
                return instance, next(iter(instance.accounts.values()))
            if account in instance.accounts:
                return instance, instance.accounts[account]
        raise SendError(422, "unknown_account", f"no account {account!r} can send"
                        + (f" through {broker!r}" if broker else ""))

    async def submit(self, request: SendRequest) -> Message:
        instance, account = self.sender(request.broker, request.account)
        region = instance.region(account)
        to = normalize(request.to, region)
        local = account.local_address
        if not request.optout_exempt:
            await self._host.optouts.check(local, to)
        message, _ = await self._host.messages.add(NewMessage(
            direction="out", body=request.text, status="queued", broker=instance.name,
            account=account.id, local=local, remote=to, attrs=request.attrs,
            source=request.source))
        return message

    async def reply(self, message: Message, text: str, source: str = "handler",
                    optout_exempt: bool = False) -> Message:
        """Answer an inbound ``message`` from the number it was sent to."""
        return await self.submit(SendRequest(to=message.remote or "", text=text,
                                             broker=message.broker, account=message.account,
                                             source=source, optout_exempt=optout_exempt))
