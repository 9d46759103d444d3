"""Pebble layer builders: the workload's services, health checks and their environment."""

from __future__ import annotations

from collections.abc import Mapping

import ops

from workload import layout

# Patroni needs time to stop PostgreSQL cleanly (a fast shutdown writes a checkpoint).
KILL_DELAY = "30s"
PASSWORD_FILE_MONITORING = f"{layout.CONF_DIR}/monitoring-password"


def patroni_service(environment: Mapping[str, str]) -> ops.pebble.ServiceDict:
    """Patroni, which runs PostgreSQL; its DCS settings arrive in `environment`."""
    return {
        "override": "replace",
        "summary": "Patroni managing PostgreSQL",
        "command": f"patroni {layout.PATRONI_CONF}",
        "startup": "enabled",
        "user": layout.WORKLOAD_USER,
        "group": layout.WORKLOAD_GROUP,
        "environment": dict(environment),
        "kill-delay": KILL_DELAY,
    }


def patroni_checks(scheme: str = "http") -> dict[str, ops.pebble.CheckDict]:
    """Liveness and readiness from Patroni's own health endpoints."""
    base = f"{scheme}://localhost:{layout.PORT_PATRONI}"
    return {
        "patroni-alive": {
            "override": "replace",
            "level": "alive",
            "period": "10s",
            "timeout": "5s",
            "threshold": 3,
            "http": {"url": f"{base}/liveness"},
        },
        "postgresql-ready": {
            "override": "replace",
            "level": "ready",
            "period": "10s",
            "timeout": "5s",
            "threshold": 3,
            "http": {"url": f"{base}/readiness"},
        },
    }


def exporter_service(enabled: bool, sslmode: str = "disable") -> ops.pebble.ServiceDict:
    """The Prometheus exporter of PostgreSQL metrics, as the monitoring user.

    Disabled until the monitoring user exists, so it never starts with credentials PostgreSQL
    would refuse.
    """
    return {
        "override": "replace",
        "summary": "Prometheus exporter of PostgreSQL metrics",
        "command": "prometheus-postgres-exporter",
        "startup": "enabled" if enabled else "disabled",
        "user": layout.WORKLOAD_USER,
        "group": layout.WORKLOAD_GROUP,
        "after": [layout.SERVICE_POSTGRESQL],
        "environment": {
            # The password is read from a 0600 file: never in argv or the plan.
            "DATA_SOURCE_URI": f"localhost:{layout.PORT_POSTGRESQL}/postgres?sslmode={sslmode}",
            "DATA_SOURCE_USER": layout.SystemUser.MONITORING.value,
            "DATA_SOURCE_PASS_FILE": PASSWORD_FILE_MONITORING,
            "PG_EXPORTER_WEB_LISTEN_ADDRESS": f":{layout.PORT_METRICS}",
        },
    }


def postgresql_layer(
    environment: Mapping[str, str], metrics_enabled: bool
) -> ops.pebble.LayerDict:
    """A layer with Patroni, the exporter and their checks (what a bare member runs)."""
    return {
        "summary": "postgresql-k8s workload",
        "description": "Patroni-managed PostgreSQL and its exporter",
        "services": {
            layout.SERVICE_POSTGRESQL: patroni_service(environment),
            layout.SERVICE_METRICS: exporter_service(metrics_enabled),
        },
        "checks": patroni_checks(),
    }


def pgbackrest_server(config: str, pgpass_file: str, enabled: bool) -> ops.pebble.ServiceDict:
    """PgBackRest's TLS server, through which members run backups and restores on each other."""
    return {
        "override": "replace",
        "summary": "pgBackRest TLS server",
        "command": f"pgbackrest --config={config} server",
        "startup": "enabled" if enabled else "disabled",
        "user": layout.WORKLOAD_USER,
        "group": layout.WORKLOAD_GROUP,
        "environment": {"PGPASSFILE": pgpass_file},
    }
