"""One line per lifecycle event, for the loop's printout."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from scorebus.events import Event


def _auc(value: Any) -> str:
    return "-" if value is None else f"{value:.3f}"


def describe(event: Event) -> str:
    """``hop N  TYPE  what it says``: the event's step in the chain and its gist."""
    d: dict[str, Any] = event.data if isinstance(event.data, dict) else {}
    what = str(d)
    if event.type == "data.arrived":
        what = f"dataset {Path(d['dataset']).name}"
    elif event.type == "model.trained":
        metrics = ", ".join(f"{k} {v:.3f}" for k, v in d["metrics"].items())
        what = f"fraud v{d['version']} trained on {Path(d['dataset']).name} ({metrics})"
    elif event.type in ("model.promoted", "model.rejected"):
        verdict = "is the champion" if d["promoted"] else "rejected"
        was = f"was v{d['previous']}" if d["previous"] else "first one"
        what = (
            f"fraud v{d['version']} {verdict} ({was}): holdout {d['metric']} "
            f"{_auc(d['candidate_value'])} vs {_auc(d['champion_value'])}; {d['reason']}"
        )
    elif event.type in ("model.swapped", "model.refused"):
        what = f"scorer {d['scorer']}: v{d['from_version']} -> v{d['to_version']}"
        if d.get("reason"):
            what += f" refused: {d['reason']}"
    elif event.type == "drift.detected":
        psi = ", ".join(f"{name} psi {d['features'][name]['psi']:.2f}" for name in d["drifted"])
        what = f"fraud v{d['version']}: {psi} over the last {d['window']} transactions"
    elif event.type == "model.training_failed":
        what = f"{d['stage']}: {d['reason']}: {d['error']}"
    return f"hop {event.hops}  {event.type:<16} {what}"
