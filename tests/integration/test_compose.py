"""docker-compose.yml and the Dockerfile (issue 14, item 6). No Docker engine runs here:
the compose file is read as `docker-compose config` (Compose v1) resolves it, the
Dockerfile statically, and the worker service's own command and environment run as real
workers against the suite's Apache Kafka, changed only where one host must differ from
a compose network."""

import base64
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tomllib
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from app.embedded import free_port
from app.settings import Settings
from tests.expected import expected_buyer_items
from tests.integration.conftest import Worker, consume_all, wait_for
from tests.integration.fresh import REPO
from tests.kafka import KAFKA_VERSION

COMPOSE_FILE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
VENV_BIN = Path(sys.executable).parent
SETTINGS = {name.upper() for name in Settings.model_fields}
# What two workers on one host must not share, or where this host is not the compose
# network: the broker's address, a loopback listener instead of 0.0.0.0, a port and a
# DATA_DIR each, and an app id and topics of the test's own on the session's broker.
SINGLE_HOST = {"KAFKA_BROKER", "API_HOST", "API_PORT", "DATA_DIR", "APP_ID", "ORDERS_TOPIC",
               "BUYER_TOTALS_TOPIC", "WINDOW_RESULTS_TOPIC"}


# --- reading the files -----------------------------------------------------------------

def compose_config() -> dict[str, Any]:
    """docker-compose.yml as `docker-compose config` resolves it; skips without Compose."""
    compose = shutil.which("docker-compose")
    if compose is None:
        pytest.skip("docker-compose (Compose v1) is not installed (Debian: apt-get install "
                    "docker-compose): compose checks skipped")
    # Compose's own variables would change the answer; Python's would reach its interpreter
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("COMPOSE_", "PYTHON")) and k != "VIRTUAL_ENV"}
    result = subprocess.run([compose, "--project-directory", str(REPO), "-f", str(COMPOSE_FILE),
                             "config"], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


@pytest.fixture(scope="session")
def config() -> dict[str, Any]:
    """The resolved compose file; session-scoped so that a test taking it before
    `kafka_broker` skips before Apache Kafka starts."""
    return compose_config()


def unescape(value: str) -> str:
    """A value as the container gets it: compose's `$$` is a literal `$`."""
    return value.replace("$$", "$")


def command_of(service: dict[str, Any]) -> list[str]:
    command = service["command"]
    return [unescape(part) for part in (command if isinstance(command, list)
                                        else shlex.split(command))]


def environment_of(service: dict[str, Any]) -> dict[str, str]:
    environment = service.get("environment") or {}
    if isinstance(environment, list):  # the `- NAME=value` form
        environment = dict(item.split("=", 1) for item in environment)
    return {name: unescape(str(value)) for name, value in environment.items()}


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile's stages, each a list of (INSTRUCTION, arguments), continuation
    lines joined and comments dropped."""
    lines = [line for line in DOCKERFILE.read_text().splitlines()
             if not line.lstrip().startswith("#")]
    text = "\n".join(lines).replace("\\\n", " ")
    stages: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        keyword, _, rest = line.strip().partition(" ")
        if keyword.upper() == "FROM":
            stages.append([])
        assert stages, f"an instruction before FROM: {line}"
        stages[-1].append((keyword.upper(), rest.strip()))
    return stages


def image_env() -> dict[str, str]:
    """The ENV of the image's final stage (`ENV NAME=value ...` form)."""
    env: dict[str, str] = {}
    for keyword, rest in dockerfile_stages()[-1]:
        if keyword == "ENV":
            for pair in shlex.split(rest):
                name, equals, value = pair.partition("=")
                assert equals, f"ENV {rest}: write NAME=value"
                env[name] = value
    return env


def published_host_port(port: str | dict[str, Any]) -> str:
    """The host side of a `ports:` entry: "" when Docker picks a free port."""
    if isinstance(port, dict):  # the long form
        return str(port.get("published") or "")
    parts = port.split("/")[0].split(":")
    return parts[-2] if len(parts) > 1 else ""


def run(command: list[str], env: dict[str, str], cwd: Path | None = None,
        timeout_s: float = 30) -> subprocess.CompletedProcess[str]:
    """A command of the compose file, run to its end on this host."""
    return subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout_s)


# --- the compose file, statically ---------------------------------------------------------

def test_compose_runs_the_kafka_version_of_the_suite(config):
    kafka = config["services"]["kafka"]
    assert kafka["image"] == f"apache/kafka:{KAFKA_VERSION}"
    # the image formats its storage with this id: a Kafka Uuid, 16 bytes in base64
    cluster_id = environment_of(kafka)["CLUSTER_ID"]
    assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16


