"""ASGI entry point: `uvicorn api:app` (see `make run`)."""

from app.web.app import create_app

app = create_app()
