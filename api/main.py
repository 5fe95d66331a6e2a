"""The FastAPI app: routers assembled, errors always JSON."""

import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import httpx
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from prometheus_client import Histogram

from api.deps import require_token
from api.ports import QueryService
from api.routes import buyers, dashboard, docs, health, instances, metrics, streams, windows
from api.schemas import ErrorDetail

# ASGI's types as starlette spells them (starlette comes with fastapi, not declared itself)
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

UNAUTHORIZED: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorDetail, "description": "API_TOKEN is set: bearer token missing or wrong"}}


class TimedRequests:
    """Each request's time to its answer's start, in a histogram by route template and
    status. Plain ASGI: `@app.middleware("http")` (BaseHTTPMiddleware) costs a task, a
    memory stream and a streamed copy of the body per request."""

    def __init__(self, app: ASGIApp, histogram: Histogram) -> None:
        self.app, self.histogram = app, histogram
        self._children: dict[tuple[str, int], Any] = {}  # labels() takes a lock each call

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def timed_send(message: Message) -> None:
            if message["type"] == "http.response.start":  # not the end: streams last long
                self._observe(scope, message["status"], time.perf_counter() - started)
            await send(message)

        await self.app(scope, receive, timed_send)

    def _observe(self, scope: Scope, status: int, seconds: float) -> None:
        key = (getattr(scope.get("route"), "path", "unmatched"), status)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.histogram.labels(key[0], str(status))
        child.observe(seconds)


def create_api(service: QueryService) -> FastAPI:
    """The API of one worker, reading that worker's service."""
    api = FastAPI(
        title="orderstream",
        description="Live buyer totals and event-time window aggregates of the orders stream.",
        version="0.1.0",
        # api/routes/docs.py serves these: the schema needs the token, the shells send it
        openapi_url=None, docs_url=None, redoc_url=None,
    )
    api.state.service = service
    api.state.http = httpx.AsyncClient(trust_env=False)  # calls to other workers
    api.include_router(health.router)
    api.include_router(docs.router)
    api.include_router(dashboard.page)
    # with API_TOKEN set, these need it; streams first, so /buyers/stream is not a buyer
    for module in (streams, buyers, windows, instances, metrics, dashboard):
        api.include_router(module.router, dependencies=[Depends(require_token)],
                           responses=UNAUTHORIZED)
    api.add_middleware(TimedRequests, histogram=service.metrics.requests)

    @api.exception_handler(Exception)
    async def internal_error(request: Request, error: Exception) -> JSONResponse:
        return JSONResponse({"detail": f"internal error: {type(error).__name__}"},
                            status_code=500)

    return api
