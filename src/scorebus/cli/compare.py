"""``scorebus models compare``: a scorer's model versions side by side, from the results store.

Rows are grouped by role (``main``: the scorer's own results, which a canary
splits by version; ``shadow``: the ``SCORER.shadow`` results) and by model
version. The baseline is the main version with the most rows (the champion);
every other version is compared with it on the events both scored: agreement
of the decision ``score >= threshold`` and the mean absolute difference of the
score. A canary scores other events than the champion, so it has no common
events; its score distribution and latency are still set side by side.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Sequence
from typing import Annotated, Any

import numpy as np
import typer
from rich.table import Table

from ..errors import ConfigError
from ..sinks import open_store
from ..sinks.base import StoredResult
from .common import JsonOpt, StoreOpt, out, print_json, redact, settings


def score_of(output: Any, field: str | None = None) -> float | None:
    """The score in a stored result: ``output[field]``, else the number itself, the
    ``score`` entry, or the first number in it; ``None`` if there is none."""
    if field is not None:
        output = output.get(field) if isinstance(output, dict) else None
    elif isinstance(output, dict):
        output = (
            output["score"]
            if "score" in output
            else next((v for v in output.values() if _is_number(v)), None)
        )
    elif isinstance(output, list):
        output = next((v for v in output if _is_number(v)), None)
    return float(output) if _is_number(output) else None


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and math.isfinite(v)


def _pct(values: Sequence[float], qs: Sequence[float]) -> list[float | None]:
    if not values:
        return [None for _ in qs]
    return [float(x) for x in np.percentile(np.asarray(values, dtype=float), qs)]


def compare_rows(
    main: Sequence[StoredResult],
    shadow: Sequence[StoredResult],
    *,
    threshold: float = 0.5,
    field: str | None = None,
) -> dict[str, Any]:
    """The comparison report (what ``--json`` prints) for one scorer's rows.

    Args:
        main: the scorer's own results.
        shadow: its ``SCORER.shadow`` results.
        threshold: a score at or above it is a positive decision.
        field: the output entry holding the score (see :func:`score_of`).

    Returns:
        ``{"baseline": {...}, "versions": [...]}``, one entry per (role, model, version).
    """
    groups: dict[tuple[str, str, str], list[StoredResult]] = {}
    for role, rows in (("main", main), ("shadow", shadow)):
        for r in rows:
            groups.setdefault((role, r.model, r.model_version), []).append(r)
    mains = [k for k in groups if k[0] == "main"]
    base_key = max(mains, key=lambda k: len(groups[k])) if mains else None
    base = {r.event_id: score_of(r.output, field) for r in groups.get(base_key or ("",) * 3, [])}
    versions = []
    for key in sorted(groups, key=lambda k: (k != base_key, k[0], k[1], _version_key(k[2]))):
        role, model, version = key
        rows = groups[key]
        scores = {r.event_id: score_of(r.output, field) for r in rows}
        values = [s for s in scores.values() if s is not None]
        pairs = [
            (s, base[e]) for e, s in scores.items() if s is not None and base.get(e) is not None
        ]
        entry: dict[str, Any] = {
            "role": role,
            "model": model,
            "version": version,
            "baseline": key == base_key,
            "count": len(rows),
            "common": None if key == base_key else len(pairs),
            "agreement": None,
            "mean_abs_diff": None,
        }
        if pairs and key != base_key:
            mine, theirs = np.array(pairs, dtype=float).T
            entry["agreement"] = float(np.mean((mine >= threshold) == (theirs >= threshold)))
            entry["mean_abs_diff"] = float(np.mean(np.abs(mine - theirs)))
        p10, p50, p90 = _pct(values, (10, 50, 90))
        entry["score"] = {
            "mean": float(np.mean(values)) if values else None,
            "p10": p10,
            "p50": p50,
            "p90": p90,
        }
        s50, s99 = _pct([r.service_ms for r in rows], (50, 99))
        entry["service_ms"] = {"p50": s50, "p99": s99}
        versions.append(entry)
    baseline = None if base_key is None else {"model": base_key[1], "version": base_key[2]}
    return {"threshold": threshold, "field": field, "baseline": baseline, "versions": versions}


def _version_key(version: str) -> tuple[int, str]:
    return (int(version), "") if version.isdigit() else (1 << 62, version)


async def _read(url: str, scorer: str, limit: int) -> tuple[list[StoredResult], ...]:
    store = open_store(url)
    try:
        await store.open()
        main = await store.results(scorer=scorer, limit=limit)
        shadow = await store.results(scorer=f"{scorer}.shadow", limit=limit)
        if not main and not shadow:
            known = sorted(await store.counts())
            raise ConfigError(
                f"no results for scorer {scorer!r} in {redact(url)}; scorers with results: "
                + (", ".join(known) or "none")
            )
        return main, shadow
    finally:
        await store.close()


def _fmt(value: float | None, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


def compare(
    scorer: Annotated[str, typer.Argument(metavar="SCORER", help="The scorer's name.")],
    threshold: Annotated[
        float, typer.Option("--threshold", help="A score at or above it is a positive decision.")
    ] = 0.5,
    field: Annotated[
        str | None,
        typer.Option(
            "--field", help="Output entry with the score (default: score, or the first number)."
        ),
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=1, help="Newest results read per role.")
    ] = 100_000,
    json_out: JsonOpt = False,
    store: StoreOpt = None,
) -> None:
    """Champion vs shadow or canary: agreement, score distribution and latency per version."""
    cfg = settings(store=store)
    main, shadow = asyncio.run(_read(cfg.store, scorer, limit))
    report = {"scorer": scorer, **compare_rows(main, shadow, threshold=threshold, field=field)}
    if json_out:
        print_json(report)
        return
    # One column per version: usually two or three, so it fits any terminal.
    versions = report["versions"]
    table = Table(title=f"{scorer}: decision at score >= {threshold:g}")
    table.add_column("")
    for v in versions:
        role = v["role"] + (", baseline" if v["baseline"] else "")
        table.add_column(f"{v['model']}@{v['version']}\n{role}", justify="right")
    rows: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
        ("events", lambda v: str(v["count"])),
        ("common events", lambda v: "-" if v["common"] is None else str(v["common"])),
        ("agreement", lambda v: "-" if v["agreement"] is None else f"{v['agreement']:.1%}"),
        ("mean |diff|", lambda v: _fmt(v["mean_abs_diff"])),
        ("score mean", lambda v: _fmt(v["score"]["mean"])),
        ("score p10", lambda v: _fmt(v["score"]["p10"])),
        ("score p50", lambda v: _fmt(v["score"]["p50"])),
        ("score p90", lambda v: _fmt(v["score"]["p90"])),
        ("service ms p50", lambda v: _fmt(v["service_ms"]["p50"], ".1f")),
        ("service ms p99", lambda v: _fmt(v["service_ms"]["p99"], ".1f")),
    ]
    for label, cell in rows:
        table.add_row(label, *(cell(v) for v in versions))
    out.print(table)
