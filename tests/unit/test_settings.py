"""Settings: defaults, durations, and one line naming a bad variable."""

import subprocess
import sys

import pytest
from pydantic import ValidationError

from app.settings import Settings, describe_error


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env


def test_defaults_run_without_configuration():
    s = Settings()
    assert s.broker_urls == ["127.0.0.1:9092"]
    assert [w.name for w in s.windows] == ["tumble_10s", "hop_1m_10s"]
    assert (s.allowed_lateness, s.idle_timeout) == (5_000, 30_000)
    assert (s.dedup_horizon, s.window_retention) == (604_800_000, 3_600_000)
    assert s.max_future_skew == 3_600_000
    assert s.advertised_url == "http://127.0.0.1:8000"
    assert (s.dlq_topic, s.late_topic) == ("orders-dlq", "orders-late")


def test_environment_and_dotenv(monkeypatch, tmp_path):
    (tmp_path / ".env").write_text("ALLOWED_LATENESS=500ms\nAPP_ID=fromdotenv\n")
    monkeypatch.setenv("KAFKA_BROKER", "kafka://a:9092;b:9093")
    s = Settings()
    assert s.broker_urls == ["a:9092", "b:9093"]
    assert (s.allowed_lateness, s.app_id) == (500, "fromdotenv")


def test_max_message_bytes_is_a_size(monkeypatch):
    assert Settings().max_message_bytes == 1_048_576
    monkeypatch.setenv("MAX_MESSAGE_BYTES", "512KiB")
    assert Settings().max_message_bytes == 524_288


def test_max_future_skew_is_a_duration(monkeypatch):
    monkeypatch.setenv("MAX_FUTURE_SKEW", "30m")
    assert Settings().max_future_skew == 1_800_000


@pytest.mark.parametrize(("name", "value", "expected"), [
    ("WINDOWS", "hop:1m/7s", "invalid setting WINDOWS: 'hop:1m/7s': size must be a multiple"),
    ("DEDUP_HORIZON", "1h", "invalid setting DEDUP_HORIZON: must be at least 24h"),
    ("ALLOWED_LATENESS", "5 minutes", "invalid setting ALLOWED_LATENESS: '5 minutes' is not a"),
    ("API_PORT", "eighty", "invalid setting API_PORT: Input should be a valid integer"),
    ("TOPIC_PARTITIONS", "0", "invalid setting TOPIC_PARTITIONS: Input should be greater"),
    ("WINDOW_RETENTION", "10s", "invalid setting WINDOW_RETENTION: must be at least the largest"),
    ("MAX_FUTURE_SKEW", "soon", "invalid setting MAX_FUTURE_SKEW: 'soon' is not a duration like"),
    ("MAX_FUTURE_SKEW", "0s", "invalid setting MAX_FUTURE_SKEW: must be positive"),
    ("IDLE_TIMEOUT", "500ms", "invalid setting IDLE_TIMEOUT: must be at least 1s"),
    ("MAX_MESSAGE_BYTES", "1MB", "invalid setting MAX_MESSAGE_BYTES: '1MB' is not a size like"),
    ("MAX_MESSAGE_BYTES", "64GiB", "invalid setting MAX_MESSAGE_BYTES: must be between 1KiB"),
])
def test_a_bad_value_names_the_variable(monkeypatch, name, value, expected):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as error:
        Settings()
    assert describe_error(error.value).startswith(expected)


def test_the_worker_exits_with_one_line_and_no_traceback(tmp_path):
    env = {"PATH": "", "WINDOWS": "tumble:ten"}
    result = subprocess.run([sys.executable, "-c", "import app; app.app"], env=env,
                            cwd=sys.path[0] or ".", capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "orderstream: invalid setting WINDOWS: 'ten' is not a duration like 500ms, 10s, 5m, "
        "1h or 7d"
    ]


