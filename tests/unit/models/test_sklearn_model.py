"""SklearnModel: order and length, safe skops loading, pickle only with trust."""

from __future__ import annotations

import copy
import pickle
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
import skops.io as sio

from scorebus.errors import ModelLoadError
from scorebus.models import FEATURES, Model, SklearnModel, load_model


def test_predict_keeps_order_and_length(hgb: Any, data: tuple[np.ndarray, np.ndarray]) -> None:
    x = data[0][:257]
    model = SklearnModel.from_estimator(hgb, name="m", version="1", features=FEATURES)
    scores = model.predict(x)
    assert isinstance(model, Model)
    assert scores.shape == (257,) and scores.dtype == np.float32
    np.testing.assert_allclose(scores, hgb.predict_proba(x)[:, 1], rtol=1e-6)
    np.testing.assert_array_equal(model.predict(x[::-1]), scores[::-1])
    assert model.signature.inputs == FEATURES and model.signature.outputs == ("score",)


def test_empty_and_malformed_batches(hgb: Any) -> None:
    model = SklearnModel.from_estimator(hgb, name="m", version="1")
    assert model.predict(np.empty((0, 8), dtype=np.float32)).shape == (0,)
    with pytest.raises(ValueError, match="8 columns"):
        model.predict(np.zeros((3, 5), dtype=np.float32))


def test_predict_before_load_is_an_error(tmp_path: Path, hgb: Any) -> None:
    sio.dump(hgb, tmp_path / "m.skops")
    model = SklearnModel(tmp_path / "m.skops", name="m", version="1")
    with pytest.raises(RuntimeError, match="load"):
        model.predict(np.zeros((1, 8), dtype=np.float32))


def test_skops_loads_without_trust(tmp_path: Path, hgb: Any, data: Any) -> None:
    path = tmp_path / "m.skops"
    sio.dump(hgb, path)
    model = load_model(path, name="m", version="3")
    assert (model.name, model.version) == ("m", "3")
    assert model.signature.inputs == tuple(f"x{i}" for i in range(8))
    np.testing.assert_array_equal(
        model.predict(data[0][:50]), hgb.predict_proba(data[0][:50])[:, 1].astype(np.float32)
    )


def test_skops_with_unlisted_types_needs_trust(tmp_path: Path, data: Any) -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier

    x, y = data
    x = np.c_[np.floor(x[:, 2]), x[:, :2]]  # categorical column stores functools.partial
    estimator = HistGradientBoostingClassifier(max_iter=5, categorical_features=[0]).fit(x, y)
    path = tmp_path / "cat.skops"
    sio.dump(estimator, path)
    with pytest.raises(ModelLoadError, match=r"functools\.partial.*trust=True"):
        load_model(path, name="cat", version="1")
    model = load_model(path, name="cat", version="1", trust=True)
    assert model.predict(x[:10]).shape == (10,)


@pytest.mark.parametrize("suffix", [".pkl", ".joblib"])
def test_pickle_refused_without_trust(tmp_path: Path, hgb: Any, data: Any, suffix: str) -> None:
    path = tmp_path / f"m{suffix}"
    if suffix == ".pkl":
        path.write_bytes(pickle.dumps(hgb))
    else:
        joblib.dump(hgb, path)
    with pytest.raises(ModelLoadError) as info:
        load_model(path, name="m", version="1")
    message = str(info.value)
    assert "arbitrary code" in message
    assert "trust=True" in message and "--trust-model" in message
    model = load_model(path, name="m", version="1", trust=True)
    np.testing.assert_array_equal(
        model.predict(data[0][:20]), hgb.predict_proba(data[0][:20])[:, 1].astype(np.float32)
    )


def test_feature_names_from_estimator_and_no_warning(hgb: Any, data: Any) -> None:
    fitted_on_frame = copy.deepcopy(hgb)
    # What fitting on a data frame leaves behind (pandas is not installed here).
    fitted_on_frame.feature_names_in_ = np.array(FEATURES, dtype=object)
    with pytest.warns(UserWarning, match="feature names"):
        fitted_on_frame.predict_proba(data[0][:2])
    model = SklearnModel.from_estimator(fitted_on_frame, name="m", version="1")
    assert model.signature.inputs == FEATURES
    assert model.predict(data[0][:5]).shape == (5,)  # filterwarnings=error: no warning
    assert hasattr(fitted_on_frame, "feature_names_in_")  # the caller's object is untouched
    with pytest.raises(ModelLoadError, match="differ"):
        SklearnModel.from_estimator(fitted_on_frame, name="m", version="1", features=FEATURES[::-1])


def test_pipeline_fitted_with_names_does_not_warn(data: Any) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = data
    pipeline = make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y)
    pipeline[0].feature_names_in_ = np.array(FEATURES, dtype=object)
    pipeline[1].feature_names_in_ = np.array(FEATURES, dtype=object)
    model = SklearnModel.from_estimator(pipeline, name="p", version="1")
    assert model.signature.inputs == FEATURES
    assert model.predict(x[:4]).shape == (4,)


def test_multiclass_and_regressor_outputs(data: Any) -> None:
    from sklearn.linear_model import LinearRegression, LogisticRegression

    x, _ = data
    labels = np.arange(len(x)) % 3
    clf = LogisticRegression(max_iter=200).fit(x, labels)
    default = SklearnModel.from_estimator(clf, name="c", version="1")
    assert default.signature.outputs == ("prediction",)
    assert default.predict(x[:6]).shape == (6,)
    proba = SklearnModel.from_estimator(clf, name="c", version="1", method="predict_proba")
    assert proba.signature.outputs == ("0", "1", "2")
    assert proba.predict(x[:6]).shape == (6, 3)
    reg = SklearnModel.from_estimator(LinearRegression().fit(x, labels), name="r", version="1")
    assert reg.predict(x[:6]).shape == (6,)


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model(tmp_path / "missing.skops", name="m", version="1")
    corrupt = tmp_path / "corrupt.skops"
    corrupt.write_bytes(b"not a zip file")
    with pytest.raises(ModelLoadError, match="cannot load"):
        load_model(corrupt, name="m", version="1")
    with pytest.raises(ModelLoadError, match="flavour"):
        load_model(tmp_path / "m.h5", name="m", version="1")
    with pytest.raises(ModelLoadError, match="method"):
        SklearnModel(corrupt, name="m", version="1", method="transform")


def test_column_transformer_by_index_and_thread_settings(data: Any) -> None:
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = data
    columns = ColumnTransformer([("scale", StandardScaler(), [0, 3])], remainder="passthrough")
    pipeline = make_pipeline(columns, LogisticRegression(max_iter=500)).fit(x, y)
    limited = SklearnModel.from_estimator(pipeline, name="p", version="1")
    default = SklearnModel.from_estimator(pipeline, name="p", version="1", threads=None)
    np.testing.assert_array_equal(limited.predict(x[:32]), default.predict(x[:32]))
    assert limited.predict(x[:32]).shape == (32,)
