"""Response models: what /docs and /openapi.json describe, field for field as in SPEC.md."""

from pydantic import BaseModel, Field


class Status(BaseModel):
    status: str = Field(examples=["ok"])


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
    kind: str = Field(examples=["tumbling"])
    size_ms: int
    slide_ms: int
    allowed_lateness_ms: int
    retention_ms: int


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
