"""MQTT broker (Mosquitto): ``mqtt://HOST:PORT?prefix=...&protocol=5``.

A topic is the MQTT topic ``PREFIX/TOPIC``; a subscription is a shared
subscription ``$share/NAME/PREFIX/TOPIC`` at QoS 1 whose members are
persistent sessions, one per worker process, so competing workers share the
work. MQTT has no leases, nack, redelivery timeout, dead letters, or any way to
list subscriptions; scorebus adds them (leases in the member, nack by
republishing a copy with its attempt count, dead letters in scorebus's own
store, a register of subscriptions in retained messages), and parks events
that Mosquitto would drop (no subscription yet, or no live member) in a small
SQLite table on the publishing host. Devices publishing bare JSON are welcome:
their messages get a stable derived event id. See ``docs/connectors/mqtt.md``.
"""

from .broker import MqttBroker
from .subscription import MqttSubscription

__all__ = ["MqttBroker", "MqttSubscription"]
