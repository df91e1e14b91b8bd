"""Models layer: the Model contract, flavours (scikit-learn, ONNX), the registry, the demo.

Importing this package is cheap: scikit-learn, skops and onnxruntime are
imported when a model is loaded or trained, not before.
"""

from .base import Model, ModelRef, Signature, model_id
from .demo import (
    DEMO_MODEL,
    FEATURES,
    Transaction,
    ensure_demo_model,
    features_of,
    synthetic_features,
    synthetic_transactions,
    train_demo_model,
)
from .loader import build_model, flavour_of, load_model
from .onnx import OnnxModel
from .registry import DEFAULT_ROOT, ModelRegistry, ModelVersion, Registry, open_registry
from .sklearn import SAFE_SKOPS_TYPES, SklearnModel

__all__ = [
    "DEFAULT_ROOT",
    "DEMO_MODEL",
    "FEATURES",
    "SAFE_SKOPS_TYPES",
    "Model",
    "ModelRef",
    "ModelRegistry",
    "ModelVersion",
    "OnnxModel",
    "Registry",
    "Signature",
    "SklearnModel",
    "Transaction",
    "build_model",
    "ensure_demo_model",
    "features_of",
    "flavour_of",
    "load_model",
    "model_id",
    "open_registry",
    "synthetic_features",
    "synthetic_transactions",
    "train_demo_model",
]
