"""The batch-policy sweep: throughput against p99 latency, one curve per policy.

Each policy (fixed ``Batch(max_size=N)`` with the default ``max_wait_ms``, and
``Batch(adaptive=True)`` where the runtime has it) gets a fresh embedded broker
and one warm worker process of the demo app under that policy
(``benchmarks/policy_apps.py``), then open-loop phases at rising arrival rates
(fractions of the measured one-worker capacity). A point is (throughput
achieved, p99 from each event's scheduled time). A policy that cannot keep up
with a rate (see ``load.phase``) is marked saturated and is not tried at
higher rates.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .common import scratch
from .load import phase, running
from .policy_apps import label


def sweep(
    registry: Path,
    data: list[bytes],
    capacity: float,
    policies: list[str],
    *,
    fractions: tuple[float, ...] = (0.1, 0.3, 0.6, 0.9),
    seconds: float = 3.0,
) -> dict[str, list[dict[str, Any]]]:
    """``{policy: [phase result, ...]}`` at ``fraction * capacity`` arrival rates."""
    out: dict[str, list[dict[str, Any]]] = {}
    for policy in policies:
        points: list[dict[str, Any]] = []
        with scratch(registry) as s, running(s, f"benchmarks.policy_apps:{policy}"):
            for i, f in enumerate(sorted(fractions)):
                r = phase(s, data, [(capacity * f, seconds)], f"sw{i}", drain_s=max(3.0, seconds))
                points.append(r)
                print(
                    f"  {label(policy)} at {r['offered_eps']:,.0f}/s: achieved "
                    f"{r['achieved_eps']:,.0f}/s, p99 {r['p99_ms']:.1f} ms"
                    + (" (saturated)" if r["saturated"] else "")
                )
                if r["saturated"]:
                    break
        out[policy] = points
    return out


def plot(points: dict[str, list[dict[str, Any]]], png: Path, title: str) -> bool:
    """Throughput (x) against p99 (y, log) per policy; hollow markers where saturated.

    Returns:
        False, drawing nothing, where matplotlib (the ``bench`` extra) is not installed.
    """
    try:
        import matplotlib
    except ImportError:
        return False

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 5), dpi=110)
    for policy, rows in points.items():
        if not rows:
            continue
        xs = [r["achieved_eps"] for r in rows]
        ys = [r["p99_ms"] for r in rows]
        (line,) = ax.plot(xs, ys, marker="o", label=label(policy))
        for x, y, r in zip(xs, ys, rows, strict=True):
            if r["saturated"]:
                ax.plot(
                    [x], [y], marker="o", markersize=11, fillstyle="none", color=line.get_color()
                )
    ax.set_yscale("log")
    ax.set_xlabel("throughput achieved (events/s)")
    ax.set_ylabel("p99 latency from scheduled send (ms)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(
        title="batch policy\n(circled: saturated)", loc="upper left", bbox_to_anchor=(1.01, 1)
    )
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png)
    plt.close(fig)
    return True


def table(points: dict[str, list[dict[str, Any]]]) -> str:
    """The sweep's points as markdown rows."""
    lines = [
        "| batch policy | offered /s | achieved /s | p50 (ms) | p99 (ms) | p99.9 (ms) "
        "| publisher lag (ms) |",
        "|---|---|---|---|---|---|---|",
    ]
    for policy, rows in points.items():
        for r in rows:
            flag = " (saturated)" if r["saturated"] else ""
            lines.append(
                f"| {label(policy)} | {r['offered_eps']:,.0f} | {r['achieved_eps']:,.0f}{flag} "
                f"| {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['p999_ms']:.1f} "
                f"| {r['max_lag_s'] * 1000:.0f} |"
            )
    return "\n".join(lines)
