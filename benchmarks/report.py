"""The results section of docs/benchmarks.md, written from one run's figures.

Everything below the marker is generated, including the comparison with the
issue's targets, so the prose cannot drift from the numbers it stands beside.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .stages import table as stages_table
from .sweep import table as sweep_table

MARK = "<!-- results: written by `make bench` -->"


def _n(x: float) -> str:
    return f"{x:,.0f}"


def _met(ok: bool) -> str:
    return "met" if ok else "not met"


def throughput(r: dict[str, Any]) -> str:
    lim, pm, beam = r["limit"], r["per_message"], r["beam"]
    rows = [("limit: decode + bare model, batch 512", _n(lim["eps"]))]
    if "skipped" in beam:
        rows.append(("Apache Beam RunInference (peer)", f"not run: {beam['skipped']}"))
    else:
        net = beam["events"] / max(beam["seconds"] - beam["startup_s"], 1e-9)
        rows.append(
            (
                f"Apache Beam {beam['beam']} RunInference, DirectRunner (peer, "
                f"{beam['events']:,} events)",
                f"{_n(beam['eps'])} ({_n(net)} net of its {beam['startup_s']:.1f} s start-up)",
            )
        )
    rows.append(("per-message: decode, predict 1 row, commit, ack", _n(pm["eps"])))
    for w, p in sorted(r["pipelines"].items()):
        rows.append((f"scorebus end to end, embedded broker, {w} worker process(es)", _n(p["eps"])))
    body = "\n".join(f"| {k} | {v} |" for k, v in rows)
    best = r["pipelines"][r["best_w"]]["eps"]
    ratios = [
        ("best pipeline / limit", f"{best / lim['eps']:.2f}"),
        ("best pipeline / per-message", f"{best / pm['eps']:.1f}x"),
    ]
    if "skipped" not in beam:
        ratios.append(("best pipeline / Beam RunInference", f"{best / beam['eps']:.1f}x"))
    ratio_rows = "\n".join(f"| {k} | {v} |" for k, v in ratios)
    return (
        f"| scenario | events/s |\n|---|---|\n{body}\n\n| ratio | value |\n|---|---|\n{ratio_rows}"
    )


def open_loop(r: dict[str, Any]) -> str:
    cap = r["pipelines"][r["best_w"]]["eps"]
    lines = [
        "| arrival rate | offered /s | achieved /s | p50 (ms) | p99 (ms) | p99.9 (ms) | events "
        "| publisher lag (ms) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for p in r["open_loop"]:
        flag = " (saturated)" if p["saturated"] else ""
        lines.append(
            f"| {p['offered_eps'] / cap:.0%} of capacity | {_n(p['offered_eps'])} | "
            f"{_n(p['achieved_eps'])}{flag} | {p['p50_ms']:.1f} | {p['p99_ms']:.1f} | "
            f"{p['p999_ms']:.1f} | {p['events']:,} | {p['max_lag_s'] * 1000:.0f} |"
        )
    t = r.get("target15")
    if t:
        lines.append(
            f"| fixed 15,000/s, 1 worker | {_n(t['offered_eps'])} | {_n(t['achieved_eps'])} | "
            f"{t['p50_ms']:.1f} | {t['p99_ms']:.1f} | {t['p999_ms']:.1f} | {t['events']:,} "
            f"| {t['max_lag_s'] * 1000:.0f} |"
        )
    return "\n".join(lines)


def burst(b: dict[str, Any]) -> str:
    steady_s, burst_s, after_s = b["seconds"]
    return f"""One worker process, in-flight cap {b["cap_messages"]:,} messages / {b["cap_mib"]} MiB
(the default `FlowControl`): {_n(b["rate"])} events/s for {steady_s:g} s, then
{_n(b["burst_rate"])} events/s ({b["factor"]:g}x) for {burst_s:g} s, then {_n(b["rate"])}
events/s for {after_s:g} s; resident memory of the worker sampled every 50 ms
({b["samples"]} samples). The publisher fell at most {b["max_lag_s"]:.2f} s behind
its schedule.

