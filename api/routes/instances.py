"""The workers of the group, from any of them."""

import operator
from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel

from api.cluster import Lenient, Merge, query_cluster
from api.deps import ServiceDep
from api.ports import QueryService

router = APIRouter(tags=["instances"])
PEER_TIMEOUT_S = 2.0  # shorter than a data query's: a worker that is down shows as unreachable
UNREACHABLE: dict[str, Any] = {"status": "unreachable", "lag": None}


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


@router.get("/instances", response_model=list[Instance])
async def list_instances(request: Request, service: ServiceDep) -> list[Instance]:
    """Every worker with its advertised URL, aggregation partitions, readiness and lag."""
    me = service.settings.advertised_url.rstrip("/")
    members = service.members()  # one view of the group for every row

    def listed(url: str, state: Mapping[str, Any]) -> dict[str, Any]:
        row = {"url": url, "partitions": sorted(members[url]), "this_worker": url == me}
        return {"items": [{**row, **state}]}

    def read(url: str, answer: Any) -> dict[str, Any]:
        return listed(url, {"status": str(answer["status"]), "lag": int(answer["lag"])})

    mine = listed(me, own_state(service)) if me in members else {"items": []}
    merged = await query_cluster(
        request, service, mine, "/instance", {}, Merge(key=operator.itemgetter("url")),
        urls=[url for url in members if url != me],
        lenient=Lenient(read, lambda url: listed(url, UNREACHABLE), PEER_TIMEOUT_S))
    return [Instance(**item) for item in merged.answer["items"]]
