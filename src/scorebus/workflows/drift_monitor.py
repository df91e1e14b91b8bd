"""``DriftMonitor``: a sliding window of recent rows compared with a training reference.

It needs no bus: a notebook, ``scorebus drift`` and
:func:`~scorebus.workflows.drift.drift_job` all use it. The figures are those
of :mod:`~scorebus.workflows.drift_stats`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
import numpy as np

from ..errors import ConfigError
from .drift_stats import as_matrix, bin_shares, ks_test, psi


def check_settings(*, window: int | None, psi_threshold: float, ks_pvalue: float | None) -> None:
    """Raise ``ConfigError`` naming the setting unless the window and thresholds make sense."""
    if window is not None and not (isinstance(window, int) and window >= 1):
        raise ConfigError(f"drift window={window!r}: use a positive number of rows, or None")
    if not psi_threshold > 0:
        raise ConfigError(f"drift psi_threshold={psi_threshold!r}: use a PSI above 0, e.g. 0.2")
    if ks_pvalue is not None and not 0 <= ks_pvalue < 1:
        raise ConfigError(
            f"drift ks_pvalue={ks_pvalue!r}: use a level in [0, 1), e.g. 0.01, or None for PSI only"
        )


class FeatureDrift(msgspec.Struct, frozen=True):
    """One feature's figures: PSI, KS statistic and its p-value."""

    psi: float
    ks: float
    p_value: float


class DriftReport(msgspec.Struct, frozen=True, kw_only=True):
    """What :meth:`DriftMonitor.check` found over the rows of its window."""

    rows: int
    features: dict[str, FeatureDrift]
    drifted: list[str]

    def to_dict(self) -> dict[str, Any]:
        return msgspec.to_builtins(self)  # type: ignore[no-any-return]


class DriftMonitor:
    """A sliding window of recent rows compared with a training reference.

    A feature has drifted when its PSI reaches ``psi_threshold``, or when its KS
    p-value is below ``ks_pvalue`` divided by the number of features (Bonferroni:
    with F unchanged features, the chance that one of them is flagged by luck in
    one check stays below ``ks_pvalue``). KS on thousands of rows notices even
    small shifts; ``ks_pvalue=None`` leaves the decision to PSI alone (the KS
    figures are still reported).

    Args:
        reference: what :func:`reference_stats` returned.
        features: the features to watch; all of the reference's by default.
        window: the last ``window`` rows are compared; ``None`` keeps every row.
        psi_threshold: PSI at or above which a feature has drifted.
        ks_pvalue: family-wise KS significance level, or ``None``.

    Raises:
        ConfigError: a malformed reference, an unknown feature, or a bad setting.
    """

    def __init__(
        self,
        reference: Mapping[str, Any],
        *,
        features: Sequence[str] | None = None,
        window: int | None = 2000,
        psi_threshold: float = 0.2,
        ks_pvalue: float | None = 0.01,
    ) -> None:
        known = reference.get("features") if isinstance(reference, Mapping) else None
        if not isinstance(known, Mapping) or not known:
            raise ConfigError(
                "drift reference has no 'features': build it with "
                "scorebus.workflows.drift.reference_stats(X, features)"
            )
        self.features = tuple(features) if features is not None else tuple(known)
        unknown = [f for f in self.features if f not in known]
        if unknown or not self.features:
            raise ConfigError(
                f"drift features {unknown or '()'} are not in the reference; it has: {', '.join(known)}"
            )
        check_settings(window=window, psi_threshold=psi_threshold, ks_pvalue=ks_pvalue)
        try:
            self._ref = {
                f: (
                    np.asarray(known[f]["edges"], dtype=np.float64),
                    np.asarray(known[f]["proportions"], dtype=np.float64),
                    np.asarray(known[f]["quantiles"], dtype=np.float64),
                )
                for f in self.features
            }
            self._reference_rows = int(reference["rows"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(
                f"drift reference is malformed ({exc!r}): rebuild it with reference_stats"
            ) from exc
        self.window = window
        self.psi_threshold = psi_threshold
        self.ks_pvalue = ks_pvalue
        self._rows: deque[np.ndarray] = deque(maxlen=window)

    @property
    def rows(self) -> int:
        """Rows in the window now."""
        return len(self._rows)

    def add(self, rows: Any) -> int:
        """Append rows (see :func:`as_matrix` for the shapes accepted); returns how many."""
        matrix = as_matrix(rows, self.features)
        self._rows.extend(matrix)
        return len(matrix)

    def reset(self) -> None:
        """Empty the window."""
        self._rows.clear()

    def check(self) -> DriftReport:
        """Compare the window with the reference.

        A feature with no numeric value in the window is left out of the report.
        """
        if not self._rows:
            return DriftReport(rows=0, features={}, drifted=[])
        matrix = np.vstack(self._rows)
        level = None if self.ks_pvalue is None else self.ks_pvalue / len(self.features)
        figures: dict[str, FeatureDrift] = {}
        drifted: list[str] = []
        for j, name in enumerate(self.features):
            col = matrix[:, j]
            col = col[~np.isnan(col)]
            if not len(col):
                continue
            edges, expected, grid = self._ref[name]
            stat, p_value = ks_test(grid, col, reference_rows=self._reference_rows)
            figure = FeatureDrift(
                psi=psi(expected, bin_shares(col, edges)), ks=stat, p_value=p_value
            )
            figures[name] = figure
            if figure.psi >= self.psi_threshold or (level is not None and p_value < level):
                drifted.append(name)
        return DriftReport(rows=len(matrix), features=figures, drifted=drifted)
