"""Backup and restore through the charm against pgBackRest run by hand on the same data.

Deploys 3 units related to an S3 server (moto behind stunnel), loads a pgbench database, then
measures: a full backup through `create-backup` (from a replica) and the same full backup run
directly with pgBackRest in that unit's pod; a restore through the `restore` action (to a
writable primary, and to every unit healthy again) and pgBackRest's own restore of that backup
into an empty directory of the same pod, followed by PostgreSQL's recovery on it. Prints one
JSON object as its last output; `*_overhead_ratio` is charm time / direct time.
"""

from __future__ import annotations

import platform
import shlex
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import psycopg

from substrate import programs
from substrate.backends.local import LocalBackend
from substrate.k8s.s3 import S3Server
from substrate.programs.demo import APP, roles_settled

UNITS = 3
S3_NAME = "s3.substrate.test"
BUCKET = "bench"
CONF = "/var/lib/postgresql/conf/pgbackrest.conf"
PGPASS = "/var/lib/postgresql/conf/pgbackrest.pgpass"
SCRATCH = "/var/lib/postgresql/data/bench-restore"
AFTER_BACKUP = "bench_after_backup"
PG_BIN = "/usr/lib/postgresql/15/bin"
SOCKETS = "/var/lib/postgresql/run"


def _leader(b: LocalBackend) -> str:
    return next(u.name for u in b.status().app_units(APP) if u.leader)


def _password(b: LocalBackend) -> str:
    return str(b.run_action(_leader(b), "get-password")["password"])


def _as_postgres(*argv: str) -> list[str]:
    env = ["env", f"PGPASSFILE={PGPASS}", "PATH=/usr/bin:/bin", "LANG=C.UTF-8"]
    return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--", *env, *argv]


def _timed(action: Any) -> float:
    start = time.monotonic()
    action()
    return round(time.monotonic() - start, 2)


def _load(b: LocalBackend, scale: int) -> int:
    host = b.service_address(f"{APP}-primary")
    env = {"PGPASSWORD": _password(b), "PATH": "/usr/bin:/bin"}
    subprocess.run(
        [
            f"{PG_BIN}/pgbench",
            "-i",
            "-q",
            "-s",
            str(scale),
            "-h",
            host,
            "-U",
            "operator",
            "postgres",
        ],
        check=True,
        env=env,
        capture_output=True,
    )
    with psycopg.connect(
        host=host, user="operator", password=env["PGPASSWORD"], dbname="postgres"
    ) as c:
        row = c.execute("SELECT sum(pg_database_size(datname)) FROM pg_database").fetchone()
    assert row is not None
    return int(row[0])


class _Moment(threading.Event):
    seconds = 0.0


def _first_writable(host: str, password: str, since: float) -> _Moment:
    """Set, with the time, once the primary Service serves a writable restored server."""
    moment = _Moment()

    def poll() -> None:
        while time.monotonic() - since < 1800:
            tried = time.monotonic()
            try:
                with psycopg.connect(host=host, user="operator", password=password,
                                     dbname="postgres", connect_timeout=2) as c:  # fmt: skip
                    restored = c.execute(
                        "SELECT NOT pg_is_in_recovery() AND to_regclass(%s) IS NULL",
                        (AFTER_BACKUP,),
                    )
                    if restored.fetchone() == (True,):
                        moment.seconds = time.monotonic()
                        moment.set()
                        return
            except psycopg.Error:
                pass
            time.sleep(max(0.0, 0.25 - (time.monotonic() - tried)))

    threading.Thread(target=poll, daemon=True, name="writable-poller").start()
    return moment


def _replica(b: LocalBackend) -> str:
    return next(u.name for u in b.status().app_units(APP) if u.message != "primary")


