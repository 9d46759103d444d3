"""Tier 2: pgBackRest built from workload.pgbackrest, against real PostgreSQL 15 and a real S3 server.

Every scenario ends by starting PostgreSQL on a restored data directory and reading the rows.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from charms.postgresql_k8s.v0 import postgresql as pglib
from components import system_users
from substrate.k8s.s3 import CertificateAuthority, S3Server
from tests.integration import pg_server as pg
from tests.integration.pg_server import PgServer
from tests.integration.polling import eventually
from workload import layout
from workload import pgbackrest as pb

pytestmark = pytest.mark.integration

STANZA = "pg"
ACCOUNT = pwd.getpwnam("postgres")
COMMAND_TIMEOUT = 120


# --- helpers ------------------------------------------------------------------------------------


def _own(path: Path, mode: int) -> Path:
    os.chown(path, ACCOUNT.pw_uid, ACCOUNT.pw_gid)
    path.chmod(mode)
    return path


def _write(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    return _own(path, mode)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Node:
    """One member's pgBackRest side: a directory owned by postgres with its config and passfile."""

    def __init__(self, base: Path):
        self.dir = base
        self.conf = base / "pgbackrest.conf"
        self.passfile = base / "pgpass"
        self.data_dir = base / "data"  # where a restore goes
        self.paths = pb.Paths.under(str(base / "pgbackrest"))

    def archive_settings(self) -> dict[str, str]:
        """postgresql.conf settings that archive through this node's configuration."""
        return {
            "archive_mode": "on",
            "wal_level": "replica",
            "archive_command": pb.archive_command(str(self.conf), STANZA),
        }

    def configure(
        self, s3: pb.S3Settings, pg_instance: pb.PgInstance, password: str, **options: Any
    ) -> None:
        for directory in map(Path, self.paths.directories()):
            directory.mkdir(parents=True, exist_ok=True)
            _own(directory, 0o700)
        if s3.ca_chain:
            _write(Path(self.paths.s3_ca_file), s3.ca_chain)
        text = pb.render_config(STANZA, s3, pg_instance, paths=self.paths, **options)
        _write(self.conf, text)
        # pgBackRest has no password option: libpq finds it in the passfile.
        _write(self.passfile, f"*:*:*:{pg_instance.user}:{password}\n")

    def run(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        """Run a pgBackRest command as postgres; a failure raises PgBackRestError."""
        proc = subprocess.run(
            pg.as_postgres("env", f"PGPASSFILE={self.passfile}", *argv),
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )
        if proc.returncode != 0:
            raise pb.PgBackRestError.from_stderr(proc.returncode, proc.stderr)
        return proc

    def timed(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        """run(), printing how long the command took (pytest -s shows the figures)."""
        started = time.monotonic()
        proc = self.run(argv)
        print(f"pgbackrest {' '.join(argv[2:])}: {time.monotonic() - started:.2f}s")
        return proc

    def info(self) -> pb.StanzaInfo:
        [stanza] = pb.parse_info(self.run(pb.info(str(self.conf), STANZA)).stdout)
        return stanza


@pytest.fixture
def make_node() -> Iterator[Callable[[], Node]]:
    """Make Nodes in directories removed at the end of the test."""
    made: list[Path] = []

    def make() -> Node:
        base = _own(Path(tempfile.mkdtemp(prefix="pgbr-", dir="/tmp")), 0o700)
        made.append(base)
        return Node(base)

    yield make
    for base in made:
        shutil.rmtree(base, ignore_errors=True)


def instance(server: PgServer, user: str | None = None) -> pb.PgInstance:
    return pb.PgInstance(
        path=str(server.data_dir),
        port=server.port,
        socket_path=str(server.socket_dir),
        user=user or server.superuser,
    )


BACKUP_USER = layout.SystemUser.BACKUP.value
BACKUP_PASSWORD = "backup-role-password"


def create_system_roles(server: PgServer) -> None:
    """The monitoring and backup roles exactly as the charm's leader creates them."""
    db = pglib.PostgreSQL(
        primary_host=server.host,
        port=server.port,
        user=server.superuser,
        password=server.password,
    )
    passwords = {
        layout.SystemUser.MONITORING: "monitoring-role-password",
        layout.SystemUser.BACKUP: BACKUP_PASSWORD,
    }
    system_users.ensure_roles(db, passwords)
    with server.connect() as conn:
        row = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = %s", (BACKUP_USER,))
        assert row.fetchone() == (False,)


@contextlib.contextmanager
def archiving_server(node: Node, s3: pb.S3Settings, **options: Any) -> Iterator[PgServer]:
    """A fresh server archiving into the repository, with its stanza created."""
    with pg.pg_server(settings=node.archive_settings()) as server:
        node.configure(s3, instance(server), server.password, **options)
        node.timed(pb.stanza_create(str(node.conf), STANZA))
        yield server


def insert(server: PgServer, first: int, last: int) -> None:
    with server.connect() as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS t (id int PRIMARY KEY)")
        conn.execute("INSERT INTO t SELECT generate_series(%s::int, %s::int)", (first, last))


def ids(server: PgServer) -> list[int]:
    with server.connect() as conn:
        return [row[0] for row in conn.execute("SELECT id FROM t ORDER BY id")]


def switch_and_wait_archived(server: PgServer) -> None:
    """Close the current WAL segment and wait until PostgreSQL reports it archived."""
    with server.connect() as conn:
        row = conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()
    assert row is not None
    segment = str(row[0])

    def archived() -> bool:
        with server.connect() as conn:
            stat = conn.execute("SELECT last_archived_wal FROM pg_stat_archiver").fetchone()
        return bool(stat and stat[0] and str(stat[0])[8:] >= segment[8:])

    eventually(archived, timeout=60, what=f"{segment} archived")


def server_clock(server: PgServer) -> datetime.datetime:
    """The server's now(), between two short sleeps so that earlier and later commits differ."""
    time.sleep(0.3)
    with server.connect() as conn:
        row = conn.execute("SELECT now()").fetchone()
    time.sleep(0.3)
    assert row is not None
    return row[0]


def timeline(server: PgServer) -> int:
    with server.connect() as conn:
        conn.execute("CHECKPOINT")  # pg_control's timeline is the last checkpoint's
        row = conn.execute("SELECT timeline_id FROM pg_control_checkpoint()").fetchone()
    assert row is not None
    return int(row[0])


def restore_node(
    make_node: Callable[[], Node], s3: pb.S3Settings, password: str, **options: Any
) -> Node:
    """A node whose pg1-path is a new, empty data directory, on the same repository."""
    node = make_node()
    node.data_dir.mkdir()
    _own(node.data_dir, 0o700)
    node.configure(
        s3, pb.PgInstance(path=str(node.data_dir), user="postgres"), password, **options
    )
    return node


@contextlib.contextmanager
def restored(
    node: Node, target: pb.RestoreTarget, password: str, archive: bool = False
) -> Iterator[PgServer]:
    """Restore into the node's data directory, start PostgreSQL on it, wait for the promotion.

    With `archive`, the restored server archives through the node's configuration (a new
    timeline in the same repository); without, restore turns archiving off.
    """
    started = time.monotonic()
    argv = pb.restore(str(node.conf), STANZA, target)
    node.timed(argv if archive else [*argv[:-1], "--archive-mode=off", argv[-1]])
    settings = node.archive_settings() if archive else None
    with pg.run_data_dir(node.data_dir, "postgres", password, settings) as server:

        def promoted() -> bool:
            with server.connect() as conn:
                row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
            return bool(row and not row[0])

        eventually(promoted, timeout=60, what="the restored server promoted")
        print(f"restore to {target}: promoted {time.monotonic() - started:.2f}s after start")
        yield server


def s3_settings(s3: S3Server, bucket: str, path: str) -> pb.S3Settings:
    return pb.s3_settings(s3.relation_data(bucket, path))


# --- scenarios ----------------------------------------------------------------------------------


def test_stanza_create_and_check_on_an_empty_repository(
    s3_server: S3Server, s3_bucket: str, make_node: Callable[[], Node]
):
    s3 = s3_settings(s3_server, s3_bucket, "/fresh")
    node = make_node()
    with archiving_server(node, s3) as server:
        assert node.info().status_message == "no valid backups"
        node.timed(pb.check(str(node.conf), STANZA))
        keys = s3_server.list_keys(s3_bucket, "/fresh")
        assert "fresh/backup/pg/backup.info" in keys
        assert "fresh/archive/pg/archive.info" in keys

        insert(server, 1, 5)
        node.timed(pb.backup(str(node.conf), STANZA, "full"))
        info = node.info()
        assert (info.status_code, info.status_message) == (0, "ok")
        assert info.system_ids and info.archive_min and info.archive_max
        logs = "".join(p.read_text() for p in Path(node.paths.log).iterdir())
        assert "backup command begin" in logs
        assert s3.secret_key not in logs and s3.access_key not in logs
        target = restore_node(make_node, s3, server.password)
    with restored(target, pb.Latest(), server.password) as copy:
        assert ids(copy) == [1, 2, 3, 4, 5]


# Printable ASCII an S3 path may hold that an INI file or a URL treats specially.
AWKWARD_PATH = "/pg=1;#[x]/%20+&'\"\\`$!@^(){}|<>~,:*?"


def _current(node: Node, option: str) -> str:
    """The value pgBackRest itself read from the configuration file (`help` shows it)."""
    argv = [*pb.command(str(node.conf), STANZA, "help"), "info", option]
    out = node.run(argv).stdout
    [value] = re.findall(r"^current: (.*)$", out, re.MULTILINE)
    return value


def test_awkward_accepted_settings_reach_s3_as_given(
    s3_server: S3Server, s3_bucket: str, make_node: Callable[[], Node]
):
    # Every field at an edge the validator accepts: pgBackRest parses the file, reads each value
    # back unchanged, and the repository lands under exactly the path the provider sent.
    ca_crlf = "\r\n\r\n" + s3_server.ca_pem.replace("\n", "\r\n") + "\r\n"
    data = s3_server.relation_data(s3_bucket, AWKWARD_PATH)
    data |= {
        "endpoint": f"HTTPS://{s3_server.dns_name}:{s3_server.port}/",
        "tls-ca-chain": [ca_crlf],
    }
    s3 = pb.s3_settings(data)
    node = make_node()
    with archiving_server(node, s3):
        assert _current(node, "repo1-path") == AWKWARD_PATH
        assert _current(node, "repo1-s3-endpoint") == s3_server.dns_name
        assert _current(node, "repo1-storage-port") == str(s3_server.port)
        assert _current(node, "repo1-s3-bucket") == s3_bucket
        assert _current(node, "repo1-s3-key-secret") == "<redacted>"
        node.timed(pb.check(str(node.conf), STANZA))
        keys = s3_server.list_keys(s3_bucket)
        assert f"{AWKWARD_PATH[1:]}/backup/pg/backup.info" in keys, keys
        assert f"{AWKWARD_PATH[1:]}/archive/pg/archive.info" in keys, keys


def test_full_diff_incr_each_restores_exactly_its_rows(
    s3_server: S3Server, s3_bucket: str, make_node: Callable[[], Node]
):
    s3 = s3_settings(s3_server, s3_bucket, "/chain")
    node = make_node()
    with archiving_server(node, s3) as server:
        for backup_type, last in (("full", 10), ("diff", 20), ("incr", 30)):
            insert(server, last - 9, last)
            node.timed(pb.backup(str(node.conf), STANZA, backup_type, {"test": "chain"}))
        insert(server, 31, 40)  # after every backup: in none of them
        info = node.info()
        password = server.password

    full, diff, incr = info.backups
    assert [b.type for b in info.backups] == ["full", "diff", "incr"]
    assert (full.prior, diff.prior, incr.prior) == (None, full.label, diff.label)
    assert [b.timeline for b in info.backups] == [1, 1, 1]
    assert full.annotations == {"test": "chain"}
    for backup in info.backups:
        assert backup.wal_start and backup.wal_stop and backup.wal_start <= backup.wal_stop
        assert backup.start <= backup.stop and backup.repo_size > 0 and not backup.error
    assert full.wal_stop and diff.wal_start and full.wal_stop < diff.wal_start
    assert info.archive_min and info.archive_min <= (full.wal_start or "")
    table = pb.format_table(info.backups)
    assert all(b.label in table for b in info.backups)
    print(table)

    for backup, last in ((full, 10), (diff, 20), (incr, 30)):
        target = restore_node(make_node, s3, password)
        with restored(target, pb.BackupSet(backup.label), password) as copy:
            assert ids(copy) == list(range(1, last + 1)), backup.label


def test_point_in_time_recovery_twice_across_timelines(
    s3_server: S3Server, s3_bucket: str, make_node: Callable[[], Node]
):
    s3 = s3_settings(s3_server, s3_bucket, "/pitr")
    origin = make_node()
    with archiving_server(origin, s3) as server:
        password = server.password
        origin.timed(pb.backup(str(origin.conf), STANZA, "full"))
        insert(server, 1, 10)  # A
        moment = server_clock(server)
        insert(server, 11, 20)  # B
        switch_and_wait_archived(server)

    # First recovery: to T, on a new timeline, archiving into the same repository.
    second = restore_node(make_node, s3, password)
    with restored(second, pb.PointInTime(moment), password, archive=True) as server:
        assert ids(server) == list(range(1, 11))
        assert timeline(server) == 2
        second.configure(s3, instance(server), password)  # now it runs: its port and socket
        second.timed(pb.backup(str(second.conf), STANZA, "incr"))
        insert(server, 21, 30)  # C
        moment2 = server_clock(server)
        insert(server, 31, 40)  # D
        switch_and_wait_archived(server)
        assert second.info().backups[-1].timeline == 2

    # Second recovery: to T2, following timeline 2 from the backup taken on it.
    third = restore_node(make_node, s3, password)
    with restored(third, pb.PointInTime(moment2), password) as server:
        assert ids(server) == [*range(1, 11), *range(21, 31)]
        assert timeline(server) == 3
        insert(server, 41, 41)  # a promoted server takes writes


def test_retention_by_count_expires_the_oldest_full_backup(
    s3_server: S3Server, s3_bucket: str, make_node: Callable[[], Node]
):
    s3 = s3_settings(s3_server, s3_bucket, "/retention")
    node = make_node()
    with archiving_server(node, s3, retention=pb.Retention.by_count(1)) as server:
        insert(server, 1, 5)
        node.timed(pb.backup(str(node.conf), STANZA, "full"))
        [oldest] = node.info().backups
        insert(server, 6, 10)
        node.timed(pb.backup(str(node.conf), STANZA, "full"))  # expires the first (expire-auto)
        node.timed(pb.expire(str(node.conf), STANZA))  # and an explicit expire keeps the newest
        info = node.info()
        password = server.password

    [newest] = info.backups
    assert newest.label != oldest.label
    assert s3_server.list_keys(s3_bucket, f"/retention/backup/{STANZA}/{oldest.label}/") == []
    assert s3_server.list_keys(s3_bucket, f"/retention/backup/{STANZA}/{newest.label}/")
    assert info.archive_min and newest.wal_start and info.archive_min >= newest.wal_start
    target = restore_node(make_node, s3, password)
    with restored(target, pb.BackupSet(newest.label), password) as copy:
        assert ids(copy) == list(range(1, 11))


def test_a_repository_of_another_cluster_is_refused(
    s3_server: S3Server, s3_bucket: str, make_node: Callable[[], Node]
):
    s3 = s3_settings(s3_server, s3_bucket, "/shared")
    first = make_node()
    with archiving_server(first, s3) as server:
        insert(server, 1, 3)
        first.timed(pb.backup(str(first.conf), STANZA, "full"))
        password = server.password

    other = make_node()
    with pg.pg_server(settings=other.archive_settings()) as server:
        other.configure(s3, instance(server), server.password)
        with pytest.raises(pb.PgBackRestError) as refused:
            other.run(pb.stanza_create(str(other.conf), STANZA))
        print(f"another cluster: {refused.value}")
        assert refused.value.exit_code == 28
        assert refused.value.diagnosis.settings == ("bucket", "path")
        assert "belongs to another cluster" in str(refused.value.diagnosis)
        with pytest.raises(pb.PgBackRestError) as refused:  # and a backup too
            other.run(pb.backup(str(other.conf), STANZA, "full"))
        print(f"another cluster, backup: {refused.value}")
        assert "belongs to another cluster" in refused.value.diagnosis.explanation

    target = restore_node(make_node, s3, password)
    with restored(target, pb.Latest(), password) as copy:
        assert ids(copy) == [1, 2, 3]


def test_wrong_credentials_and_bucket_name_the_setting(
    s3_server: S3Server, s3_bucket: str, make_node: Callable[[], Node]
):
    s3 = s3_settings(s3_server, s3_bucket, "/creds")
    node = make_node()
    with archiving_server(node, s3) as server:
        insert(server, 1, 3)
        node.timed(pb.backup(str(node.conf), STANZA, "full"))
        password = server.password
        wrong = {
            "secret-key": dataclasses.replace(s3, secret_key="wrong" + s3.secret_key),
            "access-key": dataclasses.replace(s3, access_key="AKIA0000000000000000"),
            "bucket": dataclasses.replace(s3, bucket="no-such-bucket"),
        }
        for setting, settings in wrong.items():
            node.configure(settings, instance(server), password)
            with pytest.raises(pb.PgBackRestError) as failed:
                node.run(pb.stanza_create(str(node.conf), STANZA))
            print(f"wrong {setting}: {failed.value}")
            assert setting in failed.value.diagnosis.settings, failed.value.diagnosis
            # stanza-create's first request is a HEAD, which carries no S3 error code; info's
            # listing does, and pins the setting down.
            [why] = node.info().repo_errors
            assert pb.classify_error(0, why).settings == (setting,)

    target = restore_node(make_node, s3, password)
    with restored(target, pb.Latest(), password) as copy:
        assert ids(copy) == [1, 2, 3]


# --- backup from a standby ----------------------------------------------------------------------


@dataclasses.dataclass
class TlsMember:
    """A member's TLS identity for the pgBackRest server, as files its node owns."""

    files: pb.TlsFiles
    port: int


def tls_member(node: Node, ca: CertificateAuthority, name: str) -> TlsMember:
    """Server certificate for localhost (2.45 does not match IP SANs), usable as a client too."""
    issued = ca.issue(name, dns_names=("localhost",))
    cert = _write(node.dir / "tls.pem", issued.cert_pem, 0o644)
    key = _write(node.dir / "tls.key", issued.key_pem)
    ca_file = _write(node.dir / "tls-ca.pem", ca.cert_pem, 0o644)
    return TlsMember(pb.TlsFiles(str(cert), str(key), str(ca_file)), _free_port())


@contextlib.contextmanager
def pgbackrest_server(node: Node, member: TlsMember) -> Iterator[None]:
    """`pgbackrest server` for a node, until the block ends."""
    log = (node.dir / "server.log").open("ab")
    proc = subprocess.Popen(
        pg.as_postgres("env", f"PGPASSFILE={node.passfile}", *pb.server(str(node.conf))),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        ping = pg.as_postgres(*pb.server_ping(str(node.conf), "localhost", member.port))
        eventually(
            lambda: subprocess.run(ping, capture_output=True, check=False).returncode == 0,
            10,
            "ping",
        )
        yield
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_backup_from_a_standby_copies_files_from_the_standby(
    s3_server: S3Server, s3_bucket: str, make_node: Callable[[], Node]
):
    """As the charm's backup role (not a superuser) on both members, as the charm runs it."""
    s3 = s3_settings(s3_server, s3_bucket, "/standby")
    ca = CertificateAuthority("pgbackrest-ca")
    primary_node, standby_node = make_node(), make_node()
    primary_tls = tls_member(primary_node, ca, "pgbackrest")
    standby_tls = tls_member(standby_node, ca, "pgbackrest")

    def server_options(member: TlsMember) -> pb.TlsServer:
        return pb.TlsServer("127.0.0.1", member.files, client_cn="pgbackrest", port=member.port)

    with pg.pg_server(settings=primary_node.archive_settings()) as primary:
        create_system_roles(primary)
        primary_node.configure(
            s3,
            instance(primary, BACKUP_USER),
            BACKUP_PASSWORD,
            server=server_options(primary_tls),
        )
        primary_node.timed(pb.stanza_create(str(primary_node.conf), STANZA))
        primary_node.timed(pb.check(str(primary_node.conf), STANZA))
        with pgbackrest_server(primary_node, primary_tls):
            insert(primary, 1, 100)
            password = primary.password
            replication_pass = _write(
                standby_node.dir / "replication.pgpass", f"*:*:*:postgres:{password}\n"
            )
            subprocess.run(
                pg.as_postgres(
                    *("env", f"PGPASSFILE={replication_pass}"),
                    str(pg.PG_BIN / "pg_basebackup"),
                    *(
                        f"--pgdata={standby_node.data_dir}",
                        "--host=127.0.0.1",
                        "--checkpoint=fast",
                    ),
                    *(f"--port={primary.port}", "--username=postgres", "--no-sync"),
                ),
                check=True,
                capture_output=True,
            )
            _write(standby_node.data_dir / "standby.signal", "")
            conninfo = (
                f"host=127.0.0.1 port={primary.port} user=postgres passfile={replication_pass}"
            )
            with pg.run_data_dir(
                standby_node.data_dir, "postgres", password, {"primary_conninfo": conninfo}
            ) as standby:
                # The standby's own certificate is its client certificate towards the primary.
                remote = pb.RemotePrimary(
                    "localhost",
                    standby_tls.files,
                    instance(primary, BACKUP_USER),
                    primary_tls.port,
                )
                standby_node.configure(
                    s3,
                    instance(standby, BACKUP_USER),
                    BACKUP_PASSWORD,
                    server=server_options(standby_tls),
                    primary=remote,
                )
                with pgbackrest_server(standby_node, standby_tls):
                    eventually(lambda: ids(standby) == list(range(1, 101)), 30, "rows replicated")
                    argv = pb.backup(str(standby_node.conf), STANZA, "full")
                    proc = standby_node.timed([*argv[:-1], "--log-level-console=detail", argv[-1]])
                    info = standby_node.info()

    copied = re.findall(r"backup file (\S+)", proc.stdout)
    from_primary = [path for path in copied if path.startswith("localhost:")]
    from_standby = [path for path in copied if path.startswith(str(standby_node.data_dir))]
    print(f"{len(from_standby)} files from the standby, {len(from_primary)} from the primary")
    assert "wait for replay on the standby" in proc.stdout
    assert len(from_standby) > 10 * max(1, len(from_primary))
    assert all(p.startswith(f"localhost:{primary.data_dir}/") for p in from_primary)
    [backup] = info.backups

    target = restore_node(make_node, s3, password)
    with restored(target, pb.BackupSet(backup.label), password) as copy:
        assert ids(copy) == list(range(1, 101))
