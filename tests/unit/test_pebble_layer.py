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


@pytest.mark.parametrize("sslmode", ["disable", "require", "verify-full"])
def test_exporter_environment(sslmode: str):
    env = pebble.exporter_service(True, sslmode)["environment"]
    assert env == {
        "DATA_SOURCE_URI": f"localhost:5432/postgres?sslmode={sslmode}",
        "DATA_SOURCE_USER": "monitoring",
        "DATA_SOURCE_PASS_FILE": "/var/lib/postgresql/conf/monitoring-password",
        "PG_EXPORTER_WEB_LISTEN_ADDRESS": ":9187",
    }


def test_exporter_in_the_layer_connects_without_tls():
    # TLS is not wired yet: the bare member's exporter must not ask for it.
    env = pebble.postgresql_layer(ENV, metrics_enabled=True)["services"]["metrics"]["environment"]
    assert env["DATA_SOURCE_URI"] == "localhost:5432/postgres?sslmode=disable"
    assert pebble.exporter_service(True) == pebble.exporter_service(True, "disable")


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
    layer = pebble.postgresql_layer(env, metrics_enabled=True)
    text = json.dumps(layer).lower()
    assert 'password":' not in text
    assert 'pass":' not in text


def test_checks_use_patroni_health_endpoints():
    checks = pebble.postgresql_layer(ENV, metrics_enabled=False)["checks"]
    assert checks == pebble.patroni_checks()
    alive, ready = checks["patroni-alive"], checks["postgresql-ready"]
    assert alive["level"] == "alive"
    assert ready["level"] == "ready"
    assert alive["http"] == {"url": "http://localhost:8008/liveness"}
    assert ready["http"] == {"url": "http://localhost:8008/readiness"}
    for check in (alive, ready):
        assert check["override"] == "replace"
        assert check["threshold"] == 3
        assert check["period"] == "10s"
        assert check["timeout"] == "5s"


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_checks_follow_the_scheme_of_the_rest_api(scheme: str):
    checks = pebble.patroni_checks(scheme)
    assert checks["patroni-alive"]["http"] == {"url": f"{scheme}://localhost:8008/liveness"}
    assert checks["postgresql-ready"]["http"] == {"url": f"{scheme}://localhost:8008/readiness"}


def test_layer_is_accepted_by_pebble():
    layer = ops.pebble.Layer(pebble.postgresql_layer(ENV, metrics_enabled=True))
    assert layer.services["postgresql"].command == "patroni /var/lib/postgresql/conf/patroni.yml"
    assert layer.services["metrics"].after == ["postgresql"]
    assert layer.checks["patroni-alive"].http == {"url": "http://localhost:8008/liveness"}
    # Round trip through Pebble's own YAML keeps everything.
    assert ops.pebble.Layer(layer.to_yaml()).to_dict() == layer.to_dict()


def test_layer_is_deterministic():
    assert pebble.postgresql_layer(ENV, True) == pebble.postgresql_layer(dict(ENV), True)
    reordered = dict(reversed(list(ENV.items())))
    assert pebble.postgresql_layer(ENV, False) == pebble.postgresql_layer(reordered, False)
    assert pebble.postgresql_layer(ENV, True) != pebble.postgresql_layer(ENV, False)


def test_layer_is_made_of_the_service_builders():
    layer = pebble.postgresql_layer(ENV, metrics_enabled=False)
    assert layer["services"] == {
        "postgresql": pebble.patroni_service(ENV),
        "metrics": pebble.exporter_service(False),
    }


@pytest.mark.parametrize(("enabled", "startup"), [(False, "disabled"), (True, "enabled")])
def test_pgbackrest_server(enabled: bool, startup: str):
    service = pebble.pgbackrest_server("/etc/pgbackrest.conf", "/conf/pgpass", enabled)
    assert service["command"] == "pgbackrest --config=/etc/pgbackrest.conf server"
    assert service["startup"] == startup
    assert service["override"] == "replace"
    assert service["user"] == "postgres"
    assert service["group"] == "postgres"
    # The password stays in the 0600 pgpass file: the plan names only the file.
    assert service["environment"] == {"PGPASSFILE": "/conf/pgpass"}
    assert (
        ops.pebble.Layer({"services": {"pgbackrest-server": service}})
        .services["pgbackrest-server"]
        .command
        == service["command"]
    )
