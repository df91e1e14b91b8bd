"""The adaptive batch controller, driven by synthetic arrivals and costs (no clocks)."""

from __future__ import annotations

import heapq
import math
import random

import pytest

from scorebus.runtime.batching import ArrivalRate, BatchController, CostModel
from scorebus.runtime.config import Batch


def _steady(ctl: BatchController, rate: float, seconds: float, *, start: float = 0.0) -> float:
    """Feed ``rate`` events/s as one event per pull; returns the time reached."""
    now = start
    for _ in range(int(rate * seconds)):
        now += 1 / rate
        ctl.arrived(1, now)
    return now


def test_cost_model_recovers_fixed_and_per_event_cost_from_varied_sizes() -> None:
    cost = CostModel()
    for n in [1, 64, 512, 8, 256, 32, 128, 500] * 10:
        cost.observe(n, 0.002 + 0.00003 * n)

    assert cost.a == pytest.approx(0.002, rel=1e-6)
    assert cost.b == pytest.approx(0.00003, rel=1e-6)
    assert cost(100) == pytest.approx(0.005, rel=1e-6)


def test_cost_model_with_one_size_keeps_its_slope_and_moves_the_intercept() -> None:
    cost = CostModel(a=0.001, b=0.00001)
    for _ in range(200):
        cost.observe(512, 0.02)

    assert cost.b == 0.00001
    assert cost(512) == pytest.approx(0.02, rel=1e-3)


def test_cost_model_never_goes_negative() -> None:
    cost = CostModel(a=0.001, b=0.01)
    for _ in range(50):
        cost.observe(100, 0.0005)  # far cheaper than the slope alone predicts

    assert cost.a >= 0 and cost.b >= 0
    assert cost(100) == pytest.approx(0.0005, rel=1e-3)


def test_arrival_rate_converges_to_a_steady_rate_and_decays_when_idle() -> None:
    rate = ArrivalRate(tau_s=0.25)
    now = 0.0
    for _ in range(20_000):
        now += 1 / 10_000
        rate.add(1, now)

    assert rate.at(now) == pytest.approx(10_000, rel=0.01)
    assert rate.at(now + 1.0) < 10_000 * math.exp(-3.9)
    rate.add(0, now + 1.0)
    assert rate.rate == pytest.approx(10_000 * math.exp(-4), rel=0.01)


def test_a_trickle_is_scored_at_once_one_event_per_batch() -> None:
    ctl = BatchController(Batch(max_size=512, max_wait_ms=5))
    ctl.finished(1, 0.001)
    _steady(ctl, rate=50, seconds=2)

    assert ctl.target(idle=True) == 1
    assert ctl.should_close(1, 0.0, in_flight=0)
    assert ctl.wait_s(1, 0.0, in_flight=0) == 0.0


def test_under_load_a_busy_pipeline_waits_for_a_bigger_batch() -> None:
    ctl = BatchController(Batch(max_size=512, max_wait_ms=5))
    for n in (1, 10, 100, 300, 512):
        ctl.finished(n, 0.001 + 0.00001 * n)  # a = 1 ms, b = 10 us
    _steady(ctl, rate=50_000, seconds=2)
    target = ctl.target()

    # Smallest size that keeps up: a*rate / (1 - b*rate) = 50 / 0.5 = 100, doubled.
    assert target == pytest.approx(200, abs=3)
    assert not ctl.should_close(100, 0.001, in_flight=1)
    assert ctl.should_close(target, 0.001, in_flight=1)
    # It waits about as long as the missing events take to arrive, never past max_wait.
    assert ctl.wait_s(100, 0.001, in_flight=1) == pytest.approx((target - 100) / 50_000, rel=0.05)
    assert ctl.wait_s(100, 0.0045, in_flight=1) == pytest.approx(0.0005, rel=1e-6)
    # Idle, it only waits while the pending events' wait is below one batch's fixed cost.
    assert ctl.target(idle=True) == pytest.approx(50, abs=1)


def test_overload_takes_max_size_batches() -> None:
    ctl = BatchController(Batch(max_size=512, max_wait_ms=5))
    for n in (1, 100, 512):
        ctl.finished(n, 0.001 + 0.00002 * n)  # at most 50k events/s
    _steady(ctl, rate=60_000, seconds=1)

    assert ctl.target() == 512
    assert ctl.target(idle=True) == 512  # more arrives than it can score: no early close
    assert not ctl.should_close(511, 0.004, in_flight=0)
    assert ctl.should_close(511, 0.005, in_flight=2)


def test_never_past_max_size_or_max_wait_whatever_it_has_learned() -> None:
    rng = random.Random(3)
    batch = Batch(max_size=64, max_wait_ms=2)
    ctl = BatchController(batch)
    now = 0.0
    for _ in range(2_000):
        now += rng.expovariate(rng.choice([10.0, 1_000.0, 100_000.0]))
        ctl.arrived(rng.randint(0, 70), now)
        if rng.random() < 0.3:
            n = rng.randint(1, 64)
            ctl.finished(n, rng.uniform(0, 0.05))
        in_flight = rng.randint(0, 4)
        pending = rng.randint(1, 80)
        age = rng.uniform(0, 0.004)
        if pending >= 64 or age >= 0.002:
            assert ctl.should_close(pending, age, in_flight)
        assert 1 <= ctl.target(idle=in_flight == 0) <= 64
        assert 0.0 <= ctl.wait_s(pending, age, in_flight) <= max(0.0, 0.002 - age)