| steady RSS (median) | peak RSS (burst and drain) | peak / steady | p99 over the run (ms) | events scored |
|---|---|---|---|---|
| {b["steady_rss_mb"]:.1f} MiB | {b["peak_rss_mb"]:.1f} MiB | {b["ratio"]:.2f} | {b["p99_ms"]:.1f} | {b["events"]:,} |"""


def brokers(rows: list[dict[str, Any]] | None, reason: str) -> str:
    if rows is None:
        return f"Not run: {reason}."
    lines = [
        "| broker | raw client /s | raw measures | scorebus end to end /s | scorebus / raw "
        "| p99 in worker (ms) |",
        "|---|---|---|---|---|---|",
    ]
    for b in rows:
        if "skipped" in b:
            lines.append(f"| {b['broker']} | skipped: {b['skipped']} | | | | |")
            continue
        raw, eps = float(b["raw_eps"]), float(b["eps"])
        lines.append(
            f"| {b['broker']} | {_n(raw)} | {b['raw_measures']} | {_n(eps)} | {eps / raw:.2f} "
            f"| {float(b['p99_service_ms']):.1f} |"
        )
    return "\n".join(lines)


def targets(r: dict[str, Any]) -> str:
    lim, pm = r["limit"]["eps"], r["per_message"]["eps"]
    best = r["pipelines"][r["best_w"]]["eps"]
    lines = [
        f"- end to end / limit: {best / lim:.2f} (target 0.5): {_met(best / lim >= 0.5)}",
        f"- end to end / per-message: {best / pm:.0f}x (target 100x): {_met(best / pm >= 100)}",
    ]
    half = [p for p in r["open_loop"] if abs(p["offered_eps"] / r["cap"] - 0.5) < 0.01]
    if half:
        p99 = half[0]["p99_ms"]
        lines.append(
            f"- p99 at half capacity: {p99:.1f} ms (target 25 ms): {_met(p99 <= 25 and not half[0]['saturated'])}"
        )
    pubsub = [b for b in r["brokers"] or [] if b["broker"] == "pubsub" and "skipped" not in b]
    if pubsub:
        ratio = float(pubsub[0]["eps"]) / float(pubsub[0]["raw_eps"])
        lines.append(
            f"- Pub/Sub, scorebus / the emulator's own pull+ack: {ratio:.2f} (target 0.8): {_met(ratio >= 0.8)}"
        )
    b = r["burst"]
    lines.append(
        f"- 10x burst, peak / steady memory: {b['ratio']:.2f} (target 1.5): {_met(b['ratio'] <= 1.5)}"
    )
    return "\n".join(lines)


def render(r: dict[str, Any], doc: Path, png: Path) -> str:
    m = r["meta"]
    if r["plotted"]:
        figure = f"![throughput against p99 by batch policy]({os.path.relpath(png, doc.parent)})"
    else:
        figure = "Plot not drawn: matplotlib is not installed (`pip install -e '.[bench]'`)."
    adaptive = (
        ""
        if r["adaptive"]
        else (
            "\n\nThe adaptive policy is not in this run: this runtime's `Batch` has no "
            "`adaptive` field yet."
        )
    )
    return f"""{MARK}

Measured {m["date"]} on {m["machine"]}, {m["cores"]} cores, Python {m["python"]};
{m["events"]:,} demo events; command: `{m["command"]}`. The demo scorer's batch
policy (end-to-end, open-loop, burst and broker rows): `{m["demo_batch"]}`.

{throughput(r)}

### Where an event's time goes

Each stage of the hot path timed one after another in one event loop
(`benchmarks/stages.py`: embedded broker, SQLite store, batch 512,
{r["stages"]["events"]:,} events). A worker overlaps the stages on its threads,
so the sum is not its latency but the CPU an event costs, which bounds what two
worker processes can do on two cores.

{stages_table(r["stages"], r["limit"]["eps"])}

### Open loop

{r["best_w"]} worker process(es) on the embedded broker, warm, one phase per arrival
rate ({m["open_loop_s"]:g} s each); capacity is the best end-to-end rate above
({_n(r["cap"])} events/s). Latency runs from each event's scheduled send time to
its commit (no coordinated omission). Publisher lag is how far, at most, the
publishing process fell behind its own schedule: where it is large, the offered
rate was not fully met.

{open_loop(r)}

### 10x burst and memory

{burst(r["burst"])}

### Batch policy: throughput against p99

One worker process per policy, open-loop phases of {m["sweep_s"]:g} s at rising
rates (fractions of the one-worker capacity, {_n(r["cap1"])} events/s).

{figure}

{sweep_table(r["sweep"])}{adaptive}

### Per broker

{m["broker_events"]:,} demo events per broker, backlog published first, {r["best_w"]} worker
process(es); p99 is the in-worker latency (pull to commit) while draining the
backlog. "raw" is the broker's own client with comparable batching
(`benchmarks/brokers/<name>_raw.py`); its column says what it times.

{brokers(r["brokers"], r["brokers_reason"])}

### Against the performance issue's targets

{targets(r)}
"""


def write(text: str, doc: Path) -> None:
    """Replace everything below the marker in ``doc`` (kept above it)."""
    old = doc.read_text() if doc.exists() else "# Benchmarks\n\n"
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(old.split(MARK)[0] + text)
