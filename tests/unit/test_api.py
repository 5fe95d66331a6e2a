"""The API on its own (httpx over ASGI) with a runtime that has no data yet."""

import asyncio

import httpx
import pytest

from api.main import create_api
from app.metrics import Metrics
from app.settings import Settings
from app.topics import topic_names


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


class NoStores:
    """Every aggregation partition assigned, none holding data."""

    assigned = {0, 1, 2, 3}

    def read_only_view(self):
        return {}


class FakeRuntime:
    """The parts of app.runtime.Runtime the routes read: settings, stores, readiness."""

    def __init__(self, readiness="ready", **settings):
        self.settings = Settings(**settings)
        self.names = topic_names(self.settings)
        self.partitions = {self.names.by_buyer: 4}
        self.aggregates = NoStores()
        self.metrics = Metrics()
        self.readiness = readiness

    def members(self):
        return {self.settings.advertised_url: set()}

    def refresh_gauges(self):
        pass


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


@pytest.mark.parametrize("path", ["/buyers", "/windows", "/windows/tumble_10s", "/metrics"])
def test_every_other_route_needs_the_bearer_token(client, path):
    assert client.get(path).status_code == 401
    assert client.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get(path, headers={"Authorization": "Bearer s3cret"}).status_code == 200


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
