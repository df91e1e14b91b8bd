"""Shadow, canary and model following in the app layer: ``@app.scorer(shadow=...,
canary=...)`` and the ``model_poll_s`` setting."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from scorebus import App, Canary, Settings
from scorebus.app.run import version_resolver
from scorebus.errors import ConfigError


class Tx(msgspec.Struct):
    amount: float


def score_fn(events: list[Tx], scores: Any) -> list[dict[str, float]]:
    return [{"amount": e.amount} for e in events]


def test_shadow_and_canary_reach_the_spec_with_the_events_topic() -> None:
    app = App("fraud", events_topic="lifecycle")
    app.scorer(subscribe="transactions", schema=Tx, model="fraud", shadow="fraud@challenger")(
        score_fn
    )
    canary = Canary(model="fraud@challenger", share=0.25)
    app.scorer(subscribe="transactions", schema=Tx, model="fraud", canary=canary, name="canaried")(
        score_fn
    )

    shadowed, canaried = app.scorers
    assert (shadowed.shadow, shadowed.canary, shadowed.challenger) == (
        "fraud@challenger",
        None,
        "fraud@challenger",
    )
    assert (canaried.shadow, canaried.canary, canaried.challenger) == (
        None,
        canary,
        "fraud@challenger",
    )
    assert shadowed.events_topic == canaried.events_topic == "lifecycle"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"shadow": "fraud@b", "canary": Canary(model="fraud@c")},
            "shadow= and canary= are exclusive",
        ),
        ({"canary": 0.1}, "scorer canary=: expected Canary(model=..., share=...), got 0.1"),
        ({"canary": "fraud@c"}, "expected Canary(model=..., share=...)"),
        ({"shadow": "fraud@b", "sink": False, "publish": "scores"}, "shadow= needs a results"),
    ],
)
def test_bad_challengers_are_config_errors(kwargs: dict[str, Any], message: str) -> None:
    app = App("fraud")
    with pytest.raises(ConfigError) as info:
        app.scorer(subscribe="transactions", schema=Tx, model="fraud", **kwargs)(score_fn)
    assert message in str(info.value)
    assert app.scorers == []


def test_model_poll_comes_from_the_environment_then_flags() -> None:
    assert Settings.from_env({}).model_poll_s == 5.0
    from_env = Settings.from_env({"SCOREBUS_MODEL_POLL": "0.5"})
    assert from_env.model_poll_s == 0.5
    assert from_env.override(model_poll_s=0.0).model_poll_s == 0.0
    assert from_env.override(model_poll_s=None).model_poll_s == 0.5


@pytest.mark.parametrize(
    ("raw", "message"),
    [("soon", "expected a number of seconds"), ("-1", "expected seconds >= 0")],
)
def test_a_bad_model_poll_is_a_config_error_naming_the_variable(raw: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"SCOREBUS_MODEL_POLL": raw})
    assert str(info.value).startswith(f"SCOREBUS_MODEL_POLL={raw!r}")
    assert message in str(info.value)


def test_the_version_resolver_reads_where_an_alias_points(tmp_path: Any) -> None:
    import numpy as np
    from sklearn.linear_model import LinearRegression

    from scorebus.models.registry import Registry

    reg = Registry(tmp_path / "models")
    x = np.array([[0.0], [1.0], [2.0]])
    est = LinearRegression().fit(x, x[:, 0])
    reg.register("fraud", est, features=("amount",), alias="champion")
    reg.register("fraud", est, features=("amount",))
    resolve = version_resolver(Settings(registry=tmp_path / "models"))

    assert resolve("fraud@champion") == "1"
    assert resolve("fraud@latest") == "2"
    reg.promote("fraud", 2)
    assert resolve("fraud") == "2"
