"""The one error tree of scorebus.

    ScorebusError
    ├── ConfigError            bad URL, flag, setting or app definition: fix and rerun
    ├── PermanentError         this event can never succeed: dead-letter it now
    │   ├── DecodeError        not JSON / not a CloudEvent
    │   ├── SchemaError        fails the scorer's schema (names the field)
    │   ├── TooLargeError      over the size limit
    │   └── HopLimitError      a workflow chain passed its maximum hops
    ├── TransientError         may succeed later: retry with backoff, then dead-letter
    │   ├── BrokerUnavailable
    │   ├── ModelUnavailable
    │   └── SinkUnavailable    (``retry_after_s`` carries backpressure)
    └── ModelLoadError         a model file that cannot or must not be loaded

SDK errors are translated at the adapter edge with ``raise ... from exc`` so
the runtime only ever has to tell permanent from transient.
"""

from __future__ import annotations


class ScorebusError(Exception):
    """Root of every error scorebus raises on purpose."""


class ConfigError(ScorebusError):
    """A URL, flag, setting or app definition is wrong; the message says what to change."""


class PermanentError(ScorebusError):
    """The event can never be processed; it goes to the dead-letter store at once."""

    reason = "permanent"


class DecodeError(PermanentError):
    reason = "undecodable"


class SchemaError(PermanentError):
    reason = "schema"


class TooLargeError(PermanentError):
    reason = "too_large"


class HopLimitError(PermanentError):
    reason = "hop_limit"


class TransientError(ScorebusError):
    """A dependency failed in a way that may heal; the event is retried with backoff."""

    reason = "transient"

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class BrokerUnavailable(TransientError):
    reason = "broker_unavailable"


class ModelUnavailable(TransientError):
    reason = "model_unavailable"


class SinkUnavailable(TransientError):
    reason = "sink_unavailable"


class ModelLoadError(ScorebusError):
    """A model file is missing, corrupt, or would need an unsafe loader without ``trust=True``."""


def reason_of(exc: BaseException) -> str:
    """The short machine-readable reason recorded with a dead letter."""
    return getattr(exc, "reason", None) or type(exc).__name__
