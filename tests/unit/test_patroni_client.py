"""The Patroni REST client over real HTTP, against the FakePatroni the charm's tests use."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import http.server
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest
import requests

from tests.unit.builders import APP, FakePatroni, healthy_cluster
from workload import patroni_client
from workload.patroni_client import (
    ClusterStatus,
    Member,
    PatroniClient,
    PatroniError,
    PatroniRequestError,
    PatroniUnreachableError,
    SwitchoverRefusedError,
)

USER, PASSWORD = "patroni", "rest-api-secret-1234"
AUTH_HEADER = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
LEADER, SYNC, REPLICA = f"{APP}-0", f"{APP}-1", f"{APP}-2"


@dataclasses.dataclass
class Request:
    """A request as it reached the server: what the client put on the wire."""

    method: str
    path: str
    authorization: str | None
    content_type: str | None
    body: Any


@dataclasses.dataclass
class Server:
    """`fake` answering over HTTP at `url` as the REST API of the member at `member_url`."""

    fake: FakePatroni
    member_url: str
    url: str = ""
    requests: list[Request] = dataclasses.field(default_factory=list)
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    def received(self, method: str | None = None, path: str | None = None) -> list[Request]:
        return [
            r
            for r in self.requests
            if (method is None or r.method == method) and (path is None or r.path == path)
        ]


def basic_credentials(header: str | None) -> tuple[str, str] | None:
    """The (user, password) of an HTTP Basic Authorization header, if it is one."""
    if not header or not header.startswith("Basic "):
        return None
    try:
        user, _, password = base64.b64decode(header.removeprefix("Basic ")).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return user, password


def handler_for(server: Server) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            request = Request(
                method=self.command,
                path=self.path,
                authorization=self.headers.get("Authorization"),
                content_type=self.headers.get("Content-Type"),
                body=json.loads(raw) if raw else None,
            )
            with server.lock:
                server.requests.append(request)
                try:
                    response = server.fake.respond(
                        request.method,
                        server.member_url + request.path,
                        request.body,
                        basic_credentials(request.authorization),
                    )
                except requests.ConnectionError:
                    # The API is down: the connection closes without an answer.
                    self.close_connection = True
                    return
            self.send_response(response.status_code)
            self.send_header("Content-Type", response.headers["Content-Type"])
            self.send_header("Content-Length", str(len(response.content)))
            self.end_headers()
            self.wfile.write(response.content)

        def do_GET(self) -> None:
            self._handle()

        def do_POST(self) -> None:
            self._handle()

        def do_PATCH(self) -> None:
            self._handle()

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep the test output clean

    return Handler


@pytest.fixture
def fake() -> FakePatroni:
    """A healthy 3-member cluster whose API demands credentials for what changes state."""
    api = FakePatroni(
        credentials=(USER, PASSWORD),
        config={
            "ttl": 30,
            "loop_wait": 10,
            "synchronous_mode": True,
            "postgresql": {"parameters": {"max_connections": "100", "work_mem": "4MB"}},
        },
    )
    healthy_cluster(api)
    api.member(REPLICA).update(lag=2048, pending_restart=True)
    return api


@pytest.fixture
def server(fake: FakePatroni) -> Iterator[Server]:
    """The fake served over HTTP on a local port, as the leader's REST API."""
    served = Server(fake, fake.member(LEADER)["api_url"].removesuffix("/patroni"))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler_for(served))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01})
    thread.start()
    served.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        yield served
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture
def client(server: Server) -> Iterator[PatroniClient]:
    c = PatroniClient(server.url, auth=(USER, PASSWORD), timeout=2.0)
    yield c
    c._session.close()


@pytest.fixture
def closed_port() -> int:
    """A port on which nothing listens (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def naps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record the waits between retries instead of sleeping (tenacity sleeps with time.sleep)."""
    slept: list[float] = []
    monkeypatch.setattr(patroni_client.tenacity.nap.time, "sleep", slept.append)
    return slept


def count_sends(c: PatroniClient) -> mock.MagicMock:
    """Spy on the HTTP requests a client actually sends."""
    spy = mock.MagicMock(wraps=c._session.request)
    c._session.request = spy  # type: ignore[method-assign]
    return spy


# GET /cluster and the snapshot it builds


