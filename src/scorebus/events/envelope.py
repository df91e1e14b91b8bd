"""The event envelope: CloudEvents attributes around the producer's data.

The producer assigns ``id``; scorebus keys every result by it and never by a
broker's message id (a publisher's retry gets a new broker id, not a new event id).
Two extension attributes are scorebus's own: ``causationid`` (the id of the event
that caused this one) and ``hops`` (how many handlers the chain has passed), so a
loop in a workflow is caught instead of running forever.
"""

from __future__ import annotations

import time as _time
import uuid
from typing import Any

import msgspec

SPECVERSION = "1.0"
DEFAULT_SOURCE = "scorebus"
CAUSATION = "causationid"
HOPS = "hops"


class Event(msgspec.Struct, kw_only=True):
    """One CloudEvent.

    ``data`` is the encoded payload (``bytes``) while the event travels through a
    broker, and the decoded object (a schema instance or plain JSON value) once a
    scorer or handler has validated it. ``time`` is seconds since the epoch.
    """

    id: str
    type: str
    source: str = DEFAULT_SOURCE
    time: float = 0.0
    data: Any = None
    datacontenttype: str = "application/json"
    subject: str | None = None
    extensions: dict[str, str] = msgspec.field(default_factory=dict)

    @classmethod
    def new(
        cls,
        type: str,
        data: Any = None,
        *,
        source: str = DEFAULT_SOURCE,
        id: str | None = None,
        subject: str | None = None,
        caused_by: Event | None = None,
        extensions: dict[str, str] | None = None,
    ) -> Event:
        """Make an event with a fresh id and the current time.

        Args:
            type: the CloudEvents ``type`` (routing key for ``@app.on``).
            data: the payload, encoded later by the broker's codec.
            source: the CloudEvents ``source``.
            id: the producer's id; a random UUID when omitted.
            subject: the CloudEvents ``subject``.
            caused_by: the event that caused this one; sets causation id and hops.
            extensions: further CloudEvents extension attributes.
        """
        ext = dict(extensions or {})
        if caused_by is not None:
            ext[CAUSATION] = caused_by.id
            ext[HOPS] = str(caused_by.hops + 1)
        return cls(
            id=id or uuid.uuid4().hex,
            type=type,
            source=source,
            time=_time.time(),
            data=data,
            subject=subject,
            extensions=ext,
        )

    @property
    def causation_id(self) -> str | None:
        return self.extensions.get(CAUSATION)

    @property
    def hops(self) -> int:
        raw = self.extensions.get(HOPS)
        try:
            return int(raw) if raw else 0
        except ValueError:
            return 0

    def with_data(self, data: Any) -> Event:
        """The same envelope around other data (decoded or encoded)."""
        return msgspec.structs.replace(self, data=data)
