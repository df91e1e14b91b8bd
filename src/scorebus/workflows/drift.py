"""Drift detection as a workflow step: recent inputs against the training reference.

    app.on("transactions", topic="transactions")(
        drift_job("fraud@champion", registry=".scorebus/models", window=2000, every=500)
    )

Registered on the scorer's input topic and type, the job has its own
subscription and so sees the same traffic as the scorer (fan-out) without
slowing it. It keeps the features of the last ``window`` events and, every
``every`` events, compares them with the reference stored with the version the
alias points at (:func:`reference_stats`, under ``training_data["reference"]``).
When a feature drifts it publishes ``drift.detected`` on ``topic``::

    {"model": "fraud", "version": "3", "window": 2000,
     "features": {"amount": {"psi": 0.41, "ks": 0.19, "p_value": 1e-31}, ...},
     "drifted": ["amount", "distance_from_home_km"]}

Cooldown: at most one ``drift.detected`` per model version and process. The
alias is re-read before each check; when it has moved (a re-trained version was
promoted) the window is emptied and the new version's reference is used.

State lives in the worker process: with several workers each one watches its
share of the traffic and may report the same version once; a restarted worker
starts with an empty window. Downstream steps (``retrain_job``) should treat
the pair (model, version) as the key of the alert.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..errors import ConfigError
from ..events import Event
from ..models.base import ModelRef
from ..models.registry import open_registry
from ..models.version import ModelVersion
from ..runtime.spec import HandlerContext
from .base import DRIFT_DETECTED, RegistryLike, RegistrySource, handler_name
from .drift_monitor import DriftMonitor, DriftReport, FeatureDrift, check_settings
from .drift_stats import REFERENCE_KEY, psi, reference_stats

__all__ = [
    "REFERENCE_KEY",
    "DriftJob",
    "DriftMonitor",
    "DriftReport",
    "FeatureDrift",
    "drift_job",
    "psi",
    "reference_of",
    "reference_stats",
]

log = logging.getLogger(__name__)


def reference_of(mv: ModelVersion) -> Mapping[str, Any]:
    """The drift reference stored with a version.

    Raises:
        ConfigError: the version was registered without one.
    """
    data = mv.training_data
    reference = data.get(REFERENCE_KEY) if isinstance(data, Mapping) else None
    if not isinstance(reference, Mapping):
        raise ConfigError(
            f"model {mv.ref} has no drift reference: register it with "
            f"training_data={{'{REFERENCE_KEY}': reference_stats(X, features)}}"
        )
    return reference


class DriftJob:
    """The handler :func:`drift_job` returns; its state is visible for tests and status.

    Attributes:
        version: the version whose reference is in use (``None`` before the first event).
        monitor: the window and reference (``None`` while the version has no reference).
        last_report: the latest check's figures.
        alerted: ``drift.detected`` was published for ``version`` (the cooldown).
    """

    __name__: str

    def __init__(
        self,
        model: str,
        *,
        registry: RegistrySource | None,
        features: Sequence[str] | None,
        window: int,
        every: int,
        psi_threshold: float,
        ks_pvalue: float | None,
        emits: str,
        topic: str,
    ) -> None:
        self.ref = ModelRef.parse(model)
        check_settings(window=window, psi_threshold=psi_threshold, ks_pvalue=ks_pvalue)
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ConfigError(f"drift_job(every={every!r}): check every N >= 1 events")
        self.model = model
        self.__name__ = handler_name("drift", model)
        self.emits = (emits,)
        self.topic = topic
        self.features = tuple(features) if features is not None else None
        self.window, self.every = window, every
        self.psi_threshold, self.ks_pvalue = psi_threshold, ks_pvalue
        self.version: str | None = None
        self.monitor: DriftMonitor | None = None
        self.last_report: DriftReport | None = None
        self.alerted = False
        self._registry_source = registry
        self._registry: RegistryLike | None = None
        self._started = False
        self._since_check = 0
        self._warned: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, event: Event, ctx: HandlerContext) -> None:
        with self._lock:
            if not self._started:
                self._started = True
                self._refresh()
            if self.monitor is not None:
                self.monitor.add([event.data])
            self._since_check += 1
            if self._since_check < self.every:
                return
            self._since_check = 0
            if self._refresh() or self.monitor is None or self.alerted:
                return
            report = self.monitor.check()
            self.last_report = report
            if not report.drifted:
                return
            self.alerted = True
            log.warning(
                "handler=%s event=%s model=%s@%s drift in %s",
                self.__name__,
                event.id,
                self.ref.name,
                self.version,
                ", ".join(report.drifted),
            )
            ctx.publish(
                self.emits[0],
                self.payload(report),
                topic=self.topic,
                subject=f"{self.ref.name}@{self.version}",
            )

    def payload(self, report: DriftReport) -> dict[str, Any]:
        """The data of ``drift.detected`` for ``report``."""
        figures = report.to_dict()
        return {
            "model": self.ref.name,
            "version": self.version,
            "window": report.rows,
            "features": figures["features"],
            "drifted": figures["drifted"],
        }

    def _refresh(self) -> bool:
        """Follow the alias; ``True`` when it moved (and the window was emptied)."""
        try:
            mv = self._open().resolve(str(self.ref))
        except (ConfigError, OSError) as exc:
            self._warn(f"handler={self.__name__} cannot resolve {self.model}: {exc}")
            return False
        if mv.version == self.version:
            return False
        self.version, self.alerted, self.last_report = mv.version, False, None
        try:
            self.monitor = DriftMonitor(
                reference_of(mv),
                features=self.features,
                window=self.window,
                psi_threshold=self.psi_threshold,
                ks_pvalue=self.ks_pvalue,
            )
        except ConfigError as exc:
            self.monitor = None
            self._warn(f"handler={self.__name__} does not check drift of {mv.ref}: {exc}")
        else:
            log.info("handler=%s watches drift of %s", self.__name__, mv.ref)
        return True

    def _open(self) -> RegistryLike:
        if self._registry is None:
            source = self._registry_source
            if source is None:
                from ..app.settings import Settings

                source = Settings.from_env().registry
            if isinstance(source, str | os.PathLike):
                # A folder or gs://BUCKET/PREFIX, as the worker's own registry.
                self._registry = open_registry(source)
            else:
                self._registry = source
        return self._registry

    def _warn(self, message: str) -> None:
        if message not in self._warned:
            self._warned.add(message)
            log.warning("%s", message)


def drift_job(
    model: str = "fraud@champion",
    *,
    registry: RegistrySource | None = None,
    features: Iterable[str] | None = None,
    window: int = 2000,
    every: int = 500,
    psi_threshold: float = 0.2,
    ks_pvalue: float | None = 0.01,
    emits: str = DRIFT_DETECTED,
    topic: str = "events",
) -> DriftJob:
    """A handler that watches the inputs of ``model`` and publishes ``drift.detected``.

    Register it for the scorer's input events on the scorer's topic:
    ``app.on(TYPE, topic=INPUT_TOPIC)(drift_job(...))``. A version without a
    reference, or a model the registry does not know, is logged once and its
    events are acked unchecked: monitoring never dead-letters traffic.

    Args:
        model: ``NAME@ALIAS`` (followed as it moves), ``NAME@VERSION`` or ``NAME``.
        registry: a registry, or the root of a local one; by default the process
            settings' (``SCOREBUS_REGISTRY``, else ``.scorebus/models``).
        features: the features to watch; all of the reference's by default.
        window: the last ``window`` events are compared.
        every: compare after each ``every`` events.
        psi_threshold: PSI at or above which a feature has drifted.
        ks_pvalue: family-wise KS level (see :class:`DriftMonitor`); ``None``: PSI only.
        emits: the type published on drift.
        topic: where to publish it: the app's ``events_topic`` (``"events"`` by default).

    Returns:
        ``fn(event, ctx)`` named ``drift_NAME``, with ``emits`` set.

    Raises:
        ConfigError: a malformed reference or a bad window, interval or threshold.
    """
    return DriftJob(
        model,
        registry=registry,
        features=list(features) if features is not None else None,
        window=window,
        every=every,
        psi_threshold=psi_threshold,
        ks_pvalue=ks_pvalue,
        emits=emits,
        topic=topic,
    )