def test_cluster_parses_patroni_4_members(client: PatroniClient):
    status = client.cluster()
    assert [m.name for m in status.members] == [LEADER, SYNC, REPLICA]
    leader = status.member(LEADER)
    assert leader == Member(
        name=LEADER,
        role="leader",
        state="running",
        host="10.1.0.10",
        api_url="http://10.1.0.10:8008/patroni",
        timeline=1,
        lag=None,  # the leader has no lag
        pending_restart=False,
    )
    replica = status.member(REPLICA)
    assert replica is not None
    assert replica.lag == 2048
    assert replica.pending_restart is True
    assert replica.is_healthy
    assert not replica.is_sync_standby


def test_cluster_status_properties(client: PatroniClient):
    status = client.cluster()
    assert status.leader is not None
    assert status.leader.name == LEADER
    assert [m.name for m in status.sync_standbys] == [SYNC]
    assert status.healthy
    assert status.member(f"{APP}-9") is None


def test_cluster_with_a_starting_replica_is_not_healthy(client: PatroniClient, fake: FakePatroni):
    fake.member(REPLICA)["state"] = "starting"
    status = client.cluster()
    assert not status.healthy
    assert status.leader is not None  # the leader is still there


def test_cluster_without_leader_is_not_healthy(client: PatroniClient, fake: FakePatroni):
    fake.members = []
    fake.add_member(SYNC, "replica")
    fake.add_member(REPLICA, "replica")
    status = client.cluster()
    assert status.leader is None
    assert not status.healthy
    assert status.sync_standbys == ()


def test_cluster_without_members(client: PatroniClient, fake: FakePatroni):
    fake.members = []
    status = client.cluster()
    assert status.members == ()
    assert status.leader is None
    assert not status.healthy


def test_cluster_sends_basic_auth(client: PatroniClient, server: Server):
    client.cluster()
    (request,) = server.received("GET", "/cluster")
    assert request.authorization == AUTH_HEADER
    assert request.body is None


# Member and ClusterStatus as pure values


def test_member_from_json_with_missing_fields():
    member = Member.from_json({})
    assert member == Member(
        name="",
        role="",
        state="",
        host="",
        api_url="",
        timeline=None,
        lag=None,
        pending_restart=False,
    )
    assert not member.is_leader
    assert not member.is_sync_standby
    assert not member.is_healthy


@pytest.mark.parametrize(
    ("data", "timeline", "lag"),
    [
        ({"timeline": 3, "lag": 0}, 3, 0),
        ({"timeline": "3", "lag": "16"}, None, None),  # strings are not trusted as numbers
        ({"lag": "unknown"}, None, None),  # what Patroni says for a replica not yet streaming
        ({"timeline": None, "lag": None}, None, None),
        ({"timeline": 7.5, "lag": [1]}, None, None),
    ],
)
def test_member_from_json_with_odd_numbers(
    data: dict[str, Any], timeline: int | None, lag: int | None
):
    member = Member.from_json({"name": "m", **data})
    assert member.timeline == timeline
    assert member.lag == lag


def test_member_from_json_ignores_unknown_fields_and_stringifies():
    member = Member.from_json(
        {
            "name": 5,
            "role": "replica",
            "state": "streaming",
            "tags": {"nosync": True},
            "port": 5432,
        }
    )
    assert member.name == "5"
    assert member.role == "replica"
    assert member.is_healthy


@pytest.mark.parametrize(
    ("role", "state", "leader", "sync", "healthy"),
    [
        ("leader", "running", True, False, True),
        ("leader", "streaming", True, False, False),
        ("leader", "stopped", True, False, False),
        ("standby_leader", "running", True, False, True),
        ("sync_standby", "streaming", False, True, True),
        ("quorum_standby", "streaming", False, True, True),
        ("replica", "streaming", False, False, True),
        ("replica", "running", False, False, False),  # runs but does not replicate
        ("replica", "starting", False, False, False),
    ],
)
def test_member_roles_and_health(role: str, state: str, leader: bool, sync: bool, healthy: bool):
    member = Member.from_json({"name": "m", "role": role, "state": state})
    assert member.is_leader is leader
    assert member.is_sync_standby is sync
    assert member.is_healthy is healthy


def test_cluster_status_member_lookup_and_leader(fake: FakePatroni):
    members = tuple(Member.from_json(m) for m in fake.members)
    status = ClusterStatus(members)
    assert status.member(SYNC) is members[1]
    assert status.leader is members[0]
    assert status.sync_standbys == (members[1],)
    assert status.healthy


# GET/PATCH /config


