"""The workers of the group, from any of them."""

import asyncio
from typing import Any

import httpx
from fastapi import APIRouter, Request
from pydantic import BaseModel

from api.cluster import forward_headers
from api.deps import ServiceDep
from api.ports import QueryService

router = APIRouter(tags=["instances"])
PEER_TIMEOUT_S = 2.0  # shorter than a data query's: a worker that is down shows as unreachable


class Instance(BaseModel):
    url: str
    partitions: list[int]
    status: str
    lag: int | None  # messages behind the end of its input partitions; None if unreachable
    this_worker: bool


def own_state(service: QueryService) -> dict[str, Any]:
    """This worker's readiness and input lag."""
    lag = sum(int(sample.value) for metric in service.metrics.lag.collect()
              for sample in metric.samples)
    return {"status": service.readiness, "lag": lag}


@router.get("/instance", include_in_schema=False)
async def this_instance(service: ServiceDep) -> dict[str, Any]:
    """For other workers: this worker's readiness and lag."""
    return own_state(service)


async def _state(request: Request, url: str) -> dict[str, Any]:
    client: httpx.AsyncClient = request.app.state.http
    try:
        answer = (await client.get(f"{url}/instance", headers=forward_headers(request),
                                   timeout=PEER_TIMEOUT_S)).json()
        return {"status": str(answer["status"]), "lag": int(answer["lag"])}
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return {"status": "unreachable", "lag": None}


@router.get("/instances", response_model=list[Instance])
async def list_instances(request: Request, service: ServiceDep) -> list[Instance]:
    """Every worker with its advertised URL, aggregation partitions, readiness and lag."""
    me = service.settings.advertised_url.rstrip("/")
    members = sorted(service.members().items())

    async def state(url: str) -> dict[str, Any]:
        return own_state(service) if url == me else await _state(request, url)

    states = await asyncio.gather(*(state(url) for url, _ in members))
    return [Instance(url=url, partitions=sorted(parts), this_worker=url == me, **found)
            for (url, parts), found in zip(members, states, strict=True)]
