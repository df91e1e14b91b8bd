"""What a training function gets and returns, and what the train job reads and reports.

Apart from :mod:`.train` because these types are the contract a user writes
``fit`` against (``fit(TrainingData) -> Trained``) and the shapes of the job's
events (``data.arrived`` as :class:`TrainRequest`, ``model.trained`` from
:class:`TrainResult`); the re-train job and the CLI use them too, without the
machinery that fits and registers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from ..events import Event


@dataclass(frozen=True, kw_only=True)
class TrainingData:
    """What ``fit`` gets: the dataset reference and the training parameters.

    Attributes:
        model: the model name being trained.
        uri: the dataset, as the event (or ``recent_data``) named it: a path, a URI, a query.
        params: training parameters from the event (``{}`` when none).
        event: the causing event; ``None`` from the CLI.
    """

    model: str
    uri: str
    params: Mapping[str, Any] = field(default_factory=dict)
    event: Event | None = None


@dataclass(frozen=True, kw_only=True)
class Trained:
    """What ``fit`` returns.

    Attributes:
        model: a fitted scikit-learn estimator (saved with skops) or a model file path.
        metrics: evaluation figures, e.g. ``{"auc": 0.93}``; what promotion compares.
        params: training parameters to record; default an estimator's simple params.
        features: input column names, in order; default from the estimator.
        rows: how many rows it was trained on.
        X: the training inputs (or a sample), columns in ``features`` order; when
            given, their drift reference (``reference_stats``) is stored with the
            version under ``training_data["reference"]``.
    """

    model: Any
    metrics: Mapping[str, float] = field(default_factory=dict)
    params: Mapping[str, Any] | None = None
    features: Sequence[str] | None = None
    rows: int | None = None
    X: Any = None


Fit = Callable[[TrainingData], Trained]


class TrainRequest(msgspec.Struct, kw_only=True):
    """``data.arrived`` data: the dataset, optional parameters, optionally which model."""

    dataset: str
    params: dict[str, Any] = {}
    model: str | None = None


class TrainResult(msgspec.Struct, frozen=True, kw_only=True):
    """A registered version (``reused``: registered earlier for the same cause)."""

    model: str
    version: str
    metrics: dict[str, float]
    dataset: str
    reused: bool = False

    def event_data(self) -> dict[str, Any]:
        """What ``model.trained`` carries."""
        return {
            "model": self.model,
            "version": self.version,
            "metrics": self.metrics,
            "dataset": self.dataset,
        }
