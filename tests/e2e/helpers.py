"""What tier-3 scenarios observe, written against the Backend interface only."""

from __future__ import annotations

import time
from collections.abc import Callable

import psycopg

from substrate.backends import backend
from substrate.programs.demo import roles_settled
from workload import layout, patroni_client

APP = "postgresql-k8s"

__all__ = ["APP", "roles_settled"]


def units_with(b: backend.Backend, message: str, app: str = APP) -> list[str]:
    """Units whose status message is exactly `message` (primary, sync standby, replica)."""
    return [u.name for u in b.status().app_units(app) if u.message == message]


def leader(b: backend.Backend, app: str = APP) -> str:
    """The Juju leader unit (always a live one: leadership moves off a dead unit)."""
    return next(u.name for u in b.status().app_units(app) if u.leader)


def primary(b: backend.Backend, app: str = APP) -> str:
    """The primary unit, as the get-primary action reports it."""
    return str(b.run_action(leader(b, app), "get-primary")["primary"])


def password(b: backend.Backend, user: str = "operator", app: str = APP) -> str:
    """A system user's password from the get-password action."""
    unit = leader(b, app)
    return str(b.run_action(unit, "get-password", {"username": user})["password"])


def connect(
    host: str, pw: str, dbname: str = "postgres", user: str = "operator"
) -> psycopg.Connection:
    """An autocommit connection with a short timeout."""
    return psycopg.connect(
        host=host, user=user, password=pw, dbname=dbname, connect_timeout=5, autocommit=True
    )


def cluster(b: backend.Backend, app: str = APP) -> patroni_client.ClusterStatus:
    """Patroni's /cluster from the first member that answers."""
    for unit in b.status().app_units(app):
        try:
            client = patroni_client.PatroniClient(
                f"http://{unit.address}:{layout.PORT_PATRONI}", attempts=1
            )
            return client.cluster()
        except patroni_client.PatroniError:
            continue
    raise AssertionError("no member's Patroni answers")


def wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll a condition outside the model (a database fact) until it holds."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except (psycopg.Error, patroni_client.PatroniError, OSError) as e:
            last = e
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}" + (f": {last}" if last else ""))


def rows_on(host: str, pw: str, table: str) -> int:
    """Row count of a table on one member."""
    with connect(host, pw) as conn:
        row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
        assert row is not None
        return int(row[0])
