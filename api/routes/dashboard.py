"""The dashboard, like Flink's web UI: `GET /` is a page of the package's own files that
holds no data; it asks `/dashboard/data` (behind API_TOKEN) for the whole group's figures
every 2 s and draws them (api/static/dashboard.js)."""

import asyncio
from typing import Any, Literal

import httpx
import orjson
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse

from api.cluster import forward_headers
from api.dashboard import local_view, merge_views, unreachable_view
from api.deps import ServiceDep
from api.ports import QueryService
from api.routes.docs import STATIC, static_file
from api.tail import Tails, TailUnavailable

PEER_TIMEOUT_S = 2.0  # a worker that is down shows as unreachable, not as a slow page
FINALS_PER_PARTITION = 5
RECENT_FINALS = 10
SAMPLE_SIZE = 50  # records per partition read for a sample of orders-dlq or orders-late
SAMPLE_SHOWN = 20
ASSETS = {name: STATIC / name for name in ("dashboard.js", "dashboard.css")}
PAGE = (STATIC / "dashboard.html").read_text()
# The page may load and ask nothing but this worker: self-contained, enforced by the browser.
CSP = ("default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
       "frame-ancestors 'none'; form-action 'none'")

page = APIRouter(include_in_schema=False)  # the page and its files: open, no data
router = APIRouter(prefix="/dashboard", tags=["dashboard"])


@page.get("/", response_class=HTMLResponse)
async def dashboard() -> HTMLResponse:
    """The dashboard's page: it asks for the token when the data answers 401."""
    return HTMLResponse(PAGE, headers={"Content-Security-Policy": CSP})


@page.get("/dashboard/access")
async def access(service: ServiceDep) -> dict[str, bool]:
    """Whether the data needs API_TOKEN: the page asks before it asks for data."""
    return {"token_required": service.settings.api_token is not None}


@page.get("/dashboard/assets/{name}")
async def asset(name: str) -> FileResponse:
    """The page's script and styles."""
    return static_file(ASSETS, name)


@router.get("/local", include_in_schema=False)
async def local(service: ServiceDep) -> dict[str, Any]:
    """For other workers: this worker's part of the dashboard."""
    return local_view(service, service.history())


@router.get("/data")
async def data(request: Request, service: ServiceDep) -> dict[str, Any]:
    """The whole group's figures: workers, the job graph with each operator's records in
    and out per second and waits, orders/s over the last 10 minutes, lag and watermarks
    per partition, the counters, and recent final windows."""
    me = service.settings.advertised_url.rstrip("/")
    peers = {url: parts for url, parts in service.members().items() if url != me}
    views = [local_view(service, service.history()),
             *await asyncio.gather(*(_peer_view(request, url, parts)
                                     for url, parts in sorted(peers.items())))]
    merged = merge_views(views)
    try:
        merged["finals"] = await _recent_finals(request, service)
    except TailUnavailable as error:  # the rest of the page is still worth showing
        merged["finals"], merged["finals_error"] = [], str(error)
    return merged


async def _peer_view(request: Request, url: str, partitions: set[int]) -> dict[str, Any]:
    client: httpx.AsyncClient = request.app.state.http
    try:
        answer = await client.get(f"{url}/dashboard/local", headers=forward_headers(request),
                                  timeout=PEER_TIMEOUT_S)
        answer.raise_for_status()
        view: dict[str, Any] = answer.json()
        return view
    except (httpx.HTTPError, ValueError):
        return unreachable_view(url, partitions)


def _tails(request: Request, service: QueryService) -> Tails:
    tails: Tails | None = getattr(request.app.state, "tails", None)
    if tails is None:
        tails = request.app.state.tails = Tails(service.settings.kafka_client)
    return tails


async def _recent_finals(request: Request, service: QueryService) -> list[dict[str, Any]]:
    """The latest final window rows on window-results, newest window end first."""
    entries = await _tails(request, service).last(service.topics.window_results,
                                                  FINALS_PER_PARTITION)
    rows = []
    for entry in entries:
        if entry.key is None or entry.value is None:
            continue
        window = orjson.loads(entry.key)[0]
        rows.append({"window": window, **orjson.loads(entry.value)})
    rows.sort(key=lambda row: (row["window_end"], row["count"]), reverse=True)
    return rows[:RECENT_FINALS]


Kind = Literal["invalid", "conflict", "late"]


@router.get("/samples/{kind}")
async def samples(request: Request, service: ServiceDep, kind: Kind) -> dict[str, Any]:
    """The latest records behind a counter: `invalid` and `conflict` from orders-dlq,
    `late` from orders-late (duplicates are counted, not kept anywhere)."""
    topic = service.topics.late if kind == "late" else service.topics.dlq
    try:
        entries = await _tails(request, service).last(topic, SAMPLE_SIZE)
    except TailUnavailable as error:
        raise HTTPException(503, str(error), headers={"Retry-After": "2"}) from None
    items = []
    for entry in entries:
        if entry.value is None:
            continue
        try:
            value = orjson.loads(entry.value)
        except orjson.JSONDecodeError:
            continue
        is_conflict = str(value.get("error", "")).startswith("conflict")
        if kind == "late" or is_conflict == (kind == "conflict"):
            items.append(value)
    return {"kind": kind, "topic": topic, "items": items[-SAMPLE_SHOWN:]}
