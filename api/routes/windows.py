"""Window aggregates per window, start and buyer, from any worker."""

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError

from api.cluster import Merge, call, is_local, owner_url, query_cluster, require_ready
from api.deps import FirstNameFilter, LastNameFilter, ServiceDep, WindowName, parse_time_param
from api.ports import QueryService
from api.schemas import ErrorDetail, SessionWindowInfo, WindowInfo, WindowPage, WindowTop, checked
from core.queries import json_ranking_key, latest_ms, rows_holding, window_final, window_rows
from core.timefmt import MAX_MS, format_time_ms
from core.windows import Window

router = APIRouter(prefix="/windows", tags=["windows"])
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorDetail, "description": "unknown window, or no data"},
    503: {"model": ErrorDetail, "description": "partitions moving: retry"}}


@router.get("", response_model=list[SessionWindowInfo | WindowInfo])
async def list_windows(service: ServiceDep) -> list[WindowInfo]:
    """The configured windows."""
    settings = service.settings
    return [
        (SessionWindowInfo if "gap_ms" in w.info() else WindowInfo)(
            name=w.name, kind=w.kind, **{"size_ms": None, "slide_ms": None, **w.info()},
            allowed_lateness_ms=settings.allowed_lateness,
            retention_ms=settings.window_retention)
        for w in settings.windows
    ]


def _by_start(item: dict[str, Any]) -> tuple[str, str, str]:
    return (item["window_start"], item["buyer"]["last_name"], item["buyer"]["first_name"])


@router.get("/{name}", response_model=WindowPage, responses=NOT_FOUND)
async def get_window_rows(
    request: Request,
    service: ServiceDep,
    name: WindowName,
    first_name: FirstNameFilter = None,
    last_name: LastNameFilter = None,
    start: Annotated[str | None, Query(description="ISO-8601 UTC or epoch ms")] = None,
    end: Annotated[str | None, Query(description="ISO-8601 UTC or epoch ms")] = None,
    limit: Annotated[int, Query(ge=0, le=10_000)] = 1000,
) -> Response:
    """Rows of windows overlapping [start, end), by window start, then last, first name."""
    spec = _spec(service, name)
    start_ms, end_ms = parse_time_param("start", start), parse_time_param("end", end)
    require_ready(service)
    params = {k: v for k, v in {"first_name": first_name, "last_name": last_name,
                                "start": start, "end": end, "limit": limit}.items()
              if v is not None}
    if not is_local(request) and first_name is not None and last_name is not None:
        url = owner_url(service, first_name, last_name)
        if url is not None:  # one buyer: one hop to its owner
            answer = await call(request, url, f"/windows/{name}", params)
            return checked(WindowPage, answer, from_peers=True)
    with service.reading() as stores:
        rows = window_rows(stores, spec, service.settings.allowed_lateness, start_ms=start_ms,
                           end_ms=end_ms, first_name=first_name, last_name=last_name)
        mine = {"items": [row.as_json() for row in rows[:limit]]}
    merged = await query_cluster(request, service, mine, f"/windows/{name}", params,
                                 Merge(key=_by_start, limit=limit))
    return checked(WindowPage, merged.answer, from_peers=merged.from_peers)


@router.get("/{name}/top", response_model=WindowTop, responses=NOT_FOUND)
async def get_window_top(
    request: Request,
    service: ServiceDep,
    name: WindowName,
    at: Annotated[str | None, Query(description="ISO-8601 UTC or epoch ms")] = None,
    k: Annotated[int, Query(ge=1, le=10_000)] = 10,
) -> Response:
    """The k buyers with the most orders in the latest window holding `at` (or with data)."""
    spec = _spec(service, name)
    at_ms = parse_time_param("at", at)
    require_ready(service)
    if at_ms is None:
        at_ms = await _latest_everywhere(request, service, spec)
    span = spec.holding(at_ms)
    if span is not None and span.end_ms > MAX_MS:  # the window holding it ends after 9999
        raise RequestValidationError([{
            "loc": ["query", "at"], "type": "value_error", "input": at,
            "msg": f"at: the {name} window holding it would end after {format_time_ms(MAX_MS)}",
        }])
    lateness = service.settings.allowed_lateness
    with service.reading() as stores:
        ranked = rows_holding(stores, spec, at_ms, lateness, k)
        if span is not None:
            mine = {"window_start": format_time_ms(span.start_ms),
                    "window_end": format_time_ms(span.end_ms),
                    "final": window_final(stores, span.end_ms, lateness)}
        else:  # sessions: the extent of those holding `at`, final when all of them are
            mine = {"window_start": min((r.row.start_ms for r in ranked), default=None),
                    "window_end": max((r.row.end_ms for r in ranked), default=None),
                    "final": all(r.final for r in ranked)}
        mine["items"] = [row.as_json() for row in ranked[:k]]
    combine = {"final": _both} if span is not None else {
        "window_start": _earlier, "window_end": _later, "final": _both}
    merged = await query_cluster(request, service, mine, f"/windows/{name}/top",
                                 {"at": at_ms if span is None else span.start_ms, "k": k},
                                 Merge(key=json_ranking_key, limit=k, combine=combine))
    answer = merged.answer
    if span is None and not is_local(request):
        if answer["window_start"] is None:
            raise HTTPException(404, f"no session of {name} holds {format_time_ms(at_ms)}")
        answer = {**answer, "window_start": format_time_ms(answer["window_start"]),
                  "window_end": format_time_ms(answer["window_end"])}
    return checked(WindowTop, answer, from_peers=merged.from_peers)


@router.get("/{name}/latest-start", include_in_schema=False)
async def get_latest_start(service: ServiceDep, name: WindowName) -> dict[str, int | None]:
    """For other workers: the largest window start this worker has data for."""
    require_ready(service)
    spec = _spec(service, name)
    with service.reading() as stores:
        return {"latest_start_ms": latest_ms(stores, spec)}


async def _latest_everywhere(request: Request, service: QueryService, spec: Window) -> int:
    """The time /top without `at` looks at (the largest window start with data, or for
    sessions the largest end less 1) on any worker; 404 when there is none."""
    with service.reading() as stores:
        mine = {"latest_start_ms": latest_ms(stores, spec)}
    merged = await query_cluster(request, service, mine, f"/windows/{spec.name}/latest-start",
                                 {}, Merge(combine={"latest_start_ms": _later}))
    latest: int | None = merged.answer["latest_start_ms"]
    if latest is None:
        raise HTTPException(404, f"window {spec.name} has no data")
    return latest


def _both(final: Any, other: Any) -> Any:
    """Final only when every worker's part of the window is."""
    return final and other


def _later(time_ms: int | None, other: int | None) -> int | None:
    """The larger of two workers' times; None is a worker without data."""
    return _known(max, time_ms, other)


def _earlier(time_ms: int | None, other: int | None) -> int | None:
    """The smaller of two workers' times; None is a worker without data."""
    return _known(min, time_ms, other)


def _known(pick: Callable[[int, int], int], time_ms: int | None,
           other: int | None) -> int | None:
    if time_ms is None or other is None:
        return other if time_ms is None else time_ms
    return pick(time_ms, other)


def _spec(service: QueryService, name: str) -> Window:
    for spec in service.settings.windows:
        if spec.name == name:
            return spec
    known = ", ".join(w.name for w in service.settings.windows)
    raise HTTPException(404, f"unknown window {name!r} (configured: {known})")
