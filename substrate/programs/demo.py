"""The main job on the local substrate: a 3-unit postgresql-k8s, a row written and read, a status table."""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg

from substrate.backends import backend
from substrate.backends.local import LocalBackend
from workload import layout, patroni_client

APP = "postgresql-k8s"


def roles_settled(
    app: str, units: int, sync: int | None = None
) -> Callable[[backend.Status], bool]:
    """All units active, one primary, every other unit streaming, and `sync` synchronous standbys.

    Patroni's own view is checked too, since unit statuses refresh only on hooks; `sync`
    defaults to every replica (synchronous-node-count "all"). Until the synchronous standbys
    are confirmed, Patroni refuses to fail over (it could not tell who has every commit), so
    a fault test must not start before.
    """
    wanted_sync = units - 1 if sync is None else sync

    def check(status: backend.Status) -> bool:
        if not status.all_active(app, units):
            return False
        messages = [u.message for u in status.app_units(app)]
        if messages.count("primary") != 1:
            return False
        cluster = _cluster(status.app_units(app))
        return (
            cluster is not None
            and cluster.healthy
            and len(cluster.members) == units
            and len(cluster.sync_standbys) == wanted_sync
        )

    return check


def _cluster(units: list[backend.UnitInfo]) -> patroni_client.ClusterStatus | None:
    for unit in units:
        try:
            return patroni_client.PatroniClient(
                f"http://{unit.address}:{layout.PORT_PATRONI}", attempts=1, timeout=2
            ).cluster()
        except patroni_client.PatroniError:
            continue
    return None


def status_table(b: backend.Backend, app: str) -> str:
    """`juju status`-like table: unit, workload status, role, IP, replication lag."""
    status = b.status()
    units = status.app_units(app)
    cluster = _cluster(units)
    members = {m.name: m for m in cluster.members} if cluster else {}
    rows = [("Unit", "Workload", "Message", "Role", "Address", "Lag")]
    for unit in units:
        member = members.get(layout.member_name(unit.name))
        role = member.role if member else "-"
        lag = "-" if member is None or member.is_leader else str(member.lag or 0)
        name = unit.name + ("*" if unit.leader else "")
        rows.append((name, unit.workload_status, unit.message, role, unit.address, lag))
    app_status, app_message = status.apps.get(app, ("unknown", ""))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [f"App {app}: {app_status} {app_message}".rstrip(), ""]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines)


def write_and_read(b: backend.Backend, app: str, password: str) -> tuple[Any, ...]:
    """Write a row through the primary Service with the operator's credentials; read it back."""
    host = b.service_address(f"{app}-primary")
    with psycopg.connect(
        host=host, user="operator", password=password, dbname="postgres", connect_timeout=5
    ) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS demo (id serial PRIMARY KEY, note text)")
        conn.execute("INSERT INTO demo (note) VALUES (%s)", ("hello from the local substrate",))
        row = conn.execute(
            "SELECT id, note, host(inet_server_addr()) FROM demo ORDER BY id DESC LIMIT 1"
        ).fetchone()
    assert row is not None
    return tuple(row)


def main(keep: bool = False, units: int = 3) -> int:
    """Deploy, prove it works, show it, and tear it down (or keep it until Ctrl-C)."""
    started = time.monotonic()
    print(f"Deploying {APP} with {units} units on the local substrate (pods on this machine)...")
    with LocalBackend() as b:
        b.deploy(APP, units=units)
        b.wait_for(roles_settled(APP, units), timeout=300, what="all units active")
        print(f"Ready in {time.monotonic() - started:.1f} s.\n")
        password = b.run_action(f"{APP}/0", "get-password")["password"]
        row = write_and_read(b, app=APP, password=password)
        print(
            f"Wrote and read back through {APP}-primary: id={row[0]} note={row[1]!r} (served by {row[2]})\n"
        )
        print(status_table(b, APP))
        if keep:
            primary = b.service_address(f"{APP}-primary")
            replicas = b.service_address(f"{APP}-replicas")
            print(
                f"\nKept running. Connect with:\n"
                f"  psql 'host={primary} user=operator dbname=postgres'   # password: {password}\n"
                f"  psql 'host={replicas} user=operator dbname=postgres'  # read-only replicas\n"
                f"Ctrl-C tears everything down."
            )
            stop = threading.Event()
            signal.signal(signal.SIGTERM, lambda *_: stop.set())
            try:
                while not stop.wait(1.0):
                    b.wait_for(lambda _: True, timeout=1)
            except KeyboardInterrupt:
                pass
        print("\nTearing down...")
    print(f"Done in {time.monotonic() - started:.1f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main(keep="--keep" in sys.argv))
