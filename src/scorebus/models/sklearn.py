"""scikit-learn models: ``.skops`` loads safely, pickle/joblib only with ``trust=True``.

A pickle can run arbitrary code when it is loaded, so ``.pkl`` and ``.joblib``
files are refused unless the caller says the file is trusted. A ``.skops``
file is loaded with skops, which builds only types it is told to trust; the
few non-estimator sklearn types that common models need (tree structures,
neighbour indices, optimiser state) are trusted here, anything else must be
trusted explicitly.

Example::

    model = SklearnModel("fraud.skops", name="fraud", version="3")
    model.load()
    scores = model.predict(batch)  # float32, shape (len(batch),)
"""

from __future__ import annotations

import copy
import functools
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelLoadError
from ._sklearn_io import PICKLE_SUFFIXES, SAFE_SKOPS_TYPES, read_estimator
from .base import Signature, check_batch, empty_prediction

__all__ = ["PICKLE_SUFFIXES", "SAFE_SKOPS_TYPES", "SklearnModel", "read_estimator"]

METHODS = ("predict", "predict_proba", "decision_function")


class SklearnModel:
    """A fitted scikit-learn estimator behind the ``Model`` protocol.

    ``signature`` is complete after ``load()``: inputs come from the estimator's
    ``feature_names_in_`` when it was fitted on a data frame, else from
    ``features``, else ``x0..xN``.

    Args:
        path: A ``.skops``, ``.pkl``, ``.pickle`` or ``.joblib`` file.
        name: Model name recorded with every result.
        version: Model version recorded with every result.
        trust: Allow pickle/joblib and skops types outside ``SAFE_SKOPS_TYPES``.
            Only for files you produced or otherwise trust.
        method: ``"predict"``, ``"predict_proba"`` or ``"decision_function"``.
            Default: positive-class probability for a binary classifier with
            ``predict_proba``, else ``predict``.
        features: Feature column names, used when the estimator has none.
        threads: OpenMP threads per ``predict`` call (HistGradientBoosting and
            other OpenMP estimators). 1 by default: the runtime already runs
            predicts in parallel, and OpenMP teams spin-wait so badly on a busy
            CPU that batch scoring fell from ~250k to under 1k rows/s in our
            measurements. ``None`` keeps the library default.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None,
        *,
        name: str,
        version: str,
        trust: bool = False,
        method: str | None = None,
        features: tuple[str, ...] | list[str] | None = None,
        threads: int | None = 1,
    ) -> None:
        if method is not None and method not in METHODS:
            raise ModelLoadError(f"method {method!r}: expected one of {', '.join(METHODS)}")
        self.path = Path(path) if path is not None else None
        self.name = name
        self.version = str(version)
        self.trust = trust
        self.method = method
        self.threads = threads
        self._features = tuple(features) if features else None
        self.signature = Signature(inputs=self._features or ())
        self._estimator: Any = None
        self._call: Any = None
        self._positive_column = False

    @classmethod
    def from_estimator(
        cls,
        estimator: Any,
        *,
        name: str,
        version: str,
        method: str | None = None,
        features: tuple[str, ...] | list[str] | None = None,
        threads: int | None = 1,
    ) -> SklearnModel:
        """Wrap an in-memory fitted estimator (a deep copy, so the caller's stays untouched).

        Args:
            estimator: A fitted scikit-learn estimator or pipeline.
            name: Model name.
            version: Model version.
            method: As for the constructor.
            features: As for the constructor.
            threads: As for the constructor.

        Returns:
            A loaded model.

        Raises:
            ModelLoadError: The estimator cannot be scored as configured.
        """
        model = cls(
            None, name=name, version=version, method=method, features=features, threads=threads
        )
        model._bind(copy.deepcopy(estimator))
        return model

    @property
    def estimator(self) -> Any:
        """The loaded estimator (``None`` before ``load()``)."""
        return self._estimator

    def load(self) -> None:
        """Read the file and prepare ``predict``; a second call does nothing.

        Raises:
            ModelLoadError: Missing, corrupt or unsupported file, an untrusted
                pickle or skops type without ``trust=True``, or features that
                do not match the estimator.
        """
        if self._estimator is not None:
            return
        if self.path is None:
            raise ModelLoadError(f"{self.name}@{self.version}: no model file to load")
        self._bind(read_estimator(self.path, trust=self.trust))

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Score a batch, one prediction per row in the same order.

        Args:
            batch: 2-D array whose columns are ``signature.inputs``.

        Returns:
            float32 ``(n,)`` positive-class probabilities for a binary
            classifier, else the estimator's output for the chosen method.

        Raises:
            RuntimeError: Called before ``load()``.
            ValueError: ``batch`` is not 2-D with one column per input.
        """
        if self._call is None:
            raise RuntimeError(f"{self.name}@{self.version}: call load() before predict()")
        x = check_batch(batch, self.signature, f"{self.name}@{self.version}")
        if x.shape[0] == 0:
            return empty_prediction(self.signature)
        if self.threads is None:
            out = np.asarray(self._call(x))
        else:
            with _threadpools().limit(limits=self.threads, user_api="openmp"):
                out = np.asarray(self._call(x))
        if self._positive_column:
            return np.ascontiguousarray(out[:, 1], dtype=np.float32)
        return out

    def _bind(self, estimator: Any) -> None:
        if not hasattr(estimator, "predict"):
            raise ModelLoadError(
                f"{self.name}@{self.version}: {type(estimator).__name__} has no predict()"
            )
        inputs = _inputs_of(estimator, self._features, f"{self.name}@{self.version}")
        method = self.method or ("predict_proba" if _is_binary_proba(estimator) else "predict")
        if not hasattr(estimator, method):
            raise ModelLoadError(
                f"{self.name}@{self.version}: {type(estimator).__name__} has no {method}()"
            )
        classes = getattr(estimator, "classes_", None)
        self._positive_column = method == "predict_proba" and _is_binary_proba(estimator)
        if self._positive_column or method == "decision_function":
            outputs: tuple[str, ...] = ("score",)
        elif method == "predict_proba" and classes is not None:
            outputs = tuple(str(c) for c in classes)
        else:
            outputs = ("prediction",)
        # sklearn warns on every call when an estimator fitted on a data frame is
        # given a numpy array; the column order is fixed by ``inputs`` instead.
        _strip_feature_names(estimator, set())
        self.signature = Signature(inputs=inputs, outputs=outputs)
        self._estimator = estimator
        self._call = getattr(estimator, method)
        _threadpools()  # inspect the loaded native libraries now, not on the first event


@functools.cache
def _threadpools() -> Any:
    # Built once: it scans the process's native libraries (milliseconds), after
    # which each per-call limit costs ~20 us. An OpenMP limit is per calling
    # thread, so concurrent predicts in the runtime's executor do not interfere.
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def _is_binary_proba(estimator: Any) -> bool:
    classes = getattr(estimator, "classes_", None)
    return hasattr(estimator, "predict_proba") and classes is not None and len(classes) == 2


def _inputs_of(estimator: Any, features: tuple[str, ...] | None, label: str) -> tuple[str, ...]:
    names = getattr(estimator, "feature_names_in_", None)
    count = getattr(estimator, "n_features_in_", None)
    if names is not None:
        inputs = tuple(str(n) for n in names)
        if features is not None and features != inputs:
            raise ModelLoadError(
                f"{label}: features {list(features)} differ from the columns the "
                f"estimator was fitted on {list(inputs)}"
            )
        return inputs
    if features is not None:
        if count is not None and count != len(features):
            raise ModelLoadError(
                f"{label}: {len(features)} feature names given, estimator expects {count}"
            )
        return features
    if count is None:
        raise ModelLoadError(f"{label}: cannot tell the input columns; pass features=[...]")
    return tuple(f"x{i}" for i in range(int(count)))


def _strip_feature_names(obj: Any, seen: set[int]) -> None:
    from sklearn.base import BaseEstimator
    from sklearn.compose import ColumnTransformer

    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, list | tuple):
        for item in obj:
            _strip_feature_names(item, seen)
    elif isinstance(obj, dict):
        for item in obj.values():
            _strip_feature_names(item, seen)
    elif isinstance(obj, BaseEstimator):
        if isinstance(obj, ColumnTransformer) and _selects_by_name(obj):
            raise ModelLoadError(
                "a ColumnTransformer selects columns by name, which needs a data frame; "
                "scorebus passes numpy arrays in signature order: select columns by index"
            )
        obj.__dict__.pop("feature_names_in_", None)
        for item in vars(obj).values():
            _strip_feature_names(item, seen)


def _selects_by_name(transformer: Any) -> bool:
    for _, _, columns in getattr(transformer, "transformers_", ()):
        items = [columns] if isinstance(columns, str) else columns
        if callable(items) or any(isinstance(c, str) for c in np.ravel(items)):
            return True
    return False
