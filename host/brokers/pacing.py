"""Per-account send rates (SPEC O6: ``mt.rate`` messages a second for each account).

The outbox worker asks before it claims: a message whose account has no token left
stays queued (not claimed, not ``sending``) and takes none of the ``max_in_flight``
slots, so one slow account never holds back the others. A token is taken only for a
message that was claimed.

Several nodes on one database share an account's rate: each node sends at most
``mt.rate`` divided by the number of live nodes (host.cluster, counted at each
heartbeat), so the cluster as a whole keeps to the rate without a shared counter (no
statement per message). The price: while a node joins or leaves, until every node's
next heartbeat, the shares do not add up to the rate (at most one heartbeat of too
much when one joins; too little for up to ``node_timeout`` when one dies); and an idle
node's share is not lent to a busy one (docs/deployment.md, Several nodes).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping

    from host.brokers.instances import BrokerInstance

Clock = Callable[[], float]
Key = tuple[str, str]  # (broker instance, account id)

_EPSILON = 1e-9  # a token refilled to 0.9999999999 by float arithmetic is a token


@dataclass
class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` kept while idle; it starts with
    ``tokens``."""

    rate: float
    clock: Clock
    burst: float = 1.0
    tokens: float = 1.0
    updated: float = -1.0

    def available(self) -> float:
        """The tokens there are now (refilled for the time passed); none taken."""
        now = self.clock()
        if self.updated < 0:
            self.updated = now
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        return self.tokens

    def whole(self) -> int:
        """How many messages may go now."""
        return int(self.available() + _EPSILON)

    def take(self) -> None:
        self.tokens -= 1.0

    def wait(self) -> float:
        """Seconds until the next token is there (0 when one is)."""
        tokens = self.available()
        return 0.0 if tokens + _EPSILON >= 1.0 else (1.0 - tokens) / self.rate


class Pacer:
    """The token buckets of every rate-limited account of one host."""

    def __init__(self, brokers: Mapping[str, BrokerInstance], clock: Clock,
                 nodes: Callable[[], int] = lambda: 1) -> None:
        self._brokers = brokers
        self.clock = clock
        self._nodes = nodes  # live nodes sharing each account's rate
        self._buckets: dict[Key, TokenBucket] = {}

    def bucket(self, key: Key) -> TokenBucket | None:
        """``key``'s bucket; None when its broker sets no rate (or is not configured)."""
        instance = self._brokers.get(key[0])
        # An account gone from the configuration sends nothing (its messages fail).
        rate = instance.settings.mt.rate \
            if instance is not None and key[1] in instance.accounts else 0.0
        if rate <= 0:
            return None
        rate /= max(1, self._nodes())
        bucket = self._buckets.get(key)
        if bucket is None or bucket.rate != rate or bucket.clock is not self.clock:
            # A new share (nodes came or went) keeps what was left: no extra burst.
            tokens = 1.0 if bucket is None or bucket.clock is not self.clock else \
                min(bucket.available(), max(1.0, rate / 10))
            # A tenth of a second's worth kept while idle (one at least): a high rate is
            # not bounded by how often the worker looks, a low one sends one at a time.
            bucket = self._buckets[key] = TokenBucket(rate, self.clock,
                                                      burst=max(1.0, rate / 10), tokens=tokens)
        return bucket

    def rate(self, key: Key) -> float | None:
        """This node's share of ``key``'s rate (None: no limit)."""
        bucket = self.bucket(key)
        return None if bucket is None else bucket.rate

    def tokens(self, key: Key, unlimited: int) -> int:
        """How many messages of ``key`` may go now (``unlimited`` when it has no rate)."""
        bucket = self.bucket(key)
        return unlimited if bucket is None else bucket.whole()

    def exhausted(self) -> list[Key]:
        """The accounts with no token now."""
        return [key for key in list(self._buckets)
                if (bucket := self.bucket(key)) is not None and bucket.whole() < 1]

    def choose(self, candidates: list[tuple[Key, int]], room: int) -> dict[int, Key]:
        """Which of ``candidates`` (key, message id), in order, may be claimed now: at
        most ``room``, and per rate-limited account no more than its tokens. Their tokens
        are taken now, so sends reserved while the claim writes count them: give back
        with :meth:`gave_back` those the claim did not get."""
        chosen: dict[int, Key] = {}
        for key, message_id in candidates:
            if len(chosen) >= room:
                break
            bucket = self.bucket(key)
            if bucket is not None:
                if bucket.whole() < 1:
                    continue
                bucket.take()
            chosen[message_id] = key
        return chosen

    def next_token(self, keys: Iterable[Key]) -> float | None:
        """Seconds until the first of ``keys`` has a token again (None for no keys)."""
        waits = [bucket.wait() for key in keys if (bucket := self.bucket(key)) is not None]
        return min(waits) if waits else None

    def took(self, key: Key) -> None:
        """A message of ``key`` was claimed: it used one token."""
        bucket = self.bucket(key)
        if bucket is not None:
            bucket.take()

    def gave_back(self, key: Key) -> None:
        """A token taken for a send that was not stored after all (host.outbound), or
        chosen by a claim that did not get its message: back."""
        bucket = self.bucket(key)
        if bucket is not None:
            bucket.tokens += 1.0
