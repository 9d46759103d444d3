"""Streaming multipart/form-data: read a push request part by part, write a pull response."""

from __future__ import annotations

import email.message
import email.parser
from collections.abc import Iterator
from typing import Protocol

_CHUNK = 64 * 1024


class MultipartError(ValueError):
    """Raised when a multipart body is malformed."""


class Readable(Protocol):
    """Anything with a binary read(n)."""

    def read(self, size: int = -1, /) -> bytes:
        """Read up to `size` bytes; b"" at end of stream."""
        ...


class Part:
    """One part of a multipart body; its content must be consumed (iter_content) in order."""

    def __init__(self, reader: MultipartReader, headers: email.message.Message) -> None:
        self.headers = headers
        self._reader = reader
        self.consumed = False

    @property
    def name(self) -> str | None:
        """The form field name ("request", "files")."""
        return self.headers.get_param("name", header="content-disposition")  # type: ignore[return-value]

    @property
    def filename(self) -> str | None:
        """The filename parameter (the file's path in Pebble's API)."""
        return self.headers.get_filename()

    def iter_content(self) -> Iterator[bytes]:
        """Yield the part's content in chunks."""
        if self.consumed:
            return
        yield from self._reader.body_chunks()
        self.consumed = True

    def read_all(self, limit: int = 16 * 1024 * 1024) -> bytes:
        """The whole content (for small parts such as the JSON metadata)."""
        data = bytearray()
        for chunk in self.iter_content():
            data += chunk
            if len(data) > limit:
                raise MultipartError("part too large")
        return bytes(data)


class MultipartReader:
    """Parse a multipart body from a stream without holding file contents in memory."""

    def __init__(self, stream: Readable, boundary: str) -> None:
        self._stream = stream
        self._delimiter = b"\r\n--" + boundary.encode()
        # The body begins with "--boundary" (no CRLF before it): prime the buffer as if it had.
        self._buf = bytearray(b"\r\n")
        self._eof = False

    def _fill(self) -> bool:
        if self._eof:
            return False
        chunk = self._stream.read(_CHUNK)
        if not chunk:
            self._eof = True
            return False
        self._buf += chunk
        return True

    def _find(self, needle: bytes, start: int = 0) -> int:
        while (index := self._buf.find(needle, start)) < 0:
            if not self._fill():
                return -1
        return index

    def _after_delimiter(self) -> bool:
        """Consume the delimiter's tail; False at the closing delimiter."""
        while len(self._buf) < len(self._delimiter) + 2 and self._fill():
            pass
        tail = bytes(self._buf[len(self._delimiter) : len(self._delimiter) + 2])
        if tail == b"--":
            return False
        end = self._find(b"\r\n", len(self._delimiter))
        if end < 0:
            raise MultipartError("truncated multipart boundary")
        del self._buf[: end + 2]
        return True

    def parts(self) -> Iterator[Part]:
        """Yield each part in order (skip or consume one before asking for the next)."""
        start = self._find(self._delimiter)
        if start < 0:
            raise MultipartError("no multipart boundary found")
        del self._buf[:start]
        while self._after_delimiter():
            end = self._find(b"\r\n\r\n")
            if end < 0:
                raise MultipartError("truncated multipart headers")
            headers = email.parser.BytesParser().parsebytes(
                bytes(self._buf[: end + 4]), headersonly=True
            )
            del self._buf[: end + 4]
            part = Part(self, headers)
            yield part
            for _ in part.iter_content():
                pass

    def body_chunks(self) -> Iterator[bytes]:
        """Yield the current part's content up to the next delimiter."""
        keep = len(self._delimiter)
        while True:
            index = self._buf.find(self._delimiter)
            if index >= 0:
                if index:
                    yield bytes(self._buf[:index])
                del self._buf[:index]
                return
            if len(self._buf) > keep:
                yield bytes(self._buf[: len(self._buf) - keep])
                del self._buf[: len(self._buf) - keep]
            if not self._fill():
                raise MultipartError("truncated multipart body")


def quote(value: str) -> str:
    """Quote a Content-Disposition parameter value."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def part_header(
    boundary: str, name: str, filename: str | None = None, content_type: str | None = None
) -> bytes:
    """The delimiter and headers that open a part."""
    disposition = f"form-data; name={quote(name)}"
    if filename is not None:
        disposition += f"; filename={quote(filename)}"
    lines = [f"--{boundary}", f"Content-Disposition: {disposition}"]
    if content_type:
        lines.append(f"Content-Type: {content_type}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def closing(boundary: str) -> bytes:
    """The final delimiter."""
    return f"--{boundary}--\r\n".encode()
