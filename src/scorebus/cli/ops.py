"""Operating a pipeline: run, publish, status, results, dead letters."""

from __future__ import annotations

import asyncio
import sys
import uuid
from pathlib import Path
from typing import Annotated, Any

import msgspec
import typer
from rich.table import Table

from ..app import load_app
from ..app.run import merge, plan_workers, run_app, run_processes
from ..brokers import open_broker
from ..errors import ConfigError, DecodeError
from ..events import Event, decode_json, from_structured, is_structured
from ..sinks import open_store
from .common import (
    BrokerOpt,
    JsonOpt,
    RegistryOpt,
    StoreOpt,
    TrustOpt,
    err,
    out,
    print_json,
    redact,
    settings,
    timestamp,
)
from .topics import create_app_topics


def run(
    app_ref: Annotated[str, typer.Argument(metavar="MODULE:APP", help="e.g. my_pipeline:app")],
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            "-w",
            min=1,
            help="Worker processes. Env: SCOREBUS_WORKERS. Default: one per usable core "
            "(at most 8; 1 for memory://).",
        ),
    ] = None,
    model_threads: Annotated[
        int | None,
        typer.Option(
            "--model-threads",
            min=1,
            help="Batches each worker predicts at once. Env: SCOREBUS_MODEL_THREADS. "
            "Default: usable cores // workers.",
        ),
    ] = None,
    until_idle: Annotated[
        float | None,
        typer.Option("--until-idle", help="Stop after this many seconds with nothing to do."),
    ] = None,
    grace: Annotated[
        float, typer.Option("--grace", help="Seconds to finish in-flight work on stop.")
    ] = 30.0,
    trust_model: TrustOpt = False,
    create: Annotated[
        bool,
        typer.Option("--create", help="First create the app's Pub/Sub topics and subscriptions."),
    ] = False,
    model_poll: Annotated[
        float | None,
        typer.Option(
            "--model-poll",
            min=0,
            help="Seconds between checks of followed model aliases (hot swap); 0 turns it "
            "off. Env: SCOREBUS_MODEL_POLL. Default 5.",
        ),
    ] = None,
    broker: BrokerOpt = None,
    store: StoreOpt = None,
    registry: RegistryOpt = None,
) -> None:
    """Run an app's scorers and handlers until stopped (SIGINT/SIGTERM) or idle."""
    cfg = settings(broker, store, registry, trust_model).override(
        model_poll_s=model_poll, workers=workers, model_threads=model_threads
    )
    workers, threads = plan_workers(cfg)
    cfg = cfg.override(workers=workers, model_threads=threads)
    app = load_app(app_ref)
    if create:
        for line in asyncio.run(create_app_topics(app, cfg)):
            err.print(line, highlight=False, soft_wrap=True)
    err.print(
        f"running {app.name}: {len(app.scorers)} scorer(s), {len(app.handlers)} handler(s), "
        f"{workers} worker(s) x {threads} model thread(s) on {redact(cfg.broker)}",
        highlight=False,
    )
    if workers == 1:
        report = asyncio.run(run_app(app, cfg, until_idle_s=until_idle, shutdown_grace_s=grace))
    else:
        report = merge(
            run_processes(app_ref, cfg, workers=workers, until_idle_s=until_idle, grace_s=grace)
        )
    err.print(
        f"stopped: scored {report.scored}, handled {report.handled}, dead-lettered "
        f"{report.dead_lettered}, retried {report.retried}, relayed {report.relayed}",
        highlight=False,
    )


def _read_events(
    lines: list[bytes], first_line: int, topic: str, type_: str, source: str
) -> list[Event]:
    events = []
    for n, line in enumerate(lines, first_line):
        if not line.strip():
            continue
        try:
            obj = decode_json(line)
            if is_structured(obj):
                events.append(from_structured(obj))
            else:
                events.append(Event.new(type_, line.strip(), source=source, id=uuid.uuid4().hex))
        except DecodeError as exc:
            raise ConfigError(
                f"line {n}: {exc}; nothing from line {first_line} on was published "
                "(each line must be a JSON value or a CloudEvent)"
            ) from exc
    return events


