"""Adaptive micro-batching: when to close the pending batch.

A fixed batch size suits one load only: at a trickle, events wait ``max_wait_ms``
for a batch that never fills; at a flood, small batches pay their fixed cost
(an executor hop, one sink transaction, one ack) too often to keep up. Like
Triton's dynamic batcher and BentoML's adaptive batching, the controller
instead learns two figures and sizes each batch from them:

- the arrival rate ``λ`` (events/s pulled), an exponentially decaying count;
- the cost of a batch of ``n`` events, ``c(n) = a + b·n`` (``a``: fixed per
  batch, ``b``: per event), fitted online by exponentially weighted least
  squares on the measured time from dispatch to ack.

A pipeline keeps up when a batch is processed in no more time than the next
one takes to arrive, ``c(n) <= n / λ``, that is ``n >= a·λ / (1 - b·λ)``. The
target size is that, times a headroom factor so the pipeline is not run at
100%; at ``b·λ >= 1`` (more arriving than it can score) it is ``max_size``.
The pending batch closes when:

1. it holds ``max_size`` events, or its first event has waited ``max_wait_ms``
   (the scoring loop also closes it when its first lease is about to end);
2. it holds the target size;
3. nothing is in flight and waiting for one more event would cost the pending
   events more time than that event's share of a batch saves (``n / λ >= a``):
   at a trickle, every event goes at once, alone.

Example::

    ctl = BatchController(Batch(max_size=512, max_wait_ms=5))
    ctl.arrived(3, now)
    if ctl.should_close(pending=3, age_s=0.0, in_flight=0):
        ...  # dispatch; later: ctl.finished(3, seconds)
"""

from __future__ import annotations

import math

from .config import Batch


class CostModel:
    """``c(n) = a + b·n`` fitted by exponentially weighted least squares.

    Args:
        a: fixed cost per batch (seconds) assumed before the first measurement.
        b: cost per event (seconds) assumed before the first measurement.
        decay: weight kept by the past at each new measurement (0 < decay < 1).
    """

    def __init__(self, *, a: float = 0.0005, b: float = 0.00001, decay: float = 0.95) -> None:
        self.a = a
        self.b = b
        self.decay = decay
        self._w = self._n = self._t = self._nn = self._nt = 0.0

    def observe(self, n: int, seconds: float) -> None:
        """Fold in one batch of ``n`` events that took ``seconds``."""
        if n <= 0 or seconds < 0:
            return
        k = self.decay
        self._w = self._w * k + 1.0
        self._n = self._n * k + n
        self._t = self._t * k + seconds
        self._nn = self._nn * k + n * n
        self._nt = self._nt * k + n * seconds
        mean_n, mean_t = self._n / self._w, self._t / self._w
        var = self._nn / self._w - mean_n * mean_n
        if var > 0.25 * max(1.0, 0.01 * mean_n * mean_n):
            # Sizes varied enough to tell the fixed cost from the per-event cost.
            b = (self._nt / self._w - mean_n * mean_t) / var
        else:
            b = self.b  # one size seen: keep the slope, move the intercept
        a = mean_t - b * mean_n
        if b < 0 or a < 0:
            # Noise pushed the line out of range: clamp it through the mean.
            if b < 0:
                b, a = 0.0, mean_t
            else:
                a, b = 0.0, mean_t / mean_n
        self.a, self.b = a, b

    def __call__(self, n: int) -> float:
        """Expected seconds for a batch of ``n`` events."""
        return self.a + self.b * n


class ArrivalRate:
    """Events per second, an exponentially decaying count with time constant ``tau_s``."""

    def __init__(self, tau_s: float = 0.25) -> None:
        self.tau_s = tau_s
        self.rate = 0.0
        self._at: float | None = None

    def add(self, n: int, now: float) -> None:
        """``n`` events arrived at ``now`` (monotonic seconds); ``n=0`` just ages the figure."""
        if self._at is not None and now > self._at:
            self.rate *= math.exp(-(now - self._at) / self.tau_s)
        if self._at is None or now > self._at:
            self._at = now
        self.rate += n / self.tau_s

    def at(self, now: float) -> float:
        """The rate as of ``now``, aged since the last :meth:`add`."""
        if self._at is None or now <= self._at:
            return self.rate
        return self.rate * math.exp(-(now - self._at) / self.tau_s)


class BatchController:
    """Decides when a scorer's pending batch closes (see the module docstring).

    With ``batch.adaptive`` false it applies the fixed policy: ``max_size`` events
    or ``max_wait_ms``, whichever comes first.

    Args:
        batch: the scorer's batching config.
        headroom: target batch size over the smallest one that keeps up.
        tau_s: time constant of the arrival rate.
        cost: the cost model; a fresh :class:`CostModel` by default.
    """

    def __init__(
        self,
        batch: Batch,
        *,
        headroom: float = 2.0,
        tau_s: float = 0.25,
        cost: CostModel | None = None,
    ) -> None:
        self.batch = batch
        self.max_wait_s = batch.max_wait_ms / 1000
        self.headroom = headroom
        self.cost = cost or CostModel()
        self.arrivals = ArrivalRate(tau_s)
        self._now = 0.0

    def arrived(self, n: int, now: float) -> None:
        """Record a pull that returned ``n`` events (0 too: the rate decays)."""
        self._now = now
        self.arrivals.add(n, now)

    def finished(self, n: int, seconds: float) -> None:
        """Record a batch of ``n`` events that took ``seconds`` from dispatch to ack."""
        self.cost.observe(n, seconds)

    def target(self, *, idle: bool = False) -> int:
        """The batch size to close at now; ``idle``: nothing is in flight."""
        size = self.batch.max_size
        if not self.batch.adaptive:
            return size
        rate = self.arrivals.at(self._now)
        a, b = self.cost.a, self.cost.b
        load = b * rate
        if load >= 1.0:
            return size
        n = self.headroom * a * rate / (1.0 - load)
        if idle:
            # Rule 3: wait for one more event only while n / λ < a.
            n = min(n, a * rate)
        return max(1, min(size, math.ceil(n)))

    def should_close(self, pending: int, age_s: float, in_flight: int) -> bool:
        """Whether to dispatch ``pending`` events whose first has waited ``age_s``.

        Args:
            pending: events in the open batch.
            age_s: seconds since its first event was pulled.
            in_flight: batches dispatched and not yet settled.
        """
        if pending <= 0:
            return False
        if pending >= self.batch.max_size or age_s >= self.max_wait_s:
            return True
        return pending >= self.target(idle=in_flight == 0)

    def wait_s(self, pending: int, age_s: float, in_flight: int) -> float:
        """How long the next pull may wait for more events before deciding again."""
        left = max(0.0, self.max_wait_s - age_s)
        if not self.batch.adaptive or pending <= 0:
            return left
        missing = self.target(idle=in_flight == 0) - pending
        rate = self.arrivals.at(self._now)
        if missing <= 0:
            return 0.0
        if rate <= 0:
            return left
        return min(left, missing / rate)
