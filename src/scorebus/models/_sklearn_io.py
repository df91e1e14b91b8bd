"""Reading scikit-learn model files: skops with an allowlist, pickle/joblib only with trust."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ModelLoadError

#: Non-estimator types inside common fitted sklearn models. skops trusts
#: estimators and numpy arrays by itself; these hold plain data (tree nodes,
#: KD-tree arrays, optimiser state) and run no user code when rebuilt.
SAFE_SKOPS_TYPES: frozenset[str] = frozenset(
    {
        "sklearn.tree._tree.Tree",
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
        "sklearn.neighbors._kd_tree.KDTree",
        "sklearn.neighbors._ball_tree.BallTree",
        "sklearn.metrics._dist_metrics.EuclideanDistance64",
        "sklearn.metrics._dist_metrics.ManhattanDistance64",
        "sklearn.metrics._dist_metrics.MinkowskiDistance64",
        "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
        "sklearn.neural_network._stochastic_optimizers.SGDOptimizer",
        "sklearn.calibration._CalibratedClassifier",
        "sklearn.calibration._SigmoidCalibration",
    }
)

PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib")


def read_estimator(path: Path, *, trust: bool) -> Any:
    """Load an estimator from ``.skops`` (safely) or pickle/joblib (``trust`` only).

    Args:
        path: Model file.
        trust: Allow pickle/joblib and skops types outside ``SAFE_SKOPS_TYPES``.

    Returns:
        The deserialised estimator.

    Raises:
        ModelLoadError: Missing, corrupt, unsupported or untrusted file.
    """
    if not path.is_file():
        raise ModelLoadError(f"model file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix in PICKLE_SUFFIXES and not trust:
        raise ModelLoadError(
            f"refusing to unpickle {path}: loading a pickle/joblib file can run arbitrary "
            "code. Pass trust=True (CLI flag --trust-model) only for files you trust, "
            "or save the model with skops (.skops) or ONNX (.onnx) instead."
        )
    try:
        if suffix in PICKLE_SUFFIXES:
            import joblib

            return joblib.load(path)  # joblib also reads plain pickles
        if suffix == ".skops":
            import skops.io as sio

            untrusted = sio.get_untrusted_types(file=path)
            unknown = sorted(t for t in untrusted if t not in SAFE_SKOPS_TYPES)
            if unknown and not trust:
                raise ModelLoadError(
                    f"{path} needs types that are not trusted by default: "
                    f"{', '.join(unknown)}. Inspect them, then pass trust=True "
                    "(CLI flag --trust-model) only if you trust the file."
                )
            return sio.load(path, trusted=untrusted)
    except ModelLoadError:
        raise
    except Exception as exc:
        raise ModelLoadError(f"cannot load {path}: {type(exc).__name__}: {exc}") from exc
    raise ModelLoadError(
        f"{path}: unsupported file type {suffix!r} for scikit-learn "
        f"(expected .skops or, with trust, {', '.join(PICKLE_SUFFIXES)})"
    )
