"""Tier 2: three Patroni members started from the charm's own patroni.yml and Pebble layer.

Each pod runs the Pebble-compatible daemon, as in tier 3. The DCS is etcd instead of
Kubernetes; that is the only difference from what the charm runs.
"""

from __future__ import annotations

import pwd
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import psycopg
import pytest
from psycopg import sql

from substrate.fixtures.patroni_cluster import PatroniCluster
from tests.integration import polling
from workload import layout, patroni

pytestmark = pytest.mark.integration

T = TypeVar("T")
# Passwords the tests themselves send; they must not leak either.
INTRUDER = "intruder"
INTRUDER_PASSWORD = secrets.token_urlsafe(24)
WRONG_PASSWORD = secrets.token_urlsafe(24)


def eventually(probe: Callable[[], T], timeout: float = 30.0, what: str = "") -> T:
    """The first truthy result of probe(), polled every 0.25 s (see polling.eventually)."""
    return polling.eventually(probe, timeout, what, interval=0.25)


def query_one(
    cluster: PatroniCluster, member: str, query: sql.SQL | sql.Composed, *params: object
) -> object:
    with cluster.connect(member) as conn:
        row = conn.execute(query, params or None).fetchone()
    assert row is not None
    return row[0]


def member_of(status: patroni.ClusterStatus, name: str) -> patroni.Member:
    member = status.member(name)
    assert member is not None, f"{name} is not in the cluster"
    return member


def show(cluster: PatroniCluster, member: str, parameter: str) -> str:
    return str(query_one(cluster, member, sql.SQL("SHOW {}").format(sql.Identifier(parameter))))


def insert_note(cluster: PatroniCluster, body: str) -> int:
    with cluster.connect(cluster.primary()) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS notes (id serial PRIMARY KEY, body text NOT NULL)"
        )
        row = conn.execute("INSERT INTO notes (body) VALUES (%s) RETURNING id", (body,)).fetchone()
    assert row is not None
    return int(row[0])


def assert_readable_everywhere(cluster: PatroniCluster, note_id: int, body: str) -> None:
    for member in cluster.names:
        eventually(
            lambda m=member: (
                query_one(cluster, m, sql.SQL("SELECT body FROM notes WHERE id = %s"), note_id)
                == body
            ),
            timeout=15.0,
            what=f"note {note_id} on {member}",
        )


def test_one_leader_two_streaming_replicas_one_sync_standby(patroni_cluster: PatroniCluster):
    status = patroni_cluster.status()

    assert [m.state for m in status.members if m.is_leader] == ["running"]
    replicas = [m for m in status.members if not m.is_leader]
    assert [m.state for m in replicas] == ["streaming", "streaming"]
    assert len(status.sync_standbys) == 1
    note = insert_note(patroni_cluster, "written through the primary")
    assert_readable_everywhere(patroni_cluster, note, "written through the primary")


def test_dcs_holds_the_builders_dynamic_config(patroni_cluster: PatroniCluster):
    expected = patroni_cluster.dynamic_config()
    config = patroni_cluster.client(patroni_cluster.names[0]).get_config()

    for key in ("ttl", "loop_wait", "retry_timeout", "failsafe_mode", "maximum_lag_on_failover"):
        assert config[key] == expected[key], key
    assert config["synchronous_mode"] is True
    assert config["synchronous_mode_strict"] is False
    assert config["synchronous_node_count"] == 1
    assert config["postgresql"]["use_pg_rewind"] is True
    assert config["postgresql"]["use_slots"] is True
    wanted = expected["postgresql"]["parameters"]
    assert {k: config["postgresql"]["parameters"].get(k) for k in wanted} == wanted
    for member in patroni_cluster.names:
        assert show(patroni_cluster, member, "password_encryption") == "scram-sha-256"
        assert show(patroni_cluster, member, "wal_level") == "logical"


def test_patroni_runs_the_charms_service_with_only_the_dcs_swapped(
    patroni_cluster: PatroniCluster,
):
    for member in patroni_cluster.members.values():
        proc = Path(f"/proc/{member.patroni_pid()}")
        environ = dict(
            item.split("=", 1) for item in proc.joinpath("environ").read_text().split("\0") if item
        )

        # Pebble's child is Patroni itself, running as the service's user with the charm's
        # patroni.yml.
        assert proc.joinpath("cmdline").read_text().split("\0")[-2] == layout.PATRONI_CONF
        assert proc.stat().st_uid == pwd.getpwnam(layout.WORKLOAD_USER).pw_uid
        etcd_host = patroni_cluster.etcd.url.removeprefix("http://")
        assert {k: v for k, v in environ.items() if k.startswith("PATRONI_")} == {
            "PATRONI_ETCD3_HOSTS": etcd_host
        }
        assert environ["LANG"] == "C.UTF-8"


def test_reload_only_parameter_reaches_every_member_without_restart(
    patroni_cluster: PatroniCluster,
):
    members = patroni_cluster.names
    started = {
        m: query_one(patroni_cluster, m, sql.SQL("SELECT pg_postmaster_start_time()"))
        for m in members
    }

    patroni_cluster.client(patroni_cluster.primary()).patch_config(
        {"postgresql": {"parameters": {"work_mem": "12MB"}}}
    )

    for member in members:
        eventually(
            lambda m=member: show(patroni_cluster, m, "work_mem") == "12MB",
            what=f"work_mem on {member}",
        )
    assert started == {
        m: query_one(patroni_cluster, m, sql.SQL("SELECT pg_postmaster_start_time()"))
        for m in members
    }
    assert not any(m.pending_restart for m in patroni_cluster.status().members)


