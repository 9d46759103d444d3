"""The server side of RFC 6455 websockets, as much as Pebble's exec streams need."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import socket
import struct
import threading

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
_MAX_MESSAGE = 64 * 1024 * 1024


class WebSocketError(Exception):
    """Raised on a protocol violation by the client."""


def accept_key(key: str) -> str:
    """The Sec-WebSocket-Accept value answering a Sec-WebSocket-Key."""
    digest = hashlib.sha1(key.strip().encode() + _GUID, usedforsecurity=False).digest()
    return base64.b64encode(digest).decode()


class WebSocket:
    """A connected websocket: thread-safe sends, one reader thread calling recv()."""

    def __init__(self, sock: socket.socket, rfile: io.BufferedIOBase) -> None:
        self._sock = sock
        self._rfile = rfile
        self._send_lock = threading.Lock()
        self.closed = threading.Event()

    def _exact(self, size: int) -> bytes:
        data = self._rfile.read(size) if size else b""
        if len(data) != size:
            raise EOFError
        return data

    def _send(self, opcode: int, payload: bytes) -> None:
        length = len(payload)
        if length < 126:
            header = struct.pack("!BB", 0x80 | opcode, length)
        elif length < 1 << 16:
            header = struct.pack("!BBH", 0x80 | opcode, 126, length)
        else:
            header = struct.pack("!BBQ", 0x80 | opcode, 127, length)
        with self._send_lock:
            self._sock.sendall(header + payload)

    def send_binary(self, data: bytes) -> None:
        """Send a binary message."""
        self._send(OP_BINARY, data)

    def send_text(self, text: str) -> None:
        """Send a text message."""
        self._send(OP_TEXT, text.encode())

    def close(self, code: int = 1000) -> None:
        """Send a close frame (once), ignoring a peer that already went away."""
        if self.closed.is_set():
            return
        self.closed.set()
        with contextlib.suppress(OSError):
            self._send(OP_CLOSE, struct.pack("!H", code))

    def shutdown(self) -> None:
        """Tear the connection down so a blocked recv() returns."""
        self.closed.set()
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)

    def _frame(self) -> tuple[bool, int, bytes]:
        first, second = self._exact(2)
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", self._exact(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", self._exact(8))
        if length > _MAX_MESSAGE:
            raise WebSocketError("message too large")
        mask = self._exact(4) if second & 0x80 else b""
        payload = self._exact(length)
        if mask and length:
            key = (mask * (length // 4 + 1))[:length]
            payload = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(
                length, "big"
            )
        return bool(first & 0x80), first & 0x0F, payload

    def recv(self) -> tuple[int, bytes] | None:
        """The next text/binary message as (opcode, payload); None once closed."""
        message = bytearray()
        opcode = None
        try:
            while True:
                fin, op, payload = self._frame()
                if op == OP_CLOSE:
                    self.close()
                    return None
                if op == OP_PING:
                    self._send(OP_PONG, payload)
                    continue
                if op == OP_PONG:
                    continue
                if op != OP_CONT:
                    opcode = op
                message += payload
                if fin and opcode is not None:
                    return opcode, bytes(message)
        except (EOFError, OSError, ValueError):
            self.closed.set()
            return None
