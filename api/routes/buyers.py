"""Buyer totals: the seed's `saving_ex`, live, from any worker."""

import operator
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, Response

from api.cluster import (
    Merge,
    call,
    is_local,
    owner_url,
    query_cluster,
    require_ready,
    unavailable,
)
from api.deps import (
    FirstNamePath,
    FirstNameQuery,
    LastNamePath,
    LastNameQuery,
    ServiceDep,
)
from api.ports import QueryService
from api.schemas import BuyerPage, BuyerTotal, ErrorDetail, checked, json_response
from core.queries import json_ranking_key, one_total, top_totals
from core.shuffle import buyer_partition
from core.sinks import total_json

router = APIRouter(tags=["buyers"])
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorDetail, "description": "buyer never seen"},
    503: {"model": ErrorDetail, "description": "partitions moving: retry"}}


@router.get("/buyers", response_model=BuyerPage, responses=NOT_FOUND)
async def list_buyers(
    request: Request,
    service: ServiceDep,
    limit: Annotated[int, Query(ge=0, le=10_000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
    upto: Annotated[int | None, Query(ge=0, include_in_schema=False)] = None,
) -> Response:
    """Buyers by count descending, then last name, then first name (code points)."""
    require_ready(service)
    local = is_local(request)  # another worker gathers: its first `upto` items, all counted
    with service.reading() as stores:
        totals, count = top_totals(stores, upto if local else offset + limit)
    mine = {"items": [total_json(*buyer, total) for buyer, total in totals], "total": count}
    if local:
        return json_response(mine)
    merged = await query_cluster(
        request, service, mine, "/buyers", {"upto": offset + limit},
        Merge(key=json_ranking_key, offset=offset, limit=limit, combine={"total": operator.add}))
    return checked(BuyerPage, merged.answer, from_peers=merged.from_peers)


@router.get("/buyers/{first_name}/{last_name}", response_model=BuyerTotal, responses=NOT_FOUND)
async def get_buyer(
    request: Request,
    service: ServiceDep,
    first_name: FirstNamePath,
    last_name: LastNamePath,
) -> Response:
    """One buyer's count and total price."""
    return await _lookup(request, service, first_name, last_name)


@router.get("/buyer", response_model=BuyerTotal, responses=NOT_FOUND)
async def get_buyer_by_query(
    request: Request,
    service: ServiceDep,
    first_name: FirstNameQuery,
    last_name: LastNameQuery,
) -> Response:
    """The same as /buyers/{first_name}/{last_name}, for names a path cannot carry."""
    return await _lookup(request, service, first_name, last_name)


async def _lookup(request: Request, service: QueryService, first_name: str,
                  last_name: str) -> Response:
    require_ready(service)
    if not is_local(request):
        url = owner_url(service, first_name, last_name)
        if url is not None:  # one hop to the owner
            answer = await call(request, url, "/buyer",
                                {"first_name": first_name, "last_name": last_name})
            return checked(BuyerTotal, answer, from_peers=True)
    partitions = service.buyer_partitions
    if buyer_partition(first_name, last_name, partitions) not in service.owned():
        raise unavailable("the buyer's partition moved: retry")
    with service.reading() as stores:
        total = one_total(stores, (first_name, last_name), partitions)
    if total is None:
        raise HTTPException(404, f"buyer {first_name} {last_name} never seen")
    return json_response(total_json(first_name, last_name, total))
