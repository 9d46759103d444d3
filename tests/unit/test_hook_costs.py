"""The hook meter's counting: Pebble, HTTP and SQL calls, only on the measured thread, once each.

A small HTTP server in a thread answers both as Pebble (on a Unix socket) and as a REST API (on
loopback TCP); nothing is mocked on the client side, so the meter sees what a charm would make.
"""

from __future__ import annotations

import http.server
import json
import socketserver
import threading
from collections.abc import Generator
from pathlib import Path
from typing import Any

import ops
import psycopg
import pytest
import requests

from substrate.fixtures import hook_costs

_CHANGE = {
    "id": "1", "kind": "restart", "summary": "", "status": "Done", "tasks": [], "ready": True,
    "spawn-time": "2026-01-01T00:00:00Z", "ready-time": "2026-01-01T00:00:01Z",
}  # fmt: skip


class _Handler(http.server.BaseHTTPRequestHandler):
    """Answers what the tests send: Pebble's services, change and files endpoints, and `/x`."""

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path.startswith("/v1/changes/1/wait"):
            self._answer(200, {"type": "sync", "status-code": 200, "result": _CHANGE})
        elif self.path.startswith("/v1/files"):
            self._answer(200, {"type": "sync", "status-code": 200, "result": []})
        else:
            self._answer(200, {"type": "sync", "status-code": 200, "result": {"version": "1"}})

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path == "/v1/services":
            self._answer(202, {"type": "async", "status-code": 202, "change": "1"})
        else:
            self._answer(200, {"ok": True})

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def get_request(self) -> tuple[Any, Any]:
        request, _ = super().get_request()
        return request, ("local", 0)  # BaseHTTPRequestHandler wants an address pair


class _TCPServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


def _serving(server: socketserver.BaseServer) -> Generator[None]:
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield
    server.shutdown()
    server.server_close()


@pytest.fixture
def pebble(tmp_path: Path) -> Generator[ops.pebble.Client]:
    socket = tmp_path / "pebble.socket"
    server = _UnixServer(str(socket), _Handler)
    for _ in _serving(server):
        yield ops.pebble.Client(socket_path=str(socket))


@pytest.fixture
def api() -> Generator[str]:
    server = _TCPServer(("127.0.0.1", 0), _Handler)
    for _ in _serving(server):
        yield f"http://127.0.0.1:{server.server_address[1]}"


def test_each_boundary_call_is_counted_once_by_kind(pebble: ops.pebble.Client, api: str):
    with hook_costs.meter() as costs:
        pebble.get_system_info()
        pebble.list_files("/etc")
        pebble.list_files("/var")
        # One call, although it waits on its change through another public method.
        pebble.restart_services(["postgresql"])
        requests.get(f"{api}/cluster?x=1", timeout=5)
        requests.post(f"{api}/restart", json={}, timeout=5)
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(host="/nonexistent", dbname="x", connect_timeout=1)
        with pytest.raises(psycopg.OperationalError):
            psycopg.Connection.connect(host="/nonexistent", dbname="x", connect_timeout=1)

    summary = costs.summary()
    assert summary["pebble_calls"] == {
        "get_system_info": 1,
        "list_files": 2,
        "restart_services": 1,
    }
    assert summary["pebble_file_reads"] == 2
    assert summary["pebble_service_calls"] == 1
    assert summary["pebble_other"] == 1
    assert summary["http_calls"] == {"GET /cluster": 1, "POST /restart": 1}
    assert summary["sql_connects"] == 2
    assert summary["restarts"] == 2  # the Pebble restart and Patroni's
    assert costs.seconds > 0


def test_threads_running_before_the_meter_are_not_counted(api: str):
    go, done = threading.Event(), threading.Event()

    def background() -> None:
        go.wait(5)
        requests.get(f"{api}/watcher", timeout=5)
        done.set()

    watcher = threading.Thread(target=background, daemon=True)
    watcher.start()
    with hook_costs.meter() as costs:
        go.set()
        assert done.wait(5)
        # A thread the measured code starts is part of what it costs.
        worker = threading.Thread(target=lambda: requests.get(f"{api}/worker", timeout=5))
        worker.start()
        worker.join(5)

    assert dict(costs.http) == {"GET /worker": 1}


def test_the_libraries_are_restored_once_the_meter_is_closed(api: str):
    originals = (ops.pebble.Client.pull, psycopg.connect, vars(psycopg.Connection)["connect"])
    with hook_costs.meter() as costs:
        requests.get(f"{api}/inside", timeout=5)
    requests.get(f"{api}/after", timeout=5)

    assert dict(costs.http) == {"GET /inside": 1}
    assert (
        ops.pebble.Client.pull,
        psycopg.connect,
        vars(psycopg.Connection)["connect"],
    ) == originals
