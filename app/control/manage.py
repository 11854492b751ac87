"""Changes to a live CPO: PATCH (TTL through the workflow's update) and DELETE (teardown)."""

from __future__ import annotations

from pydantic import ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from app.control.common import cpo_call, database, gateway, owned_cpo, unavailable
from app.control.read import detail_response
from app.control.schemas import DeleteResponse, UpdateCpoRequest
from app.control.temporal_gateway import BackendUnavailable, TtlRejected
from app.lifecycle.models import GONE, TERMINAL, CpoStatus
from app.store.tables import Cpo
from app.web.auth import WRITE
from app.web.http import from_validation_error, issue, model_response
from app.web.urls import status_url


async def update_cpo(request: Request) -> Response:
    """PATCH: extend (or shorten, or lift) the TTL of a live CPO through the workflow's update."""
    call = cpo_call(request, WRITE)
    cpo_id = call.cpo_id
    try:
        body = UpdateCpoRequest.model_validate_json((await request.body()) or b"null")
    except ValidationError as exc:
        return from_validation_error(exc, "body")
    cpo = await owned_cpo(request, call.principal, cpo_id)
    if cpo.status in GONE:
        raise HTTPException(409, f"CPO {cpo_id} is {cpo.status}; its TTL can no longer change")
    # A client retry with the same Idempotency-Key attaches to the same workflow update.
    update_id = _idempotency_key(request)
    try:
        await gateway(request).extend_ttl(cpo_id, body.ttl_seconds, update_id)
    except TtlRejected as exc:
        raise HTTPException(409, f"CPO {cpo_id}: {exc}") from exc
    except BackendUnavailable as exc:
        return unavailable(f"workflow backend unavailable ({exc}); try again", "workflow_backend_unavailable")
    # The update recorded the new expires_at in the row before it answered.
    return await detail_response(request, await owned_cpo(request, call.principal, cpo_id))


async def delete_cpo(request: Request) -> Response:
    """Idempotent: 202 while teardown runs, 200 once gone (or never ours: indistinguishable)."""
    call = cpo_call(request, WRITE)
    cpo_id = call.cpo_id
    async with database(request).session() as session:
        cpo = await session.get(Cpo, cpo_id)
    if cpo is None or cpo.org != call.principal.org:
        return model_response(
            DeleteResponse(cpo_id=str(cpo_id), status=CpoStatus.DESTROYED, status_url=status_url(cpo_id))
        )
    if cpo.status in TERMINAL:
        return model_response(
            DeleteResponse(cpo_id=str(cpo_id), status=CpoStatus(cpo.status), status_url=status_url(cpo_id))
        )
    gw = gateway(request)
    try:
        if not await gw.request_destroy(cpo_id):
            # The row is live but its workflow is closed (terminated) or missing: tear down directly.
            await gw.start_teardown(cpo_id, "DELETE found no running workflow")
    except BackendUnavailable as exc:
        return unavailable(f"workflow backend unavailable ({exc}); try again", "workflow_backend_unavailable")
    return model_response(
        DeleteResponse(cpo_id=str(cpo_id), status=CpoStatus.DESTROYING, status_url=status_url(cpo_id)), 202
    )


def _idempotency_key(request: Request) -> str | None:
    key = request.headers.get("idempotency-key", "").strip()
    if not key:
        return None
    if len(key) > 128 or not key.isprintable():
        raise HTTPException(
            422, [issue(["header", "Idempotency-Key"], "at most 128 printable characters", "value_error")]
        )
    return f"ttl-{key}"
