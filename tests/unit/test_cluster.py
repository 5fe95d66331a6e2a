"""The cluster-query helper (api/cluster.py): its merge as a pure function, and the routes
that use it against fake peers, answered through the API's own httpx client (a
MockTransport in place of the network)."""

import operator

import httpx
import pytest

from api.cluster import Merge, merge_answers
from api.main import create_api
from core.queries import json_ranking_key
from tests.expected import iso
from tests.unit.fakes import FakeRuntime, runtime_with_orders
from tests.unit.test_api import ORDERS, T0, ApiClient

TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def total(first: str, last: str, count: int) -> dict:
    return {"buyer": {"first_name": first, "last_name": last}, "count": count,
            "total_price": f"{count}.00"}


def row(start_ms: int, first: str, last: str, count: int, final: bool = True) -> dict:
    return {"window_start": iso(start_ms), "window_end": iso(start_ms + 10_000),
            "buyer": {"first_name": first, "last_name": last}, "count": count,
            "sum_price": f"{count}.00", "min_price": "1.00", "max_price": "1.00",
            "avg_price": "1.00", "final": final}


# --- the merge, a pure function -------------------------------------------------------------

def test_merge_ranks_every_answers_items_sums_the_totals_and_cuts_the_page():
    mine = {"items": [total("Ana", "Ruiz", 5), total("Bo", "Lee", 1)], "total": 2}
    answers = [{"items": [total("Cy", "Ng", 5), total("Di", "Ab", 2)], "total": 4},
               {"items": [total("Ed", "Zed", 9)], "total": 1}]
    merge = Merge(key=json_ranking_key, offset=1, limit=3, combine={"total": operator.add})
    # ranked: Ed Zed 9, Cy Ng 5, Ana Ruiz 5 (Ng < Ruiz), Di Ab 2, Bo Lee 1
    assert merge_answers(mine, answers, merge) == {
        "items": [total("Cy", "Ng", 5), total("Ana", "Ruiz", 5), total("Di", "Ab", 2)],
        "total": 7}


def test_merge_without_peers_keeps_this_workers_order_and_fields():
    mine = {"window_start": "w", "final": True,
            "items": [total("Bo", "Lee", 1), total("Ana", "Ruiz", 5), total("Cy", "Ng", 0)]}
    merge = Merge(key=json_ranking_key, limit=2, combine={"final": operator.and_})
    assert merge_answers(mine, [], merge) == {
        "window_start": "w", "final": True,
        "items": [total("Bo", "Lee", 1), total("Ana", "Ruiz", 5)]}


def test_merge_folds_named_fields_in_order_and_keeps_the_others_from_this_worker():
    mine = {"window_start": "mine", "final": True, "seen": ["me"]}
    answers = [{"window_start": "a", "final": True, "seen": ["a"]},
               {"window_start": "b", "final": False, "seen": ["b"]}]
    merge = Merge(combine={"final": operator.and_, "seen": operator.add})
    assert merge_answers(mine, answers, merge) == {
        "window_start": "mine", "final": False, "seen": ["me", "a", "b"]}


# --- routes against fake peers --------------------------------------------------------------

class Peers:
    """The other workers: (host, path) -> a JSON answer, (status, answer), bytes that are
    no JSON, or an exception the transport raises. Every request they get is kept."""

    def __init__(self, answers: dict) -> None:
        self.answers = answers
        self.asked: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.asked.append(request)
        answer = self.answers[request.url.host, request.url.path]
        if isinstance(answer, Exception):
            raise answer
        if isinstance(answer, bytes):
            return httpx.Response(200, content=answer)
        status, body = answer if isinstance(answer, tuple) else (200, answer)
        return httpx.Response(status, json=body)

    def params(self, host: str) -> list[dict[str, str]]:
        return [dict(r.url.params) for r in self.asked if r.url.host == host]


def in_cluster(runtime: FakeRuntime, peers: Peers, others: dict[str, set[int]]) -> ApiClient:
    """An API whose worker shares the group with `others` (URL -> partitions)."""
    me = runtime.settings.advertised_url
    runtime.members = lambda: {me: {0, 1}, **others}
    api = create_api(runtime)
    api.state.http = httpx.AsyncClient(transport=httpx.MockTransport(peers))
    return ApiClient(api)


