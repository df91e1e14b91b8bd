"""``scorebus demo``: publish synthetic card transactions, score them, prove nothing was lost."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Annotated, Any

import numpy as np
import typer
from rich.live import Live
from rich.table import Table

from ..app import Settings
from ..app.run import WorkerPool, plan_workers
from ..brokers.sqlite import SqliteBroker
from ..demo import SCORER, TOPIC, app
from ..demo.data import EXPECTED_REASON, Plan, chunks
from ..errors import ConfigError
from ..models.demo import ensure_demo_model
from ..models.registry import open_registry
from ..sinks.sqlite import SqliteResultStore
from .common import BrokerOpt, JsonOpt, RegistryOpt, StoreOpt, err, out, print_json, settings

SUBSCRIPTION = f"{app.name}.{SCORER}"


def demo(
    events: Annotated[
        int, typer.Option("--events", "-n", min=1, help="How many events.")
    ] = 100_000,
    bad_fraction: Annotated[
        float, typer.Option("--bad-fraction", min=0.0, max=1.0, help="Share of malformed events.")
    ] = 0.02,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            "-w",
            min=1,
            help="Worker processes. Env: SCOREBUS_WORKERS. Default: one per usable core.",
        ),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the synthetic traffic.")] = 42,
    json_out: JsonOpt = False,
    broker: BrokerOpt = None,
    store: StoreOpt = None,
    registry: RegistryOpt = None,
) -> None:
    """Score synthetic card transactions end to end on the embedded broker and report."""
    cfg = settings(broker, store, registry)
    for key, url in (("--broker", cfg.broker), ("--store", cfg.store)):
        if not url.startswith("sqlite:///"):
            raise ConfigError(f"the demo runs on the embedded files: {key} must be sqlite:///FILE")
    workers, threads = plan_workers(cfg.override(workers=workers))
    cfg = cfg.override(workers=workers, model_threads=threads)
    err.print("preparing the demo model (trained once from synthetic data)...")
    mv = ensure_demo_model(open_registry(cfg.registry))
    plan = Plan(run_id=f"demo-{uuid.uuid4().hex[:8]}", total=events)
    err.print(
        f"run {plan.run_id}: {events} events ({bad_fraction:.1%} malformed), "
        f"{workers} worker(s), model {mv.ref}",
        highlight=False,
    )
    pool = WorkerPool("scorebus.demo:app", cfg, workers=workers)
    try:
        summary = asyncio.run(_run(plan, cfg, pool, bad_fraction, seed, live=not json_out))
    except KeyboardInterrupt:
        pool.stop()
        pool.wait()
        err.print(
            "interrupted: finish with `scorebus run scorebus.demo:app --until-idle 5`, "
            "then `scorebus status`"
        )
        raise typer.Exit(130) from None
    pool.stop()
    pool.wait()
    summary["workers"] = workers
    summary["model"] = mv.ref
    if json_out:
        print_json(summary)
    else:
        out.print(_summary_table(summary))
    if summary["lost"] or summary["duplicated"] or summary["wrong_outcome"]:
        raise typer.Exit(1)


async def _run(
    plan: Plan, cfg: Settings, pool: WorkerPool, bad_fraction: float, seed: int, *, live: bool
) -> dict[str, Any]:
    broker = SqliteBroker(cfg.broker)
    store = SqliteResultStore(cfg.store)
    try:
        await broker.subscription(TOPIC, SUBSCRIPTION)
        pool.start()
        started = time.time()
        publisher = asyncio.create_task(_publish(broker, plan, bad_fraction, seed))
        await _watch(plan, broker, store, pool, publisher, started, live=live)
        await publisher
        return await _summarise(plan, broker, store, started)
    finally:
        await broker.close()
        await store.close()


async def _publish(broker: SqliteBroker, plan: Plan, bad_fraction: float, seed: int) -> None:
    loop = asyncio.get_running_loop()
    gen = chunks(plan, bad_fraction, seed=seed)
    while True:
        # Building a chunk is CPU work; do it off the event loop so progress keeps ticking.
        events = await loop.run_in_executor(None, next, gen, None)
        if events is None:
            return
        await broker.publish(TOPIC, events)


async def _watch(
    plan: Plan,
    broker: SqliteBroker,
    store: SqliteResultStore,
    pool: WorkerPool,
    publisher: asyncio.Task[None],
    started: float,
    *,
    live: bool,
) -> None:
    with Live(console=err, refresh_per_second=4, transient=False) if live else _Null() as view:
        last_scored, last_t = 0, time.time()
        while True:
            await asyncio.sleep(0.25)
            _, scored = await store.audit(SCORER, plan.run_id)
            dead = len(await broker.dead_letter_reasons(SUBSCRIPTION, id_prefix=plan.run_id))
            now = time.time()
            window = await store.latencies(SCORER, id_prefix=plan.run_id, since=now - 1.0)
            rate = (scored - last_scored) / max(now - last_t, 1e-6)
            last_scored, last_t = scored, now
            if live:
                view.update(_progress(plan, scored, dead, rate, window, now - started))
            if scored + dead >= plan.total and publisher.done():
                return
            if not pool.alive():
                raise ConfigError("every worker process exited early; see the log above")


def _progress(
    plan: Plan, scored: int, dead: int, rate: float, window: list[Any], t: float
) -> Table:
    lat = np.array([w[0] for w in window]) if window else np.zeros(1)
    table = Table.grid(padding=(0, 2))
    done = scored + dead
    bar = "█" * int(30 * done / plan.total)
    table.add_row(
        f"[bold]{done:>8}/{plan.total}[/bold] {bar:<30}",
        f"{rate:>9,.0f} ev/s",
        f"p50 {np.percentile(lat, 50):7.1f} ms",
        f"p99 {np.percentile(lat, 99):7.1f} ms",
        f"dead letters {dead}",
        f"{t:5.1f} s",
    )
    return table


async def _summarise(
    plan: Plan, broker: SqliteBroker, store: SqliteResultStore, started: float
) -> dict[str, Any]:
    rows, distinct = await store.audit(SCORER, plan.run_id)
    letters = await broker.dead_letter_reasons(SUBSCRIPTION, id_prefix=plan.run_id)
    lat = await store.latencies(SCORER, id_prefix=plan.run_id)
    arr = np.array(lat) if lat else np.zeros((0, 3))
    ended = float(arr[:, 2].max()) if len(arr) else time.time()
    first = float(arr[:, 2].min()) if len(arr) else started
    reasons: dict[str, int] = {}
    for reason in letters.values():
        reasons[reason] = reasons.get(reason, 0) + 1
    # A bad event that was scored, or a valid one that was dead-lettered, is a wrong outcome.
    misfiled = sum(1 for eid in letters if eid not in plan.bad)
    wrong_reason = sum(
        1 for eid, kind in plan.bad.items() if letters.get(eid) != EXPECTED_REASON[kind]
    )
    handled = distinct + len(letters)

    def pct(col: int, q: float) -> float:
        return round(float(np.percentile(arr[:, col], q)), 2) if len(arr) else float("nan")

    return {
        "run_id": plan.run_id,
        "published": plan.total,
        "valid": plan.valid,
        "malformed": len(plan.bad),
        "scored": distinct,
        "dead_lettered": len(letters),
        "dead_letter_reasons": reasons,
        "lost": plan.total - handled if handled <= plan.total else 0,
        "duplicated": (rows - distinct) + max(0, handled - plan.total),
        "wrong_outcome": misfiled + wrong_reason,
        "seconds": round(ended - started, 3),
        # Worker start-up (imports, model load) is reported apart from the scoring rate.
        "startup_s": round(first - started, 3),
        "throughput_eps": round(distinct / max(ended - first, 1e-9), 1),
        "latency_ms": {"p50": pct(0, 50), "p99": pct(0, 99), "p999": pct(0, 99.9)},
        "service_latency_ms": {"p50": pct(1, 50), "p99": pct(1, 99), "p999": pct(1, 99.9)},
    }


def _summary_table(s: dict[str, Any]) -> Table:
    table = Table(title=f"scorebus demo {s['run_id']}", show_header=False)
    table.add_column(justify="left")
    table.add_column(justify="right")
    ok = "[green]0[/green]"
    rows = [
        ("published", f"{s['published']:,} ({s['malformed']:,} malformed)"),
        ("scored", f"{s['scored']:,}"),
        ("dead-lettered", f"{s['dead_lettered']:,} " + str(s["dead_letter_reasons"])),
        ("lost", ok if s["lost"] == 0 else f"[red]{s['lost']}[/red]"),
        ("duplicated", ok if s["duplicated"] == 0 else f"[red]{s['duplicated']}[/red]"),
        ("wrong outcome", ok if s["wrong_outcome"] == 0 else f"[red]{s['wrong_outcome']}[/red]"),
        ("throughput", f"{s['throughput_eps']:,.0f} events/s, {s['workers']} worker(s)"),
        ("time", f"{s['seconds']} s, of which {s['startup_s']} s worker start-up"),
        (
            "latency from publish p50/p99/p99.9",
            "{p50} / {p99} / {p999} ms".format(**s["latency_ms"]),
        ),
        (
            "latency in worker p50/p99/p99.9",
            "{p50} / {p99} / {p999} ms".format(**s["service_latency_ms"]),
        ),
        ("model", s["model"]),
    ]
    for k, v in rows:
        table.add_row(k, v)
    return table


class _Null:
    def __enter__(self) -> _Null:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, *_: object) -> None:
        return None
