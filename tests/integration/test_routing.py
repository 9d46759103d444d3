"""Tier 2: the `<app>-primary` and `<app>-replicas` Services of the local substrate.

HAProxy routes each Service's address to the members whose Patroni REST API answers for the
role, as a Kubernetes Service selecting on Patroni's role label would.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import psycopg
import pytest

from substrate.fixtures.patroni_cluster import PatroniCluster
from substrate.host import netns, pods
from substrate.k8s import routing
from tests.integration import polling
from workload import layout

pytestmark = pytest.mark.integration

T = TypeVar("T")
Connection = psycopg.Connection[tuple[Any, ...]]


# -- fixture: the router, sharing the module's substrate and cluster (conftest.py) -------------


@pytest.fixture(scope="module")
def router(
    substrate: pods.Substrate, patroni_cluster: PatroniCluster
) -> Iterator[routing.ServiceRouter]:
    """Both role Services of the cluster's application, routed to all of its members."""
    missing = routing.missing_tools()
    if missing:
        pytest.fail("routing tests need: " + "; ".join(missing), pytrace=False)
    with routing.ServiceRouter(substrate) as service_router:
        members = list(patroni_cluster.ips.values())
        service_router.set_service(primary_service(patroni_cluster), members, "primary")
        service_router.set_service(replicas_service(patroni_cluster), members, "replica")
        yield service_router


def primary_service(cluster: PatroniCluster) -> str:
    return f"{cluster.app}-primary"


def replicas_service(cluster: PatroniCluster) -> str:
    return f"{cluster.app}-replicas"


# -- helpers ------------------------------------------------------------------------------------


def eventually(probe: Callable[[], T], timeout: float = 15.0, what: str = "") -> T:
    """The first truthy result of probe(), polled every 0.1 s (see polling.eventually)."""
    return polling.eventually(probe, timeout, what, interval=0.1)


def connect(cluster: PatroniCluster, address: str, timeout: int = 3) -> Connection:
    """An autocommit session as the operator user through a Service address."""
    return psycopg.connect(
        host=address,
        port=layout.PORT_POSTGRESQL,
        user=layout.SystemUser.OPERATOR.value,
        password=cluster.passwords[layout.SystemUser.OPERATOR],
        dbname="postgres",
        connect_timeout=timeout,
        autocommit=True,
    )


def served_by(conn: Connection) -> tuple[str, bool]:
    """(server IP, in recovery) of the session."""
    row = conn.execute("SELECT host(inet_server_addr()), pg_is_in_recovery()").fetchone()
    assert row is not None
    return str(row[0]), bool(row[1])


def ask(cluster: PatroniCluster, address: str) -> tuple[str, bool]:
    with connect(cluster, address, timeout=2) as conn:
        return served_by(conn)


def is_cut(conn: Connection) -> bool:
    try:
        conn.execute("SELECT 1")
    except psycopg.OperationalError:
        return True
    return False


def leader_and_replicas(cluster: PatroniCluster) -> tuple[str, list[str]]:
    status = cluster.wait_settled(timeout=60.0)
    assert status.leader is not None
    ips = cluster.ips
    return ips[status.leader.name], sorted(ips[m.name] for m in status.members if not m.is_leader)


def bridge_addresses(substrate: pods.Substrate) -> str:
    return netns.ip("-o", "addr", "show", "dev", substrate.slot.bridge)


# An HTTP server answering 200 to everything (a member that claims to be the primary), and a
# TCP listener on the PostgreSQL port.
IMPOSTOR = """
import http.server, socket, threading
class Yes(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
    def log_message(self, *args):
        pass
def refuse_sessions():
    listener = socket.create_server(("0.0.0.0", 5432))
    while True:
        listener.accept()[0].close()
threading.Thread(target=refuse_sessions, daemon=True).start()
http.server.ThreadingHTTPServer(("0.0.0.0", 8008), Yes).serve_forever()
"""


# -- tests --------------------------------------------------------------------------------------


def test_primary_service_reaches_the_leader_and_takes_writes(
    patroni_cluster: PatroniCluster, router: routing.ServiceRouter
):
    leader, _ = leader_and_replicas(patroni_cluster)
    address = router.address(primary_service(patroni_cluster))

    with connect(patroni_cluster, address) as conn:
        assert served_by(conn) == (leader, False)
        conn.execute("CREATE TABLE IF NOT EXISTS routed (id serial PRIMARY KEY, body text)")
        row = conn.execute("INSERT INTO routed (body) VALUES ('via primary') RETURNING id")
        assert row.fetchone() is not None
    assert router.routed_to(primary_service(patroni_cluster)) == [leader]


def test_replicas_service_reaches_only_replicas_and_refuses_writes(
    patroni_cluster: PatroniCluster, router: routing.ServiceRouter
):
    _, replicas = leader_and_replicas(patroni_cluster)
    address = router.address(replicas_service(patroni_cluster))
    assert router.routed_to(replicas_service(patroni_cluster)) == replicas

    seen: set[str] = set()
    for _ in range(4):
        with connect(patroni_cluster, address) as conn:
            server, in_recovery = served_by(conn)
            assert in_recovery
            seen.add(server)
            with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
                conn.execute("INSERT INTO routed (body) VALUES ('via replicas')")
            eventually(
                lambda c=conn: c.execute("SELECT count(*) FROM routed").fetchone() == (1,),
                what="the row written through the primary Service, on a replica",
            )
    assert seen <= set(replicas)


