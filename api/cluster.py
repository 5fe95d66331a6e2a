"""Any worker answers any query: key lookups go to the worker owning the buyer's partition
(one hop), lists are gathered from every worker and merged.

Workers find each other through faust's group assignment: each advertises
API_ADVERTISED_URL (faust's canonical_url) and the leader hands every member the
partitions of every other. A forwarded call carries `X-Orderstream-Scope: local`: the
receiving worker answers from its own partitions and never forwards again. If any worker
cannot answer (not ready, unreachable, or the assignment moved meanwhile), the query
gets 503 with Retry-After: never a silently partial result (only /instances lists such a
worker as unreachable instead).

Routes ask the cluster through one helper, `query_cluster`: they state this worker's own
answer, the route to ask the others and how the answers merge (`Merge`), and pass the
result's `from_peers` to `api.schemas.checked`.
"""

import asyncio
import functools
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from fastapi import HTTPException, Request

from api.ports import ApiMetrics, QueryService
from core.shuffle import buyer_partition

SCOPE_HEADER = "X-Orderstream-Scope"
RETRY_AFTER_S = 1
FORWARD_TIMEOUT_S = 5.0


def service_metrics(request: Request) -> ApiMetrics:
    """The metrics of the worker serving this request."""
    service: QueryService = request.app.state.service
    return service.metrics


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
        service_metrics(request).forwarded.labels(route, "unreachable").observe(
            time.perf_counter() - started)
        raise unavailable(f"worker {url} did not answer: {type(error).__name__}") from None
    service_metrics(request).forwarded.labels(route, str(response.status_code)).observe(
        time.perf_counter() - started)
    if response.status_code == 503:
        raise unavailable(f"worker {url}: {response.json().get('detail', 'not ready')}")
    if response.status_code >= 400:
        raise HTTPException(response.status_code, response.json().get("detail"))
    return response.json()


Answer = dict[str, Any]  # one worker's JSON answer to a route


@dataclass(frozen=True)
class Merge:
    """How this worker's answer and its peers' answers to one route make one answer.

    The `items` of all answers are concatenated, ordered by `key` and cut to
    [offset, offset + limit). This worker's items come in `key` order already, so they are
    sorted only when peers answered. Each field named in `combine` is folded over the answers,
    this worker's first (`operator.add` sums counts); any other field is this worker's."""

    key: Callable[[Any], Any] | None = None
    offset: int = 0
    limit: int | None = None
    combine: Mapping[str, Callable[[Any, Any], Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class Gathered:
    """The merged answer, and whether other workers' answers are in it (for `checked`)."""

    answer: Answer
    from_peers: bool


def merge_answers(local: Answer, answers: Sequence[Answer], merge: Merge) -> Answer:
    """One answer from this worker's and its peers' answers to the same route."""
    merged = dict(local)
    for name, combine in merge.combine.items():
        merged[name] = functools.reduce(combine, (answer[name] for answer in answers),
                                        local[name])
    if "items" in local:
        items = [*local["items"], *(item for answer in answers for item in answer["items"])]
        if answers and merge.key is not None:
            items.sort(key=merge.key)
        end = None if merge.limit is None else merge.offset + merge.limit
        merged["items"] = items[merge.offset:end]
    return merged


async def query_cluster(request: Request, service: QueryService, local: Answer, path: str,
                        params: Mapping[str, Any], merge: Merge) -> Gathered:
    """`local` (this worker's answer) merged with `path`'s answers from every other worker
    (none when this call is itself in local scope), asked concurrently."""
    urls = [] if is_local(request) else peers(service)
    answers: list[Answer] = await asyncio.gather(*(call(request, url, path, params)
                                                   for url in urls))
    return Gathered(merge_answers(local, answers, merge), from_peers=bool(answers))
