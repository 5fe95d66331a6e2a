"""The API on its own (httpx over ASGI): a runtime with no data yet, and one whose RocksDB
stores the real aggregation step filled from known orders (tests/unit/fakes.py)."""

import asyncio
import random
from datetime import datetime
from decimal import Decimal

import httpx
import pytest

from api.main import create_api
from core.models import Order
from core.shuffle import buyer_partition
from tests.expected import expected_buyer_items, expected_window_items, iso
from tests.unit.fakes import PARTITIONS, FakeRuntime, runtime_with_orders


class ApiClient:
    """A synchronous client over httpx's ASGI transport (no server, no event loop of ours)."""

    def __init__(self, api):
        self._api = api

    def get(self, path, **kwargs):
        async def call():
            transport = httpx.ASGITransport(app=self._api)
            async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
                return await client.get(path, **kwargs)
        return asyncio.run(call())


@pytest.fixture
def client():
    return ApiClient(create_api(FakeRuntime(api_token="s3cret")))


def test_health_and_ready_need_no_token():
    client = ApiClient(create_api(FakeRuntime(readiness="restoring", api_token="s3cret")))
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready")
    assert (ready.status_code, ready.json()) == (503, {"status": "restoring"})


def test_data_routes_answer_503_with_retry_after_until_ready():
    client = ApiClient(create_api(FakeRuntime(readiness="rebalancing")))
    answer = client.get("/buyers")
    assert answer.status_code == 503 and answer.headers["retry-after"] == "1"
    assert answer.json() == {"detail": "this worker is rebalancing"}


@pytest.mark.parametrize("path", ["/buyers", "/windows", "/windows/tumble_10s", "/metrics",
                                  "/instances", "/openapi.json"])
def test_every_other_route_needs_the_bearer_token(client, path):
    assert client.get(path).status_code == 401
    assert client.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get(path, headers={"Authorization": "Bearer s3cret"}).status_code == 200


def test_a_non_ascii_token_matches_sent_as_utf8_or_latin1_and_nothing_else():
    client = ApiClient(create_api(FakeRuntime(api_token="sécret")))
    utf8, latin1 = b"Bearer s\xc3\xa9cret", b"Bearer s\xe9cret"
    assert client.get("/buyers", headers={"Authorization": utf8}).status_code == 200
    assert client.get("/buyers", headers={"Authorization": latin1}).status_code == 200
    assert client.get("/buyers", headers={"Authorization": b"Bearer secret"}).status_code == 401
    assert client.get("/buyers", headers={"Authorization": b"Bearer s\xc3cret"}).status_code == 401


def test_errors_are_json_naming_the_problem():
    client = ApiClient(create_api(FakeRuntime()))
    bad = client.get("/buyers", params={"limit": -1})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "limit"]
    bad_time = client.get("/windows/tumble_10s", params={"start": "yesterday"})
    assert bad_time.status_code == 422 and bad_time.json()["detail"][0]["loc"] == [
        "query", "start"]
    unknown = client.get("/windows/nope")
    assert unknown.status_code == 404
    assert unknown.json() == {
        "detail": "unknown window 'nope' (configured: tumble_10s, hop_1m_10s)"}
    assert client.get("/windows/tumble_10s/top").status_code == 404
    schemes = client.get("/openapi.json").json()["components"]["securitySchemes"]
    assert schemes == {"HTTPBearer": {"type": "http", "scheme": "bearer",
                                      "description": "API_TOKEN, when the worker has one"}}


def test_requests_are_counted_per_route_template_and_status():
    client = ApiClient(create_api(FakeRuntime()))
    client.get("/buyers")
    client.get("/buyers/Ana/Ruiz")  # 404: nobody here
    client.get("/buyers/Zoë/Brontë")
    text = client.get("/metrics").text
    assert 'orderstream_http_request_seconds_count{route="/buyers",status="200"} 1.0' in text
    assert ('orderstream_http_request_seconds_count{route="/buyers/{first_name}/{last_name}",'
            'status="404"} 2.0') in text


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_the_docs_shells_load_without_the_token_and_hold_no_data(client, path):
    shell = client.get(path)
    assert shell.status_code == 200 and shell.headers["content-type"].startswith("text/html")
    # the schema is data: the shell fetches it with the token (api/static/docs.js)
    assert "/buyers" not in shell.text and "openapi" not in shell.text.lower()
    for asset in ("docs.js", "docs.css", "swagger-ui-bundle.js", "swagger-ui.css",
                  "redoc.standalone.js", "favicon.png"):
        answer = client.get(f"/docs/assets/{asset}")
        assert answer.status_code == 200 and len(answer.content) > 100, asset
    # only the listed files: no other file of the package, nor the shells themselves
    for name in ("docs.py", "main.py", "shell.html", "..%2Fmain.py"):
        assert client.get(f"/docs/assets/{name}").status_code == 404, name


# --- with data ------------------------------------------------------------------------------

T0 = 1_795_000_000_000  # a multiple of 10 s: 2026-11-18T11:06:40Z
BUYERS = [("Ana", "Ruiz"), ("Zoë", "Brontë"), ("Émile", "Ruiz"), ("王", "伟"), ("ana", "Ruiz"),
          ("Søren", "Kierkegård"), ("José", "Núñez")]
SPAN_S = 60


