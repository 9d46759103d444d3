"""Container paths, ports, OS users and system users: the single source of truth for the workload."""

from __future__ import annotations

import enum
import posixpath

# Names the charm and the image agree on.
CONTAINER = "postgresql"
SERVICE_POSTGRESQL = "postgresql"  # Pebble service running Patroni, which runs PostgreSQL
SERVICE_METRICS = "metrics"  # postgres_exporter

# The OS user and group every workload process runs as (Debian/Ubuntu package default).
WORKLOAD_USER = "postgres"
WORKLOAD_GROUP = "postgres"

# Everything the charm writes inside the container lives under HOME, so that a pod's private
# filesystem is one tree. DATA_MOUNT and LOGS_MOUNT are Juju storage mounts (persistent);
# CONF_DIR and SOCKET_DIR are ephemeral and re-rendered by every reconcile.
HOME = "/var/lib/postgresql"
DATA_MOUNT = posixpath.join(HOME, "data")  # storage "pgdata"
PGDATA = posixpath.join(DATA_MOUNT, "pgdata")
LOGS_MOUNT = posixpath.join(HOME, "logs")  # storage "logs"
PG_LOG_DIR = posixpath.join(LOGS_MOUNT, "postgresql")
PATRONI_LOG_DIR = posixpath.join(LOGS_MOUNT, "patroni")
CONF_DIR = posixpath.join(HOME, "conf")
PATRONI_CONF = posixpath.join(CONF_DIR, "patroni.yml")
ROLE_CHANGE_SCRIPT = posixpath.join(CONF_DIR, "on-role-change.sh")
SOCKET_DIR = posixpath.join(HOME, "run")

# Directories the charm creates (owner WORKLOAD_USER, mode 0700) before starting anything.
WORKLOAD_DIRS = (DATA_MOUNT, LOGS_MOUNT, PG_LOG_DIR, PATRONI_LOG_DIR, CONF_DIR, SOCKET_DIR)

# Debian layout of the PostgreSQL packages: /usr/lib/postgresql/<major>/bin.
PG_BASE_DIR = "/usr/lib/postgresql"

# Ports.
PORT_POSTGRESQL = 5432
PORT_PATRONI = 8008
PORT_METRICS = 9187
PORT_PGBOUNCER = 6432
PORT_PGBOUNCER_METRICS = 9127
PORT_PGBACKREST_SERVER = 8200

# Pebble custom notice raised by Patroni's on_role_change callback (see ROLE_CHANGE_SCRIPT).
ROLE_CHANGE_NOTICE = "postgresql-k8s.local/role-change"


def pg_bin_dir(major: int) -> str:
    """Directory holding the PostgreSQL server binaries of a major version."""
    return posixpath.join(PG_BASE_DIR, str(major), "bin")


class SystemUser(str, enum.Enum):
    """Users the charm owns; each one's password is a key in the system-users Juju secret.

    All are PostgreSQL roles except PATRONI, the Patroni REST API's basic-auth user.
    """

    OPERATOR = "operator"  # superuser Patroni connects as; what `get-password` returns by default
    REPLICATION = "replication"
    REWIND = "rewind"
    MONITORING = "monitoring"
    BACKUP = "backup"
    PATRONI = "patroni"

    @property
    def secret_key(self) -> str:
        """Key of this user's password in the system-users secret."""
        return f"{self.value}-password"

    @property
    def is_database_role(self) -> bool:
        """Whether the user is a PostgreSQL role (the REST API user is not)."""
        return self is not SystemUser.PATRONI


def member_name(unit_name: str) -> str:
    """Patroni member name (and Kubernetes pod name) of a Juju unit: `app/0` -> `app-0`."""
    return unit_name.replace("/", "-")


def unit_fqdn(unit_name: str, app_name: str) -> str:
    """Stable DNS name of a unit's pod through the application's headless Service."""
    return f"{member_name(unit_name)}.{app_name}-endpoints"
