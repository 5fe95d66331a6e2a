"""Liveness and readiness."""

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import ServiceDep
from api.schemas import Status

router = APIRouter(tags=["health"])


@router.get("/health", response_model=Status, response_model_exclude_none=True)
async def health() -> Status:
    """`ok` while the process lives."""
    return Status(status="ok")


@router.get("/ready", response_model=Status,
            responses={503: {"model": Status,
                             "description": "starting, restoring, rebalancing or broker-lost"}})
async def ready(service: ServiceDep) -> JSONResponse:
    """`ready` once this worker's state is restored and it consumes; 503 with the reason
    before, and when the broker no longer backs the state (`broker-lost`, with `reason`)."""
    status, reason = service.readiness, service.readiness_reason
    body = {"status": status} if reason is None else {"status": status, "reason": reason}
    return JSONResponse(body, status_code=200 if status == "ready" else 503)