def test_get_config(client: PatroniClient, fake: FakePatroni):
    assert client.get_config() == fake.config
    assert client.get_config()["postgresql"]["parameters"]["max_connections"] == "100"


def test_patch_config_sends_json_and_returns_the_merged_config(
    client: PatroniClient, server: Server, fake: FakePatroni
):
    patch = {
        "synchronous_node_count": 2,
        "postgresql": {"parameters": {"max_connections": "200", "work_mem": None}},
    }
    merged = client.patch_config(patch)
    assert merged["synchronous_node_count"] == 2
    assert merged["postgresql"]["parameters"] == {"max_connections": "200"}
    assert merged["ttl"] == 30
    assert fake.config == merged  # what the next reader gets
    (request,) = server.received("PATCH", "/config")
    assert request.body == patch
    assert request.content_type == "application/json"
    assert request.authorization == AUTH_HEADER


def test_patch_config_without_credentials_is_refused(server: Server, fake: FakePatroni):
    anonymous = PatroniClient(server.url)
    try:
        with pytest.raises(PatroniRequestError) as caught:
            anonymous.patch_config({"ttl": 40})
        assert caught.value.status == 401
        assert caught.value.reason == "no auth header received"
        assert fake.config["ttl"] == 30
        assert server.received("PATCH", "/config")[0].authorization is None
    finally:
        anonymous._session.close()


def test_wrong_credentials_are_refused_and_not_retried(server: Server, fake: FakePatroni):
    wrong = PatroniClient(server.url, auth=(USER, "wrong-password"))
    try:
        with pytest.raises(PatroniRequestError) as caught:
            wrong.switchover(LEADER, SYNC)
        assert caught.value.status == 401
        assert len(server.received("POST", "/switchover")) == 1
        assert fake.member(LEADER)["role"] == "leader"
    finally:
        wrong._session.close()


# POST /switchover


def test_switchover_success(client: PatroniClient, server: Server, fake: FakePatroni):
    client.switchover(LEADER, SYNC)
    (request,) = server.received("POST", "/switchover")
    assert request.body == {"leader": LEADER, "candidate": SYNC}
    assert request.authorization == AUTH_HEADER
    assert request.content_type == "application/json"
    leader = client.cluster().leader
    assert leader is not None
    assert (leader.name, fake.member(LEADER)["role"]) == (SYNC, "sync_standby")


def test_switchover_to_a_replica_is_refused_as_a_typed_error(
    client: PatroniClient, server: Server, fake: FakePatroni
):
    with pytest.raises(SwitchoverRefusedError) as caught:
        client.switchover(LEADER, REPLICA)  # not a synchronous standby
    error = caught.value
    assert isinstance(error, PatroniRequestError)
    assert error.status == 412
    assert error.reason == "candidate name does not match with sync_standby"
    assert str(error) == (
        "POST /switchover: HTTP 412: candidate name does not match with sync_standby"
    )
    assert len(server.received("POST", "/switchover")) == 1
    assert fake.member(LEADER)["role"] == "leader"


def test_switchover_from_a_member_that_does_not_lead_is_refused(client: PatroniClient):
    with pytest.raises(SwitchoverRefusedError, match="leader name does not match"):
        client.switchover(SYNC, REPLICA)


def test_switchover_failure_is_a_request_error_sent_once(
    client: PatroniClient, server: Server, fake: FakePatroni
):
    fake.answer_next("POST", "/switchover", (503, "Switchover failed"))
    with pytest.raises(PatroniRequestError) as caught:
        client.switchover(LEADER, SYNC)
    assert not isinstance(caught.value, SwitchoverRefusedError)
    assert caught.value.status == 503
    assert "Switchover failed" in str(caught.value)
    assert len(server.received("POST", "/switchover")) == 1


def test_error_message_bounds_the_reason(client: PatroniClient, fake: FakePatroni):
    fake.answer_next("POST", "/switchover", (503, "x" * 1000 + "\n"))
    with pytest.raises(PatroniRequestError) as caught:
        client.switchover(LEADER, SYNC)
    assert str(caught.value) == "POST /switchover: HTTP 503: " + "x" * 200
    assert len(caught.value.reason) == 1001  # the full answer stays available


# POST /restart


def test_restart_pending_only(client: PatroniClient, server: Server, fake: FakePatroni):
    fake.member(LEADER)["pending_restart"] = True
    assert client.restart() is True
    assert server.received("POST", "/restart")[0].body == {"restart_pending": True}
    assert "pending_restart" not in fake.member(LEADER)