def publish(
    topic: Annotated[str, typer.Argument(help="Topic to publish to.")],
    file: Annotated[str, typer.Argument(help="JSON lines file, or - for standard input.")] = "-",
    type_: Annotated[
        str | None,
        typer.Option("--type", help="CloudEvents type for bare data lines (default: TOPIC)."),
    ] = None,
    source: Annotated[str, typer.Option("--source", help="CloudEvents source.")] = "scorebus/cli",
    broker: BrokerOpt = None,
) -> None:
    """Publish JSON lines: each line is an event's data or a whole CloudEvent (structured mode)."""
    cfg = settings(broker)
    if file != "-" and not Path(file).is_file():
        raise ConfigError(
            f"no such file: {file!r} (give a JSON lines file or - for standard input)"
        )
    stream = sys.stdin.buffer if file == "-" else Path(file).open("rb")  # noqa: SIM115

    async def go() -> int:
        count = 0
        async with open_broker(cfg.broker) as b:
            chunk: list[bytes] = []
            line_no = 1
            for raw in stream:
                chunk.append(raw)
                if len(chunk) == 1000:
                    events = _read_events(chunk, line_no, topic, type_ or topic, source)
                    await b.publish(topic, events)
                    count += len(events)
                    line_no += len(chunk)
                    chunk = []
            events = _read_events(chunk, line_no, topic, type_ or topic, source)
            await b.publish(topic, events)
            return count + len(events)

    try:
        count = asyncio.run(go())
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()
    err.print(f"published {count} event(s) to {topic!r} on {redact(cfg.broker)}", highlight=False)


async def _status(broker_url: str, store_url: str) -> dict[str, Any]:
    async with open_broker(broker_url) as b:
        stats = await b.stats()
    store = open_store(store_url)
    try:
        await store.open()
        counts = await store.counts()
        outbox = len(await store.outbox_pending(100_000))
    finally:
        await store.close()
    rows = []
    for s in stats:
        scorer = s.subscription.partition(".")[2]
        rows.append(
            {
                "subscription": s.subscription,
                "topic": s.topic,
                "pending": s.pending,
                "in_flight": s.in_flight,
                "acked": s.acked,
                "scored": counts.get(scorer, 0),
                "dead_lettered": s.dead_lettered,
            }
        )
    return {
        "broker": redact(broker_url),
        "store": redact(store_url),
        "subscriptions": rows,
        # None: the broker cannot count waiting messages (Pub/Sub); shown as "?".
        "pending": sum(r["pending"] or 0 for r in rows),
        "in_flight": sum(r["in_flight"] for r in rows),
        "dead_lettered": sum(r["dead_lettered"] for r in rows),
        "outbox": outbox,
    }


def status(json_out: JsonOpt = False, broker: BrokerOpt = None, store: StoreOpt = None) -> None:
    """Per subscription: pending, in flight, scored, dead-lettered."""
    cfg = settings(broker, store)
    data = asyncio.run(_status(cfg.broker, cfg.store))
    if json_out:
        print_json(data)
        return
    table = Table(title=redact(cfg.broker))
    for col in ("subscription", "topic", "pending", "in flight", "scored", "dead-lettered"):
        table.add_column(col, justify="right" if col not in ("subscription", "topic") else "left")
    for r in data["subscriptions"]:
        table.add_row(
            r["subscription"],
            r["topic"],
            "?" if r["pending"] is None else str(r["pending"]),
            str(r["in_flight"]),
            str(r["scored"]),
            str(r["dead_lettered"]),
        )
    out.print(table)
    if data["outbox"]:
        out.print(f"outbox: {data['outbox']} result event(s) waiting to be relayed")


def results(
    scorer: Annotated[str | None, typer.Option("--scorer", help="Only this scorer.")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1)] = 20,
    json_out: JsonOpt = False,
    store: StoreOpt = None,
) -> None:
    """The most recent results, newest first."""
    cfg = settings(store=store)

    async def go() -> list[Any]:
        sink = open_store(cfg.store)
        try:
            await sink.open()
            return await sink.results(scorer=scorer, limit=limit)
        finally:
            await sink.close()

    rows = asyncio.run(go())
    if json_out:
        print_json(rows)
        return
    table = Table()
    for col in ("scorer", "event id", "model", "output", "scored at", "latency ms"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r.scorer,
            r.event_id,
            f"{r.model}@{r.model_version}",
            msgspec.json.encode(r.output).decode(),
            timestamp(r.scored_at),
            f"{r.latency_ms:.1f}",
        )
    out.print(table)


def ingest(
    app_ref: Annotated[
        str | None,
        typer.Argument(
            metavar="[MODULE:APP]",
            help="Accept only this app's topics, checked against its schemas.",
        ),
    ] = None,
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535)] = 8000,
    broker: BrokerOpt = None,
) -> None:
    """Serve HTTP CloudEvents ingest: POST /topics/{topic}/events publishes onto the broker."""
    import uvicorn

    from ..app.ingest import ingest_app

    cfg = settings(broker)
    topics = load_app(app_ref) if app_ref else None
    err.print(f"ingest on http://{host}:{port} -> {redact(cfg.broker)}", highlight=False)
    uvicorn.run(ingest_app(cfg.broker, topics=topics), host=host, port=port, log_level="warning")
