"""Liveness and readiness."""

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import RuntimeDep
from api.schemas import Status

router = APIRouter(tags=["health"])


@router.get("/health", response_model=Status)
async def health() -> Status:
    """`ok` while the process lives."""
    return Status(status="ok")


@router.get("/ready", response_model=Status,
            responses={503: {"model": Status, "description": "starting, restoring or rebalancing"}})
async def ready(runtime: RuntimeDep) -> JSONResponse:
    """`ready` once this worker's state is restored and it consumes; 503 with the reason before."""
    status = runtime.readiness
    return JSONResponse({"status": status}, status_code=200 if status == "ready" else 503)
