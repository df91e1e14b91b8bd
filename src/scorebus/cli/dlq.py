"""``scorebus dlq``: list, show and replay dead-lettered events."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import msgspec
import typer
from rich.table import Table

from ..brokers import open_broker
from ..errors import ConfigError
from .common import BrokerOpt, JsonOpt, err, out, print_json, settings, timestamp

dlq_app = typer.Typer(help="List, show and replay dead-lettered events.", no_args_is_help=True)


@dlq_app.command("list")
def dlq_list(
    subscription: Annotated[str | None, typer.Option("--subscription", "-s")] = None,
    reason: Annotated[str | None, typer.Option("--reason", help="Only this reason.")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1)] = 50,
    json_out: JsonOpt = False,
    broker: BrokerOpt = None,
) -> None:
    """Dead letters, oldest first, with their reasons."""
    cfg = settings(broker)

    async def go() -> list[Any]:
        async with open_broker(cfg.broker) as b:
            letters = await b.dead_letters(subscription=subscription, limit=1_000_000)
        return [d for d in letters if reason is None or d.reason == reason][:limit]

    letters = asyncio.run(go())
    if json_out:
        print_json(
            [
                {k: v for k, v in msgspec.structs.asdict(d).items() if k != "payload"}
                for d in letters
            ]
        )
        return
    table = Table()
    for col in ("id", "subscription", "event id", "reason", "attempts", "error"):
        table.add_column(col, overflow="fold")
    for d in letters:
        table.add_row(
            str(d.id), d.subscription, d.event_id, d.reason, str(d.attempts), d.error[:120]
        )
    out.print(table)


@dlq_app.command("show")
def dlq_show(
    dead_letter_id: Annotated[int, typer.Argument(metavar="ID")],
    json_out: JsonOpt = False,
    broker: BrokerOpt = None,
) -> None:
    """One dead letter in full: attributes, reason, error and the raw payload."""
    cfg = settings(broker)

    async def go() -> Any:
        async with open_broker(cfg.broker) as b:
            letters = await b.dead_letters(limit=1_000_000, include_replayed=True)
        for d in letters:
            if d.id == dead_letter_id:
                return d
        raise ConfigError(f"no dead letter with id {dead_letter_id} (see `scorebus dlq list`)")

    d = asyncio.run(go())
    payload = bytes(d.payload).decode("utf-8", errors="replace")
    if json_out:
        print_json(
            {
                **{k: v for k, v in msgspec.structs.asdict(d).items() if k != "payload"},
                "payload": payload,
            }
        )
        return
    for key in (
        "id",
        "subscription",
        "topic",
        "event_id",
        "event_type",
        "reason",
        "error",
        "attempts",
        "attributes",
    ):
        out.print(f"[bold]{key}[/bold]: {getattr(d, key)}", highlight=False)
    out.print(f"[bold]dead at[/bold]: {timestamp(d.dead_at)}")
    out.print(f"[bold]payload[/bold] ({len(d.payload)} bytes): {payload[:2000]}", highlight=False)


@dlq_app.command("replay")
def dlq_replay(
    ids: Annotated[list[int] | None, typer.Argument(metavar="[ID]...")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Replay every live dead letter.")] = False,
    reason: Annotated[
        str | None, typer.Option("--reason", help="Replay those with this reason.")
    ] = None,
    subscription: Annotated[str | None, typer.Option("--subscription", "-s")] = None,
    broker: BrokerOpt = None,
) -> None:
    """Put dead letters back on their subscription with a fresh attempt count."""
    if not ids and not all_ and reason is None:
        raise ConfigError("say which dead letters to replay: IDs, --reason REASON, or --all")
    cfg = settings(broker)

    async def go() -> int:
        async with open_broker(cfg.broker) as b:
            chosen = list(ids or [])
            if all_ or reason is not None:
                letters = await b.dead_letters(subscription=subscription, limit=1_000_000)
                chosen += [d.id for d in letters if reason is None or d.reason == reason]
            return await b.replay(chosen)

    err.print(f"replayed {asyncio.run(go())} dead letter(s)")