def test_service_names_resolve_and_connect_inside_a_pod(
    patroni_cluster: PatroniCluster, router: routing.ServiceRouter
):
    pod = next(iter(patroni_cluster.members.values())).pod
    password = patroni_cluster.passwords[layout.SystemUser.OPERATOR]
    expected = {primary_service(patroni_cluster): "f", replicas_service(patroni_cluster): "t"}

    for name, in_recovery in expected.items():
        # ahostsv4: `getent hosts` asks for IPv6 first and waits for the pod's unreachable DNS.
        resolved = pod.exec(["getent", "ahostsv4", name]).stdout.split()
        assert resolved[:3] == [router.address(name), "STREAM", name]
        dsn = f"host={name} user={layout.SystemUser.OPERATOR.value} dbname=postgres"
        answer = pod.exec(
            ["psql", dsn, "-Atc", "SELECT pg_is_in_recovery()"], env={"PGPASSWORD": password}
        )
        assert answer.stdout.strip() == in_recovery
    assert router.hosts_entries() == {name: router.address(name) for name in expected}


def test_membership_changes_touch_no_other_session_and_never_reload(
    patroni_cluster: PatroniCluster, router: routing.ServiceRouter
):
    leader, replicas = leader_and_replicas(patroni_cluster)
    primary, replicas_name = primary_service(patroni_cluster), replicas_service(patroni_cluster)
    pid = router.pid
    members = [leader, *replicas]
    with (
        connect(patroni_cluster, router.address(primary)) as on_primary,
        connect(patroni_cluster, router.address(replicas_name)) as on_replica,
    ):
        kept, _ = served_by(on_replica)
        (dropped,) = [ip for ip in replicas if ip != kept]

        # A unit leaves: its sessions go, nobody else's.
        router.set_service(replicas_name, [ip for ip in members if ip != dropped], "replica")
        router.set_service(primary, [ip for ip in members if ip != dropped], "primary")
        assert router.routed_to(replicas_name) == [kept]
        assert served_by(on_replica) == (kept, True)
        assert served_by(on_primary) == (leader, False)

        # It comes back (as a recreated pod would, under its address): routed once checked.
        router.set_service(replicas_name, members, "replica")
        router.set_service(primary, members, "primary")
        assert router.routed_to(replicas_name) == replicas
        assert served_by(on_primary) == (leader, False)

        # The member a session is on leaves: that session is cut, the primary's is not.
        router.set_service(replicas_name, [ip for ip in members if ip != kept], "replica")
        assert eventually(lambda: is_cut(on_replica), what="the removed member's session cut")
        assert served_by(on_primary) == (leader, False)
        router.set_service(replicas_name, members, "replica")
    assert router.pid == pid


def test_a_member_that_rejoins_is_checked_afresh(
    patroni_cluster: PatroniCluster, router: routing.ServiceRouter
):
    """A returning member (a recreated pod at its old address) earns its route by a new check.

    Its earlier server answered 200 before it left; if that result counted, the primary Service
    would send traffic to a member whose Patroni does not answer now.
    """
    status = patroni_cluster.wait_settled(timeout=60.0)
    assert status.leader is not None
    member = patroni_cluster.members[status.leader.name]
    patroni_pid = member.patroni_pid()
    primary = primary_service(patroni_cluster)
    members = list(patroni_cluster.ips.values())
    pid = router.pid
    router.set_service(primary, [ip for ip in members if ip != member.ip], "primary")
    assert router.routed_to(primary) == []
    member.pod.signal(patroni_pid, signal.SIGSTOP)
    try:
        router.set_service(primary, members, "primary")
        assert router.routed_to(primary) == []
        with pytest.raises(psycopg.OperationalError):
            connect(patroni_cluster, router.address(primary)).close()
    finally:
        member.pod.signal(patroni_pid, signal.SIGCONT)
    eventually(lambda: router.routed_to(primary) == [member.ip], what="the primary routed again")
    with connect(patroni_cluster, router.address(primary)) as routed:
        assert served_by(routed) == (member.ip, False)
    assert router.pid == pid


