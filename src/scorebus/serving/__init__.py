"""Serving layer: one model behind the Vertex AI custom-container contract and OIP v2.

Knows only the models layer. Run it with ``serve`` (what ``scorebus
serve-model`` calls), or mount ``create_app(model)`` in any ASGI server::

    from scorebus.serving import serve
    serve("fraud@champion", host="0.0.0.0")   # port from AIP_HTTP_PORT, else 8080

On Vertex AI the container gets its port, routes and model location from
the AIP_* variables (see ``contract``); ``docs/serving.md`` has the details.
"""

from .app import create_app
from .contract import RequestError, ServingSettings, local_artifacts
from .runner import load_served_model, serve

__all__ = [
    "RequestError",
    "ServingSettings",
    "create_app",
    "load_served_model",
    "local_artifacts",
    "serve",
]
