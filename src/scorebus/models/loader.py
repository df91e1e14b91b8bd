"""Pick the model flavour for a file, by its extension or an explicit flavour name."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import ModelLoadError
from .base import Model

#: File extension -> flavour. Pickle-based files are sklearn too, but
#: ``SklearnModel`` refuses them unless the caller passes ``trust=True``.
FLAVOURS_BY_SUFFIX: dict[str, str] = {
    ".skops": "sklearn",
    ".pkl": "sklearn",
    ".pickle": "sklearn",
    ".joblib": "sklearn",
    ".onnx": "onnx",
}
FLAVOURS = ("sklearn", "onnx")


def flavour_of(path: str | os.PathLike[str]) -> str:
    """The flavour that reads ``path``, judged by its extension.

    Args:
        path: A model file.

    Returns:
        ``"sklearn"`` or ``"onnx"``.

    Raises:
        ModelLoadError: The extension is not one scorebus knows.
    """
    suffix = Path(path).suffix.lower()
    try:
        return FLAVOURS_BY_SUFFIX[suffix]
    except KeyError:
        known = ", ".join(sorted(FLAVOURS_BY_SUFFIX))
        raise ModelLoadError(
            f"{path}: cannot tell the model flavour from {suffix!r}; expected one of {known}"
        ) from None


def build_model(
    path: str | os.PathLike[str],
    *,
    name: str,
    version: str,
    trust: bool = False,
    features: tuple[str, ...] | list[str] | None = None,
    flavour: str | None = None,
) -> Model:
    """Construct (without loading) the model object for a file.

    Args:
        path: The model file.
        name: Model name recorded with every result.
        version: Model version recorded with every result.
        trust: Allow loaders that can run code from the file (pickle/joblib).
        features: Input column names, for files that do not carry them.
        flavour: ``"sklearn"`` or ``"onnx"``; default from the extension.

    Returns:
        An unloaded model; call ``load()`` before ``predict()``.

    Raises:
        ModelLoadError: Unknown flavour or extension.
    """
    flavour = flavour or flavour_of(path)
    if flavour == "sklearn":
        from .sklearn import SklearnModel

        return SklearnModel(path, name=name, version=version, trust=trust, features=features)
    if flavour == "onnx":
        from .onnx import OnnxModel

        return OnnxModel(path, name=name, version=version, features=features)
    raise ModelLoadError(f"unknown model flavour {flavour!r}; expected one of {FLAVOURS}")


def load_model(
    path: str | os.PathLike[str],
    *,
    name: str,
    version: str,
    trust: bool = False,
    features: tuple[str, ...] | list[str] | None = None,
    flavour: str | None = None,
) -> Model:
    """Construct and load the model for a file, choosing the flavour by extension.

    Args:
        path: A ``.skops``, ``.onnx``, or (with ``trust``) ``.pkl``/``.joblib`` file.
        name: Model name recorded with every result.
        version: Model version recorded with every result.
        trust: Allow pickle/joblib. Only for files you trust.
        features: Input column names, for files that do not carry them.
        flavour: Override the flavour chosen from the extension.

    Returns:
        A loaded model, ready for ``predict()``.

    Raises:
        ModelLoadError: Unknown extension, missing/corrupt file, or a pickle
            without ``trust=True``.
        ImportError: The flavour's optional dependency is not installed.
    """
    model = build_model(
        path, name=name, version=version, trust=trust, features=features, flavour=flavour
    )
    model.load()
    return model
