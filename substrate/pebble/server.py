"""HTTP/1.1 over a unix socket: requests in, Pebble's JSON envelopes out, websocket upgrades.

Every response carries "Connection: close", as ops' client opens a connection per request.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http
import http.server
import json
import logging
import os
import socket
import socketserver
import struct
import typing
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from substrate.pebble import websocket

logger = logging.getLogger(__name__)


class ApiError(Exception):
    """Raised by a route to answer with Pebble's error envelope."""

    def __init__(self, status: int, message: str, kind: str = "", value: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.value = value


class Body:
    """The request body as a stream, decoding Content-Length or chunked transfer encoding."""

    def __init__(self, rfile: Any, headers: Any) -> None:
        self._rfile = rfile
        self._chunked = "chunked" in headers.get("Transfer-Encoding", "").lower()
        self._remaining = int(headers.get("Content-Length") or 0)
        self._done = False

    def _next_chunk_size(self) -> int:
        line = self._rfile.readline(1024)
        size = int(line.split(b";", 1)[0].strip() or b"0", 16)
        if size == 0:
            while self._rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                pass
            self._done = True
        return size

    def read(self, size: int = -1, /) -> bytes:
        """Read up to `size` bytes (all if negative); b"" at the end."""
        if self._done:
            return b""
        if not self._chunked:
            want = self._remaining if size < 0 else min(size, self._remaining)
            data = self._rfile.read(want) if want else b""
            self._remaining -= len(data)
            self._done = self._remaining <= 0 or not data
            return data
        if self._remaining == 0:
            self._remaining = self._next_chunk_size()
            if self._done:
                return b""
        want = self._remaining if size < 0 else min(size, self._remaining)
        data = self._rfile.read(want)
        self._remaining -= len(data)
        if self._remaining == 0:
            self._rfile.readline(8)  # the CRLF after each chunk
        return data

    def drain(self, limit: int = 1024 * 1024) -> None:
        """Consume what the handler left unread, so the client can finish sending."""
        with contextlib.suppress(OSError, ValueError):
            while limit > 0 and (chunk := self.read(65536)):
                limit -= len(chunk)

    def read_all(self, limit: int = 64 * 1024 * 1024) -> bytes:
        """The whole body, up to a limit."""
        data = bytearray()
        while chunk := self.read(65536):
            data += chunk
            if len(data) > limit:
                raise ApiError(413, "request body too large")
        return bytes(data)


@dataclasses.dataclass
class Request:
    """What a route sees of a request."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: Any
    uid: int
    admin: bool
    body: Body

    def json(self) -> dict[str, Any]:
        """The body decoded as a JSON object."""
        try:
            value = json.loads(self.body.read_all() or b"{}")
        except ValueError as e:
            raise ApiError(400, f"cannot decode request body: {e}") from e
        if not isinstance(value, dict):
            raise ApiError(400, "cannot decode request body: not an object")
        return value  # pyright: ignore[reportUnknownVariableType]

    def arg(self, name: str, default: str | None = None) -> str | None:
        """First value of a query parameter."""
        values = self.query.get(name)
        return values[0] if values else default

    def args(self, name: str) -> list[str]:
        """All values of a repeated (or comma-separated) query parameter."""
        return [part for value in self.query.get(name, []) for part in value.split(",") if part]


@dataclasses.dataclass
class Response:
    """A JSON envelope, or a streamed body with its content type."""

    status: int = 200
    body: dict[str, Any] | None = None
    stream: Iterator[bytes] | None = None
    content_type: str = "application/json"


@dataclasses.dataclass
class Upgrade:
    """Switch the connection to a websocket handled by `serve` (which returns when done)."""

    serve: Callable[[websocket.WebSocket], None]


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def sync(result: Any, status: int = 200) -> Response:
    """A "sync" envelope."""
    return Response(
        status,
        {"type": "sync", "status-code": status, "status": _phrase(status), "result": result},
    )


def async_(change_id: str, result: Any = None) -> Response:
    """An "async" envelope naming the change to wait on."""
    body = {
        "type": "async",
        "status-code": 202,
        "status": "Accepted",
        "change": change_id,
        "result": result,
    }
    return Response(202, body)


def error(status: int, message: str, kind: str = "", value: Any = None) -> Response:
    """An "error" envelope."""
    result: dict[str, Any] = {"message": message}
    if kind:
        result["kind"] = kind
    if value is not None:
        result["value"] = value
    return Response(
        status,
        {"type": "error", "status-code": status, "status": _phrase(status), "result": result},
    )


Router = Callable[[Request], "Response | Upgrade"]


class Handler(http.server.BaseHTTPRequestHandler):
    """Turns each HTTP request into a Request for the server's router."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        """Dispatch a GET."""
        self._dispatch()

    def do_POST(self) -> None:
        """Dispatch a POST."""
        self._dispatch()

    def do_PUT(self) -> None:
        """Dispatch a PUT."""
        self._dispatch()

    def do_DELETE(self) -> None:
        """Dispatch a DELETE."""
        self._dispatch()

    def log_message(self, format: str, *args: Any) -> None:
        """Route access logs to logging at debug level."""
        logger.debug(format, *args)

    def _peer_uid(self) -> int:
        with contextlib.suppress(OSError):
            creds = self.request.getsockopt(
                socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")
            )
            return struct.unpack("3i", creds)[1]
        return -1

    def _dispatch(self) -> None:
        self.close_connection = True
        url = urllib.parse.urlsplit(self.path)
        uid = self._peer_uid()
        request = Request(
            method=self.command,
            path=url.path,
            query=urllib.parse.parse_qs(url.query, keep_blank_values=True),
            headers=self.headers,
            uid=uid,
            admin=uid in (0, os.geteuid()),
            body=Body(self.rfile, self.headers),
        )
        try:
            response = typing.cast("UnixServer", self.server).router(request)
        except ApiError as e:
            response = error(e.status, str(e), e.kind, e.value)
        except Exception as e:
            logger.exception("internal error serving %s %s", self.command, self.path)
            response = error(500, f"internal error: {e}")
        if isinstance(response, Upgrade):
            self._upgrade(response)
            return
        request.body.drain()
        self._respond(response)
        logger.info("%s %s %s", self.command, url.path, response.status)

    def _respond(self, response: Response) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Connection", "close")
        if response.body is not None:
            payload = json.dumps(response.body).encode()
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        self.end_headers()
        assert response.stream is not None
        with contextlib.suppress(OSError):
            for chunk in response.stream:
                self.wfile.write(chunk)
                self.wfile.flush()

    def _upgrade(self, upgrade: Upgrade) -> None:
        key = self.headers.get("Sec-WebSocket-Key")
        if "websocket" not in self.headers.get("Upgrade", "").lower() or not key:
            self._respond(error(400, "expected a websocket upgrade"))
            return
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", websocket.accept_key(key))
        self.end_headers()
        self.wfile.flush()
        upgrade.serve(websocket.WebSocket(self.request, self.rfile))


class UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """A threaded HTTP server on a unix socket that any local user may connect to."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, path: str, router: Router) -> None:
        socket_path = Path(path)
        socket_path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            socket_path.unlink()
        self.router = router
        super().__init__(path, Handler)
        os.chmod(path, 0o666)  # noqa: S103 - access is checked per request from the peer's credentials
