"""`make bench`: run the scenarios side by side and write docs/benchmarks.md and its plot.

python -m benchmarks.run [--quick] [--events N] [--no-beam] [--no-brokers]
                         [--doc PATH] [--png PATH] [--policies size_8,size_512,adaptive]

``--quick`` is a smoke run (small counts, short phases, three batch policies):
it checks that every scenario runs, not how fast.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .beam_peer import run_peer
from .broker_rows import broker_rows
from .burst import burst
from .common import demo_registry, scratch
from .policy_apps import demo_policy, has_adaptive, policy_names
from .report import render, write
from .scenarios import limit, open_loop, payloads, per_message, pipeline
from .stages import stages
from .sweep import plot, sweep

ROOT = Path(__file__).resolve().parent.parent
FULL = {
    "events": 200_000,
    "per_message_events": 5_000,
    "beam_events": 50_000,
    "open_loop_s": 6.0,
    "sweep_s": 3.0,
    "fractions": (0.1, 0.3, 0.6, 0.9),
    "burst_s": (5.0, 2.0, 4.0),
    "broker_events": 20_000,
    "stage_events": 100_000,
}
QUICK = {
    "events": 20_000,
    "per_message_events": 1_000,
    "beam_events": 5_000,
    "open_loop_s": 1.0,
    "sweep_s": 1.0,
    "fractions": (0.2, 0.6),
    "burst_s": (2.0, 1.0, 1.0),
    "broker_events": 2_000,
    "stage_events": 5_000,
}


def _args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="a fast smoke run")
    ap.add_argument("--events", type=int, help="events per throughput scenario")
    ap.add_argument("--no-beam", action="store_true", help="leave out the Apache Beam peer")
    ap.add_argument("--no-brokers", action="store_true", help="leave out the per-broker rows")
    ap.add_argument("--doc", type=Path, default=ROOT / "docs" / "benchmarks.md")
    ap.add_argument("--png", type=Path, default=ROOT / "docs" / "benchmarks.png")
    ap.add_argument("--policies", help="comma-separated: size_N and/or adaptive")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = _args(argv)
    with tempfile.TemporaryDirectory(prefix="scorebus-bench-models-") as models:
        return _run(args, argv, demo_registry(Path(models)).root)


def _run(args: argparse.Namespace, argv: list[str] | None, registry: Path) -> dict[str, Any]:
    cfg = dict(QUICK if args.quick else FULL)
    if args.events:
        cfg["events"] = args.events
    if args.policies:
        policies = [p for p in args.policies.split(",") if p != "adaptive" or has_adaptive()]
    else:
        policies = policy_names((8, 128, 512) if args.quick else (1, 8, 32, 128, 512))
    data = payloads(cfg["events"])
    r: dict[str, Any] = {"adaptive": has_adaptive()}

    r["limit"] = limit(registry, data)
    print(f"limit (decode + batched predict): {r['limit']['eps']:,.0f} events/s")
    r["beam"] = {"skipped": "--no-beam"} if args.no_beam else run_peer(registry, cfg["beam_events"])
    print(f"Apache Beam RunInference: {r['beam'].get('eps', r['beam'].get('skipped'))}")
    with scratch(registry) as s:
        folder = Path(s.broker.removeprefix("sqlite:///")).parent
        r["per_message"] = per_message(registry, data[: cfg["per_message_events"]], folder)
    print(f"per-message design: {r['per_message']['eps']:,.0f} events/s")

    r["pipelines"] = {}
    for w in [1] if args.quick else sorted({1, 2, os.cpu_count() or 1}):
        with scratch(registry) as s:
            r["pipelines"][w] = p = pipeline(s, data, w)
        print(
            f"pipeline, {w} worker(s): {p['eps']:,.0f} events/s (start-up {p['startup_s']:.1f} s)"
        )
    with scratch(registry) as s:
        r["stages"] = st = stages(s, data[: cfg["stage_events"]])
    print(f"stages: {st['total_us']:.1f} us per event serial ({st['events']:,} events)")
    r["best_w"] = max(r["pipelines"], key=lambda w: r["pipelines"][w]["eps"])
    r["cap"], r["cap1"] = r["pipelines"][r["best_w"]]["eps"], r["pipelines"][1]["eps"]

    with scratch(registry) as s:
        rates = [r["cap"] * f for f in (0.25, 0.5, 0.8)]
        r["open_loop"] = open_loop(s, data, rates, r["best_w"], seconds=cfg["open_loop_s"])
    for p in r["open_loop"]:
        print(
            f"open loop at {p['offered_eps']:,.0f}/s: p50 {p['p50_ms']:.1f} ms, p99 {p['p99_ms']:.1f} ms"
        )
    r["target15"] = None
    if not args.quick:  # the core issue's latency target: p99 < 50 ms at 15,000/s, 1 worker
        with scratch(registry) as s:
            (r["target15"],) = open_loop(s, data, [15_000.0], 1, seconds=cfg["open_loop_s"])
        print(f"open loop at 15,000/s, 1 worker: p99 {r['target15']['p99_ms']:.1f} ms")

    steady_s, burst_s, after_s = cfg["burst_s"]
    with scratch(registry) as s:
        r["burst"] = b = burst(
            s, data, 0.25 * r["cap1"], steady_s=steady_s, burst_s=burst_s, after_s=after_s
        )
    print(f"burst: steady {b['steady_rss_mb']:.1f} MiB, peak {b['peak_rss_mb']:.1f} MiB")

    print("batch-policy sweep:")
    r["sweep"] = sweep(
        registry, data, r["cap1"], policies, fractions=cfg["fractions"], seconds=cfg["sweep_s"]
    )
    r["plotted"] = plot(
        r["sweep"], args.png, f"scorebus demo pipeline, 1 worker, {platform.machine()}"
    )

    r["brokers"], r["brokers_reason"] = None, "--no-brokers"
    if not args.no_brokers:
        print("brokers (raw client beside scorebus, same run):")
        r["brokers"] = broker_rows(registry, data[: cfg["broker_events"]], workers=r["best_w"])

    r["meta"] = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": platform.machine(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "events": cfg["events"],
        "command": "make bench" if not argv else "python -m benchmarks.run " + " ".join(argv),
        "open_loop_s": cfg["open_loop_s"],
        "sweep_s": cfg["sweep_s"],
        "broker_events": cfg["broker_events"],
        "demo_batch": demo_policy(),
    }
    write(render(r, args.doc, args.png), args.doc)
    print(f"wrote {args.doc}" + (f" and {args.png}" if r["plotted"] else " (no plot)"))
    return r


if __name__ == "__main__":
    main(sys.argv[1:] or None)
