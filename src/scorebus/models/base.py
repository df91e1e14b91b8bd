"""The model contract: load once, predict on a batch keeping order and length.

A ``Model`` takes a 2-D float array whose columns are ``signature.inputs`` (in
that order) and returns one prediction per row: shape ``(n,)`` for a single
output (``signature.outputs == ("score",)`` for a binary classifier's positive
class probability) or ``(n, len(signature.outputs))``. ``predict`` is
synchronous and CPU-bound; the runtime calls it in a bounded executor.

Example, a model of your own::

    class Doubler:
        name, version = "doubler", "1"
        signature = Signature(inputs=("x",), outputs=("y",))
        def load(self) -> None: ...
        def predict(self, batch: np.ndarray) -> np.ndarray:
            return batch[:, 0] * 2
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import msgspec
import numpy as np


class Signature(msgspec.Struct, frozen=True, kw_only=True):
    """Named inputs (feature columns, in order) and outputs of a model."""

    inputs: tuple[str, ...]
    outputs: tuple[str, ...] = ("score",)
    dtype: str = "float32"


@runtime_checkable
class Model(Protocol):
    name: str
    version: str
    signature: Signature

    def load(self) -> None:
        """Load weights; called once before the first ``predict``."""
        ...

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """One prediction per row of ``batch``, in the same order."""
        ...


def model_id(model: Model) -> str:
    """``name@version``: what every result records."""
    return f"{model.name}@{model.version}"


def check_batch(batch: np.ndarray, signature: Signature, label: str) -> np.ndarray:
    """``batch`` as a C-contiguous float32 array with one column per input.

    Args:
        batch: What the runtime passed to ``predict``.
        signature: The model's signature.
        label: ``name@version``, for the message.

    Returns:
        The batch, converted only if it was not float32 and contiguous already.

    Raises:
        ValueError: The batch is not 2-D with ``len(signature.inputs)`` columns.
    """
    x = np.ascontiguousarray(batch, dtype=np.float32)
    if x.ndim != 2 or x.shape[1] != len(signature.inputs):
        raise ValueError(
            f"{label}: expected a 2-D batch with {len(signature.inputs)} columns, "
            f"got shape {x.shape}"
        )
    return x


def empty_prediction(signature: Signature) -> np.ndarray:
    """The result for a batch of zero rows (libraries tend to reject empty input)."""
    width = len(signature.outputs)
    return np.empty((0,) if width == 1 else (0, width), dtype=np.float32)


class ModelRef(msgspec.Struct, frozen=True):
    """A parsed ``NAME[@VERSION_OR_ALIAS]``; no selector means the default alias."""

    name: str
    selector: str | None = None

    @classmethod
    def parse(cls, text: str) -> ModelRef:
        name, _, selector = text.partition("@")
        if not name:
            from ..errors import ConfigError

            raise ConfigError(
                f"model reference {text!r}: expected NAME or NAME@VERSION or NAME@ALIAS"
            )
        return cls(name, selector or None)

    def __str__(self) -> str:
        return self.name if self.selector is None else f"{self.name}@{self.selector}"
