"""Drift statistics: a training reference per feature, PSI, the two-sample KS test.

The reference is small enough for a model version's metadata: per feature, the
interior edges of quantile bins (10 by default), the training share of each
bin, and 2,000 evenly spaced quantiles of the training values, which stand for
the whole training set in the KS test. It is stored under
``training_data["reference"]`` (:data:`REFERENCE_KEY`)::

    registry.register(
        "fraud", estimator, features=FEATURES,
        training_data={"rows": len(X), REFERENCE_KEY: reference_stats(X, FEATURES)},
    )

:class:`~scorebus.workflows.drift_monitor.DriftMonitor` keeps a sliding
window of recent rows and compares it with the reference.

PSI (population stability index) is ``sum((a - e) * ln(a / e))`` over the bins,
with both shares floored at ``eps`` so that an empty bin counts as a large but
finite change: below 0.1 is stable, above 0.2 a shift worth acting on.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import ConfigError

REFERENCE_KEY = "reference"
REFERENCE_FORMAT = 1
DEFAULT_BINS = 10
DEFAULT_QUANTILES = 2000
PSI_EPS = 1e-4
_BOOLEAN = {"true": 1.0, "false": 0.0}
_EXACT_KS = 10_000
Values = Sequence[float] | np.ndarray


def _short(values: np.ndarray) -> list[float]:
    # Six significant digits: about 10 bytes of JSON a value.
    return [float(f"{v:.6g}") for v in values.tolist()]


def reference_stats(
    X: Any,
    features: Sequence[str],
    *,
    bins: int = DEFAULT_BINS,
    quantiles: int = DEFAULT_QUANTILES,
) -> dict[str, Any]:
    """The training reference of each feature, JSON-ready for a version's metadata.

    Args:
        X: training rows: a 2-D array-like with columns in ``features`` order, or
            an iterable of mappings (or objects) carrying every name in ``features``.
        features: the feature names.
        bins: quantile bins per feature; a feature with at most ``bins`` distinct
            values gets one bin per value.
        quantiles: how many evenly spaced quantiles of each feature are kept for KS
            (at most one per training row).

    Returns:
        ``{"format": 1, "rows": N, "bins": B, "features": {name: {"edges": [...],
        "proportions": [...], "quantiles": [...]}}}``.

    Raises:
        ConfigError: no features, ``bins < 2``, ``quantiles < 1``, or a feature with no values.
    """
    features = tuple(features)
    if not features:
        raise ConfigError("reference_stats(features=()): name at least one feature")
    if bins < 2 or quantiles < 1:
        raise ConfigError(
            f"reference_stats(bins={bins}, quantiles={quantiles}): need bins >= 2, quantiles >= 1"
        )
    matrix = as_matrix(X, features)
    stats: dict[str, Any] = {}
    for j, name in enumerate(features):
        col = matrix[:, j]
        col = col[~np.isnan(col)]
        if not len(col):
            raise ConfigError(f"reference_stats: feature {name!r} has no numeric values")
        distinct = np.unique(col)
        if len(distinct) <= bins:
            # A flag or a small code: one bin per value (quantiles would lump 0 and 1).
            edges = np.unique(_short(distinct[1:]))
        else:
            edges = np.unique(_short(np.quantile(col, np.linspace(0, 1, bins + 1)[1:-1])))
        k = min(quantiles, len(col))
        stats[name] = {
            "edges": edges.tolist(),
            "proportions": _short(bin_shares(col, edges)),
            "quantiles": _short(np.quantile(col, (np.arange(k) + 0.5) / k)),
        }
    return {"format": REFERENCE_FORMAT, "rows": len(matrix), "bins": bins, "features": stats}


def as_matrix(rows: Any, features: Sequence[str]) -> np.ndarray:
    """Rows as a float64 ``(n, len(features))`` matrix; a missing or non-numeric value is NaN.

    Args:
        rows: a 2-D array-like in ``features`` order, or mappings / objects with
            the features as keys / attributes (CSV strings such as ``"12.5"`` are parsed).
        features: the column names.

    Raises:
        ConfigError: an array of the wrong shape, or one that is not numeric.
    """
    if not (isinstance(rows, np.ndarray) or hasattr(rows, "__array__")):
        rows = list(rows)
        if not rows or not isinstance(rows[0], list | tuple):
            table = [[_number(_field(row, name)) for name in features] for row in rows]
            return np.array(table, dtype=np.float64).reshape(-1, len(features))
    try:
        matrix = np.asarray(rows, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"rows are not numeric: {exc}") from exc
    if matrix.ndim != 2 or matrix.shape[1] != len(features):
        raise ConfigError(
            f"expected rows of {len(features)} columns ({', '.join(features)}), "
            f"got an array of shape {matrix.shape}"
        )
    return matrix


def _field(row: Any, name: str) -> Any:
    if isinstance(row, Mapping):
        return row.get(name)
    return getattr(row, name, None)


def _number(value: Any) -> float:
    if isinstance(value, str) and value.lower() in _BOOLEAN:
        return _BOOLEAN[value.lower()]
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def bin_shares(values: np.ndarray, edges: Values) -> np.ndarray:
    """The share of ``values`` in each bin cut at interior ``edges`` (``len(edges) + 1`` bins).

    A value equal to an edge falls in the bin above it.
    """
    index = np.searchsorted(np.asarray(edges, dtype=np.float64), values, side="right")
    counts = np.bincount(index, minlength=len(edges) + 1)
    return counts / max(len(values), 1)


def psi(expected: Values, actual: Values, *, eps: float = PSI_EPS) -> float:
    """Population stability index of two binned distributions (shares, same bins).

    Args:
        expected: the reference share of each bin.
        actual: the recent share of each bin.
        eps: floor of each share, so that an empty bin gives a finite figure.
    """
    e = np.maximum(np.asarray(expected, dtype=np.float64), eps)
    a = np.maximum(np.asarray(actual, dtype=np.float64), eps)
    if e.shape != a.shape:
        raise ValueError(f"psi: {e.shape[0]} reference bins against {a.shape[0]}")
    return float(np.sum((a - e) * np.log(a / e)))


def ks_test(
    reference: Values, values: Values, *, reference_rows: int | None = None
) -> tuple[float, float]:
    """The two-sample Kolmogorov-Smirnov statistic and its two-sided p-value.

    Args:
        reference: a sample, or with ``reference_rows`` evenly spaced quantiles of
            a larger one (what :func:`reference_stats` keeps).
        values: the recent values.
        reference_rows: the size of the sample the quantiles describe. The test is
            then against that whole sample, and a fixed reference does not raise the
            false-alarm rate as a fixed random sample of it would.
    """
    from scipy.stats import ks_2samp, kstwo

    a, b = np.sort(np.asarray(reference, dtype=np.float64)), np.asarray(values, dtype=np.float64)
    if reference_rows is None:
        # The exact distribution is for small samples; on large ones it can fail (and warn).
        method = "exact" if len(a) * len(b) <= _EXACT_KS else "asymp"
        result = ks_2samp(a, b, method=method)
        return float(result.statistic), float(result.pvalue)
    b = np.sort(b)
    points = np.concatenate([a, b])
    gap = np.searchsorted(a, points, side="right") / len(a)
    gap -= np.searchsorted(b, points, side="right") / len(b)
    stat = float(np.max(np.abs(gap)))
    # As scipy's asymptotic two-sample test: the one-sample law at the effective size.
    effective = max(1, round(len(b) * reference_rows / (len(b) + reference_rows)))
    return stat, float(min(1.0, kstwo.sf(stat, effective)))
