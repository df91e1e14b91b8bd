"""Drift figures (PSI, KS) against hand-checked values, the sliding window, the reference."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import msgspec
import numpy as np
import pytest
from scipy.stats import ks_2samp, norm
from sklearn.linear_model import LogisticRegression

from scorebus.errors import ConfigError
from scorebus.models.demo import FEATURES, synthetic_features, synthetic_transactions
from scorebus.models.registry import Registry
from scorebus.workflows.drift import (
    REFERENCE_KEY,
    DriftMonitor,
    psi,
    reference_of,
    reference_stats,
)
from scorebus.workflows.drift_stats import as_matrix, ks_test


def test_psi_matches_the_formula_worked_by_hand() -> None:
    # (0.25 - 0.5) ln(0.25 / 0.5) + (0.75 - 0.5) ln(0.75 / 0.5) = 0.25 ln 2 + 0.25 ln 1.5
    assert psi([0.5, 0.5], [0.25, 0.75]) == pytest.approx(0.25 * math.log(2) + 0.25 * math.log(1.5))
    assert psi([0.5, 0.5], [0.25, 0.75]) == pytest.approx(0.274653, abs=1e-6)
    assert psi([0.1] * 10, [0.1] * 10) == 0.0


def test_an_empty_bin_gives_a_large_finite_psi_through_the_floor() -> None:
    # The empty share is floored at 1e-4: 0.5 ln 2 + (1e-4 - 0.5) ln(1e-4 / 0.5).
    expected = 0.5 * math.log(2) + (1e-4 - 0.5) * math.log(1e-4 / 0.5)

    assert psi([0.5, 0.5], [1.0, 0.0]) == pytest.approx(expected)
    assert 4.0 < expected < 5.0


def test_ks_matches_the_permutation_count_worked_by_hand() -> None:
    # Fully separated samples: D = 1; of the C(8, 4) = 70 ways to split the pooled
    # values into two groups of 4, only the 2 fully separated splits have D = 1.
    stat, p_value = ks_test([1, 2, 3, 4], [5, 6, 7, 8])
    assert stat == 1.0
    assert p_value == pytest.approx(2 / 70)

    pooled = (1, 2, 3, 4, 10, 11, 12, 13)

    def d(a: tuple[int, ...], b: tuple[int, ...]) -> float:
        # The largest gap between the two empirical CDFs, at any pooled value.
        return max(abs(sum(x <= t for x in a) - sum(x <= t for x in b)) / 4 for t in pooled)

    observed = d((1, 2, 10, 11), (3, 4, 12, 13))
    splits = [
        (a, tuple(x for x in pooled if x not in a)) for a in itertools.combinations(pooled, 4)
    ]
    by_hand = sum(d(a, b) >= observed for a, b in splits) / len(splits)
    stat, p_value = ks_test([1, 2, 10, 11], [3, 4, 12, 13])
    assert stat == observed == 0.5
    assert p_value == pytest.approx(by_hand)


def test_identical_samples_have_no_ks_difference() -> None:
    values = np.arange(100.0)
    assert ks_test(values, values) == (0.0, 1.0)
    assert ks_test(values, values, reference_rows=100) == (0.0, 1.0)


def test_ks_against_quantiles_has_the_statistic_of_the_two_samples() -> None:
    rng = np.random.default_rng(9)
    grid, values = np.sort(rng.normal(size=300)), rng.normal(0.3, 1.0, size=500)

    stat, p_value = ks_test(grid, values, reference_rows=300)

    expected = ks_2samp(grid, values, method="asymp")
    assert stat == pytest.approx(expected.statistic)
    assert p_value == pytest.approx(expected.pvalue, rel=0.05)
    # The same gap against a far larger training set is less likely to be chance.
    assert ks_test(grid, values, reference_rows=30_000)[1] < p_value


def test_a_fixed_reference_keeps_the_ks_false_alarm_rate_at_its_level() -> None:
    # Unchanged data, window after window, against one stored reference: the
    # p-values are close to uniform, so about 5 % fall below 0.05 and 1 % below
    # 0.01 (the KS level). The quantiles stand for all 40,000 training rows.
    rng = np.random.default_rng(10)
    ref = reference_stats(rng.normal(size=(40_000, 1)), ["x"])
    monitor = DriftMonitor(ref, window=1000, psi_threshold=10.0)
    p_values, flagged = [], 0
    for _ in range(1000):
        monitor.add(rng.normal(size=(1000, 1)))
        report = monitor.check()
        p_values.append(report.features["x"].p_value)
        flagged += report.drifted == ["x"]

    assert 0.02 <= np.mean(np.array(p_values) < 0.05) <= 0.09
    assert 0.42 <= np.mean(np.array(p_values) < 0.5) <= 0.58
    assert flagged <= 25


def _normal_reference(n: int = 40_000, seed: int = 1) -> dict[str, object]:
    x = np.random.default_rng(seed).normal(0.0, 1.0, size=(n, 1))
    return reference_stats(x, ["x"])


def test_the_same_distribution_shows_no_drift() -> None:
    monitor = DriftMonitor(_normal_reference(), window=5000)
    monitor.add(np.random.default_rng(2).normal(0.0, 1.0, size=(5000, 1)))

    report = monitor.check()

    assert report.rows == 5000
    assert report.features["x"].psi < 0.01
    assert report.features["x"].p_value > 0.01
    assert report.drifted == []


def test_a_shifted_normal_drifts_with_the_psi_of_its_deciles() -> None:
    monitor = DriftMonitor(_normal_reference(), window=5000)
    monitor.add(np.random.default_rng(3).normal(1.0, 1.0, size=(5000, 1)))

    report = monitor.check()

    # Expected PSI of N(1, 1) against N(0, 1) over the deciles of N(0, 1).
    edges = norm.ppf(np.linspace(0, 1, 11))
    actual = np.diff(norm.cdf(edges - 1.0))
    expected = float(np.sum((actual - 0.1) * np.log(actual / 0.1)))
    figure = report.features["x"]
    assert expected > 0.2
    assert figure.psi == pytest.approx(expected, rel=0.1)
    assert figure.ks == pytest.approx(norm.cdf(0.5) - norm.cdf(-0.5), abs=0.03)
    assert figure.p_value < 0.01
    assert report.drifted == ["x"]


def test_the_window_keeps_only_the_last_rows() -> None:
    monitor = DriftMonitor(_normal_reference(), window=1000)
    monitor.add(np.full((1000, 1), 5.0))
    assert monitor.check().drifted == ["x"]

    monitor.add(np.random.default_rng(4).normal(0.0, 1.0, size=(1000, 1)))

    report = monitor.check()
    assert monitor.rows == report.rows == 1000
    assert report.features["x"].psi < 0.02
    assert report.drifted == []
    monitor.reset()
    assert monitor.check().rows == 0


def test_a_psi_threshold_alone_or_a_ks_level_alone_can_flag_a_feature() -> None:
    ref = _normal_reference()
    rows = np.random.default_rng(5).normal(0.15, 1.0, size=(20_000, 1))
    ks_only = DriftMonitor(ref, window=None)
    ks_only.add(rows)
    psi_only = DriftMonitor(ref, window=None, ks_pvalue=None, psi_threshold=0.001)
    psi_only.add(rows)
    neither = DriftMonitor(ref, window=None, ks_pvalue=None)
    neither.add(rows)

    small_shift = ks_only.check()

    assert small_shift.features["x"].psi < 0.2
    assert small_shift.features["x"].p_value < 0.01
    assert small_shift.drifted == ["x"]
    assert psi_only.check().drifted == ["x"]
    assert neither.check().drifted == []


def test_the_demo_data_drifts_where_the_generator_shifts_it() -> None:
    x, _ = synthetic_features(20_000, seed=7)
    monitor = DriftMonitor(reference_stats(x, FEATURES))
    monitor.add(synthetic_transactions(2000, seed=11))
    assert monitor.check().drifted == []

    monitor.add(synthetic_transactions(2000, seed=12, shift=1.0))

    drifted = monitor.check().drifted
    assert {"amount", "distance_from_home_km", "velocity_1h"} <= set(drifted)
    assert not {"hour", "merchant_category", "card_age_days"} & set(drifted)


def test_reference_stats_bins_by_quantile_and_flags_by_value() -> None:
    rng = np.random.default_rng(6)
    x = np.column_stack([rng.uniform(0, 100, 10_000), rng.random(10_000) < 0.04])

    ref = reference_stats(x, ["amount", "foreign"], quantiles=500)

    amount, foreign = ref["features"]["amount"], ref["features"]["foreign"]
    assert ref["rows"] == 10_000 and ref["bins"] == 10
    assert len(amount["edges"]) == 9 and amount["edges"] == sorted(amount["edges"])
    assert amount["proportions"] == pytest.approx([0.1] * 10, abs=1e-3)
    assert len(amount["quantiles"]) == 500
    assert amount["quantiles"] == sorted(amount["quantiles"])
    assert amount["quantiles"][0] < 1 and amount["quantiles"][-1] > 99
    assert foreign["edges"] == [1.0]
    assert foreign["proportions"] == pytest.approx([0.96, 0.04], abs=0.01)
    assert len(json.dumps(ref)) < 20_000


def test_the_reference_round_trips_through_the_registry(tmp_path: Path) -> None:
    x, y = synthetic_features(2000, seed=7)
    registry = Registry(tmp_path / "models")
    mv = registry.register(
        "fraud",
        LogisticRegression(max_iter=300).fit(x, y),
        features=FEATURES,
        training_data={"rows": 2000, REFERENCE_KEY: reference_stats(x, FEATURES)},
    )

    stored = reference_of(registry.get("fraud", mv.version))

    assert stored == reference_stats(x, FEATURES)
    assert (Path(mv.path) / "meta.json").stat().st_size < 150_000
    plain = msgspec.structs.replace(mv, training_data={"rows": 2000})
    with pytest.raises(ConfigError, match="fraud@1 has no drift reference"):
        reference_of(plain)


def test_rows_may_be_dicts_objects_csv_strings_or_arrays() -> None:
    class Row:
        a, b = 1.0, True

    matrix = as_matrix(
        [{"a": "2.5", "b": "true"}, Row(), {"a": None}, {"a": "x", "b": 0}], ["a", "b"]
    )

    assert matrix[0].tolist() == [2.5, 1.0]
    assert matrix[1].tolist() == [1.0, 1.0]
    assert np.isnan(matrix[2]).all()
    assert np.isnan(matrix[3, 0]) and matrix[3, 1] == 0.0
    assert as_matrix([[1, 2], (3, 4)], ["a", "b"]).tolist() == [[1.0, 2.0], [3.0, 4.0]]
    with pytest.raises(ConfigError, match="2 columns"):
        as_matrix(np.zeros((3, 3)), ["a", "b"])


def test_missing_values_are_left_out_of_the_figures() -> None:
    monitor = DriftMonitor(_normal_reference(), window=None)
    monitor.add([{"x": v} for v in np.random.default_rng(8).normal(size=500)] + [{}] * 500)

    report = monitor.check()

    assert report.rows == 1000
    assert report.drifted == []
    monitor.reset()
    monitor.add([{"y": 1.0}])
    assert monitor.check().features == {}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"features": ["nope"]}, "'nope'.*it has: x"),
        ({"window": 0}, "window=0"),
        ({"psi_threshold": 0}, "psi_threshold=0"),
        ({"ks_pvalue": 1.5}, "ks_pvalue=1.5"),
    ],
)
def test_bad_monitor_settings_name_the_setting(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        DriftMonitor(_normal_reference(n=100), **kwargs)  # type: ignore[arg-type]


def test_a_reference_without_features_is_refused() -> None:
    with pytest.raises(ConfigError, match="reference_stats"):
        DriftMonitor({"rows": 10})
    with pytest.raises(ConfigError, match="no numeric values"):
        reference_stats([{"x": "n/a"}], ["x"])
