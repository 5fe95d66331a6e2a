"""The worker and the commands from venvs built as a new user builds them, not the test venv.

`fresh_checkout` is a copy of the working tree whose `.venv` `make run`'s own prerequisite
built (runtime and `embedded` extras only); `wheel_install` is a venv with the project
installed non-editable, run from a directory outside any tree. Neither sees the test venv
or this checkout's code: no PYTHONPATH, the test venv's bin off PATH.
"""

from pathlib import Path

import pytest

from tests.integration.conftest import consume_all, produce, wait_for
from tests.integration.fresh import run, user_env
from tests.integration.test_exactly_once import T0, keyed

pytestmark = pytest.mark.integration

# What the worker needs of worker_env's settings: the suite's broker and names of its own.
SERVICE_KEYS = ("KAFKA_BROKER", "EMBEDDED_BROKER", "APP_ID", "ORDERS_TOPIC",
                "BUYER_TOTALS_TOPIC", "WINDOW_RESULTS_TOPIC", "DATA_DIR", "API_PORT",
                "PRINT_SINK", "PYTHONUNBUFFERED")
ORDER = keyed(7, "Ana", "Ruiz", "12.34", T0)  # T0 is 2026-11-24T10:00:00.000Z


def fresh_env(worker_env: dict[str, str]) -> dict[str, str]:
    """A user's shell with the test worker's settings and nothing of the test venv."""
    return {**user_env(), **{key: worker_env[key] for key in SERVICE_KEYS}}


def where_app_comes_from(venv: Path, cwd: Path, env: dict[str, str]) -> Path:
    """The file `import app` loads in that venv, from that directory."""
    output = run([str(venv / "bin" / "python"), "-c", "import app; print(app.__file__)"],
                 cwd, env, timeout_s=60)
    return Path(output.strip().splitlines()[-1])


def buyer_page(worker) -> dict:  # noqa: ANN001
    return worker.get("/buyers", limit=100).json()


def counted(worker, n: int) -> bool:  # noqa: ANN001
    return sum(item["count"] for item in buyer_page(worker)["items"]) == n


def test_the_make_run_venv_runs_the_worker_datagen_and_reset_offsets(
        broker, worker_env, make_worker, fresh_checkout):
    env = fresh_env(worker_env)
    venv = fresh_checkout / ".venv"
    assert where_app_comes_from(venv, fresh_checkout, env) == fresh_checkout / "app" / "__init__.py"
    faust = venv / "bin" / "faust"
    worker = make_worker(env, "fresh", faust=faust, cwd=fresh_checkout)
    worker.wait_ready()
    produce(broker, env["ORDERS_TOPIC"], [ORDER])
    wait_for(lambda: worker.get("/buyers/Ana/Ruiz").status_code == 200, what="the order")
    assert worker.get("/buyers/Ana/Ruiz").json() == {
        "buyer": {"first_name": "Ana", "last_name": "Ruiz"}, "count": 1, "total_price": "12.34"}

    run([str(faust), "-A", "app", "datagen", "--number-of-rows", "5", "--seed", "3"],
        fresh_checkout, env, timeout_s=120)
    assert len(consume_all(broker, env["ORDERS_TOPIC"])) == 6
    wait_for(lambda: counted(worker, 6), what="the datagen's 5 orders counted")

    usage = run([str(faust), "-A", "app", "reset-offsets", "--help"], fresh_checkout, env,
                timeout_s=60)
    assert "Usage:" in usage and "reset-offsets" in usage


def test_the_wheel_runs_the_worker_outside_the_tree(broker, worker_env, make_worker,
                                                    wheel_install, tmp_path):
    env = fresh_env(worker_env)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    site_packages = where_app_comes_from(wheel_install, elsewhere, env).parents[1]
    assert site_packages.name == "site-packages"
    assert site_packages.is_relative_to(wheel_install)
    worker = make_worker(env, "wheel", faust=wheel_install / "bin" / "faust", cwd=elsewhere)
    worker.wait_ready()
    produce(broker, env["ORDERS_TOPIC"], [ORDER])
    wait_for(lambda: counted(worker, 1), what="the order counted")
    assert buyer_page(worker) == {"items": [{
        "buyer": {"first_name": "Ana", "last_name": "Ruiz"}, "count": 1,
        "total_price": "12.34"}], "total": 1}
    assert worker.get("/windows").json()[0]["name"] == "tumble_10s"
    # the docs shells are package data, and Swagger UI comes from another wheel's files
    assert "docs.js" in worker.get("/docs").text and "docs.js" in worker.get("/redoc").text
    for asset in ("docs.js", "docs.css", "swagger-ui-bundle.js", "redoc.standalone.js"):
        assert worker.get(f"/docs/assets/{asset}").status_code == 200, asset