def known_orders() -> list[Order]:
    """One order a second for a minute; the last seven, one per buyer, end every partition
    at about the same time, so which windows are final does not depend on the partition."""
    rng = random.Random(42)
    picks = [rng.choice(BUYERS[:4]) for _ in range(SPAN_S - len(BUYERS))] + BUYERS
    return [Order(n, Decimal(rng.randrange(1, 100_000)) / 100, *buyer, T0 + n * 1000)
            for n, buyer in enumerate(picks)]


ORDERS = known_orders()
MEANING = [(o.order_number, o.price, o.buyer, o.order_time_ms) for o in ORDERS]
TUMBLE_ROWS = expected_window_items(MEANING, 10_000, 10_000)  # `final` left out


@pytest.fixture(scope="module")
def data_client(tmp_path_factory):
    runtime = runtime_with_orders(tmp_path_factory.mktemp("stores"), ORDERS,
                                  api_token="s3cret", allowed_lateness="5s")
    yield ApiClient(create_api(runtime))
    runtime.aggregates.close()


def authorized(client, path, **params):
    return client.get(path, params=params, headers={"Authorization": "Bearer s3cret"})


def test_buyers_ranked_and_paged_over_every_partition(data_client):
    expected = expected_buyer_items(MEANING)
    assert {buyer_partition(*buyer, PARTITIONS) for buyer in BUYERS} == {0, 1, 2, 3}
    assert len(expected) == 7
    page = authorized(data_client, "/buyers", limit=100).json()
    assert page == {"items": expected, "total": 7}
    assert authorized(data_client, "/buyers", limit=2, offset=3).json() == {
        "items": expected[3:5], "total": 7}
    for item in expected:
        buyer = item["buyer"]
        assert authorized(data_client, f"/buyers/{buyer['first_name']}/{buyer['last_name']}"
                          ).json() == item
        assert authorized(data_client, "/buyer", **buyer).json() == item
    assert authorized(data_client, "/buyers/Ana/Nobody").status_code == 404


def test_window_rows_filtered_and_final_only_where_the_watermark_passed(data_client):
    rows = authorized(data_client, "/windows/tumble_10s", limit=10_000).json()["items"]
    assert [{k: v for k, v in row.items() if k != "final"} for row in rows] == TUMBLE_ROWS
    # every partition's last order is at T0 + 53 s or later, none after T0 + 59 s
    starts = {row["window_start"]: row["final"] for row in rows}
    assert starts[iso(T0)] is True and starts[iso(T0 + 30_000)] is True
    assert starts[iso(T0 + 50_000)] is False
    ana = authorized(data_client, "/windows/tumble_10s", first_name="Ana", last_name="Ruiz",
                     start=iso(T0 + 20_000), end=str(T0 + 40_000)).json()["items"]
    assert ana == [r for r in rows if r["buyer"] == {"first_name": "Ana", "last_name": "Ruiz"}
                   and T0 + 20_000 <= ms(r["window_start"]) < T0 + 40_000]
    assert ana  # the filter kept something to compare


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def test_top_ranks_the_window_that_holds_at(data_client):
    top = authorized(data_client, "/windows/tumble_10s/top", at=iso(T0 + 12_345), k=2).json()
    window = [r for r in TUMBLE_ROWS if r["window_start"] == iso(T0 + 10_000)]
    window.sort(key=lambda r: (-r["count"], r["buyer"]["last_name"], r["buyer"]["first_name"]))
    assert top["window_start"] == iso(T0 + 10_000) and top["final"] is True
    assert [{k: v for k, v in r.items() if k != "final"} for r in top["items"]] == window[:2]
    latest = authorized(data_client, "/windows/tumble_10s/top").json()
    assert latest["window_start"] == iso(T0 + 50_000) and latest["final"] is False


@pytest.mark.parametrize("value", ["", "2026-02-31T00:00:00Z", "10:15", "1e3", "１２",
                                   "9" * 5_000, "9999-12-31T23:59:59.999Z"])
def test_a_time_parameter_that_names_no_instant_is_a_422_naming_it(data_client, value):
    answer = authorized(data_client, "/windows/tumble_10s/top", at=value)
    assert answer.status_code == 422 and answer.json()["detail"][0]["loc"] == ["query", "at"]


def test_time_parameters_take_iso_or_epoch_ms_alike(data_client):
    by_iso = authorized(data_client, "/windows/tumble_10s", start=iso(T0 + 20_000),
                        end=iso(T0 + 30_000)).json()
    by_ms = authorized(data_client, "/windows/tumble_10s", start=str(T0 + 20_000),
                       end=str(T0 + 30_000)).json()
    assert by_iso == by_ms
    assert {row["window_start"] for row in by_ms["items"]} == {iso(T0 + 20_000)}


@pytest.mark.parametrize("value", ["0:" + "9" * 5_000, "０:1", "1:2," * 5_000 + "x"])
def test_a_last_event_id_that_is_no_position_is_a_400_naming_it(value):
    from fastapi import HTTPException

    from api.routes.streams import parse_event_id

    with pytest.raises(HTTPException) as error:
        parse_event_id(value)
    assert error.value.status_code == 400 and "Last-Event-ID" in error.value.detail
    assert parse_event_id("u0:12,f3:7") == {("u", 0): 12, ("f", 3): 7}