def _direct_restore(b: LocalBackend, unit: str, backup_id: str) -> tuple[float, float]:
    """PgBackRest's restore into an empty directory, then recovery to a writable server."""
    b.exec(unit, ["rm", "-rf", SCRATCH])
    files = _timed(
        lambda: b.exec(
            unit,
            _as_postgres(
                "pgbackrest", f"--config={CONF}", f"--stanza={APP}", f"--pg1-path={SCRATCH}",
                f"--set={backup_id}", "--type=immediate", "--target-action=promote",
                "--archive-mode=off", "restore",
            ),
        )
    )  # fmt: skip
    options = f"-p 5499 -k {SOCKETS} -c listen_addresses='' -c archive_mode=off"
    log = f"{SCRATCH}.log"
    start = time.monotonic()
    b.exec(
        unit,
        _as_postgres(f"{PG_BIN}/pg_ctl", "-D", SCRATCH, "-W", "-l", log, "-o", options, "start"),
    )
    # As the role whose password the charm's pgBackRest password file holds.
    psql = [f"{PG_BIN}/psql", "-h", SOCKETS, "-p", "5499", "-U", "backup", "-d", "postgres"]
    query = _as_postgres(*psql, "-Atc", "SELECT pg_is_in_recovery()")
    while time.monotonic() - start < 900:
        if (
            b.exec(
                unit,
                ["sh", "-c", " ".join(shlex.quote(a) for a in query) + " 2>/dev/null || true"],
            ).strip()
            == "f"
        ):
            break
        time.sleep(0.5)
    else:
        raise RuntimeError(
            "the restored copy did not recover: " + b.exec(unit, ["tail", "-20", log])
        )
    recovered = round(time.monotonic() - start, 2)
    b.exec(unit, _as_postgres(f"{PG_BIN}/pg_ctl", "-D", SCRATCH, "-w", "-m", "immediate", "stop"))
    b.exec(unit, ["rm", "-rf", SCRATCH, log])
    return files, recovered


def run(scale: int) -> dict[str, Any]:
    """Every measurement on a fresh deployment; the figures."""
    figures: dict[str, Any] = {"units": UNITS, "host": platform.node(), "pgbench_scale": scale}
    with (
        LocalBackend() as b,
        S3Server(listen_address=b.host_address, dns_name=S3_NAME, auth=True) as s3,
    ):
        b.add_host(S3_NAME, b.host_address)
        s3.create_bucket(BUCKET)
        data = s3.relation_data(BUCKET, "/bench")
        config = {k: v for k, v in data.items() if k != "tls-ca-chain"} | {
            "tls-ca-chain": s3.ca_pem
        }
        b.deploy(APP, units=UNITS)
        b.deploy("s3", charm="s3-provider", config=config)
        b.integrate(APP, "s3:s3-credentials")
        b.wait_for(roles_settled(APP, UNITS), timeout=300, what="a healthy cluster")
        b.wait_for(lambda s: "WAL" in s.apps[APP][1], timeout=300, what="archiving")
        figures["database_bytes"] = _load(b, scale)
        leader = _leader(b)
        result: dict[str, Any] = {}
        figures["backup_charm_s"] = _timed(
            lambda: result.update(b.run_action(leader, "create-backup", {"type": "full"}))
        )
        backup_id = str(result["backup-id"])
        figures["backup_direct_s"] = _timed(
            lambda: b.exec(
                leader,
                _as_postgres("pgbackrest", f"--config={CONF}", f"--stanza={APP}",
                             "--type=full", "--backup-standby", "backup"),
            )
        )  # fmt: skip
        figures["backup_overhead_ratio"] = round(
            figures["backup_charm_s"] / figures["backup_direct_s"], 2
        )
        files, recovered = _direct_restore(b, _replica(b), backup_id)
        figures["restore_direct_files_s"] = files
        figures["restore_direct_writable_s"] = round(files + recovered, 2)
        host, password = b.service_address(f"{APP}-primary"), _password(b)
        # A table the backup does not have: the restored primary is the one without it.
        with psycopg.connect(host=host, user="operator", password=password,
                             dbname="postgres", autocommit=True) as c:  # fmt: skip
            c.execute(f"CREATE TABLE {AFTER_BACKUP} (id int)")
        start = time.monotonic()
        # Polled from a thread, from before the action: the model's loop runs hooks in this
        # one (the action itself returns only once the hooks it caused have run).
        writable_at = _first_writable(host, password, start)
        b.run_action(leader, "restore", {"backup-id": backup_id})
        b.wait_for(lambda s: writable_at.is_set(), timeout=1800, what="a writable primary")
        figures["restore_charm_writable_s"] = round(writable_at.seconds - start, 2)
        b.wait_for(
            lambda s: roles_settled(APP, UNITS)(s) and "restore" not in s.apps[APP][1],
            timeout=1800,
            what="every unit healthy after the restore",
        )
        figures["restore_charm_all_units_s"] = round(time.monotonic() - start, 2)
        figures["restore_overhead_ratio"] = round(
            figures["restore_charm_writable_s"] / figures["restore_direct_writable_s"], 2
        )
    return figures


def main(scale: int = 10, output: Path | None = None) -> int:
    """Run, print the JSON (last line) and optionally write it to a file."""
    figures = run(scale)
    programs.report(figures, output)
    return 0