def test_restart_parameter_is_pending_until_rolling_restart(patroni_cluster: PatroniCluster):
    target = str(int(show(patroni_cluster, patroni_cluster.primary(), "max_connections")) + 20)

    patroni_cluster.client(patroni_cluster.primary()).patch_config(
        {"postgresql": {"parameters": {"max_connections": target}}}
    )
    status = patroni_cluster.wait_for(lambda s: all(m.pending_restart for m in s.members))

    # Replicas first, primary last: a standby needs max_connections >= the primary's.
    assert status.leader is not None
    order = [m.name for m in status.members if not m.is_leader] + [status.leader.name]
    for done, member in enumerate(order, start=1):
        assert patroni_cluster.client(member).restart(pending_only=True)
        status = patroni_cluster.wait_for(
            lambda s, m=member: not member_of(s, m).pending_restart and member_of(s, m).is_healthy
        )
        # One member at a time: the others still wait for theirs.
        assert [n for n in order[done:] if not member_of(status, n).pending_restart] == []
        assert show(patroni_cluster, member, "max_connections") == target
    patroni_cluster.wait_settled(timeout=60.0)


def test_switchover_to_the_sync_standby(patroni_cluster: PatroniCluster):
    status = patroni_cluster.wait_settled(timeout=60.0)
    assert status.leader is not None
    leader, sync = status.leader.name, status.sync_standbys[0].name
    (other,) = [m.name for m in status.members if m.name not in (leader, sync)]
    client = patroni_cluster.client(leader)

    with pytest.raises(patroni.SwitchoverRefusedError):
        client.switchover(leader, other)
    assert patroni_cluster.primary() == leader
    before = patroni_cluster.notice(sync, layout.ROLE_CHANGE_NOTICE)
    occurrences_before = before.occurrences if before else 0

    client.switchover(leader, sync)

    # Healthy is enough here: the new leader names its sync standby on its next loop.
    status = patroni_cluster.wait_for(
        lambda s: s.leader is not None and s.leader.name == sync and s.healthy,
        timeout=60.0,
    )
    assert member_of(status, leader).state == "streaming"
    # Pebble keeps one notice per key: a new occurrence carries the latest data.
    promoted = eventually(
        lambda: (
            (n := patroni_cluster.notice(sync, layout.ROLE_CHANGE_NOTICE)) is not None
            and n.occurrences > occurrences_before
            and n.last_data.get("role") == "primary"
            and n
        ),
        what=f"a role-change notice on {sync}",
    )
    assert promoted.last_data["action"] == "on_role_change"
    note = insert_note(patroni_cluster, "written after the switchover")
    assert_readable_everywhere(patroni_cluster, note, "written after the switchover")


def test_pg_hba_refuses_unlisted_users_and_wrong_passwords(patroni_cluster: PatroniCluster):
    primary = patroni_cluster.primary()
    with patroni_cluster.connect(primary) as conn:
        verifier = conn.pgconn.encrypt_password(
            INTRUDER_PASSWORD.encode(), INTRUDER.encode(), b"scram-sha-256"
        )
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(INTRUDER)))
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(INTRUDER), sql.Literal(verifier.decode())
            )
        )
        methods = {r[0] for r in conn.execute("SELECT auth_method FROM pg_hba_file_rules")}
        stored = conn.execute(
            "SELECT rolpassword FROM pg_authid WHERE rolname = %s",
            (layout.SystemUser.OPERATOR.value,),
        ).fetchone()

    assert methods == {"scram-sha-256"}
    assert stored is not None
    assert str(stored[0]).startswith("SCRAM-SHA-256$")
    with pytest.raises(psycopg.OperationalError, match=r"no pg_hba\.conf entry"):
        patroni_cluster.connect(primary, user=INTRUDER, password=INTRUDER_PASSWORD)
    with pytest.raises(psycopg.OperationalError, match=r"password authentication failed"):
        patroni_cluster.connect(primary, password=WRONG_PASSWORD)


def _process_argvs() -> dict[int, bytes]:
    argvs: dict[int, bytes] = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                argvs[int(proc.name)] = (proc / "cmdline").read_bytes()
            except OSError:
                continue  # exited meanwhile
    return argvs


def test_passwords_never_leak(patroni_cluster: PatroniCluster):
    passwords = {user.value: pw for user, pw in patroni_cluster.passwords.items()}
    passwords |= {INTRUDER: INTRUDER_PASSWORD, "wrong": WRONG_PASSWORD}
    sources = {
        f"etcd log {patroni_cluster.etcd.log_path}": patroni_cluster.etcd.log_path.read_text()
    }
    for member in patroni_cluster.names:
        pg_logs = patroni_cluster.postgresql_logs(member)
        assert "database system is ready to accept" in pg_logs  # the logs are the real ones
        sources[f"{member} PostgreSQL logs"] = pg_logs
        sources[f"{member} Patroni output"] = patroni_cluster.patroni_output(member)
    sources |= {
        f"argv of pid {pid}": argv.decode(errors="replace")
        for pid, argv in _process_argvs().items()
    }

    leaks = [
        (user, where)
        for where, text in sources.items()
        for user, pw in passwords.items()
        if pw in text
    ]

    assert leaks == []


def test_files_holding_passwords_are_private_to_the_workload_user(patroni_cluster: PatroniCluster):
    passwords = [pw.encode() for pw in patroni_cluster.passwords.values()]
    for member in patroni_cluster.members.values():
        home = member.pod.host_path(layout.CONF_DIR)
        holding = [
            p
            for p in home.rglob("*")
            if p.is_file() and any(pw in p.read_bytes() for pw in passwords)
        ]
        assert {p.name for p in holding} >= {"patroni.yml"}
        for path in holding:
            info = path.stat()
            assert (path.name, oct(info.st_mode & 0o077)) == (path.name, "0o0")
            assert info.st_uid == member.pod.host_path(layout.PGDATA).stat().st_uid
