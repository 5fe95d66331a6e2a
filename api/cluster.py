"""Any worker answers any query: key lookups go to the worker owning the buyer's partition
(one hop), lists are gathered from every worker and merged.

Workers find each other through faust's group assignment: each advertises
API_ADVERTISED_URL (faust's canonical_url) and the leader hands every member the
partitions of every other. A forwarded call carries `X-Orderstream-Scope: local`: the
receiving worker answers from its own partitions and never forwards again. If any worker
cannot answer (not ready, unreachable, or the assignment moved meanwhile), the query
gets 503 with Retry-After: never a silently partial result.
"""

import asyncio
import time
from collections.abc import Mapping
from typing import Any

import httpx
from fastapi import HTTPException, Request

from api.ports import QueryService
from core.shuffle import buyer_partition

SCOPE_HEADER = "X-Orderstream-Scope"
RETRY_AFTER_S = 1
FORWARD_TIMEOUT_S = 5.0


def runtime_metrics(request: Request) -> Any:
    """The metrics of the worker serving this request."""
    return request.app.state.service.metrics


def unavailable(why: str) -> HTTPException:
    """503 that tells the client to come back."""
    return HTTPException(503, why, headers={"Retry-After": str(RETRY_AFTER_S)})


def is_local(request: Request) -> bool:
    """A call forwarded by another worker: answer from this worker's partitions only."""
    return request.headers.get(SCOPE_HEADER) == "local"


def require_ready(service: QueryService) -> None:
    """Data routes answer only when this worker's state is complete."""
    if service.readiness != "ready":
        raise unavailable(f"this worker is {service.readiness}")


def owner_url(service: QueryService, first_name: str, last_name: str) -> str | None:
    """URL of the worker owning a buyer's partition; None when it is this worker."""
    partition = buyer_partition(first_name, last_name, service.buyer_partitions)
    if partition in service.owned():
        return None
    for url, partitions in service.members().items():
        if partition in partitions:
            return url
    raise unavailable(f"no worker owns partition {partition} right now")


def peers(service: QueryService) -> list[str]:
    """URLs of the other workers of the group."""
    me = service.settings.advertised_url.rstrip("/")
    return [url for url in service.members() if url != me]


def forward_headers(request: Request) -> dict[str, str]:
    """Headers of a call to another worker: local scope and the caller's credentials."""
    headers = {SCOPE_HEADER: "local"}
    if "authorization" in request.headers:
        headers["Authorization"] = request.headers["authorization"]
    return headers


async def call(request: Request, url: str, path: str,
               params: Mapping[str, Any] | None = None) -> Any:
    """GET another worker's route in local scope, with the caller's credentials."""
    headers = forward_headers(request)
    client: httpx.AsyncClient = request.app.state.http
    route = getattr(request.scope.get("route"), "path", path)
    started = time.perf_counter()
    try:
        response = await client.get(url + path, params=params, headers=headers,
                                    timeout=FORWARD_TIMEOUT_S)
    except httpx.HTTPError as error:
        runtime_metrics(request).forwarded.labels(route, "unreachable").observe(
            time.perf_counter() - started)
        raise unavailable(f"worker {url} did not answer: {type(error).__name__}") from None
    runtime_metrics(request).forwarded.labels(route, str(response.status_code)).observe(
        time.perf_counter() - started)
    if response.status_code == 503:
        raise unavailable(f"worker {url}: {response.json().get('detail', 'not ready')}")
    if response.status_code >= 400:
        raise HTTPException(response.status_code, response.json().get("detail"))
    return response.json()


async def gather(request: Request, service: QueryService, path: str,
                 params: Mapping[str, Any]) -> list[Any]:
    """The same route on every other worker, in local scope, concurrently."""
    return list(await asyncio.gather(*(call(request, url, path, params)
                                       for url in peers(service))))
