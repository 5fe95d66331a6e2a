"""A schema fuzz run of the API (schemathesis): every route, generated parameters, no 5xx
and every response (status and body) as /openapi.json describes it. The routes answer
with pre-serialized JSON (api/schemas.py), so this is what holds them to their models.

It runs twice: against a worker with no data, and against real RocksDB stores filled from
known orders (tests/unit/test_api.py), so lookups, window scans and rankings are fuzzed
on data, not only on empty stores. Generated names rarely hit a buyer, so the known
buyers' names are offered to it as examples too. tests/integration/test_api_fuzz_live.py
does the same over HTTP against two real workers (forwarded and gathered calls).

The budget is a count, sized by measurement: 200 examples per operation on data and 50
without take about 45 s for the whole file on this 2-core machine (the former 25 and 25
took 15 s). Derandomized, without the example database: a run generates the same cases
wherever it runs, so CI is reproducible and so is its time; pytest's timeout bounds each
operation, shrinking included.
"""

import tempfile
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis import checks

from api.main import create_api
from tests.unit.fakes import FakeRuntime, runtime_with_orders
from tests.unit.test_api import ORDERS

TOKEN = "fuzz-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
_ANY_RUN = {"deadline": None, "derandomize": True, "database": None,
            "phases": [Phase.explicit, Phase.generate, Phase.shrink],
            "suppress_health_check": list(HealthCheck)}
WITHOUT_DATA = settings(max_examples=50, **_ANY_RUN)
ON_DATA = settings(max_examples=200, **_ANY_RUN)
PER_OPERATION_S = 60


def load(api):  # noqa: ANN001, ANN201
    # endless event streams are tested against a real worker (tests/integration/test_streams.py),
    # and so are the dashboard's routes that read topics (test_api_fuzz_live.py,
    # test_dashboard_browser.py): here no broker answers them
    return schemathesis.openapi.from_asgi("/openapi.json", api, headers=AUTH).exclude(
        path_regex="/stream$|^/dashboard/(data|samples)")


# Built at import, as schemathesis' parametrize needs the schema then (its from_fixture
# does not run on this pytest); the module fixture below closes and deletes the stores.
_stores_dir = tempfile.TemporaryDirectory(prefix="fuzz-stores-")
_with_orders = runtime_with_orders(Path(_stores_dir.name), ORDERS, api_token=TOKEN,
                                   allowed_lateness="5s")
empty = load(create_api(FakeRuntime(api_token=TOKEN)))
with_data = load(create_api(_with_orders))


@pytest.fixture(scope="module", autouse=True)
def _remove_the_stores():  # noqa: ANN202
    yield
    _with_orders.aggregates.close()
    _stores_dir.cleanup()


def call(case):  # noqa: ANN001
    # Every call carries the token, so schemathesis' negative cases that drop it would be
    # judged wrongly: auth is asserted in test_api.py; unknown query parameters are ignored.
    # Time parameters are strings in the schema (ISO-8601 or epoch ms), and which strings
    # name a real instant no JSON schema says: `at=` or `2026-02-31T00:00:00Z` is a 422
    # that schemathesis would call a rejected valid request. parse_time_param has unit tests.
    case.call_and_validate(
        headers=AUTH,
        excluded_checks=[checks.negative_data_rejection, checks.missing_required_header,
                         checks.positive_data_acceptance])


@pytest.mark.timeout(PER_OPERATION_S)
@empty.parametrize()
@WITHOUT_DATA
def test_no_server_error_and_no_schema_violation_without_data(case):  # noqa: ANN001
    call(case)


@pytest.mark.timeout(PER_OPERATION_S)
@with_data.parametrize()
@ON_DATA
def test_no_server_error_and_no_schema_violation_on_data(case):  # noqa: ANN001
    call(case)
