"""Buyer totals: the seed's `saving_ex`, live."""

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query

from api.deps import RuntimeDep
from api.schemas import BuyerPage, BuyerTotal, ErrorDetail
from app.runtime import Runtime
from core.sinks import total_json
from tables.queries import all_totals, one_total

router = APIRouter(tags=["buyers"])
NOT_FOUND = {404: {"model": ErrorDetail, "description": "buyer never seen"}}


@router.get("/buyers", response_model=BuyerPage)
async def list_buyers(
    runtime: RuntimeDep,
    limit: Annotated[int, Query(ge=0, le=10_000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> BuyerPage:
    """Buyers by count descending, then last name, then first name (code points)."""
    totals = all_totals(runtime.aggregates.read_only_view())
    page = totals[offset:offset + limit]
    return BuyerPage.model_validate({
        "items": [total_json(first, last, total) for (first, last), total in page],
        "total": len(totals),
    })


@router.get("/buyers/{first_name}/{last_name}", response_model=BuyerTotal, responses=NOT_FOUND)
async def get_buyer(
    runtime: RuntimeDep,
    first_name: Annotated[str, Path(min_length=1)],
    last_name: Annotated[str, Path(min_length=1)],
) -> BuyerTotal:
    """One buyer's count and total price."""
    return _lookup(runtime, first_name, last_name)


@router.get("/buyer", response_model=BuyerTotal, responses=NOT_FOUND)
async def get_buyer_by_query(
    runtime: RuntimeDep,
    first_name: Annotated[str, Query(min_length=1)],
    last_name: Annotated[str, Query(min_length=1)],
) -> BuyerTotal:
    """The same as /buyers/{first_name}/{last_name}, for names a path cannot carry."""
    return _lookup(runtime, first_name, last_name)


def _lookup(runtime: Runtime, first_name: str, last_name: str) -> BuyerTotal:
    total = one_total(runtime.aggregates.read_only_view(), (first_name, last_name),
                      runtime.partitions[runtime.names.by_buyer])
    if total is None:
        raise HTTPException(404, f"buyer {first_name} {last_name} never seen")
    return BuyerTotal.model_validate(total_json(first_name, last_name, total))
