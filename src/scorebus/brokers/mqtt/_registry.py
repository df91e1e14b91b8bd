"""Which subscriptions exist and which have a live member, kept at Mosquitto.

MQTT cannot list subscriptions, so scorebus keeps its own register as
retained messages under ``_scorebus/PREFIX/reg/``::

    reg/sub/<subscription>         {"topic": filter, "created": epoch seconds}
    reg/live/<subscription>/<id>   "1" while that member is connected

A member publishes its ``live`` marker when it connects and deletes it when it
stops; its MQTT will deletes it if the process dies. Every broker subscribes
to the register, so its view follows changes within a round trip. A publisher
uses it to decide, per subscription, whether Mosquitto can take an event now
(some member is live) or whether it must wait in the host's ``parked`` table.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable

import msgspec
from paho.mqtt.client import topic_matches_sub

from ._options import MqttOptions
from ._wire import Outgoing


class _Marker(msgspec.Struct):
    topic: str
    created: float


_enc = msgspec.json.Encoder()
_dec = msgspec.json.Decoder(_Marker)


class Registry:
    """The live view of the register (see the module docstring)."""

    def __init__(self, opts: MqttOptions) -> None:
        self.opts = opts
        self.subs: dict[str, tuple[str, float]] = {}
        self.live: dict[str, set[str]] = defaultdict(set)
        self._root = f"{opts.base}/reg/"
        self._matching: dict[str, list[str]] = {}
        self.version = 0

    def reset(self) -> None:
        """Forget everything (the connection was lost: deletions may have been missed)."""
        self.subs.clear()
        self.live.clear()
        self._matching.clear()
        self.version += 1

    def apply(self, topic: str, payload: bytes) -> str | None:
        """Take in one register message (an empty payload deletes the entry).

        Returns the subscription whose member just left, if that is what it said.
        """
        kind, _, rest = topic[len(self._root) :].partition("/")
        self.version += 1
        if kind == "sub":
            self._matching.clear()
            if not payload:
                self.subs.pop(rest, None)
                return None
            try:
                marker = _dec.decode(payload)
            except msgspec.DecodeError:
                return None
            self.subs[rest] = (marker.topic, marker.created)
        elif kind == "live":
            name, _, client_id = rest.partition("/")
            if payload:
                self.live[name].add(client_id)
            else:
                self.live[name].discard(client_id)
                return name
        return None

    def matching(self, topic: str) -> list[str]:
        """Subscriptions whose filter matches ``topic``, oldest first."""
        found = self._matching.get(topic)
        if found is None:
            found = [
                name
                for name, (filt, _) in sorted(self.subs.items(), key=lambda kv: kv[1][1])
                if topic_matches_sub(filt, topic)
            ]
            self._matching[topic] = found
        return found

    def first_of(self) -> Callable[[str], str | None]:
        """topic -> its oldest subscription, over a snapshot (safe to call from any thread)."""
        subs = sorted(self.subs.items(), key=lambda kv: kv[1][1])

        def first(topic: str) -> str | None:
            return next((n for n, (filt, _) in subs if topic_matches_sub(filt, topic)), None)

        return first

    def is_live(self, name: str) -> bool:
        return bool(self.live.get(name))

    def others_live(self, name: str, client_id: str) -> bool:
        return bool(self.live.get(name, set()) - {client_id})

    def sub_marker(self, name: str, topic: str) -> Outgoing:
        """The register entry of ``name`` (keeping its creation time if known)."""
        known = self.subs.get(name)
        created = known[1] if known is not None and known[0] == topic else time.time()
        payload = _enc.encode(_Marker(topic=topic, created=created))
        return Outgoing(self.opts.sub_marker(name), payload, retain=True)

    def live_marker(self, name: str, client_id: str, *, live: bool) -> Outgoing:
        return Outgoing(self.opts.live_marker(name, client_id), b"1" if live else b"", retain=True)