def test_primary_whose_patroni_stops_answering_is_cut_off(
    patroni_cluster: PatroniCluster, router: routing.ServiceRouter
):
    status = patroni_cluster.wait_settled(timeout=60.0)
    assert status.leader is not None
    member = patroni_cluster.members[status.leader.name]
    patroni_pid = member.patroni_pid()
    primary = primary_service(patroni_cluster)
    with (
        connect(patroni_cluster, router.address(primary)) as routed,
        patroni_cluster.connect(member.name) as direct,
    ):
        member.pod.signal(patroni_pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            eventually(lambda: is_cut(routed), timeout=10.0, what="the routed session cut")
            cut_after = time.monotonic() - started
            # PostgreSQL still runs: the router cut the session, not the database.
            assert served_by(direct) == (member.ip, False)
            assert router.routed_to(primary) == []
        finally:
            member.pod.signal(patroni_pid, signal.SIGCONT)
    eventually(lambda: router.routed_to(primary) == [member.ip], what="the primary routed again")
    print(f"\nprimary with a frozen Patroni: routed session cut after {cut_after:.2f}s")


def test_primary_service_refuses_to_choose_between_two_claimants(
    substrate: pods.Substrate, patroni_cluster: PatroniCluster, router: routing.ServiceRouter
):
    leader, replicas = leader_and_replicas(patroni_cluster)
    primary = primary_service(patroni_cluster)
    members = [leader, *replicas]
    impostor = substrate.add_pod("impostor", storage=())
    try:
        impostor.run([sys.executable, "-c", IMPOSTOR], log_path=substrate.run_dir / "impostor.log")
        with connect(patroni_cluster, router.address(primary)) as held:
            router.set_service(primary, [*members, impostor.ip], "primary")
            eventually(lambda: router.routed_to(primary) == [], what="the primary Service closed")
            with pytest.raises(psycopg.OperationalError):
                connect(patroni_cluster, router.address(primary)).close()
            # Nothing went DOWN: the session on the leader stays.
            assert served_by(held) == (leader, False)
    finally:
        substrate.delete_pod("impostor")
    router.set_service(primary, members, "primary")
    assert ask(patroni_cluster, router.address(primary)) == (leader, False)
    # The substrate rewrote every pod's /etc/hosts; set_service put the Services back.
    for member in patroni_cluster.members.values():
        text = member.pod.hosts_file.read_text()
        assert all(f"{ip}\t{name}" in text for name, ip in router.hosts_entries().items())


def test_switchover_moves_the_primary_service_within_seconds(
    patroni_cluster: PatroniCluster, router: routing.ServiceRouter
):
    status = patroni_cluster.wait_settled(timeout=60.0)
    assert status.leader is not None
    old, new = status.leader.name, status.sync_standbys[0].name
    ips = patroni_cluster.ips
    address = router.address(primary_service(patroni_cluster))
    landed: list[tuple[str, bool]] = []

    with connect(patroni_cluster, address) as held:
        assert served_by(held) == (ips[old], False)
        returned: list[float] = []

        def switchover() -> None:
            patroni_cluster.client(old).switchover(old, new)
            returned.append(time.monotonic() - started)

        started = time.monotonic()
        caller = threading.Thread(target=switchover, daemon=True)
        caller.start()
        # Sessions opened all along: where does the Service send them while roles change?
        while not (returned and landed and landed[-1] == (ips[new], False)):
            with contextlib.suppress(psycopg.OperationalError):  # refused: no single primary
                landed.append(ask(patroni_cluster, address))
            if time.monotonic() - started > 30.0:
                pytest.fail(f"the primary Service did not follow the switchover: {landed}")
            time.sleep(0.05)
        routed_after = time.monotonic() - started
        caller.join(timeout=10.0)
        assert is_cut(held)

    # Patroni answers /primary (and labels the pod) as soon as the new leader holds the lock,
    # a moment before its promotion ends: a session may land on it while it still recovers (a
    # write there fails and is retried, nothing is lost). Never on any other standby.
    on_replicas = [hit for hit in landed if hit[1] and hit[0] != ips[new]]
    first_on_new = next(i for i, hit in enumerate(landed) if hit[0] == ips[new])
    print(
        f"\nswitchover {old} -> {new}: the primary Service routes to the new leader "
        f"{routed_after:.2f}s after the request (Patroni answered it after {returned[0]:.2f}s); "
        f"{len(landed)} sessions opened meanwhile, {len(on_replicas)} on a replica"
    )
    assert all(ip == ips[new] for ip, _ in landed[first_on_new:])
    assert routed_after < 10.0
    assert on_replicas == []
    with connect(patroni_cluster, address) as conn:
        conn.execute("INSERT INTO routed (body) VALUES ('after the switchover')")
    eventually(
        lambda: (
            router.routed_to(replicas_service(patroni_cluster))
            == sorted(ip for name, ip in ips.items() if name != new)
        ),
        what="the old primary back in the replicas Service",
    )


def test_teardown_removes_addresses_names_and_haproxy_and_is_idempotent(
    substrate: pods.Substrate, patroni_cluster: PatroniCluster, router: routing.ServiceRouter
):
    addresses = list(router.hosts_entries().values())
    pid = router.pid
    assert pid is not None
    assert all(f"{a}/32" in bridge_addresses(substrate) for a in addresses)

    router.teardown()
    router.teardown()

    assert router.pid is None
    assert not netns.is_running(pid)
    assert not any(f"{a}/32" in bridge_addresses(substrate) for a in addresses)
    for member in patroni_cluster.members.values():
        assert not any(a in member.pod.hosts_file.read_text() for a in addresses)
    with pytest.raises(routing.RoutingError):
        router.set_service(primary_service(patroni_cluster), [], "primary")