A, B = "http://peer-a:8000", "http://peer-b:8000"


def test_buyers_merges_every_workers_page_asking_each_for_the_first_offset_plus_limit():
    peers = Peers({
        ("peer-a", "/buyers"): {"items": [total("Cy", "Ng", 5), total("Di", "Ab", 2)],
                                "total": 4},
        ("peer-b", "/buyers"): {"items": [total("Ed", "Zed", 9), total("Ana", "Ruiz", 5)],
                                "total": 3}})
    client = in_cluster(FakeRuntime(api_token=TOKEN), peers, {A: {2}, B: {3}})
    page = client.get("/buyers", params={"limit": 2, "offset": 1}, headers=AUTH)
    assert page.status_code == 200
    assert page.json() == {"items": [total("Cy", "Ng", 5), total("Ana", "Ruiz", 5)],
                           "total": 7}
    assert peers.params("peer-a") == peers.params("peer-b") == [{"upto": "3"}]
    for request in peers.asked:  # local scope, with the caller's credentials
        assert request.headers["x-orderstream-scope"] == "local"
        assert request.headers["authorization"] == AUTH["Authorization"]
    metrics = client.get("/metrics", headers=AUTH).text
    assert ('orderstream_forwarded_call_seconds_count{outcome="200",route="/buyers"} 2.0'
            in metrics)


@pytest.mark.parametrize(("answer", "status", "detail"), [
    ((503, {"detail": "this worker is restoring"}), 503,
     "worker http://peer-b:8000: this worker is restoring"),
    (httpx.ConnectError("refused"), 503, "worker http://peer-b:8000 did not answer: ConnectError"),
    ((422, {"detail": "limit: too large"}), 422, "limit: too large"),
])
def test_a_peer_that_cannot_answer_fails_the_list_never_a_partial_one(answer, status, detail):
    peers = Peers({("peer-a", "/buyers"): {"items": [], "total": 0},
                   ("peer-b", "/buyers"): answer})
    client = in_cluster(FakeRuntime(), peers, {A: {2}, B: {3}})
    failed = client.get("/buyers")
    assert (failed.status_code, failed.json()) == (status, {"detail": detail})
    assert failed.headers.get("retry-after") == ("1" if status == 503 else None)


def test_window_rows_merge_by_start_then_last_then_first_name_up_to_the_limit():
    peers = Peers({
        ("peer-a", "/windows/tumble_10s"): {"items": [row(T0, "Zoë", "Brontë", 1),
                                                      row(T0 + 10_000, "Ana", "Ruiz", 2)]},
        ("peer-b", "/windows/tumble_10s"): {"items": [row(T0, "Ana", "Ruiz", 3),
                                                      row(T0, "Bo", "Brontë", 4)]}})
    client = in_cluster(FakeRuntime(), peers, {A: {2}, B: {3}})
    rows = client.get("/windows/tumble_10s", params={"limit": 3, "first_name": "x"})
    assert rows.json() == {"items": [row(T0, "Bo", "Brontë", 4), row(T0, "Zoë", "Brontë", 1),
                                     row(T0, "Ana", "Ruiz", 3)]}
    assert peers.params("peer-a") == [{"first_name": "x", "limit": "3"}]


def test_a_call_in_local_scope_asks_no_peer():
    peers = Peers({})
    client = in_cluster(FakeRuntime(), peers, {A: {2}, B: {3}})
    local = {"X-Orderstream-Scope": "local"}
    assert client.get("/windows/tumble_10s", headers=local).json() == {"items": []}
    assert client.get("/windows/tumble_10s/top", headers=local).status_code == 404
    assert peers.asked == []


@pytest.fixture
def data_runtime(tmp_path):  # one per test: in_cluster changes its group
    runtime = runtime_with_orders(tmp_path, ORDERS, allowed_lateness="5s")
    yield runtime
    runtime.aggregates.close()