def test_the_worker_service_scales(config):
    services, volumes = config["services"], config.get("volumes") or {}
    assert not [name for name, s in services.items() if "container_name" in s]
    worker = services["worker"]
    # one hostname for every replica would give them one DATA_DIR folder and one URL
    assert "hostname" not in worker
    # a fixed host port could be bound by one replica only; a range would do too
    for port in worker.get("ports", []):
        host_port = published_host_port(port)
        assert host_port == "" or "-" in host_port, f"fixed host port: {port}"
    health = worker["healthcheck"]
    assert not health.get("disable") and any("/ready" in part for part in health["test"])
    # named volumes only: no bind mount of the host, no anonymous volume
    for service in services.values():
        for mount in service.get("volumes", []):
            source = mount["source"] if isinstance(mount, dict) else mount.split(":")[0]
            assert source in volumes, f"not a named volume: {mount}"
    # the volume is where DATA_DIR is, in the image and in the service (the command puts
    # each replica in a folder of its own there)
    targets = [m["target"] if isinstance(m, dict) else m.split(":")[1]
               for m in worker["volumes"]]
    assert environment_of(worker)["DATA_DIR"] == image_env()["DATA_DIR"] == "/data"
    assert "/data" in targets


def test_the_worker_command_takes_url_and_data_dir_from_its_hostname(config, tmp_path):
    """The command, run by sh with a stand-in faust that prints what it was given."""
    worker = config["services"]["worker"]
    fake = tmp_path / "bin" / "faust"
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\nprintf "%s\\n" "$$" "$API_ADVERTISED_URL" "$DATA_DIR" "$*"\n')
    fake.chmod(0o755)
    env = {**image_env(), **environment_of(worker),
           "PATH": f"{fake.parent}:{os.environ['PATH']}"}
    process = subprocess.Popen(command_of(worker), env=env, stdout=subprocess.PIPE, text=True)
    out, _ = process.communicate(timeout=30)
    hostname = subprocess.run(["hostname"], capture_output=True, text=True,
                              check=True).stdout.strip()
    pid, url, data_dir, args = out.splitlines()
    assert url == f"http://{hostname}:8000"
    assert data_dir == f"/data/{hostname}"
    # exec: faust is the process that gets the container's signals
    assert int(pid) == process.pid
    [cmd] = [rest for keyword, rest in dockerfile_stages()[-1] if keyword == "CMD"]
    assert args == "-A app worker -l info" == " ".join(json.loads(cmd)[1:])


def test_datagen_is_a_tool_of_the_same_image(config):
    services = config["services"]
    datagen = services["datagen"]
    assert datagen["profiles"] == ["tools"]
    assert datagen["build"] == services["worker"]["build"]
    assert command_of(datagen)[:4] == ["faust", "-A", "app", "datagen"]
    assert environment_of(datagen)["KAFKA_BROKER"] == environment_of(services["worker"])[
        "KAFKA_BROKER"] == "kafka:9092"


# --- the Dockerfile and its context, statically -------------------------------------------

def test_the_image_is_built_in_one_stage_and_runs_in_another_as_a_user():
    stages = dockerfile_stages()
    assert len(stages) >= 2
    build_name = stages[0][0][1].split()[-1]  # FROM image AS build
    final = stages[-1]
    assert any(k == "COPY" and f"--from={build_name}" in rest for k, rest in final)
    [user] = [rest for k, rest in final if k == "USER"]
    uid, _, gid = user.partition(":")
    assert uid not in ("root", "0") and gid not in ("root", "0")
    # the user owns DATA_DIR, where the named volume is mounted (a new volume takes the
    # image's owner of that folder)
    data_dir = image_env()["DATA_DIR"]
    assert any(k == "RUN" and f"chown {user} {data_dir}" in rest for k, rest in final), user


