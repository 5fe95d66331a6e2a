"""The dashboard's figures from samples of the worker's counters, the group's merge, and
its page and routes through the API (no broker: the browser tests run it for real)."""

import re
import time

import pytest

from api.dashboard import (
    group_throughput,
    merge_views,
    operator_figures,
    rates,
    unreachable_view,
)
from api.main import create_api
from app.history import MetricHistory
from app.metrics import Metrics
from core.jobgraph import OPERATOR_NAMES
from tests.unit.fakes import FakeRuntime
from tests.unit.test_api import ApiClient

PROCESSED = "orders_processed_total"


def at(ms, processed):
    """A sample taken at `ms` on both clocks."""
    return (ms, ms, {PROCESSED: processed})


def test_rates_are_increases_per_second_over_the_last_six_seconds():
    samples = [at(0, 0.0), at(2_000, 10.0), at(4_000, 30.0), at(6_000, 40.0),
               at(8_000, 100.0)]
    # the oldest sample within 6 s of the newest is at 2 s: (100 - 10) / 6 s
    assert rates(samples) == {PROCESSED: 15.0}
    assert rates(samples[:1]) == {}
    assert rates([at(0, 5.0), at(10_000, 25.0)]) == {PROCESSED: 2.0}
    # intervals on the monotonic clock: a wall clock stepping back changes nothing
    assert rates([(50_000, 0, {PROCESSED: 0.0}), (40_000, 4_000, {PROCESSED: 8.0})]) == {
        PROCESSED: 2.0}
    # a sampler that stopped: no rate, rather than its last one forever
    assert rates(samples, now_ms=8_000 + 10_001) == {}
    assert rates(samples, now_ms=8_000 + 10_000) == {PROCESSED: 15.0}


def test_the_chart_adds_workers_sampling_out_of_phase_exactly():
    # two workers at a steady 100/s, sampling 300 ms and 1,700 ms past each 2 s boundary
    one = [[t, (t - 300) / 10] for t in range(300, 12_000, 2_000)]
    two = [[t, (t - 1_700) / 10] for t in range(1_700, 12_000, 2_000)]
    # boundaries 2 s to 10 s lie within both; 10 s is the older of their newest samples
    assert group_throughput([one, two]) == [[4_000, 200.0], [6_000, 200.0], [8_000, 200.0],
                                            [10_000, 200.0]]
    # one worker with jitter: no bucket lost, none doubled
    jittery = [[0, 0.0], [1_990, 199.0], [4_010, 401.0], [5_950, 595.0], [8_000, 800.0]]
    assert group_throughput([jittery]) == [[2_000, 100.0], [4_000, 100.0], [6_000, 100.0],
                                           [8_000, 100.0]]
    assert group_throughput([[], [[0, 1.0]]]) == []


def test_operator_figures_from_the_metrics_the_stages_move():
    metrics = Metrics()
    history = MetricHistory(metrics.sampled())
    history.sample(0)
    metrics.operators.moved("parse", 100, 90)
    metrics.operators.waited("sinks", "output", 0.25)
    with metrics.operators.waiting("source", "input"):
        time.sleep(0.2)
        history.sample(1_000)  # a wait going on counts as it goes
    samples = history.samples()
    seconds = (samples[1][1] - samples[0][1]) / 1000
    figures = {f["name"]: f for f in operator_figures(samples[-1][2], rates(samples))}
    assert list(figures) == list(OPERATOR_NAMES)
    assert figures["parse"] == {
        "name": "parse", "task": "ingest", "records": figures["parse"]["records"],
        "waits_on": None, "in_total": 100.0, "out_total": 90.0,
        "in_per_s": pytest.approx(100 / seconds), "out_per_s": pytest.approx(90 / seconds),
        "wait_ms_per_s": None}
    assert figures["source"]["wait_ms_per_s"] == pytest.approx(200 / seconds, rel=0.2)
    assert figures["sinks"]["wait_ms_per_s"] == pytest.approx(250 / seconds)
    assert figures["dedup"]["in_per_s"] == 0.0


