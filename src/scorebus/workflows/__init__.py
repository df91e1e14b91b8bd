"""Built-in AI workflow jobs on the event bus: train, evaluate and promote, re-train, batch.

Each job is a plain handler ``fn(event, ctx)`` built by a factory, registered
with ``app.on`` like any other, and it names the event types it publishes in
its ``emits`` attribute::

    app.on("data.arrived")(train_job("fraud", fit, registry=root))
    app.on("model.trained")(promote_job("fraud", metric="auc", margin=0.005, registry=root))
    app.on("drift.detected")(retrain_job("fraud", fit, registry=root, recent_data=last_week))
    app.on("file.landed")(batch_predict_job("fraud@champion", schema=Txn, registry=root))

or ``install(app, "fraud", fit, registry=root)`` for the first three.
``drift_job`` watches a scorer's inputs and publishes ``drift.detected``. The
train and promote steps also run from the command line: ``scorebus jobs``.
"""

from .base import (
    DATA_ARRIVED,
    DRIFT_DETECTED,
    FILE_LANDED,
    MODEL_PROMOTED,
    MODEL_REJECTED,
    MODEL_TRAINED,
    TRAINING_FAILED,
    RegistryLike,
    TrainingFailed,
    UnknownVersionError,
)
from .batch import batch_predict_job
from .drift import DriftMonitor, drift_job
from .install import install
from .promote import Decision, Evaluate, decide, evaluate_and_promote, promote_job
from .retrain import retrain_job
from .train import Fit, Trained, TrainingData, TrainResult, train, train_job

__all__ = [
    "DATA_ARRIVED",
    "DRIFT_DETECTED",
    "FILE_LANDED",
    "MODEL_PROMOTED",
    "MODEL_REJECTED",
    "MODEL_TRAINED",
    "TRAINING_FAILED",
    "Decision",
    "DriftMonitor",
    "Evaluate",
    "Fit",
    "RegistryLike",
    "TrainResult",
    "Trained",
    "TrainingData",
    "TrainingFailed",
    "UnknownVersionError",
    "batch_predict_job",
    "decide",
    "drift_job",
    "evaluate_and_promote",
    "install",
    "promote_job",
    "retrain_job",
    "train",
    "train_job",
]
