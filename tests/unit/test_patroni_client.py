"""The Patroni REST client against an in-process HTTP server that answers as Patroni 4 does."""

from __future__ import annotations

import base64
import copy
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
SCOPE = "postgresql-k8s"


def member_json(index: int, role: str, state: str, **extra: Any) -> dict[str, Any]:
    """One entry of /cluster's `members`, with the fields Patroni 4 reports."""
    host = f"10.1.0.{10 + index}"
    entry: dict[str, Any] = {
        "name": f"{SCOPE}-{index}",
        "role": role,
        "state": state,
        "api_url": f"http://{host}:8008/patroni",
        "host": host,
        "port": 5432,
        "timeline": 4,
    }
    if role != "leader":
        entry |= {
            "receive_lag": 0,
            "receive_lsn": "0/5000148",
            "replay_lag": 0,
            "replay_lsn": "0/5000148",
            "lag": 0,
            "lsn": "0/5000148",
        }
    return entry | extra


def healthy_members() -> list[dict[str, Any]]:
    return [
        member_json(0, "leader", "running"),
        member_json(1, "sync_standby", "streaming"),
        member_json(2, "replica", "streaming", lag=2048, pending_restart=True),
    ]


@dataclasses.dataclass
class Request:
    method: str
    path: str
    authorization: str | None
    content_type: str | None
    body: Any


@dataclasses.dataclass
class FakePatroni:
    """What the emulated Patroni answers; tests change it between calls."""

    members: list[dict[str, Any]] = dataclasses.field(default_factory=healthy_members)
    config: dict[str, Any] = dataclasses.field(
        default_factory=lambda: {
            "ttl": 30,
            "loop_wait": 10,
            "synchronous_mode": True,
            "postgresql": {"parameters": {"max_connections": "100", "work_mem": "4MB"}},
        }
    )
    switchover: tuple[int, str] = (200, 'Successfully switched over to "postgresql-k8s-1"')
    restart: tuple[int, str] = (200, "restarted successfully")
    primary: int = 200
    # (method, path) -> list of (status, body) answered first, before the normal answer.
    queued: dict[tuple[str, str], list[tuple[int, Any]]] = dataclasses.field(default_factory=dict)
    requests: list[Request] = dataclasses.field(default_factory=list)
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)
    url: str = ""

    def answer(self, request: Request) -> tuple[int, Any]:
        with self.lock:
            self.requests.append(request)
            queued = self.queued.get((request.method, request.path))
            if queued:
                return queued.pop(0)
            # Patroni requires authentication for every request that changes state.
            if request.method != "GET" and request.authorization != AUTH_HEADER:
                return 401, "no auth header received"
            return self._route(request)

    def _route(self, request: Request) -> tuple[int, Any]:  # noqa: C901
        match request.method, request.path:
            case "GET", "/cluster":
                return 200, {"members": copy.deepcopy(self.members), "scope": SCOPE}
            case "GET", "/patroni":
                return 200, {
                    "state": "running",
                    "role": "primary",
                    "timeline": 4,
                    "patroni": {"version": "4.0.4", "scope": SCOPE, "name": f"{SCOPE}-0"},
                }
            case "GET", "/primary":
                return self.primary, {
                    "state": "running",
                    "role": "primary" if self.primary == 200 else "replica",
                }
            case "GET", "/config":
                return 200, copy.deepcopy(self.config)
            case "PATCH", "/config":
                merge(self.config, request.body)
                return 200, copy.deepcopy(self.config)
            case "POST", "/switchover":
                return self.switchover
            case "POST", "/restart":
                return self.restart
            case "POST", "/reload":
                return 202, "reload scheduled"
            case "POST", "/failover":
                return 200, f'Successfully failed over to "{request.body["candidate"]}"'
            case "POST", "/reinitialize":
                return 200, "reinitialize started"
        return 404, "not found"

    def received(self, method: str | None = None, path: str | None = None) -> list[Request]:
        return [
            r
            for r in self.requests
            if (method is None or r.method == method) and (path is None or r.path == path)
        ]


def merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
    """Patroni's PATCH /config semantics: deep merge, null deletes."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            merge(target[key], value)
        else:
            target[key] = value


def handler_for(fake: FakePatroni) -> type[http.server.BaseHTTPRequestHandler]:
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
            status, body = fake.answer(request)
            if isinstance(body, str):
                payload, kind = body.encode(), "text/plain"
            else:
                payload, kind = json.dumps(body).encode(), "application/json"
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

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
def server() -> Iterator[FakePatroni]:
    fake = FakePatroni()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler_for(fake))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01})
    thread.start()
    fake.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        yield fake
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture
def client(server: FakePatroni) -> Iterator[PatroniClient]:
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


def test_cluster_parses_patroni_4_members(client: PatroniClient, server: FakePatroni):
    status = client.cluster()
    assert [m.name for m in status.members] == [f"{SCOPE}-0", f"{SCOPE}-1", f"{SCOPE}-2"]
    leader = status.member(f"{SCOPE}-0")
    assert leader == Member(
        name=f"{SCOPE}-0",
        role="leader",
        state="running",
        host="10.1.0.10",
        api_url="http://10.1.0.10:8008/patroni",
        timeline=4,
        lag=None,  # the leader has no lag
        pending_restart=False,
    )
    replica = status.member(f"{SCOPE}-2")
    assert replica is not None
    assert replica.lag == 2048
    assert replica.pending_restart is True
    assert replica.is_healthy
    assert not replica.is_sync_standby


def test_cluster_status_properties(client: PatroniClient):
    status = client.cluster()
    assert status.leader is not None
    assert status.leader.name == f"{SCOPE}-0"
    assert [m.name for m in status.sync_standbys] == [f"{SCOPE}-1"]
    assert status.healthy
    assert status.member("postgresql-k8s-9") is None


def test_cluster_with_a_starting_replica_is_not_healthy(
    client: PatroniClient, server: FakePatroni
):
    server.members[2]["state"] = "starting"
    status = client.cluster()
    assert not status.healthy
    assert status.leader is not None  # the leader is still there


def test_cluster_without_leader_is_not_healthy(client: PatroniClient, server: FakePatroni):
    server.members = [
        member_json(1, "replica", "streaming"),
        member_json(2, "replica", "streaming"),
    ]
    status = client.cluster()
    assert status.leader is None
    assert not status.healthy
    assert status.sync_standbys == ()


def test_cluster_without_members(client: PatroniClient, server: FakePatroni):
    server.members = []
    status = client.cluster()
    assert status.members == ()
    assert status.leader is None
    assert not status.healthy


def test_cluster_sends_basic_auth(client: PatroniClient, server: FakePatroni):
    client.cluster()
    (request,) = server.received("GET", "/cluster")
    assert request.authorization == AUTH_HEADER
    assert request.body is None


def test_member_status(client: PatroniClient, server: FakePatroni):
    status = client.member_status()
    assert status["role"] == "primary"
    assert status["patroni"]["version"] == "4.0.4"
    assert server.received("GET", "/patroni")


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


def test_cluster_status_member_lookup_and_leader():
    members = tuple(Member.from_json(m) for m in healthy_members())
    status = ClusterStatus(members)
    assert status.member(f"{SCOPE}-1") is members[1]
    assert status.leader is members[0]
    assert status.sync_standbys == (members[1],)
    assert status.healthy


# GET/PATCH /config


def test_get_config(client: PatroniClient, server: FakePatroni):
    assert client.get_config() == server.config
    assert client.get_config()["postgresql"]["parameters"]["max_connections"] == "100"


def test_patch_config_sends_json_and_returns_the_merged_config(
    client: PatroniClient, server: FakePatroni
):
    patch = {
        "synchronous_node_count": 2,
        "postgresql": {"parameters": {"max_connections": "200", "work_mem": None}},
    }
    merged = client.patch_config(patch)
    assert merged["synchronous_node_count"] == 2
    assert merged["postgresql"]["parameters"] == {"max_connections": "200"}
    assert merged["ttl"] == 30
    (request,) = server.received("PATCH", "/config")
    assert request.body == patch
    assert request.content_type == "application/json"
    assert request.authorization == AUTH_HEADER


def test_patch_config_without_credentials_is_refused(server: FakePatroni):
    anonymous = PatroniClient(server.url)
    try:
        with pytest.raises(PatroniRequestError) as caught:
            anonymous.patch_config({"ttl": 40})
        assert caught.value.status == 401
        assert caught.value.reason == "no auth header received"
        assert server.config["ttl"] == 30
        assert server.received("PATCH", "/config")[0].authorization is None
    finally:
        anonymous._session.close()


def test_wrong_credentials_are_refused_and_not_retried(server: FakePatroni):
    wrong = PatroniClient(server.url, auth=(USER, "wrong-password"))
    try:
        with pytest.raises(PatroniRequestError) as caught:
            wrong.switchover(f"{SCOPE}-0", f"{SCOPE}-1")
        assert caught.value.status == 401
        assert len(server.received("POST", "/switchover")) == 1
    finally:
        wrong._session.close()


# POST /switchover


def test_switchover_success(client: PatroniClient, server: FakePatroni):
    client.switchover(f"{SCOPE}-0", f"{SCOPE}-1")
    (request,) = server.received("POST", "/switchover")
    assert request.body == {"leader": f"{SCOPE}-0", "candidate": f"{SCOPE}-1"}
    assert request.authorization == AUTH_HEADER
    assert request.content_type == "application/json"


def test_switchover_refused_is_a_typed_error(client: PatroniClient, server: FakePatroni):
    server.switchover = (412, "candidate name does not match with sync_standby")
    with pytest.raises(SwitchoverRefusedError) as caught:
        client.switchover(f"{SCOPE}-0", f"{SCOPE}-2")
    error = caught.value
    assert isinstance(error, PatroniRequestError)
    assert error.status == 412
    assert error.reason == "candidate name does not match with sync_standby"
    assert str(error) == (
        "POST /switchover: HTTP 412: candidate name does not match with sync_standby"
    )
    assert len(server.received("POST", "/switchover")) == 1


def test_switchover_failure_is_a_request_error_sent_once(
    client: PatroniClient, server: FakePatroni
):
    server.switchover = (503, "Switchover failed")
    with pytest.raises(PatroniRequestError) as caught:
        client.switchover(f"{SCOPE}-0", f"{SCOPE}-1")
    assert not isinstance(caught.value, SwitchoverRefusedError)
    assert caught.value.status == 503
    assert "Switchover failed" in str(caught.value)
    assert len(server.received("POST", "/switchover")) == 1


def test_error_message_bounds_the_reason(client: PatroniClient, server: FakePatroni):
    server.switchover = (503, "x" * 1000 + "\n")
    with pytest.raises(PatroniRequestError) as caught:
        client.switchover(f"{SCOPE}-0", f"{SCOPE}-1")
    assert str(caught.value) == "POST /switchover: HTTP 503: " + "x" * 200
    assert len(caught.value.reason) == 1001  # the full answer stays available


def test_failover_and_reinitialize(client: PatroniClient, server: FakePatroni):
    client.failover(f"{SCOPE}-2")
    client.reinitialize()
    assert server.received("POST", "/failover")[0].body == {"candidate": f"{SCOPE}-2"}
    assert server.received("POST", "/reinitialize")[0].body == {"force": True}


# POST /restart, /reload; GET /primary


def test_restart_pending_only(client: PatroniClient, server: FakePatroni):
    assert client.restart() is True
    assert server.received("POST", "/restart")[0].body == {"restart_pending": True}


def test_restart_unconditionally(client: PatroniClient, server: FakePatroni):
    assert client.restart(pending_only=False) is True
    assert server.received("POST", "/restart")[0].body == {}


def test_restart_not_done(client: PatroniClient, server: FakePatroni):
    server.restart = (503, "restart failed")
    assert client.restart() is False
    assert len(server.received("POST", "/restart")) == 1


def test_restart_unexpected_status_raises(client: PatroniClient, server: FakePatroni):
    server.restart = (500, "internal error")
    with pytest.raises(PatroniRequestError) as caught:
        client.restart()
    assert caught.value.status == 500


def test_reload_accepts_202(client: PatroniClient, server: FakePatroni):
    assert client.reload() is None
    (request,) = server.received("POST", "/reload")
    assert request.authorization == AUTH_HEADER


def test_reload_failure_raises(client: PatroniClient, server: FakePatroni):
    server.queued[("POST", "/reload")] = [(503, "reload failed")]
    with pytest.raises(PatroniRequestError) as caught:
        client.reload()
    assert caught.value.status == 503


@pytest.mark.parametrize(("status", "expected"), [(200, True), (503, False)])
def test_is_primary(client: PatroniClient, server: FakePatroni, status: int, expected: bool):
    server.primary = status
    assert client.is_primary() is expected


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
        c.member_status()
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
        (lambda c: c.reload(), "/reload"),
        (lambda c: c.failover("b"), "/failover"),
        (lambda c: c.reinitialize(), "/reinitialize"),
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


def test_retries_are_visible_on_the_wire(naps: list[float]):
    """A listener that drops every connection sees exactly one connection per attempt."""
    accepted: list[int] = []
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)
    stop = threading.Event()

    def drop_connections() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            accepted.append(1)
            conn.close()

    thread = threading.Thread(target=drop_connections)
    thread.start()
    port = listener.getsockname()[1]
    c = PatroniClient(f"http://127.0.0.1:{port}", attempts=3)
    try:
        with pytest.raises(PatroniUnreachableError):
            c.cluster()
        assert len(accepted) == 3
        with pytest.raises(PatroniUnreachableError):
            c.reload()
        assert len(accepted) == 4
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()
        c._session.close()


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


def test_reads_recover_when_the_api_comes_back(client: PatroniClient, server: FakePatroni):
    # A GET that fails at the HTTP level is not retried: only connection errors are.
    server.queued[("GET", "/cluster")] = [(503, "busy")]
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
    client: PatroniClient, server: FakePatroni
):
    other = client.for_member(server.url + "/patroni")
    try:
        assert other.base_url == server.url
        assert other.restart() is True
        (request,) = server.received("POST", "/restart")
        assert request.authorization == AUTH_HEADER
        assert request.path == "/restart"
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
    client: PatroniClient, server: FakePatroni
):
    server.members[1]["state"] = "starting"
    polls: list[ClusterStatus] = []

    def ready(status: ClusterStatus) -> bool:
        polls.append(status)
        if len(polls) == 2:
            server.members[1]["state"] = "streaming"  # the replica catches up
        return status.healthy

    status = client.wait_for(ready, timeout=5, interval=0.01)
    assert status.healthy
    assert len(polls) == 3
    assert len(server.received("GET", "/cluster")) == 3


def test_wait_for_rides_out_errors(client: PatroniClient, server: FakePatroni):
    server.queued[("GET", "/cluster")] = [(503, "busy"), (500, "oops")]
    status = client.wait_for(lambda s: s.leader is not None, timeout=5, interval=0.01)
    assert status.leader is not None
    assert status.leader.name == f"{SCOPE}-0"
    assert len(server.received("GET", "/cluster")) == 3


def test_wait_for_times_out(client: PatroniClient, server: FakePatroni):
    started = time.monotonic()
    with pytest.raises(PatroniError, match="did not reach the expected state") as caught:
        client.wait_for(
            lambda s: s.member("postgresql-k8s-9") is not None, timeout=0.2, interval=0.02
        )
    elapsed = time.monotonic() - started
    assert type(caught.value) is PatroniError
    assert 0.2 <= elapsed < 2
    assert len(server.received("GET", "/cluster")) >= 2
    assert "postgresql-k8s-0" in str(caught.value)  # the last status seen, for the log


def test_wait_for_times_out_when_unreachable(closed_port: int):
    c = PatroniClient(f"http://127.0.0.1:{closed_port}", attempts=1)
    with pytest.raises(PatroniError, match="expected state: None") as caught:
        c.wait_for(lambda s: True, timeout=0.1, interval=0.02)
    assert not isinstance(caught.value, PatroniUnreachableError)


def test_base_url_trailing_slash_is_removed():
    c = PatroniClient("http://10.0.0.1:8008///")
    assert c.base_url == "http://10.0.0.1:8008"
