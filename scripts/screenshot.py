"""`make screenshot`: docs/dashboard.png, the dashboard as a user sees it.

The embedded broker (tansu) and one worker on spare ports, with its datagen at 50
orders/s, as `make run` starts them; after SETTLE_S (windows become final, the chart
fills), headless Chromium takes the page at a laptop's size. Everything it started is
stopped, and its data directory removed.
"""

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.embedded import free_port, start_tansu, stop_process  # noqa: E402

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SETTLE_S = 60
OUT = ROOT / "docs" / "dashboard.png"


def main() -> None:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="orderstream-shot-") as tmp:
        broker_port, api_port = free_port(), free_port()
        broker = start_tansu("127.0.0.1", broker_port, log_path=Path(tmp) / "tansu.log")
        env = {**os.environ, "KAFKA_BROKER": f"127.0.0.1:{broker_port}", "EMBEDDED_BROKER": "1",
               "API_PORT": str(api_port), "DATA_DIR": str(Path(tmp) / "data"),
               "DATAGEN_RPS": "50", "PRINT_SINK": "0", "PYTHONPATH": str(ROOT)}
        faust = str(Path(sys.executable).parent / "faust")
        with open(Path(tmp) / "worker.log", "ab") as log:
            worker = subprocess.Popen([faust, "-A", "app", "worker", "-l", "warn"], cwd=ROOT,
                                      env=env, stdout=log, stderr=subprocess.STDOUT,
                                      start_new_session=True)
        url = f"http://127.0.0.1:{api_port}"
        try:
            wait_ready(url)
            print(f"screenshot: worker ready at {url}; letting it run {SETTLE_S} s")
            time.sleep(SETTLE_S)
            with sync_playwright() as playwright:
                chromium = playwright.chromium.launch(executable_path=CHROMIUM,
                                                      args=CHROMIUM_ARGS)
                page = chromium.new_page(viewport={"width": 1280, "height": 900})
                page.goto(f"{url}/")
                page.locator("#finals td").first.wait_for()
                page.wait_for_timeout(2500)  # one more update: rates over full samples
                page.screenshot(path=str(OUT), full_page=True)
                chromium.close()
            print(f"screenshot: wrote {OUT.relative_to(ROOT)}")
        finally:
            stop_process(worker, timeout_s=10)
            stop_process(broker, timeout_s=2)


def wait_ready(url: str, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"screenshot: the worker at {url} was not ready in {timeout_s:.0f} s")


if __name__ == "__main__":
    main()