def test_restart_unconditionally(client: PatroniClient, server: Server):
    assert client.restart(pending_only=False) is True
    assert server.received("POST", "/restart")[0].body == {}


def test_restart_not_done(client: PatroniClient, server: Server):
    # Nothing pending on this member: Patroni refuses the conditional restart with a 503.
    assert client.restart() is False
    assert len(server.received("POST", "/restart")) == 1


def test_restart_unexpected_status_raises(client: PatroniClient, fake: FakePatroni):
    fake.answer_next("POST", "/restart", (500, "internal error"))
    with pytest.raises(PatroniRequestError) as caught:
        client.restart()
    assert caught.value.status == 500


def test_unknown_endpoint_is_a_request_error(client: PatroniClient):
    with pytest.raises(PatroniRequestError) as caught:
        client._request("GET", "/no-such-endpoint")
    assert caught.value.status == 404


# Unreachable API: bounded retries for reads, one attempt for writes


def test_get_on_a_closed_port_retries_then_raises(closed_port: int, naps: list[float]):
    c = PatroniClient(f"http://127.0.0.1:{closed_port}", auth=(USER, PASSWORD), timeout=1.0)
    sends = count_sends(c)
    with pytest.raises(PatroniUnreachableError) as caught:
        c.cluster()
    assert sends.call_count == 3
    assert all(call.args[:2] == ("GET", c.base_url + "/cluster") for call in sends.call_args_list)
    # Exponential back-off between the attempts: bounded, not a hang.
    assert naps == pytest.approx([0.2, 0.4])
    assert str(caught.value) == "GET /cluster: ConnectionError"
    assert PASSWORD not in str(caught.value)
    assert caught.value.__cause__ is not None


def test_retry_back_off_is_capped(closed_port: int, naps: list[float]):
    c = PatroniClient(f"http://127.0.0.1:{closed_port}", attempts=8)
    with pytest.raises(PatroniUnreachableError):
        c.cluster()
    assert naps == pytest.approx([0.2, 0.4, 0.8, 1.6, 2.0, 2.0, 2.0])


@pytest.mark.parametrize("attempts", [1, 2, 4])
def test_get_attempts_are_configurable(closed_port: int, attempts: int, naps: list[float]):
    c = PatroniClient(f"http://127.0.0.1:{closed_port}", attempts=attempts)
    sends = count_sends(c)
    with pytest.raises(PatroniUnreachableError):
        c.get_config()
    assert sends.call_count == attempts


@pytest.mark.parametrize(
    ("call", "path"),
    [
        (lambda c: c.switchover("a", "b"), "/switchover"),
        (lambda c: c.restart(), "/restart"),
        (lambda c: c.patch_config({"ttl": 30}), "/config"),
    ],
)
def test_writes_to_a_closed_port_are_sent_once(
    closed_port: int, call: Any, path: str, naps: list[float]
):
    c = PatroniClient(f"http://127.0.0.1:{closed_port}", auth=(USER, PASSWORD), attempts=5)
    sends = count_sends(c)
    with pytest.raises(PatroniUnreachableError) as caught:
        call(c)
    assert sends.call_count == 1
    assert naps == []
    assert str(caught.value).endswith(f"{path}: ConnectionError")


def test_retries_are_visible_on_the_wire(
    client: PatroniClient, server: Server, fake: FakePatroni, naps: list[float]
):
    """An API that drops every connection unanswered sees exactly one request per attempt."""
    fake.reachable = False
    with pytest.raises(PatroniUnreachableError):
        client.cluster()
    assert len(server.received("GET", "/cluster")) == 3
    with pytest.raises(PatroniUnreachableError):
        client.patch_config({"ttl": 40})
    assert len(server.received("PATCH", "/config")) == 1
    assert fake.config["ttl"] == 30
    fake.reachable = True
    assert client.cluster().healthy  # back: the same client reaches it again


def test_a_silent_server_times_out():
    listener = socket.create_server(("127.0.0.1", 0))  # accepts (backlog), never answers
    c = PatroniClient(f"http://127.0.0.1:{listener.getsockname()[1]}", timeout=0.2, attempts=1)
    try:
        started = time.monotonic()
        with pytest.raises(PatroniUnreachableError, match="Timeout"):
            c.cluster()
        assert time.monotonic() - started < 2
    finally:
        c._session.close()
        listener.close()