def view(url, processed, per_s, partitions):
    ops = [{"name": n, "in_total": 1.0, "out_total": 1.0, "in_per_s": per_s,
            "out_per_s": per_s, "wait_ms_per_s": None if n == "parse" else 10.0}
           for n in OPERATOR_NAMES]
    return {"workers": [{"url": url, "status": "ready", "partitions": partitions, "lag": 3}],
            "operators": ops, "counters": {"processed": processed, "late": 1},
            "orders_per_s": per_s, "processed": [[0, 0.0], [2_000, 2.0 * per_s]],
            "sources": [{"partition": p} for p in partitions],
            "aggregation": [{"partition": p} for p in partitions]}


def test_the_group_view_adds_figures_and_joins_lists():
    merged = merge_views([view("http://b", 10, 2.0, [1, 3]), view("http://a", 5, 3.0, [0, 2]),
                          unreachable_view("http://c", {4, 5})])
    assert [(w["url"], w["status"], w["partitions"]) for w in merged["workers"]] == [
        ("http://a", "ready", [0, 2]), ("http://b", "ready", [1, 3]),
        ("http://c", "unreachable", [4, 5])]
    assert [s["partition"] for s in merged["sources"]] == [0, 1, 2, 3]
    assert [a["partition"] for a in merged["aggregation"]] == [0, 1, 2, 3]
    assert merged["counters"] == {"processed": 15, "counted": 0, "invalid": 0,
                                  "duplicate": 0, "conflict": 0, "late": 2}
    assert merged["orders_per_s"] == 5.0
    assert merged["throughput"] == [[2_000, 5.0]]
    parse, source = merged["operators"][1], merged["operators"][0]
    assert (parse["in_per_s"], parse["in_total"], parse["wait_ms_per_s"]) == (5.0, 2.0, None)
    assert source["wait_ms_per_s"] == 20.0
    # nobody answered but this worker, which has no figures yet: a page, not an error
    alone = merge_views([unreachable_view("http://c", set())])
    assert [op["in_per_s"] for op in alone["operators"]] == [0.0] * len(OPERATOR_NAMES)


def test_the_page_and_its_files_load_without_the_token_and_hold_no_data():
    runtime = FakeRuntime(api_token="s3cret")
    client = ApiClient(create_api(runtime))
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    # every file it loads is the package's own, by a relative path: no outside URL
    sources = re.findall(r'(?:src|href)="([^"#]+)"', page.text)
    assert sorted(sources) == ["dashboard/assets/dashboard.css",
                               "dashboard/assets/dashboard.js", "data:,"]
    for asset in ("dashboard.js", "dashboard.css"):
        assert client.get(f"/dashboard/assets/{asset}").status_code == 200
    assert client.get("/dashboard/assets/other.js").status_code == 404
    assert "http" not in client.get("/dashboard/assets/dashboard.js").text
    assert client.get("/dashboard/access").json() == {"token_required": True}
    assert client.get("/dashboard/data").status_code == 401
    assert client.get("/dashboard/samples/late").status_code == 401
    open_api = ApiClient(create_api(FakeRuntime()))
    assert open_api.get("/dashboard/access").json() == {"token_required": False}


@pytest.mark.parametrize("kind", ["duplicate", "other"])
def test_a_sample_of_an_unknown_kind_is_a_422_naming_it(kind):
    client = ApiClient(create_api(FakeRuntime()))
    answer = client.get(f"/dashboard/samples/{kind}")
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["path", "kind"]


def test_the_operator_series_are_in_metrics_from_the_start():
    text = ApiClient(create_api(FakeRuntime())).get("/metrics").text
    for name in OPERATOR_NAMES:
        assert f'orderstream_operator_records_in_total{{operator="{name}"}} 0.0' in text
        assert f'orderstream_operator_records_out_total{{operator="{name}"}} 0.0' in text
    waits = re.findall(r'orderstream_operator_wait_seconds_total\{(.*)\} 0.0', text)
    assert sorted(waits) == ['on="input",operator="aggregate"', 'on="input",operator="source"',
                             'on="output",operator="repartition"',
                             'on="output",operator="sinks"']