def test_the_build_context_has_the_sources_and_leaves_out_the_rest():
    ignored = {line.strip().rstrip("/") for line in DOCKERIGNORE.read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert {".git", ".venv", ".cache", ".env", "data"} <= ignored
    # every package of the wheel, and the files pyproject.toml needs to build it
    packages = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"]
    assert not {p.split(".")[0] for p in packages} & ignored
    assert not {"pyproject.toml", "README.md", "*", "**"} & ignored


# --- the worker service against Apache Kafka ----------------------------------------------

class ComposeWorker(Worker):
    """A worker started by the compose service's command, not by `faust` directly."""

    def __init__(self, command: list[str], env: dict[str, str], log_path: Path,
                 cwd: Path) -> None:
        super().__init__(env, log_path, cwd=cwd)
        self.command = command

    def start(self) -> "ComposeWorker":
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command, cwd=self.cwd, env=self.env, stdout=log,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        return self


@pytest.fixture
def started() -> Iterator[list[ComposeWorker]]:
    """Workers of the test; every one still running is killed at its end."""
    workers: list[ComposeWorker] = []
    yield workers
    for worker in workers:
        worker.stop(signal.SIGKILL)


def host_env(bin_dir: Path) -> dict[str, str]:
    """This machine's environment without any orderstream setting, with this checkout's
    venv and code, and `hostname` answering 127.0.0.1: on one host, the address by which
    the workers reach each other."""
    hostname = bin_dir / "hostname"
    hostname.parent.mkdir(parents=True, exist_ok=True)
    hostname.write_text("#!/bin/sh\necho 127.0.0.1\n")
    hostname.chmod(0o755)
    return {**{k: v for k, v in os.environ.items() if k not in SETTINGS},
            "PATH": f"{bin_dir}:{VENV_BIN}:{os.environ['PATH']}", "PYTHONPATH": str(REPO)}


def expected_from(records: list[tuple[bytes | None, bytes]]) -> list[dict]:
    """/buyers items of the orders the topic holds, read by the test itself."""
    meaning = []
    for _, value in records:
        order = json.loads(value)
        buyer = order["buyer"]
        meaning.append((order["order_number"], Decimal(order["price"]),
                        (buyer["first_name"], buyer["last_name"]), 0))
    assert len({number for number, *_ in meaning}) == len(meaning)  # no repeats to dedup
    return expected_buyer_items(meaning)


def settled(worker: Worker, urls: set[str]) -> bool:
    try:
        found = worker.get("/instances").json()
    except (httpx.HTTPError, ValueError):
        return False
    return ({i["url"] for i in found} == urls and all(i["status"] == "ready" for i in found)
            and sorted(p for i in found for p in i["partitions"]) == [0, 1, 2, 3])


@pytest.mark.integration
@pytest.mark.kafka
def test_two_workers_of_the_compose_service_count_exactly(config, kafka_broker, started,
                                                          tmp_path):
    services = config["services"]
    compose_env, command = environment_of(services["worker"]), command_of(services["worker"])
    base = {**host_env(tmp_path / "bin"), **{k: v for k, v in image_env().items()
                                             if k != "PATH"}}
    suffix = uuid.uuid4().hex[:8]
    shared = {"KAFKA_BROKER": kafka_broker, "API_HOST": "127.0.0.1",
              "APP_ID": f"compose-{suffix}", "ORDERS_TOPIC": f"orders-{suffix}",
              "BUYER_TOTALS_TOPIC": f"buyer-totals-{suffix}",
              "WINDOW_RESULTS_TOPIC": f"window-results-{suffix}"}
    cwd = tmp_path / "cwd"  # the container's WORKDIR: nothing to read there, nothing written
    cwd.mkdir()

    # the health check's own command fails while no worker answers on API_PORT
    health = services["worker"]["healthcheck"]["test"]
    probe = health[1:] if health[0] == "CMD" else ["sh", "-c", health[1]]
    assert run(probe, {**base, **compose_env, "API_PORT": str(free_port())}
                             ).returncode != 0

    for index in range(2):  # both at once, as `docker compose up --scale worker=2` does
        overrides = {**shared, "API_PORT": str(free_port()),
                     "DATA_DIR": str(tmp_path / f"data-{index}")}
        assert set(overrides) <= SINGLE_HOST
        env = {**base, **compose_env, **overrides}
        # every other setting is the compose service's own (or the image's)
        assert {k: v for k, v in env.items() if k in SETTINGS and k not in SINGLE_HOST} == {
            k: v for k, v in {**image_env(), **compose_env}.items()
            if k in SETTINGS and k not in SINGLE_HOST}
        started.append(ComposeWorker(command, env, tmp_path / f"worker-{index}.log",
                                     cwd).start())
    urls = {f"http://127.0.0.1:{w.port}" for w in started}
    for worker in started:
        worker.wait_ready(timeout_s=120)
    for worker in started:
        wait_for(lambda w=worker: settled(w, urls), timeout_s=120, what="both workers settled")
        assert run(probe, worker.env).returncode == 0

    # the datagen service's command as it is: 100 orders at 10/s
    datagen = services["datagen"]
    datagen_env = {**base, **environment_of(datagen), "KAFKA_BROKER": kafka_broker,
                   "ORDERS_TOPIC": shared["ORDERS_TOPIC"],
                   "DATA_DIR": str(tmp_path / "data-datagen")}
    made = run(command_of(datagen), datagen_env, cwd=cwd, timeout_s=120)
    assert made.returncode == 0, made.stdout[-2000:] + made.stderr[-2000:]
    records = consume_all(kafka_broker, shared["ORDERS_TOPIC"])
    assert len(records) == 100
    expected = expected_from(records)

    for worker in started:
        wait_for(lambda w=worker: w.get("/buyers").json()["items"] == expected,
                 timeout_s=60, what="exact totals")
        assert worker.get("/buyers").json() == {"items": expected, "total": len(expected)}
        instances = worker.get("/instances").json()
        assert {i["url"] for i in instances} == urls
        assert [i["url"] for i in instances if i["this_worker"]] == [worker.url]
    # PRINT_SINK=1 of the compose environment: the print sink wrote to stdout
    assert all("+I[" in worker.log() for worker in started)
    # each worker's state is in DATA_DIR/<hostname>, as the command says
    for index, worker in enumerate(started):
        assert (tmp_path / f"data-{index}" / "127.0.0.1" / shared["APP_ID"]).is_dir()
        assert worker.process is not None and worker.process.poll() is None
    assert list(cwd.iterdir()) == []
