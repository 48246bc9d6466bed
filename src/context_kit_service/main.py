"""The service as the desktop app launches it:

    python -m uvicorn context_kit_service.main:app --host 127.0.0.1 --port 8000
    python -m context_kit_service.main          (the `serve` command: CKS_HOST, CKS_PORT)

Configured from the environment and `.env` (CKS_*), like every launch. Building the app is
cheap: models and indexes load on first use.
"""

from __future__ import annotations

from context_kit_service.server import create_app
from context_kit_service.server.logging import configure_logging
from context_kit_service.settings import load_settings

settings = load_settings()
configure_logging(settings.log_level)
app = create_app(settings)

if __name__ == "__main__":
    from context_kit_service.cli import main

    raise SystemExit(main(["serve"]))
