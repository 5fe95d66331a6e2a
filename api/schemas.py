"""Response models: what /docs and /openapi.json describe, field for field as in SPEC.md.

Routes that are hot (and whose dicts are built field for field by core/ and tables/)
answer with `json_response`: FastAPI then neither validates them against the model nor
serializes them a second time. The schema fuzz (tests/unit/test_api_fuzz.py) checks every
answer against these models instead.
"""

from typing import Any

import orjson
from fastapi import Response
from pydantic import BaseModel, Field


def json_response(content: Any, status_code: int = 200) -> Response:
    """JSON bytes as Starlette's JSONResponse renders them (compact, UTF-8), via orjson."""
    return Response(orjson.dumps(content), status_code, media_type="application/json")


def checked(model: type[BaseModel], content: Any, *, from_peers: bool) -> Response:
    """`content` as JSON; validated against `model` first when other workers' answers are
    in it (they are input like any other: a bad one is a 500, never passed on)."""
    if from_peers:
        content = model.model_validate(content).model_dump(mode="json")
    return json_response(content)


class Status(BaseModel):
    status: str = Field(examples=["ok"])
    reason: str | None = Field(None, description="with broker-lost: what the broker lacks, "
                                                 "or since when it has not answered")


class Buyer(BaseModel):
    first_name: str
    last_name: str


class BuyerTotal(BaseModel):
    buyer: Buyer
    count: int
    total_price: str = Field(description="Exact sum, 2 decimals", examples=["123.45"])


class BuyerPage(BaseModel):
    items: list[BuyerTotal]
    total: int = Field(description="Number of buyers in all")


class WindowInfo(BaseModel):
    name: str = Field(examples=["tumble_10s"])
    kind: str = Field(examples=["tumbling"], description="tumbling, hopping or session")
    size_ms: int | None = Field(description="null for a session window")
    slide_ms: int | None = Field(description="null for a session window")
    allowed_lateness_ms: int
    retention_ms: int


class SessionWindowInfo(WindowInfo):
    gap_ms: int = Field(description="a buyer's orders this close are one session")


class WindowItem(BaseModel):
    window_start: str = Field(examples=["2026-11-24T10:15:30.000Z"])
    window_end: str
    buyer: Buyer
    count: int
    sum_price: str
    min_price: str
    max_price: str
    avg_price: str = Field(description="sum / count, 2 places, half-even")
    final: bool = Field(description="True once the window can no longer change")


class WindowPage(BaseModel):
    items: list[WindowItem]


class WindowTop(BaseModel):
    window_start: str
    window_end: str
    final: bool
    items: list[WindowItem]


class ErrorDetail(BaseModel):
    detail: str