def test_fixed_policy_waits_for_max_size_or_max_wait() -> None:
    ctl = BatchController(Batch(max_size=128, max_wait_ms=5, adaptive=False))
    ctl.finished(1, 0.001)
    _steady(ctl, rate=50, seconds=1)

    assert not ctl.should_close(1, 0.0, in_flight=0)
    assert not ctl.should_close(127, 0.0049, in_flight=0)
    assert ctl.should_close(128, 0.0, in_flight=3)
    assert ctl.should_close(1, 0.005, in_flight=0)
    assert ctl.wait_s(1, 0.002, in_flight=0) == pytest.approx(0.003)


def test_nothing_pending_never_closes() -> None:
    ctl = BatchController(Batch())
    assert not ctl.should_close(0, 10.0, in_flight=0)


def _simulate(
    batch: Batch, rate: float, n: int, *, a: float = 0.001, b: float = 0.00001, slots: int = 4
) -> tuple[float, float]:
    """The scoring loop in simulated time: ``(throughput, p99 latency in s)``.

    Poisson arrivals queue in the broker; a pull takes what is there (up to the
    room left in the batch) or waits for the next arrival or the controller's
    timeout; at most ``slots`` batches are in flight; one server scores them in
    order, a batch of ``k`` taking ``a + b*k``. The first 30% is warm-up.
    """
    rng = random.Random(7)
    arrivals = []
    t = 0.0
    for _ in range(n):
        t += rng.expovariate(rate)
        arrivals.append(t)
    ctl = BatchController(batch)
    flight: list[tuple[float, int, float]] = []
    pending: list[float] = []
    latencies: list[float] = []
    i, now, opened, free, last = 0, 0.0, 0.0, 0.0, 0.0

    def settle(upto: float) -> None:
        while flight and flight[0][0] <= upto:
            done, k, sent = heapq.heappop(flight)
            ctl.finished(k, done - sent)

    while i < n or pending:
        timeout = ctl.wait_s(len(pending), now - opened, len(flight)) if pending else math.inf
        if i < n and arrivals[i] <= now:
            pass
        elif i < n and arrivals[i] <= now + timeout:
            now = arrivals[i]
        elif timeout < math.inf:
            now += max(timeout, 1e-7)
        settle(now)
        got = 0
        while i < n and arrivals[i] <= now and len(pending) < batch.max_size:
            if not pending:
                opened = now
            pending.append(arrivals[i])
            i += 1
            got += 1
        ctl.arrived(got, now)
        if pending and (ctl.should_close(len(pending), now - opened, len(flight)) or i >= n):
            if len(flight) >= slots:
                now = max(now, flight[0][0])
                settle(now)
            free = max(now, free) + a + b * len(pending)
            if pending[0] >= 0.3 * arrivals[-1]:
                latencies.extend(free - x for x in pending)
            heapq.heappush(flight, (free, len(pending), now))
            last = max(last, free)
            pending = []
    latencies.sort()
    return n / (last - arrivals[0]), latencies[int(len(latencies) * 0.99)]


FIXED = [Batch(max_size=s, adaptive=False) for s in (1, 8, 32, 128, 512)]


def test_simulated_low_load_adaptive_has_the_lowest_latency_of_all_policies() -> None:
    _, adaptive_p99 = _simulate(Batch(), rate=2_000, n=6_000)
    fixed_p99 = [_simulate(b, rate=2_000, n=6_000)[1] for b in FIXED]

    # Size 1 cannot keep up with 2,000/s at 1 ms a batch; the others wait max_wait_ms.
    assert adaptive_p99 < 0.6 * min(fixed_p99)
    assert adaptive_p99 < 0.004


def test_simulated_high_load_adaptive_matches_the_best_fixed_throughput() -> None:
    adaptive_eps, _ = _simulate(Batch(), rate=90_000, n=90_000)
    fixed = [_simulate(b, rate=90_000, n=90_000) for b in FIXED[-2:]]
    best_eps = max(eps for eps, _ in fixed)

    assert adaptive_eps >= 0.97 * best_eps
    assert adaptive_eps > 1.3 * fixed[0][0]  # max_size 128 cannot keep up


def test_simulated_mid_load_adaptive_keeps_up_with_a_low_tail() -> None:
    adaptive_eps, adaptive_p99 = _simulate(Batch(), rate=50_000, n=60_000)
    fixed = [_simulate(b, rate=50_000, n=60_000) for b in FIXED]

    assert adaptive_eps == pytest.approx(50_000, rel=0.02)
    assert adaptive_p99 <= min(p99 for _, p99 in fixed) * 1.05
