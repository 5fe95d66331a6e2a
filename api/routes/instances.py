"""The workers of the group, from any of them."""

import asyncio
from typing import Any

import httpx
from fastapi import APIRouter, Request
from pydantic import BaseModel

from api.cluster import forward_headers
from api.deps import RuntimeDep
from app.runtime import Runtime

router = APIRouter(tags=["instances"])


class Instance(BaseModel):
    url: str
    partitions: list[int]
    status: str
    lag: int | None  # messages behind the end of its input partitions; None if unreachable
    this_worker: bool


def own_state(runtime: Runtime) -> dict[str, Any]:
    """This worker's readiness and input lag."""
    lag = sum(int(sample.value) for metric in runtime.metrics.lag.collect()
              for sample in metric.samples)
    return {"status": runtime.readiness, "lag": lag}


@router.get("/instance", include_in_schema=False)
async def this_instance(runtime: RuntimeDep) -> dict[str, Any]:
    """For other workers: this worker's readiness and lag."""
    return own_state(runtime)


async def _state(request: Request, url: str) -> dict[str, Any]:
    client: httpx.AsyncClient = request.app.state.http
    try:
        answer = (await client.get(f"{url}/instance", headers=forward_headers(request),
                                   timeout=2)).json()
        return {"status": str(answer["status"]), "lag": int(answer["lag"])}
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return {"status": "unreachable", "lag": None}


@router.get("/instances", response_model=list[Instance])
async def list_instances(request: Request, runtime: RuntimeDep) -> list[Instance]:
    """Every worker with its advertised URL, aggregation partitions, readiness and lag."""
    me = runtime.settings.advertised_url.rstrip("/")
    members = sorted(runtime.members().items())

    async def state(url: str) -> dict[str, Any]:
        return own_state(runtime) if url == me else await _state(request, url)

    states = await asyncio.gather(*(state(url) for url, _ in members))
    return [Instance(url=url, partitions=sorted(parts), this_worker=url == me, **found)
            for (url, parts), found in zip(members, states, strict=True)]
