"""Window aggregates per window, start and buyer."""

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query

from api.deps import RuntimeDep, parse_time_param
from api.schemas import ErrorDetail, WindowInfo, WindowPage, WindowTop
from app.runtime import Runtime
from core.timefmt import format_time_ms
from tables.queries import latest_start, rows_of_window, window_final, window_rows
from tables.windows import WindowSpec, window_starts_ms

router = APIRouter(prefix="/windows", tags=["windows"])
NOT_FOUND = {404: {"model": ErrorDetail, "description": "unknown window, or no data"}}


@router.get("", response_model=list[WindowInfo])
async def list_windows(runtime: RuntimeDep) -> list[WindowInfo]:
    """The configured windows."""
    settings = runtime.settings
    return [
        WindowInfo(name=w.name, kind=w.kind, size_ms=w.size_ms, slide_ms=w.slide_ms,
                   allowed_lateness_ms=settings.allowed_lateness,
                   retention_ms=settings.window_retention)
        for w in settings.windows
    ]


@router.get("/{name}", response_model=WindowPage, responses=NOT_FOUND)
async def get_window_rows(
    runtime: RuntimeDep,
    name: str,
    first_name: str | None = None,
    last_name: str | None = None,
    start: Annotated[str | None, Query(description="ISO-8601 UTC or epoch ms")] = None,
    end: Annotated[str | None, Query(description="ISO-8601 UTC or epoch ms")] = None,
    limit: Annotated[int, Query(ge=0, le=10_000)] = 1000,
) -> WindowPage:
    """Rows of windows overlapping [start, end), by window start, then last, first name."""
    spec = _spec(runtime, name)
    start_ms, end_ms = parse_time_param("start", start), parse_time_param("end", end)
    rows = window_rows(runtime.aggregates.read_only_view(), spec,
                       runtime.settings.allowed_lateness, start_ms=start_ms, end_ms=end_ms,
                       first_name=first_name, last_name=last_name)
    return WindowPage.model_validate({"items": [row.as_json(spec) for row in rows[:limit]]})


@router.get("/{name}/top", response_model=WindowTop, responses=NOT_FOUND)
async def get_window_top(
    runtime: RuntimeDep,
    name: str,
    at: Annotated[str | None, Query(description="ISO-8601 UTC or epoch ms")] = None,
    k: Annotated[int, Query(ge=1, le=10_000)] = 10,
) -> WindowTop:
    """The k buyers with the most orders in the latest window holding `at` (or with data)."""
    spec = _spec(runtime, name)
    stores = runtime.aggregates.read_only_view()
    at_ms = parse_time_param("at", at)
    if at_ms is None:
        start_ms = latest_start(stores, spec)
        if start_ms is None:
            raise HTTPException(404, f"window {name} has no data")
    else:
        start_ms = window_starts_ms(at_ms, spec.size_ms, spec.slide_ms)[-1]
    lateness = runtime.settings.allowed_lateness
    rows = rows_of_window(stores, spec, start_ms, lateness)
    return WindowTop.model_validate({
        "window_start": format_time_ms(start_ms),
        "window_end": format_time_ms(start_ms + spec.size_ms),
        "final": window_final(stores, spec, start_ms, lateness),
        "items": [row.as_json(spec) for row in rows[:k]],
    })


def _spec(runtime: Runtime, name: str) -> WindowSpec:
    for spec in runtime.settings.windows:
        if spec.name == name:
            return spec
    known = ", ".join(w.name for w in runtime.settings.windows)
    raise HTTPException(404, f"unknown window {name!r} (configured: {known})")
