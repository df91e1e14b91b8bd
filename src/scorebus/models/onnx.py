"""ONNX Runtime models: safe to load from anywhere (an ONNX graph runs no Python).

The graph must take one float tensor ``[batch, n_features]``, which is what
skl2onnx produces for a numeric estimator. Column names are not part of that
tensor, so they come from registry metadata (``features``).

For a classifier converted by skl2onnx the probabilities output is picked
(``probabilities`` with ``options={"zipmap": False}``, or the ZipMap
``output_probability`` list of dicts otherwise) and, for a binary classifier,
reduced to the positive class column, matching ``SklearnModel``.

Example::

    model = OnnxModel("fraud.onnx", name="fraud", version="4", features=FEATURES)
    model.load()
    scores = model.predict(batch)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelLoadError
from .base import Signature, check_batch, empty_prediction

_PROBA_NAMES = ("probabilities", "output_probability")


def _onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise ImportError("ONNX models need onnxruntime: pip install 'scorebus[onnx]'") from exc
    return onnxruntime


class OnnxModel:
    """An ONNX graph run by ONNX Runtime on the CPU.

    Args:
        path: The ``.onnx`` file.
        name: Model name recorded with every result.
        version: Model version recorded with every result.
        features: Column names of the input tensor; default ``x0..xN``.
        output: Name of the graph output to return; default the probabilities
            output of a classifier, else the first output.
        intra_op_threads: Threads inside one operator. 1 by default because the
            runtime already runs several predicts in parallel in its executor.
        inter_op_threads: Threads across independent operators.
        providers: Execution providers; default CPU only.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        name: str,
        version: str,
        features: tuple[str, ...] | list[str] | None = None,
        output: str | None = None,
        intra_op_threads: int = 1,
        inter_op_threads: int = 1,
        providers: tuple[str, ...] = ("CPUExecutionProvider",),
    ) -> None:
        self.path = Path(path)
        self.name = name
        self.version = str(version)
        self._features = tuple(features) if features else None
        self._output = output
        self.intra_op_threads = intra_op_threads
        self.inter_op_threads = inter_op_threads
        self.providers = providers
        self.signature = Signature(inputs=self._features or ())
        self._session: Any = None
        self._input_name = ""
        self._output_index = 0
        self._zipmap = False
        self._positive_column = False

    def load(self) -> None:
        """Create the inference session; a second call does nothing.

        Raises:
            ImportError: onnxruntime is not installed.
            ModelLoadError: Missing or invalid file, or a graph that does not
                take exactly one float tensor of the expected width.
        """
        if self._session is not None:
            return
        ort = _onnxruntime()
        label = f"{self.name}@{self.version}"
        if not self.path.is_file():
            raise ModelLoadError(f"model file {self.path} does not exist")
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.intra_op_threads
        options.inter_op_num_threads = self.inter_op_threads
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            session = ort.InferenceSession(
                str(self.path), sess_options=options, providers=list(self.providers)
            )
        except Exception as exc:
            raise ModelLoadError(f"cannot load {self.path}: {exc}") from exc
        inputs = session.get_inputs()
        if len(inputs) != 1 or inputs[0].type != "tensor(float)":
            found = [(i.name, i.type) for i in inputs]
            raise ModelLoadError(f"{label}: expected one float tensor input, found {found}")
        width = inputs[0].shape[-1] if inputs[0].shape else None
        self.signature = Signature(inputs=self._input_names(width, label))
        self._bind_output(session, inputs[0].name, label)
        self._input_name = inputs[0].name
        self._session = session

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Score a batch, one prediction per row in the same order.

        Args:
            batch: 2-D array whose columns are ``signature.inputs``.

        Returns:
            float32 ``(n,)`` positive-class probabilities for a binary
            classifier, else the selected output.

        Raises:
            RuntimeError: Called before ``load()``.
            ValueError: ``batch`` is not 2-D with one column per input.
        """
        if self._session is None:
            raise RuntimeError(f"{self.name}@{self.version}: call load() before predict()")
        x = check_batch(batch, self.signature, f"{self.name}@{self.version}")
        if x.shape[0] == 0:
            return empty_prediction(self.signature)
        out = self._session.run(None, {self._input_name: x})[self._output_index]
        if self._zipmap:
            # ZipMap gives one {class: probability} dict per row.
            keys = sorted(out[0])
            out = np.array([[row[k] for k in keys] for row in out], dtype=np.float32)
        out = np.asarray(out)
        if self._positive_column:
            return np.ascontiguousarray(out[:, 1], dtype=np.float32)
        if out.ndim == 2 and out.shape[1] == 1:
            return out[:, 0]
        return out

    def _input_names(self, width: Any, label: str) -> tuple[str, ...]:
        if self._features is not None:
            if isinstance(width, int) and width != len(self._features):
                raise ModelLoadError(
                    f"{label}: {len(self._features)} feature names given, graph expects {width}"
                )
            return self._features
        if not isinstance(width, int):
            raise ModelLoadError(f"{label}: input width is not fixed; pass features=[...]")
        return tuple(f"x{i}" for i in range(width))

    def _bind_output(self, session: Any, input_name: str, label: str) -> None:
        names = [o.name for o in session.get_outputs()]
        if self._output is not None:
            if self._output not in names:
                raise ModelLoadError(f"{label}: no output {self._output!r}; outputs: {names}")
            chosen = self._output
        else:
            chosen = next((n for n in _PROBA_NAMES if n in names), names[0])
        self._output_index = names.index(chosen)
        self._zipmap = session.get_outputs()[self._output_index].type.startswith("seq(map")
        # Output widths are often symbolic (and absent for ZipMap), so one
        # all-zero row tells the real width and class keys before any event does.
        probe = np.zeros((1, len(self.signature.inputs)), dtype=np.float32)
        try:
            out = session.run(None, {input_name: probe})[self._output_index]
        except Exception as exc:
            raise ModelLoadError(f"{label}: graph fails on a probe row: {exc}") from exc
        columns = [str(k) for k in sorted(out[0])] if self._zipmap else None
        width = len(columns) if columns else (np.shape(out)[1] if np.ndim(out) == 2 else 1)
        self._positive_column = chosen in _PROBA_NAMES and width == 2
        if self._positive_column or width == 1:
            outputs: tuple[str, ...] = ("score",) if self._positive_column else (chosen,)
        else:
            outputs = tuple(columns or (f"{chosen}_{i}" for i in range(width)))
        self.signature = Signature(inputs=self.signature.inputs, outputs=outputs)