@pytest.mark.parametrize(("b_final", "final"), [(True, True), (False, False)])
def test_top_is_final_only_when_every_workers_part_is(data_runtime, b_final, final):
    # on its own, this worker's top 2 of the window at T0 + 10 s is final (test_api.py)
    mine = ApiClient(create_api(data_runtime)).get(
        "/windows/tumble_10s/top", params={"at": T0 + 12_345, "k": 2}).json()
    assert mine["final"] is True and len(mine["items"]) == 2
    peers = Peers({
        ("peer-a", "/windows/tumble_10s/top"): {
            "window_start": iso(T0 + 10_000), "window_end": iso(T0 + 20_000), "final": True,
            "items": [row(T0 + 10_000, "Ed", "Zed", 50)]},
        ("peer-b", "/windows/tumble_10s/top"): {
            "window_start": iso(T0 + 10_000), "window_end": iso(T0 + 20_000),
            "final": b_final, "items": []}})
    client = in_cluster(data_runtime, peers, {A: set(), B: set()})
    top = client.get("/windows/tumble_10s/top", params={"at": iso(T0 + 12_345), "k": 2})
    assert top.json() == {"window_start": iso(T0 + 10_000), "window_end": iso(T0 + 20_000),
                          "final": final,
                          "items": [row(T0 + 10_000, "Ed", "Zed", 50), mine["items"][0]]}
    assert peers.params("peer-a") == [{"at": str(T0 + 10_000), "k": "2"}]


def test_top_without_at_ranks_the_latest_window_with_data_on_any_worker(data_runtime):
    # this worker's latest window starts at T0 + 50 s (test_api.py); peer-a has a later one
    peers = Peers({
        ("peer-a", "/windows/tumble_10s/latest-start"): {"latest_start_ms": T0 + 70_000},
        ("peer-b", "/windows/tumble_10s/latest-start"): {"latest_start_ms": None},
        ("peer-a", "/windows/tumble_10s/top"): {
            "window_start": iso(T0 + 70_000), "window_end": iso(T0 + 80_000), "final": False,
            "items": [row(T0 + 70_000, "Ed", "Zed", 1, final=False)]},
        ("peer-b", "/windows/tumble_10s/top"): {
            "window_start": iso(T0 + 70_000), "window_end": iso(T0 + 80_000), "final": False,
            "items": []}})
    client = in_cluster(data_runtime, peers, {A: set(), B: set()})
    top = client.get("/windows/tumble_10s/top", params={"k": 3})
    assert top.json() == {"window_start": iso(T0 + 70_000), "window_end": iso(T0 + 80_000),
                          "final": False,
                          "items": [row(T0 + 70_000, "Ed", "Zed", 1, final=False)]}
    assert peers.params("peer-b") == [{}, {"at": str(T0 + 70_000), "k": "3"}]


def test_top_without_at_is_a_404_when_no_worker_has_data():
    peers = Peers({("peer-a", "/windows/tumble_10s/latest-start"): {"latest_start_ms": None},
                   ("peer-b", "/windows/tumble_10s/latest-start"): {"latest_start_ms": None}})
    client = in_cluster(FakeRuntime(), peers, {A: {2}, B: {3}})
    missing = client.get("/windows/tumble_10s/top")
    assert (missing.status_code, missing.json()) == (
        404, {"detail": "window tumble_10s has no data"})


def test_instances_lists_every_worker_by_url_and_a_silent_one_as_unreachable():
    c = "http://peer-c:8000"
    peers = Peers({("peer-b", "/instance"): {"status": "restoring", "lag": 4},
                   ("peer-a", "/instance"): httpx.ConnectTimeout("slow"),
                   ("peer-c", "/instance"): b"<html>no JSON</html>"})
    client = in_cluster(FakeRuntime(), peers, {B: {3, 2}, A: set(), c: {4}})
    assert client.get("/instances").json() == [
        {"url": "http://127.0.0.1:8000", "partitions": [0, 1], "status": "ready", "lag": 0,
         "this_worker": True},
        {"url": A, "partitions": [], "status": "unreachable", "lag": None,
         "this_worker": False},
        {"url": B, "partitions": [2, 3], "status": "restoring", "lag": 4,
         "this_worker": False},
        {"url": c, "partitions": [4], "status": "unreachable", "lag": None,
         "this_worker": False}]
    assert {r.extensions["timeout"]["read"] for r in peers.asked} == {2.0}
    assert all(r.headers["x-orderstream-scope"] == "local" for r in peers.asked)
    assert "orderstream_forwarded_call_seconds_count" not in client.get("/metrics").text
