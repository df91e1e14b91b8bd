"""The leases this process holds on one subscription, and the attempts it has seen.

Pub/Sub accepts an ack id after its lease has expired and the message has been
redelivered (the emulator and, without exactly-once delivery, the real
service): the stale holder would then settle a message another holder is
working on. Each delivery's handle is ``(ack_id, message_id)``; the table maps a
message id to the newest ack id this process received for it, so a settle call
with an older ack id is recognised and ignored. Across processes only
Pub/Sub's own rules apply (``enable_exactly_once_delivery`` on a real
subscription rejects stale ack ids).

Pub/Sub reports ``delivery_attempt`` only on subscriptions with a dead-letter
policy (scorebus creates them with one). Where it is absent, attempts are
counted here, per message id, for redeliveries that reach this process: a
message redelivered to another worker starts at 1 there.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

Handle = tuple[str, str]  # (ack id, message id)

_SEEN_CAP = 100_000


class Leases:
    """Lease table and local counters of one subscription in this process."""

    def __init__(self) -> None:
        self._current: dict[str, tuple[str, float]] = {}
        self._seen: OrderedDict[str, int] = OrderedDict()
        self.acked = 0

    def take(self, handle: Handle, deadline: float, reported_attempt: int) -> int:
        """Record a fresh lease; returns the delivery attempt (Pub/Sub's, else counted)."""
        ack_id, message_id = handle
        self._current[message_id] = (ack_id, deadline)
        if reported_attempt > 0:
            return reported_attempt
        attempt = self._seen.pop(message_id, 0) + 1
        self._seen[message_id] = attempt
        if len(self._seen) > _SEEN_CAP:
            self._seen.popitem(last=False)
        return attempt

    def superseded(self, handle: Handle) -> bool:
        """True when this process has since received the message again (a newer lease)."""
        lease = self._current.get(handle[1])
        return lease is not None and lease[0] != handle[0]

    def live(self, handle: Handle, now: float) -> bool:
        """True when ``handle`` is the newest lease and has not run out."""
        lease = self._current.get(handle[1])
        return lease is not None and lease[0] == handle[0] and lease[1] > now

    def settle(self, handles: Iterable[Handle]) -> None:
        """Forget leases that were acked, nacked or dead-lettered (newest ones only)."""
        for ack_id, message_id in handles:
            lease = self._current.get(message_id)
            if lease is not None and lease[0] == ack_id:
                del self._current[message_id]

    def extend(self, handles: Iterable[Handle], deadline: float) -> None:
        for ack_id, message_id in handles:
            lease = self._current.get(message_id)
            if lease is not None and lease[0] == ack_id:
                self._current[message_id] = (ack_id, deadline)

    def in_flight(self, now: float) -> int:
        """Leases held by this process that have not run out."""
        return sum(1 for _, deadline in self._current.values() if deadline > now)

    def prune(self, now: float, older_than_s: float = 60.0) -> None:
        """Drop leases that ran out long ago (their message went elsewhere or was settled)."""
        if len(self._current) < 1024:
            return
        cutoff = now - older_than_s
        for message_id in [m for m, (_, d) in self._current.items() if d < cutoff]:
            del self._current[message_id]
