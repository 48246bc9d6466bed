"""HTTP layer: the FastAPI app factory, LangServe routes and the app's `/ai/*` contract."""

from context_kit_service.server.app import create_app

__all__ = ["create_app"]
