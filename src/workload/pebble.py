"""Pebble layer builders: the workload's services, health checks and their environment."""

from __future__ import annotations

from collections.abc import Mapping

import ops

from workload import layout

# Patroni needs time to stop PostgreSQL cleanly (a fast shutdown writes a checkpoint).
KILL_DELAY = "30s"
PASSWORD_FILE_MONITORING = f"{layout.CONF_DIR}/monitoring-password"


def postgresql_layer(
    environment: Mapping[str, str],
    metrics_enabled: bool,
    tls: bool = False,
    extra_services: Mapping[str, ops.pebble.ServiceDict] | None = None,
) -> ops.pebble.LayerDict:
    """The workload layer: Patroni (which runs PostgreSQL), the exporter, and their checks.

    `metrics_enabled` is false until the monitoring user exists, so the exporter never starts
    with credentials PostgreSQL would refuse.
    """
    scheme = "https" if tls else "http"
    services: dict[str, ops.pebble.ServiceDict] = {
        layout.SERVICE_POSTGRESQL: {
            "override": "replace",
            "summary": "Patroni managing PostgreSQL",
            "command": f"patroni {layout.PATRONI_CONF}",
            "startup": "enabled",
            "user": layout.WORKLOAD_USER,
            "group": layout.WORKLOAD_GROUP,
            "environment": dict(environment),
            "kill-delay": KILL_DELAY,
        },
        layout.SERVICE_METRICS: {
            "override": "replace",
            "summary": "Prometheus exporter of PostgreSQL metrics",
            "command": "prometheus-postgres-exporter",
            "startup": "enabled" if metrics_enabled else "disabled",
            "user": layout.WORKLOAD_USER,
            "group": layout.WORKLOAD_GROUP,
            "after": [layout.SERVICE_POSTGRESQL],
            "environment": {
                # The password is read from a 0600 file: never in argv or the plan.
                "DATA_SOURCE_URI": f"localhost:{layout.PORT_POSTGRESQL}/postgres?sslmode={'require' if tls else 'disable'}",
                "DATA_SOURCE_USER": layout.SystemUser.MONITORING.value,
                "DATA_SOURCE_PASS_FILE": PASSWORD_FILE_MONITORING,
                "PG_EXPORTER_WEB_LISTEN_ADDRESS": f":{layout.PORT_METRICS}",
            },
        },
    }
    services |= dict(extra_services or {})
    checks: dict[str, ops.pebble.CheckDict] = {
        "patroni-alive": {
            "override": "replace",
            "level": "alive",
            "period": "10s",
            "timeout": "5s",
            "threshold": 3,
            "http": {"url": f"{scheme}://localhost:{layout.PORT_PATRONI}/liveness"},
        },
        "postgresql-ready": {
            "override": "replace",
            "level": "ready",
            "period": "10s",
            "timeout": "5s",
            "threshold": 3,
            "http": {"url": f"{scheme}://localhost:{layout.PORT_PATRONI}/readiness"},
        },
    }
    return {
        "summary": "postgresql-k8s workload",
        "description": "Patroni-managed PostgreSQL and its exporter",
        "services": services,
        "checks": checks,
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