def test_group_timeouts_suit_kafka_unless_the_broker_is_tansu(monkeypatch):
    assert Settings().group_timeouts_ms == (45_000, 3_000, 60_000)
    monkeypatch.setenv("EMBEDDED_BROKER", "1")
    assert Settings().group_timeouts_ms == (10_000, 1_000, 3_000)
    monkeypatch.setenv("KAFKA_SESSION_TIMEOUT", "20s")
    assert Settings().group_timeouts_ms == (20_000, 1_000, 3_000)
    from app.main import faust_settings
    chosen = faust_settings(Settings())
    assert (chosen["broker_session_timeout"], chosen["broker_heartbeat_interval"],
            chosen["broker_rebalance_timeout"]) == (20.0, 1.0, 3.0)


@pytest.mark.parametrize(("variables", "expected"), [
    ({"KAFKA_HEARTBEAT_INTERVAL": "20s"},
     "KAFKA_HEARTBEAT_INTERVAL: must be at most a third of the session timeout (45000 ms)"),
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_USERNAME": "u"},
     "KAFKA_SECURITY_PROTOCOL: SASL_SSL needs KAFKA_SASL_MECHANISM, KAFKA_SASL_PASSWORD"),
    ({"KAFKA_SASL_PASSWORD": "p"},
     "KAFKA_SASL_PASSWORD: set, but KAFKA_SECURITY_PROTOCOL is PLAINTEXT"),
    ({"KAFKA_SECURITY_PROTOCOL": "TLS"}, "KAFKA_SECURITY_PROTOCOL: Input should be"),
    ({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CAFILE": "/nonexistent/ca.pem"},
     "KAFKA_SSL_CAFILE: /nonexistent/ca.pem is not a readable file"),
    ({"TOPIC_REPLICATION": "0"}, "TOPIC_REPLICATION: Input should be greater than or equal"),
])
def test_broker_settings_are_checked_and_named(monkeypatch, variables, expected):
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as caught:
        Settings()
    assert expected in describe_error(caught.value)


def test_the_security_settings_reach_every_client_and_faust(monkeypatch, tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text(CA_PEM)
    for name, value in {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM":
                        "SCRAM-SHA-512", "KAFKA_SASL_USERNAME": "svc",
                        "KAFKA_SASL_PASSWORD": "pw", "KAFKA_SSL_CAFILE": str(ca),
                        "KAFKA_BROKER": "k1:9093,k2:9093"}.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    client = settings.kafka_client
    context = client.pop("ssl_context")
    assert client == {"bootstrap_servers": ["k1:9093", "k2:9093"],
                      "security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
                      "sasl_plain_username": "svc", "sasl_plain_password": "pw"}
    assert len(context.get_ca_certs()) == 1  # the file's one CA, not the system's
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    from app.main import faust_credentials
    assert credentials_to_aiokafka_auth(faust_credentials(settings)) == {
        "security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "svc", "sasl_plain_password": "pw", "ssl_context": context}
    assert "pw" not in repr(settings)  # the password is a secret


# a self-signed CA made once with openssl for this test (no key: nothing is signed with it)
CA_PEM = """-----BEGIN CERTIFICATE-----
MIIBdzCCAR2gAwIBAgIUYLOrz1ejhkzRmOxuLPGiPz2QFUQwCgYIKoZIzj0EAwIw
ETEPMA0GA1UEAwwGdGVzdGNhMB4XDTI2MTIwNjA0MTU1NVoXDTM2MTIwMzA0MTU1
NVowETEPMA0GA1UEAwwGdGVzdGNhMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE
Ph7FzFfi27WBMtBLfuDqMBdleAV/t1pPo26dPFx4glB2Ivu+pcd3InoNoTidLdUN
dNUvYnAWNBICK+RVb6rtiKNTMFEwHQYDVR0OBBYEFGbitqdV8gkncdiLH8kWLtg3
GiV0MB8GA1UdIwQYMBaAFGbitqdV8gkncdiLH8kWLtg3GiV0MA8GA1UdEwEB/wQF
MAMBAf8wCgYIKoZIzj0EAwIDSAAwRQIgW1VcQoxEXfSjpdDXlYGMPAhWx3A6uEgq
OMDRSmUx+UICIQD5F4TyI5anaGTSAr2YMX0pwmOauTsWoEc9Qd07pz2u6g==
-----END CERTIFICATE-----
"""