def test_reads_recover_when_the_api_comes_back(
    client: PatroniClient, server: Server, fake: FakePatroni
):
    # A GET that fails at the HTTP level is not retried: only connection errors are.
    fake.answer_next("GET", "/cluster", (503, "busy"))
    with pytest.raises(PatroniRequestError):
        client.cluster()
    assert client.cluster().healthy
    assert len(server.received("GET", "/cluster")) == 2


# for_member()


def test_for_member_strips_the_patroni_suffix(client: PatroniClient):
    other = client.for_member("http://10.1.0.12:8008/patroni")
    assert other.base_url == "http://10.1.0.12:8008"
    assert other is not client
    assert client.base_url.startswith("http://127.0.0.1:")
    other._session.close()


def test_for_member_keeps_credentials_and_reaches_the_member(
    client: PatroniClient, server: Server, fake: FakePatroni
):
    fake.member(LEADER)["pending_restart"] = True
    other = client.for_member(server.url + "/patroni")
    try:
        assert other.base_url == server.url
        assert other.restart() is True
        (request,) = server.received("POST", "/restart")
        assert request.authorization == AUTH_HEADER
        assert request.path == "/restart"
        assert "pending_restart" not in fake.member(LEADER)
    finally:
        other._session.close()


def test_for_member_keeps_tls_verification_timeout_and_attempts(
    closed_port: int, naps: list[float]
):
    c = PatroniClient("https://a:8008/", auth=(USER, PASSWORD), verify="/tls/ca.pem", attempts=2)
    other = c.for_member(f"http://127.0.0.1:{closed_port}/patroni")
    assert c.base_url == "https://a:8008"
    assert other._session.verify == "/tls/ca.pem"
    assert other._session.auth == (USER, PASSWORD)
    sends = count_sends(other)
    with pytest.raises(PatroniUnreachableError):
        other.get_config()
    assert sends.call_count == 2
    assert all(call.kwargs["timeout"] == 5.0 for call in sends.call_args_list)


def test_for_member_without_suffix_uses_the_url_as_is(client: PatroniClient):
    other = client.for_member("http://10.1.0.12:8008")
    assert other.base_url == "http://10.1.0.12:8008"
    other._session.close()


# wait_for()


def test_wait_for_returns_the_first_status_that_matches(
    client: PatroniClient, server: Server, fake: FakePatroni
):
    fake.member(SYNC)["state"] = "starting"
    polls: list[ClusterStatus] = []

    def ready(status: ClusterStatus) -> bool:
        polls.append(status)
        if len(polls) == 2:
            fake.member(SYNC)["state"] = "streaming"  # the replica catches up
        return status.healthy

    status = client.wait_for(ready, timeout=5, interval=0.01)
    assert status.healthy
    assert len(polls) == 3
    assert len(server.received("GET", "/cluster")) == 3


def test_wait_for_rides_out_errors(client: PatroniClient, server: Server, fake: FakePatroni):
    fake.answer_next("GET", "/cluster", (503, "busy"), (500, "oops"))
    status = client.wait_for(lambda s: s.leader is not None, timeout=5, interval=0.01)
    assert status.leader is not None
    assert status.leader.name == LEADER
    assert len(server.received("GET", "/cluster")) == 3


def test_wait_for_times_out(client: PatroniClient, server: Server):
    started = time.monotonic()
    with pytest.raises(PatroniError, match="did not reach the expected state") as caught:
        client.wait_for(lambda s: s.member(f"{APP}-9") is not None, timeout=0.2, interval=0.02)
    elapsed = time.monotonic() - started
    assert type(caught.value) is PatroniError
    assert 0.2 <= elapsed < 2
    assert len(server.received("GET", "/cluster")) >= 2
    assert LEADER in str(caught.value)  # the last status seen, for the log


def test_wait_for_times_out_when_unreachable(closed_port: int):
    c = PatroniClient(f"http://127.0.0.1:{closed_port}", attempts=1)
    with pytest.raises(PatroniError, match="expected state: None") as caught:
        c.wait_for(lambda s: True, timeout=0.1, interval=0.02)
    assert not isinstance(caught.value, PatroniUnreachableError)


def test_base_url_trailing_slash_is_removed():
    c = PatroniClient("http://10.0.0.1:8008///")
    assert c.base_url == "http://10.0.0.1:8008"
