"""A schema fuzz run of the API (schemathesis), on a small budget: every route, generated
parameters, no 5xx and every response (status and body) as /openapi.json describes it."""

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks

from api.main import create_api
from tests.unit.test_api import FakeRuntime

TOKEN = "fuzz-token"
# endless event streams are tested against a real worker (tests/integration/test_streams.py)
schema = schemathesis.openapi.from_asgi(
    "/openapi.json", create_api(FakeRuntime(api_token=TOKEN))).exclude(path_regex="/stream$")


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_error_and_no_schema_violation(case):  # noqa: ANN001
    # Every call carries the token, so schemathesis' negative cases that drop it would be
    # judged wrongly: auth is asserted in test_api.py; unknown query parameters are ignored.
    case.call_and_validate(
        headers={"Authorization": f"Bearer {TOKEN}"},
        excluded_checks=[checks.negative_data_rejection, checks.missing_required_header])
