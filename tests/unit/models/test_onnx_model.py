"""OnnxModel: skl2onnx conversions score like the estimator they came from."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from scorebus.errors import ModelLoadError
from scorebus.models import FEATURES, Model, OnnxModel, SklearnModel, load_model

pytest.importorskip("onnxruntime", reason="needs the [onnx] extra")
skl2onnx = pytest.importorskip("skl2onnx", reason="needs skl2onnx (dev extra)")


def _convert(estimator: Any, path: Path, *, zipmap: bool) -> Path:
    onx = skl2onnx.to_onnx(
        estimator,
        np.zeros((1, estimator.n_features_in_), dtype=np.float32),
        options={"zipmap": zipmap},
    )
    path.write_bytes(onx.SerializeToString())
    return path


@pytest.mark.parametrize("zipmap", [False, True])
def test_onnx_matches_sklearn(tmp_path: Path, forest: Any, data: Any, zipmap: bool) -> None:
    path = _convert(forest, tmp_path / "forest.onnx", zipmap=zipmap)
    model = OnnxModel(path, name="fraud", version="2", features=FEATURES)
    model.load()
    assert isinstance(model, Model)
    assert model.signature.inputs == FEATURES and model.signature.outputs == ("score",)
    x = data[0][:300]
    expected = SklearnModel.from_estimator(forest, name="fraud", version="1").predict(x)
    scores = model.predict(x)
    assert scores.shape == (300,) and scores.dtype == np.float32
    np.testing.assert_allclose(scores, expected, atol=1e-4)
    np.testing.assert_array_equal(model.predict(x[::-1]), scores[::-1])
    assert model.predict(x[:0]).shape == (0,)


def test_dispatch_by_extension_and_default_names(tmp_path: Path, forest: Any, data: Any) -> None:
    path = _convert(forest, tmp_path / "forest.onnx", zipmap=False)
    model = load_model(path, name="f", version="1")
    assert isinstance(model, OnnxModel) and model.intra_op_threads == 1
    assert model.signature.inputs == tuple(f"x{i}" for i in range(8))
    with pytest.raises(ValueError, match="8 columns"):
        model.predict(data[0][:3, :4])


def test_multiclass_output_keeps_every_class(tmp_path: Path, data: Any) -> None:
    from sklearn.linear_model import LogisticRegression

    x = data[0]
    clf = LogisticRegression(max_iter=300).fit(x, np.arange(len(x)) % 3)
    model = load_model(_convert(clf, tmp_path / "c.onnx", zipmap=True), name="c", version="1")
    assert model.signature.outputs == ("0", "1", "2")
    np.testing.assert_allclose(model.predict(x[:20]), clf.predict_proba(x[:20]), atol=1e-4)


def test_wrong_features_and_bad_files(tmp_path: Path, forest: Any) -> None:
    path = _convert(forest, tmp_path / "forest.onnx", zipmap=False)
    with pytest.raises(ModelLoadError, match="graph expects 8"):
        OnnxModel(path, name="f", version="1", features=("a", "b")).load()
    with pytest.raises(ModelLoadError, match="no output"):
        OnnxModel(path, name="f", version="1", output="nope").load()
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x00garbage")
    with pytest.raises(ModelLoadError, match="cannot load"):
        OnnxModel(corrupt, name="f", version="1").load()


def test_missing_onnxruntime_names_the_extra(
    tmp_path: Path, forest: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _convert(forest, tmp_path / "forest.onnx", zipmap=False)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes the import fail
    with pytest.raises(ImportError, match=r"pip install 'scorebus\[onnx\]'"):
        OnnxModel(path, name="f", version="1").load()
