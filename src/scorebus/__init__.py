"""scorebus: event-driven machine-learning scoring.

from scorebus import App, Batch

app = App("fraud")

@app.scorer(subscribe="transactions", schema=Transaction, model="fraud@champion",
            batch=Batch(max_size=512, max_wait_ms=5))
def score(events, scores):
    return [{"fraud_probability": float(s)} for s in scores]
"""

from .app import App, Settings, load_app
from .errors import (
    ConfigError,
    PermanentError,
    SchemaError,
    ScorebusError,
    TransientError,
)
from .events import Event
from .runtime.config import Batch, FlowControl, RetryPolicy
from .runtime.spec import Canary, HandlerContext

__version__ = "0.1.0"

__all__ = [
    "App",
    "Batch",
    "Canary",
    "ConfigError",
    "Event",
    "FlowControl",
    "HandlerContext",
    "PermanentError",
    "RetryPolicy",
    "SchemaError",
    "ScorebusError",
    "Settings",
    "TransientError",
    "load_app",
]
