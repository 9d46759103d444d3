"""Backups that restore, on 3 units and a real S3 server (moto behind stunnel, seen from pods).

The tests share one deployment and run in order: wrong credentials, archiving, a backup from a
replica, point-in-time restore of the whole application, a restore the archive cannot reach, a
schedule with retention, a repository of another cluster, and the relation removed.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from substrate.backends.local import LocalBackend
from substrate.k8s.s3 import S3Server
from tests.e2e.helpers import APP, connect, leader, password, roles_settled, wait

pytestmark = pytest.mark.e2e

UNITS = 3
S3_APP = "s3"
BUCKET = "backups"
ROWS_BEFORE, ROWS_AFTER = 300, 200


def provider_config(s3: S3Server, bucket: str = BUCKET, **overrides: str) -> dict[str, Any]:
    data = s3.relation_data(bucket, "/cluster")
    config = {k: v for k, v in data.items() if k != "tls-ca-chain"}
    config["tls-ca-chain"] = s3.ca_pem
    return {**config, **overrides}


def sql(b: LocalBackend, statement: str) -> list[tuple[Any, ...]]:
    with connect(b.service_address(f"{APP}-primary"), password(b)) as conn:
        cursor = conn.execute(statement)
        return cursor.fetchall() if cursor.description else []


def app_status(b: LocalBackend) -> tuple[str, str]:
    return b.status().apps[APP]


def archived_up_to_now(b: LocalBackend) -> None:
    """Switch WAL and wait until the segment holding everything so far is in the repository."""
    (segment,) = sql(b, "SELECT pg_walfile_name(pg_switch_wal())")[0]
    wait(
        lambda: (sql(b, "SELECT last_archived_wal FROM pg_stat_archiver")[0][0] or "") >= segment,
        120,
        "the WAL to be archived",
    )


def test_wrong_credentials_block_naming_the_setting(juju: LocalBackend, s3: S3Server):
    s3.create_bucket(BUCKET)
    juju.deploy(APP, units=UNITS)
    juju.deploy(S3_APP, charm="s3-provider", config=provider_config(s3, **{"secret-key": "nope"}))
    juju.integrate(APP, f"{S3_APP}:s3-credentials")
    juju.wait_for(roles_settled(APP, UNITS), timeout=300, what="3 healthy units")
    juju.wait_for(lambda s: "secret-key" in s.apps[APP][1], timeout=180, what="the refusal")
    assert app_status(juju)[0] == "blocked"
    assert sql(juju, "SHOW archive_command") == [("/bin/true",)]


def test_right_credentials_turn_archiving_on(juju: LocalBackend, s3: S3Server):
    juju.config(S3_APP, {"secret-key": s3.secret_key})
    juju.wait_for(lambda s: s.apps[APP][0] == "active", timeout=180, what="the repository")
    wait(lambda: "archive-push" in sql(juju, "SHOW archive_command")[0][0], 60, "archiving")
    archived_up_to_now(juju)
    keys = s3.list_keys(BUCKET, "cluster/archive/postgresql-k8s/")
    assert any(k.endswith(".zst") for k in keys), keys


def test_backup_from_a_replica_then_point_in_time_restore(juju: LocalBackend, s3: S3Server):
    sql(juju, "CREATE TABLE events (id int PRIMARY KEY, at timestamptz DEFAULT now())")
    sql(juju, f"INSERT INTO events (id) SELECT generate_series(1, {ROWS_BEFORE})")
    started = time.monotonic()
    result = juju.run_action(leader(juju), "create-backup", {"type": "full"})
    backup_seconds = time.monotonic() - started
    backup_id = result["backup-id"]
    listed = juju.run_action(leader(juju), "list-backups")
    assert backup_id in listed["backups"] and listed["count"] == "1"
    # pgBackRest copied the files from a standby (its log says it waited for replay there).
    log = juju.exec(
        leader(juju), ["sh", "-c", "cat /var/lib/postgresql/logs/pgbackrest/*backup*.log"]
    )
    assert "backup-standby" in log and "wait for replay on the standby" in log

    time.sleep(1.5)
    (target,) = sql(juju, "SELECT now()")[0]
    time.sleep(1.5)
    sql(juju, f"INSERT INTO events (id) SELECT generate_series(1001, {1000 + ROWS_AFTER})")
    archived_up_to_now(juju)

    started = time.monotonic()
    juju.run_action(leader(juju), "restore", {"restore-to-time": target.isoformat()})
    juju.wait_for(
        lambda s: s.apps[APP][0] == "maintenance" or "restore" in s.apps[APP][1],
        timeout=60,
        what="the restore to start",
    )
    juju.wait_for(
        lambda s: roles_settled(APP, UNITS)(s) and "restore" not in s.apps[APP][1],
        timeout=600,
        what="3 healthy units after the restore",
    )
    restore_seconds = time.monotonic() - started
    assert sql(juju, "SELECT count(*), max(id) FROM events") == [(ROWS_BEFORE, ROWS_BEFORE)]
    sql(juju, "INSERT INTO events (id) VALUES (5000)")  # the primary is writable
    assert sql(juju, "SELECT count(*) FROM events") == [(ROWS_BEFORE + 1,)]
    print(
        json.dumps({"backup_s": round(backup_seconds, 1), "restore_s": round(restore_seconds, 1)})
    )
    # The new timeline is archived too, so that a later restore can use it.
    archived_up_to_now(juju)


def test_a_restore_the_archive_cannot_reach_gives_the_cluster_back(
    juju: LocalBackend, s3: S3Server
):
    """WAL lost from the repository after the target was accepted: recovery ends short of it."""
    archive = "cluster/archive/postgresql-k8s/"
    archived_up_to_now(juju)
    kept = set(s3.list_keys(BUCKET, archive))
    sql(juju, "CREATE TABLE late (id int)")
    sql(juju, "INSERT INTO late SELECT generate_series(1, 50)")
    time.sleep(1.5)
    (target,) = sql(juju, "SELECT now()")[0]
    time.sleep(1.5)
    sql(juju, "INSERT INTO late VALUES (51)")
    archived_up_to_now(juju)
    lost = [key for key in s3.list_keys(BUCKET, archive) if key not in kept]
    assert lost
    for key in lost:
        s3.client().delete_object(Bucket=BUCKET, Key=key)

    juju.run_action(leader(juju), "restore", {"restore-to-time": target.isoformat()})
    juju.wait_for(
        lambda s: "recovery failed" in s.apps[APP][1], timeout=300, what="the failed recovery"
    )
    status, message = app_status(juju)
    assert status == "blocked" and "recovery ended before" in message, message
    juju.wait_for(roles_settled(APP, UNITS), timeout=300, what="3 healthy units again")
    # The data from before the restore is back, the rows after the target included.
    assert sql(juju, "SELECT count(*) FROM late") == [(51,)]
    sql(juju, "INSERT INTO late VALUES (52)")  # the primary is writable


def test_schedule_fires_and_retention_expires_the_oldest(juju: LocalBackend):
    before = juju.run_action(leader(juju), "list-backups")["backups"]
    oldest = before.splitlines()[1].split()[0]  # the header line, then one row per backup
    juju.config(
        APP,
        {
            "backup-schedule-full": "* * * * *",
            "backup-retention-type": "count",
            "backup-retention-full": 1,
        },
    )

    def fired() -> bool:
        listed = juju.run_action(leader(juju), "list-backups")
        return oldest not in listed["backups"] and listed["count"] == "1"

    wait(fired, 150, "a scheduled backup and the oldest expired")
    # The backup also ends the report of the abandoned restore.
    juju.wait_for(lambda s: "last backup" in s.apps[APP][1], timeout=60, what="the last backup")
    juju.config(APP, {"backup-schedule-full": ""})


def test_repository_of_another_cluster_is_refused(juju: LocalBackend, s3: S3Server):
    s3.create_bucket("foreign")
    make_foreign_stanza(juju, s3, "foreign")
    juju.config(S3_APP, {"bucket": "foreign"})
    juju.wait_for(
        lambda s: "another cluster" in s.apps[APP][1] or "do not match" in s.apps[APP][1],
        timeout=180,
        what="the refusal",
    )
    assert sql(juju, "SHOW archive_command") == [("/bin/true",)]
    juju.config(S3_APP, {"bucket": BUCKET})
    juju.wait_for(lambda s: s.apps[APP][0] == "active", timeout=180, what="the repository back")


def test_relation_removed_stops_archiving(juju: LocalBackend):
    juju.remove_relation(APP, f"{S3_APP}:s3-credentials")
    wait(lambda: sql(juju, "SHOW archive_command") == [("/bin/true",)], 120, "archiving off")
    sql(juju, "SELECT pg_switch_wal()")
    (failed,) = sql(juju, "SELECT failed_count FROM pg_stat_archiver")[0]
    time.sleep(2)
    assert sql(juju, "SELECT failed_count FROM pg_stat_archiver")[0][0] == failed
    assert app_status(juju)[0] == "active"


def make_foreign_stanza(b: LocalBackend, s3: S3Server, bucket: str) -> None:
    """Another PostgreSQL (a throwaway one inside a pod) owns the stanza at the same path."""
    unit = f"{APP}/0"
    base = "/tmp/foreign"
    conf = "\n".join(
        [
            "[global]",
            "repo1-type=s3",
            "repo1-path=/cluster",
            f"repo1-s3-bucket={bucket}",
            f"repo1-s3-endpoint={s3.dns_name}",
            f"repo1-storage-port={s3.port}",
            f"repo1-s3-region={s3.region}",
            "repo1-s3-uri-style=path",
            f"repo1-s3-key={s3.access_key}",
            f"repo1-s3-key-secret={s3.secret_key}",
            f"repo1-storage-ca-file={base}/ca.pem",
            f"lock-path={base}/lock",
            f"log-path={base}",
            "[postgresql-k8s]",
            f"pg1-path={base}/data",
            "pg1-port=5499",
            f"pg1-socket-path={base}",
            "pg1-user=postgres",
        ]
    )
    b.exec(unit, ["install", "-d", "-o", "postgres", "-g", "postgres", base])
    b.write_file(unit, f"{base}/pgbackrest.conf", conf, owner="postgres")
    b.write_file(unit, f"{base}/ca.pem", s3.ca_pem, mode=0o644, owner="postgres")
    as_pg = ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"]
    bindir = "/usr/lib/postgresql/15/bin"
    b.exec(
        unit, [*as_pg, f"{bindir}/initdb", "-D", f"{base}/data", "-U", "postgres", "--auth=trust"]
    )
    b.exec(
        unit,
        [*as_pg, f"{bindir}/pg_ctl", "-D", f"{base}/data", "-w", "-l", f"{base}/pg.log", "start",
         "-o", f"-p 5499 -k {base} -c listen_addresses=''"],
    )  # fmt: skip
    try:
        b.exec(unit, [*as_pg, "pgbackrest", f"--config={base}/pgbackrest.conf",
                      "--stanza=postgresql-k8s", "stanza-create"])  # fmt: skip
    finally:
        b.exec(unit, [*as_pg, f"{bindir}/pg_ctl", "-D", f"{base}/data", "-w", "stop"])
    assert s3.list_keys(bucket, "cluster/backup/postgresql-k8s/")
