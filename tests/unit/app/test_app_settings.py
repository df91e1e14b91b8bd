"""Settings: SCOREBUS_* environment variables, then flags that were given."""

from __future__ import annotations

from pathlib import Path

import pytest

from scorebus.app import Settings


def test_defaults_live_under_the_state_dir() -> None:
    settings = Settings.from_env({})

    assert settings == Settings()
    assert settings.broker == "sqlite:///.scorebus/bus.db"
    assert settings.store == "sqlite:///.scorebus/scores.db"
    assert settings.registry == Path(".scorebus/models")
    assert settings.trust_models is False


def test_from_env_reads_the_scorebus_variables() -> None:
    settings = Settings.from_env(
        {
            "SCOREBUS_BROKER": "memory://env",
            "SCOREBUS_STORE": "sqlite:///env/scores.db",
            "SCOREBUS_REGISTRY": "env/models",
            "SCOREBUS_TRUST_MODELS": "true",
            "BROKER": "memory://not-ours",
        }
    )

    assert settings.broker == "memory://env"
    assert settings.store == "sqlite:///env/scores.db"
    assert settings.registry == Path("env/models")
    assert settings.trust_models is True


def test_empty_variables_fall_back_to_the_defaults() -> None:
    settings = Settings.from_env(
        {"SCOREBUS_BROKER": "", "SCOREBUS_STORE": "", "SCOREBUS_TRUST_MODELS": "no"}
    )

    assert (settings.broker, settings.store) == (Settings().broker, Settings().store)
    assert settings.trust_models is False


def test_from_env_defaults_to_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCOREBUS_BROKER", "memory://from-process")
    monkeypatch.delenv("SCOREBUS_STORE", raising=False)

    settings = Settings.from_env()

    assert settings.broker == "memory://from-process"
    assert settings.store == Settings().store


def test_override_applies_only_the_flags_that_were_given() -> None:
    base = Settings.from_env(
        {"SCOREBUS_BROKER": "memory://env", "SCOREBUS_STORE": "sqlite:///s.db"}
    )

    flagged = base.override(broker=None, store="sqlite:///flag.db", trust_models=None)

    assert flagged.broker == "memory://env"
    assert flagged.store == "sqlite:///flag.db"
    assert flagged.trust_models is False
    assert base.store == "sqlite:///s.db"
    assert base.override() == base
