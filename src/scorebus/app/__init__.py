"""The app layer: pipeline definitions (scorers, workflow handlers) and their loading."""

from .app import App
from .loader import load_app
from .settings import Settings

__all__ = ["App", "Settings", "load_app"]
