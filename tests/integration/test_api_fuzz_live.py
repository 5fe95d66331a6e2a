"""The schema fuzz of tests/unit/test_api_fuzz.py against two real workers holding data.

The unit fuzz runs the ASGI app over a stand-in runtime that owns every partition; here
`/openapi.json` of a real worker drives schemathesis over HTTP, with the real runtime, and
half the buyers on the other worker: key lookups are forwarded, lists and windows gathered
from both, the token carried along. The budget is bounded by count (and pytest's
timeout), derandomized so that a run repeats.
"""

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode, checks

from app.embedded import free_port
from tests.integration.conftest import produce, wait_for
from tests.integration.test_pipeline import make_orders
from tests.integration.test_scale_out import _settled

pytestmark = pytest.mark.integration

TOKEN = "live-fuzz-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
# 10 operations over HTTP, each call a few ms (forwarded ones two hops): the whole test,
# workers and data included, takes about 45 s on this 2-core machine
BUDGET = settings(max_examples=100, deadline=None, derandomize=True, database=None,
                  phases=[Phase.explicit, Phase.generate, Phase.shrink],
                  suppress_health_check=list(HealthCheck))
EXCLUDED = [checks.negative_data_rejection, checks.missing_required_header,
            checks.positive_data_acceptance]  # why: tests/unit/test_api_fuzz.py's call()


@pytest.mark.timeout(300)
def test_two_workers_with_data_answer_every_parameter_without_5xx(broker, worker_env,
                                                                  make_worker, tmp_path):
    worker_env.update(ALLOWED_LATENESS="1h", WINDOW_RETENTION="2h", PRINT_SINK="0",
                      API_TOKEN=TOKEN)
    raws, meaning = make_orders(400, seed=5)
    workers = [make_worker(worker_env, "w0")]
    workers[0].wait_ready()
    workers.append(make_worker({**worker_env, "DATA_DIR": str(tmp_path / "data1"),
                                "API_PORT": str(free_port())}, "w1"))
    for worker in workers:
        wait_for(lambda w=worker: _settled(w, 2), timeout_s=120, what="workers settled")
    produce(broker, worker_env["ORDERS_TOPIC"],
            [(str(n).encode(), raw) for (n, *_), raw in zip(meaning, raws, strict=True)])
    first = workers[0]
    wait_for(lambda: sum(i["count"] for i in first.get("/buyers", limit=1000).json()["items"])
             == 400, what="all counted")

    schema = schemathesis.openapi.from_url(f"{first.url}/openapi.json", headers=AUTH).exclude(
        path_regex="/stream$")  # endless streams: tests/integration/test_streams.py
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 8
    for operation in operations:
        cases = st.one_of(operation.as_strategy(GenerationMode.POSITIVE),
                          operation.as_strategy(GenerationMode.NEGATIVE))

        @BUDGET
        @given(case=cases)
        def fuzz(case):  # noqa: ANN001, ANN202
            case.call_and_validate(headers=AUTH, excluded_checks=EXCLUDED)

        fuzz()
