"""/docs and /redoc with API_TOKEN set, in a real headless Chromium against a real worker.

The shells load without the token and ask for it; once it is typed, the schema and every
request the page makes carry it as a header, and no URL ever holds it.
"""

from urllib.parse import urlsplit

import pytest

from tests.integration.conftest import produce, wait_for
from tests.integration.test_exactly_once import T0, keyed

pytestmark = [pytest.mark.integration, pytest.mark.browser]

TOKEN = "br0wser-t0ken"
ORDER = keyed(1, "Ana", "Ruiz", "4.20", T0)  # T0 is 2026-11-24T10:00:00.000Z
SHELLS = ("/docs", "/redoc")
TIMEOUT_MS = 30_000  # a hang guard, not a target


@pytest.fixture
def worker(broker, worker_env, make_worker):  # noqa: ANN001, ANN201
    worker_env["API_TOKEN"] = TOKEN
    worker = make_worker(worker_env)
    worker.wait_ready()
    produce(broker, worker_env["ORDERS_TOPIC"], [ORDER])
    wait_for(lambda: worker.get("/buyers/Ana/Ruiz").status_code == 200, what="the order")
    return worker


class Recorder:
    """Every request the page sends to the worker: its path and Authorization header."""

    def __init__(self, page, base_url: str) -> None:  # noqa: ANN001
        self.base_url, self.requests = base_url, []
        page.on("request", self._record)

    def _record(self, request) -> None:  # noqa: ANN001
        if request.url.startswith(self.base_url):
            self.requests.append((request.url, request.all_headers().get("authorization")))

    def data_requests(self) -> list[tuple[str, str | None]]:
        """Those that are not a shell or one of its static files."""
        return [(url, auth) for url, auth in self.requests
                if urlsplit(url).path not in SHELLS
                and not urlsplit(url).path.startswith("/docs/assets/")]


def test_swagger_ui_asks_for_the_token_and_sends_it_on_every_request(browser, worker):
    page = browser.new_page()
    recorder = Recorder(page, worker.url)
    with page.expect_response(lambda r: r.url.endswith("/openapi.json")) as schema:
        page.goto(f"{worker.url}/docs")
    assert schema.value.status == 401  # the shell loaded; the schema needs the token
    status = page.get_by_role("status")
    status.wait_for(timeout=TIMEOUT_MS)
    assert status.inner_text() == "This worker needs its API_TOKEN to show the API."

    page.get_by_label("API token").fill(TOKEN)
    page.keyboard.press("Enter")
    operation = page.locator("#operations-buyers-list_buyers_buyers_get")
    operation.wait_for(timeout=TIMEOUT_MS)
    operation.locator(".opblock-summary").click()
    operation.get_by_role("button", name="Try it out").click()
    with page.expect_response(lambda r: urlsplit(r.url).path == "/buyers") as answer:
        operation.get_by_role("button", name="Execute").click()
    assert answer.value.status == 200
    assert answer.value.json()["items"][0]["total_price"] == "4.20"
    assert page.get_by_label("API token").is_hidden()

    paths = [urlsplit(url).path for url, _ in recorder.data_requests()]
    assert paths == ["/openapi.json", "/openapi.json", "/buyers"]
    assert [auth for _, auth in recorder.data_requests()] == [None] + 2 * [f"Bearer {TOKEN}"]
    assert not [url for url, _ in recorder.requests if TOKEN in url]
    assert page.evaluate("sessionStorage.getItem('orderstream.apiToken')") == TOKEN
    page.close()


def test_redoc_uses_the_token_of_the_tab_and_a_wrong_one_is_refused(browser, worker):
    page = browser.new_page()
    recorder = Recorder(page, worker.url)
    page.goto(f"{worker.url}/redoc")
    page.get_by_label("API token").fill("wrong")
    page.get_by_role("button", name="Use token").click()
    status = page.get_by_role("status")
    wait_for(lambda: status.inner_text() == "That token was refused: enter the worker's "
                                            "API_TOKEN.", timeout_s=30, what="the refusal")

    page.get_by_label("API token").fill(TOKEN)
    page.get_by_role("button", name="Use token").click()
    page.get_by_text("Buyers by count descending", exact=False).first.wait_for(
        timeout=TIMEOUT_MS)
    page.reload()  # the same tab keeps its token: no question this time
    page.get_by_text("Buyers by count descending", exact=False).first.wait_for(
        timeout=TIMEOUT_MS)
    assert page.get_by_label("API token").is_hidden()
    assert [auth for _, auth in recorder.data_requests()] == [
        None, "Bearer wrong", f"Bearer {TOKEN}", f"Bearer {TOKEN}"]
    assert not [url for url, _ in recorder.requests if TOKEN in url]
    page.close()
