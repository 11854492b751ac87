"""OpenAPI 3.1 document of the control plane, generated from app.schemas, plus a docs page."""

from starlette.routing import BaseRoute

routes: list[BaseRoute] = []
