"""The workers of the group, from any of them."""

import asyncio

import httpx
from fastapi import APIRouter, Request
from pydantic import BaseModel

from api.deps import RuntimeDep

router = APIRouter(tags=["instances"])


class Instance(BaseModel):
    url: str
    partitions: list[int]
    status: str
    this_worker: bool


async def _status(request: Request, url: str) -> str:
    client: httpx.AsyncClient = request.app.state.http
    try:
        return str((await client.get(f"{url}/ready", timeout=2)).json()["status"])
    except (httpx.HTTPError, ValueError, KeyError):
        return "unreachable"


@router.get("/instances", response_model=list[Instance])
async def list_instances(request: Request, runtime: RuntimeDep) -> list[Instance]:
    """Every worker with its advertised URL, aggregation partitions and readiness."""
    me = runtime.settings.advertised_url.rstrip("/")
    members = sorted(runtime.members().items())
    statuses = await asyncio.gather(*(
        _status(request, url) if url != me else asyncio.sleep(0, runtime.readiness)
        for url, _ in members))
    return [Instance(url=url, partitions=sorted(parts), status=status, this_worker=url == me)
            for (url, parts), status in zip(members, statuses, strict=True)]
