"""Google Cloud Pub/Sub broker: ``pubsub://PROJECT[?emulator=HOST:PORT&...]``.

Modules: :mod:`.options` (the URL), :mod:`.rpc` (channel, raw stubs, error
translation), :mod:`.admin` (topics and subscriptions), :mod:`.binding`
(CloudEvents <-> messages), :mod:`.leases` and :mod:`.subscription` (pull,
leases, acks), :mod:`.broker` (publish, adoption of unclaimed messages, dead
letters, stats). Needs ``pip install 'scorebus[gcp]'``.
"""

from .broker import PubSubBroker
from .subscription import PubSubSubscription

__all__ = ["PubSubBroker", "PubSubSubscription"]
