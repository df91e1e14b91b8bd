"""What an app needs on Google Cloud, worked out from its scorers and handlers.

Pure Python, no Pulumi: the component declares exactly what this plans, and the
tests read the same figures the component used.

One push subscription per input topic, not per scorer: the function routes an
event from a topic to every scorer and handler on it (``scorebus.gcp.functions``),
so one delivery per topic is one unit of work, and its settings are the most
demanding of the consumers on that topic:

- ack deadline: the worst-case batch time of the slowest consumer, rounded up;
- max delivery attempts: the largest ``RetryPolicy.max_attempts`` (Pub/Sub allows 5-100);
- backoff: the smallest initial and the largest maximum backoff (Pub/Sub allows 0-600 s).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from ..app import App
from ..errors import ConfigError
from ..runtime.spec import HandlerSpec, ScorerSpec

#: Pub/Sub's limits (https://cloud.google.com/pubsub/quotas).
ACK_DEADLINE_RANGE = (10, 600)
DELIVERY_ATTEMPTS_RANGE = (5, 100)
MAX_BACKOFF_S = 600.0
_PUBSUB_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9\-_.~+%]{2,254}$")


def worst_case_batch_s(spec: ScorerSpec | HandlerSpec) -> float:
    """How long a pushed event may wait for its answer, in seconds.

    A scorer's batch waits up to ``batch.max_wait_ms`` to fill and must then
    commit within the scorer's lease (``ack_deadline_s``), which the runtime
    budgets every batch against; a handler has no batch, only its lease.
    """
    wait_s = spec.batch.max_wait_ms / 1000 if isinstance(spec, ScorerSpec) else 0.0
    return spec.ack_deadline_s + wait_s


@dataclass(frozen=True, kw_only=True)
class Delivery:
    """One push subscription: ``topic`` -> the function, with its retry settings."""

    topic: str
    subscription: str
    consumers: tuple[str, ...]
    worst_case_s: float
    ack_deadline_s: int
    max_delivery_attempts: int
    min_backoff_s: float
    max_backoff_s: float


@dataclass(frozen=True, kw_only=True)
class DeployPlan:
    """Topics, subscriptions and models of one app."""

    app_name: str
    slug: str
    deliveries: tuple[Delivery, ...]
    output_topics: tuple[str, ...]
    dead_letter_topic: str
    dead_letter_subscription: str
    models: tuple[str, ...]

    @property
    def input_topics(self) -> tuple[str, ...]:
        return tuple(d.topic for d in self.deliveries)


def slug(text: str, limit: int = 63) -> str:
    """``text`` as lowercase letters, digits and dashes, starting with a letter."""
    out = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-") or "app"
    if not out[0].isalpha():
        out = "sb-" + out
    return out[:limit].rstrip("-")


def pubsub_name(kind: str, name: str) -> str:
    """``name`` if Pub/Sub accepts it as a topic or subscription id.

    Raises:
        ConfigError: it does not start with a letter, or starts with ``goog``.
    """
    if not _PUBSUB_NAME.match(name) or name.lower().startswith("goog"):
        raise ConfigError(
            f"{kind} {name!r} is not a valid Pub/Sub name: use 3-255 letters, digits or "
            "'-_.~+%', starting with a letter and not with 'goog'"
        )
    return name


def _clamp(value: float, low: float, high: float) -> float:
    return max(low, min(high, value))


def _delivery(app: App, topic: str, specs: list[ScorerSpec | HandlerSpec]) -> Delivery:
    worst = max(worst_case_batch_s(s) for s in specs)
    low, high = ACK_DEADLINE_RANGE
    if worst > high:
        slowest = max(specs, key=worst_case_batch_s)
        raise ConfigError(
            f"{slowest.name!r} on topic {topic!r} may hold an event {worst:g} s (ack_deadline_s "
            f"plus the batch wait), beyond Pub/Sub's {high} s push deadline: lower ack_deadline_s"
        )
    min_backoff = _clamp(min(s.retry.initial_backoff_s for s in specs), 0, MAX_BACKOFF_S)
    return Delivery(
        topic=topic,
        subscription=pubsub_name("subscription", f"{slug(app.name)}.{topic}.push"),
        consumers=tuple(s.name for s in specs),
        worst_case_s=worst,
        ack_deadline_s=int(_clamp(math.ceil(worst), low, high)),
        max_delivery_attempts=int(
            _clamp(max(s.retry.max_attempts for s in specs), *DELIVERY_ATTEMPTS_RANGE)
        ),
        min_backoff_s=min_backoff,
        max_backoff_s=_clamp(max(s.retry.max_backoff_s for s in specs), min_backoff, MAX_BACKOFF_S),
    )


def plan_app(app: App) -> DeployPlan:
    """The deployment plan of ``app``.

    Raises:
        ConfigError: the app consumes nothing, a topic name is not valid on Pub/Sub,
            or a consumer's worst-case batch time is beyond Pub/Sub's push deadline.
    """
    by_topic: dict[str, list[ScorerSpec | HandlerSpec]] = {}
    specs: list[ScorerSpec | HandlerSpec] = [*app.scorers, *app.handlers]
    for spec in specs:
        by_topic.setdefault(pubsub_name("topic", spec.topic), []).append(spec)
    if not by_topic:
        raise ConfigError(f"app {app.name!r} has no scorer or handler: nothing to deploy")
    outputs = {s.publish for s in app.scorers if s.publish}
    if app.handlers:  # ctx.publish goes to the events topic by default
        outputs.add(app.events_topic)
    models = sorted({s.model for s in app.scorers if isinstance(s.model, str)})
    dead = f"{slug(app.name)}.dead-letter"
    return DeployPlan(
        app_name=app.name,
        slug=slug(app.name, 20),
        deliveries=tuple(_delivery(app, t, specs) for t, specs in sorted(by_topic.items())),
        output_topics=tuple(sorted(pubsub_name("topic", t) for t in outputs)),
        dead_letter_topic=pubsub_name("topic", dead),
        dead_letter_subscription=pubsub_name("subscription", f"{dead}.keep"),
        models=tuple(models),
    )


def check_sinks(app: App, store_url: str) -> None:
    """Every scorer writes to the deployment's table, or only publishes.

    Raises:
        ConfigError: a scorer names a sink of its own: a local file would vanish with
            the function's instance, and another table is not granted to it.
    """
    for spec in app.scorers:
        if isinstance(spec.sink, str) and spec.sink != store_url:
            raise ConfigError(
                f"scorer {spec.name!r} writes to {spec.sink!r}; deployed, results go to "
                f"{store_url}: drop sink= (or use sink=False to only publish)"
            )
