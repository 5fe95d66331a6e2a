"""The FastAPI app: routers assembled, errors always JSON."""

import time
from typing import Any

import httpx
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse

from api.deps import require_token
from api.routes import buyers, docs, health, instances, metrics, streams, windows
from api.schemas import ErrorDetail
from app.runtime import Runtime

UNAUTHORIZED: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorDetail, "description": "API_TOKEN is set: bearer token missing or wrong"}}


def create_api(runtime: Runtime) -> FastAPI:
    """The API of one worker, reading that worker's runtime."""
    api = FastAPI(
        title="orderstream",
        description="Live buyer totals and event-time window aggregates of the orders stream.",
        version="0.1.0",
        # api/routes/docs.py serves these: the schema needs the token, the shells send it
        openapi_url=None, docs_url=None, redoc_url=None,
    )
    api.state.runtime = runtime
    api.state.http = httpx.AsyncClient(trust_env=False)  # calls to other workers
    api.include_router(health.router)
    api.include_router(docs.router)
    # with API_TOKEN set, these need it; streams first, so /buyers/stream is not a buyer
    for module in (streams, buyers, windows, instances, metrics):
        api.include_router(module.router, dependencies=[Depends(require_token)],
                           responses=UNAUTHORIZED)

    @api.middleware("http")
    async def timed(request: Request, call_next: Any) -> Any:
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        runtime.metrics.requests.labels(getattr(route, "path", "unmatched"),
                                        str(response.status_code)).observe(
            time.perf_counter() - started)
        return response

    @api.exception_handler(Exception)
    async def internal_error(request: Request, error: Exception) -> JSONResponse:
        return JSONResponse({"detail": f"internal error: {type(error).__name__}"},
                            status_code=500)

    return api
