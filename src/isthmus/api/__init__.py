"""The HTTP API (FastAPI) and Prometheus metrics that ``isthmus serve`` runs."""

from isthmus.api.app import create_app

__all__ = ["create_app"]
