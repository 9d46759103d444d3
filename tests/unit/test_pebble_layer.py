"""The workload's Pebble layer: services, their users and environment, and the health checks."""

from __future__ import annotations

import json

import ops
import pytest

from workload import layout, patroni, pebble

ENV = {"PATRONI_KUBERNETES_NAMESPACE": "prod", "PATRONI_KUBERNETES_POD_IP": "10.1.2.3"}


def test_layer_has_the_patroni_and_metrics_services():
    layer = pebble.postgresql_layer(ENV, metrics_enabled=True)
    assert set(layer["services"]) == {"postgresql", "metrics"}
    assert set(layer["checks"]) == {"patroni-alive", "postgresql-ready"}


def test_patroni_service():
    service = pebble.postgresql_layer(ENV, metrics_enabled=False)["services"]["postgresql"]
    assert service["command"] == "patroni /var/lib/postgresql/conf/patroni.yml"
    assert service["startup"] == "enabled"
    assert service["override"] == "replace"
    assert service["user"] == "postgres"
    assert service["group"] == "postgres"
    assert service["kill-delay"] == "30s"
    assert service["environment"] == ENV


def test_patroni_service_environment_is_a_copy():
    env = dict(ENV)
    service = pebble.postgresql_layer(env, metrics_enabled=False)["services"]["postgresql"]
    env["PATRONI_KUBERNETES_POD_IP"] = "changed"
    assert service["environment"]["PATRONI_KUBERNETES_POD_IP"] == "10.1.2.3"


@pytest.mark.parametrize(("enabled", "startup"), [(False, "disabled"), (True, "enabled")])
def test_metrics_service_waits_for_the_monitoring_user(enabled: bool, startup: str):
    metrics = pebble.postgresql_layer(ENV, metrics_enabled=enabled)["services"]["metrics"]
    assert metrics["startup"] == startup
    assert metrics["command"] == "prometheus-postgres-exporter"
    assert metrics["after"] == ["postgresql"]
    assert metrics["user"] == "postgres"
    assert metrics["group"] == "postgres"


@pytest.mark.parametrize(("tls", "sslmode"), [(False, "disable"), (True, "require")])
def test_exporter_environment(tls: bool, sslmode: str):
    env = pebble.postgresql_layer(ENV, metrics_enabled=True, tls=tls)["services"]["metrics"][
        "environment"
    ]
    assert env == {
        "DATA_SOURCE_URI": f"localhost:5432/postgres?sslmode={sslmode}",
        "DATA_SOURCE_USER": "monitoring",
        "DATA_SOURCE_PASS_FILE": "/var/lib/postgresql/conf/monitoring-password",
        "PG_EXPORTER_WEB_LISTEN_ADDRESS": ":9187",
    }


def test_exporter_reads_its_password_from_a_file():
    layer = pebble.postgresql_layer(ENV, metrics_enabled=True)
    env = layer["services"]["metrics"]["environment"]
    assert "DATA_SOURCE_PASS" not in env
    assert "DATA_SOURCE_NAME" not in env  # would carry the password inline
    assert env["DATA_SOURCE_PASS_FILE"] == pebble.PASSWORD_FILE_MONITORING
    assert pebble.PASSWORD_FILE_MONITORING.startswith(layout.CONF_DIR + "/")
    assert "password" not in layer["services"]["metrics"]["command"]


def test_layer_with_the_dcs_environment_holds_no_password():
    env = patroni.dcs_environment("postgresql-k8s", "prod", "10.1.2.3")
    layer = pebble.postgresql_layer(env, metrics_enabled=True, tls=True)
    text = json.dumps(layer).lower()
    assert 'password":' not in text
    assert 'pass":' not in text


@pytest.mark.parametrize(("tls", "scheme"), [(False, "http"), (True, "https")])
def test_checks_use_patroni_health_endpoints(tls: bool, scheme: str):
    checks = pebble.postgresql_layer(ENV, metrics_enabled=False, tls=tls)["checks"]
    alive, ready = checks["patroni-alive"], checks["postgresql-ready"]
    assert alive["level"] == "alive"
    assert ready["level"] == "ready"
    assert alive["http"] == {"url": f"{scheme}://localhost:8008/liveness"}
    assert ready["http"] == {"url": f"{scheme}://localhost:8008/readiness"}
    for check in (alive, ready):
        assert check["override"] == "replace"
        assert check["threshold"] == 3
        assert check["period"] == "10s"
        assert check["timeout"] == "5s"


def test_layer_is_accepted_by_pebble():
    layer = ops.pebble.Layer(pebble.postgresql_layer(ENV, metrics_enabled=True, tls=True))
    assert layer.services["postgresql"].command == "patroni /var/lib/postgresql/conf/patroni.yml"
    assert layer.services["metrics"].after == ["postgresql"]
    assert layer.checks["patroni-alive"].http == {"url": "https://localhost:8008/liveness"}
    # Round trip through Pebble's own YAML keeps everything.
    assert ops.pebble.Layer(layer.to_yaml()).to_dict() == layer.to_dict()


def test_layer_is_deterministic():
    assert pebble.postgresql_layer(ENV, True, True) == pebble.postgresql_layer(
        dict(ENV), True, True
    )
    assert pebble.postgresql_layer(ENV, True) != pebble.postgresql_layer(ENV, False)
