"""``scorebus jobs``: the built-in workflow jobs, run once from the command line.

No broker is involved: the same code the ``@app.on`` jobs run, on the local
registry. Exit codes: 0 trained / promoted, 1 training failed / candidate
rejected (a decision, not an error), 2 bad input (unknown model or version,
bad reference or option), always as one line. ``scorebus batch-predict`` is
the batch job's command.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
import typer

from ..app.loader import load_object
from ..errors import ConfigError
from ..models.registry import DEFAULT_ALIAS
from ..workflows import Decision, TrainingFailed, evaluate_and_promote, train
from .common import JsonOpt, RegistryOpt, TrustOpt, err, print_json, settings

jobs_app = typer.Typer(
    help="Run a workflow job once: train a version, evaluate-and-promote it.",
    no_args_is_help=True,
)


def _callable(ref: str, what: str) -> Any:
    fn = load_object(ref, what)
    if not callable(fn):
        raise ConfigError(f"{what} {ref!r} is a {type(fn).__name__}, not a function")
    return fn


def _params(pairs: list[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--param {pair!r}: expected KEY=VALUE, e.g. --param max_depth=5")
        try:
            params[key] = msgspec.json.decode(raw)
        except msgspec.DecodeError:
            params[key] = raw  # not JSON: a plain string
    return params


@jobs_app.command("train")
def train_cmd(
    fit: Annotated[str, typer.Argument(metavar="MODULE:FIT", help="fit(TrainingData) -> Trained.")],
    model: Annotated[str, typer.Option("--model", "-m", help="Model name in the registry.")],
    data: Annotated[str, typer.Option("--data", help="Dataset reference handed to fit.")],
    param: Annotated[
        list[str] | None,
        typer.Option("--param", help="KEY=VALUE training parameter (JSON value); repeatable."),
    ] = None,
    alias: Annotated[
        str | None, typer.Option("--alias", help="Point this alias at the new version.")
    ] = None,
    json_out: JsonOpt = False,
    registry: RegistryOpt = None,
) -> None:
    """Train MODEL with MODULE:FIT on --data and register the version (exit 1 if fit fails)."""
    fn = _callable(fit, "fit function")
    root = settings(registry=registry).registry
    try:
        result = train(model, fn, data, registry=root, params=_params(param or []), alias=alias)
    except TrainingFailed as exc:
        if json_out:
            failed = {"model": model, "dataset": data, "stage": exc.stage, "reason": exc.reason}
            print_json({**failed, "error": exc.error})
        err.print(f"training failed: {exc}", highlight=False, markup=False, soft_wrap=True)
        raise typer.Exit(1) from None
    if json_out:
        print_json(result.event_data())
        return
    metrics = ", ".join(f"{k}={v:.4g}" for k, v in sorted(result.metrics.items()))
    err.print(
        f"trained {result.model}@{result.version} on {result.dataset}"
        + (f": {metrics}" if metrics else "")
        + (f" (alias {alias})" if alias else ""),
        highlight=False,
        markup=False,
    )


@jobs_app.command("promote")
def promote_cmd(
    name: Annotated[str, typer.Argument(help="Model name.")],
    version: Annotated[str, typer.Argument(help="The candidate version.")],
    metric: Annotated[str, typer.Option("--metric", help="The metric compared.")] = "auc",
    margin: Annotated[
        float, typer.Option("--margin", min=0.0, help="How much better the candidate must be.")
    ] = 0.0,
    lower_is_better: Annotated[
        bool, typer.Option("--lower-is-better", help="The metric is a loss or an error.")
    ] = False,
    alias: Annotated[str, typer.Option("--alias", help="The alias to move.")] = DEFAULT_ALIAS,
    evaluate: Annotated[
        str | None,
        typer.Option(
            "--evaluate", metavar="MODULE:FN", help="evaluate(model, holdout) -> metrics."
        ),
    ] = None,
    holdout: Annotated[
        str | None, typer.Option("--holdout", help="Dataset reference for --evaluate.")
    ] = None,
    trust_model: TrustOpt = False,
    json_out: JsonOpt = False,
    registry: RegistryOpt = None,
) -> None:
    """Promote NAME's VERSION to ALIAS if it beats the holder on METRIC (exit 1 if rejected)."""
    if (evaluate is None) != (holdout is None):
        raise ConfigError("--evaluate and --holdout go together: give both or neither")
    evaluate_fn = _callable(evaluate, "evaluate function") if evaluate else None
    cfg = settings(registry=registry, trust_models=trust_model)
    decision = evaluate_and_promote(
        name,
        version,
        registry=cfg.registry,
        metric=metric,
        margin=margin,
        higher_is_better=not lower_is_better,
        alias=alias,
        evaluate=evaluate_fn,
        holdout=holdout,
        trust=cfg.trust_models,
    )
    if json_out:
        print_json(decision.to_dict())
    else:
        err.print(_describe(decision), highlight=False, markup=False, soft_wrap=True)
    if not decision.promoted:
        raise typer.Exit(1)


def _describe(d: Decision) -> str:
    def fig(value: float | None) -> str:
        return "-" if value is None else f"{value:.6g}"

    figures = f"{d.metric} {fig(d.candidate_value)} vs {fig(d.champion_value)}"
    if d.promoted:
        was = f" (was {d.previous})" if d.previous else ""
        return f"promoted {d.model}@{d.version} to {d.alias}{was}: {d.reason}; {figures}"
    return f"rejected {d.model}@{d.version}: {d.reason}; {figures}"
