"""The files API: list, read, write, make-dirs and remove, with Pebble's ownership rules."""

from __future__ import annotations

import contextlib
import datetime
import errno
import fnmatch
import grp
import json
import os
import pwd
import secrets
import shutil
import stat
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, BinaryIO

from substrate.pebble import multipart, procs, timeutil

_TYPES = (
    (stat.S_ISREG, "file"),
    (stat.S_ISDIR, "directory"),
    (stat.S_ISLNK, "symlink"),
    (stat.S_ISSOCK, "socket"),
    (stat.S_ISFIFO, "named-pipe"),
    (stat.S_ISBLK, "device"),
    (stat.S_ISCHR, "device"),
)
_STATUS = {"not-found": 404, "permission-denied": 403}


class FilesError(Exception):
    """Raised for an error that fails the whole request (HTTP status and kind)."""

    def __init__(self, status: int, message: str, kind: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind


class PathError(Exception):
    """Raised for an error about one path, reported in that path's result entry."""

    def __init__(self, message: str, kind: str = "generic-file-error") -> None:
        super().__init__(message)
        self.kind = kind


def _kind(error: OSError) -> str:
    if error.errno == errno.ENOENT:
        return "not-found"
    if error.errno in (errno.EACCES, errno.EPERM):
        return "permission-denied"
    return "generic-file-error"


def os_failure(op: str, path: str, error: OSError) -> PathError:
    """A PathError worded as Go's *PathError ("open /x: no such file or directory")."""
    reason = os.strerror(error.errno) if error.errno else str(error)
    return PathError(f"{op} {path}: {reason[:1].lower()}{reason[1:]}", _kind(error))


def _absolute(path: str) -> str:
    if not path.startswith("/"):
        raise PathError(f'paths must be absolute, got "{path}"')
    return os.path.normpath(path)


def result(path: str, failure: PathError | None = None) -> dict[str, Any]:
    """One entry of a files response."""
    entry: dict[str, Any] = {"path": path}
    if failure is not None:
        entry["error"] = {"message": str(failure), "kind": failure.kind}
    return entry


def file_info(path: str, st: os.stat_result) -> dict[str, Any]:
    """The FileInfo JSON of one path."""
    kind = next((name for test, name in _TYPES if test(st.st_mode)), "unknown")
    info: dict[str, Any] = {
        "path": path,
        "name": os.path.basename(path) or "/",
        "type": kind,
        "permissions": f"{stat.S_IMODE(st.st_mode) & 0o777:03o}",
        "last-modified": timeutil.format_time(_mtime(st)),
        "user-id": st.st_uid,
        "group-id": st.st_gid,
    }
    if kind == "file":
        info["size"] = st.st_size
    with contextlib.suppress(KeyError):
        info["user"] = pwd.getpwuid(st.st_uid).pw_name
    with contextlib.suppress(KeyError):
        info["group"] = grp.getgrgid(st.st_gid).gr_name
    return info


def _mtime(st: os.stat_result) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(st.st_mtime, tz=datetime.timezone.utc)


def list_files(path: str, pattern: str | None, itself: bool) -> list[dict[str, Any]]:
    """GET /v1/files?action=list."""
    try:
        path = _absolute(path)
    except PathError as e:
        raise FilesError(400, str(e), e.kind) from e
    try:
        st = os.stat(path)
    except OSError as e:
        failure = os_failure("stat", path, e)
        raise FilesError(_STATUS.get(failure.kind, 500), str(failure), failure.kind) from e
    if itself or not stat.S_ISDIR(st.st_mode):
        if pattern and not fnmatch.fnmatchcase(os.path.basename(path), pattern):
            return []
        return [file_info(path, st)]
    try:
        names = sorted(os.listdir(path))
    except OSError as e:
        failure = os_failure("open", path, e)
        raise FilesError(_STATUS.get(failure.kind, 500), str(failure), failure.kind) from e
    infos: list[dict[str, Any]] = []
    for name in names:
        if pattern and not fnmatch.fnmatchcase(name, pattern):
            continue
        full = os.path.join(path, name)
        with contextlib.suppress(FileNotFoundError):
            infos.append(file_info(full, os.lstat(full)))
    return infos


def read_files(paths: list[str], boundary: str) -> Iterator[bytes]:
    """GET /v1/files?action=read: the multipart body (file parts, then the "response" part)."""
    results: list[dict[str, Any]] = []
    for raw in paths:
        try:
            path = _absolute(raw)
            handle = _open_regular(path)
        except PathError as e:
            results.append(result(raw, e))
            continue
        with handle:
            yield multipart.part_header(boundary, "files", raw, "application/octet-stream")
            while chunk := handle.read(64 * 1024):
                yield chunk
            yield b"\r\n"
        results.append(result(raw))
    response = {"type": "sync", "status-code": 200, "status": "OK", "result": results}
    yield multipart.part_header(boundary, "response", content_type="application/json")
    yield json.dumps(response).encode() + b"\r\n"
    yield multipart.closing(boundary)


def _open_regular(path: str) -> BinaryIO:
    try:
        handle = open(path, "rb")  # noqa: SIM115 (closed by the caller)
    except OSError as e:
        raise os_failure("open", path, e) from e
    if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
        handle.close()
        raise PathError(f'can only read a regular file: "{path}"')
    return handle


def _owner(spec: Mapping[str, Any]) -> procs.Credentials:
    try:
        return procs.resolve(
            spec.get("user"), spec.get("user-id"), spec.get("group"), spec.get("group-id")
        )
    except procs.IdentityError as e:
        raise PathError(str(e)) from e


def _mode(spec: Mapping[str, Any], default: int) -> int:
    value = spec.get("permissions")
    if not value:
        return default
    try:
        mode = int(str(value), 8)
    except ValueError:
        raise PathError(f"invalid permissions {value!r}") from None
    if not 0 <= mode <= 0o7777:
        raise PathError(f"invalid permissions {value!r}")
    return mode


def _make_dirs(path: str, mode: int, owner: procs.Credentials) -> None:
    """Mkdir -p, giving every directory created the mode and owner."""
    missing: list[str] = []
    current = path
    while current not in ("/", "") and not os.path.isdir(current):
        missing.append(current)
        current = os.path.dirname(current)
    for directory in reversed(missing):
        try:
            os.mkdir(directory, mode)
        except FileExistsError:
            continue
        except OSError as e:
            raise os_failure("mkdir", directory, e) from e
        _set_mode_owner(directory, mode, owner)


def _set_mode_owner(path: str, mode: int, owner: procs.Credentials) -> None:
    try:
        os.chmod(path, mode)
        if owner.uid is not None:
            os.chown(path, owner.uid, owner.gid if owner.gid is not None else -1)
    except OSError as e:
        raise os_failure("chown", path, e) from e


def write_file(spec: Mapping[str, Any], content: Iterable[bytes]) -> None:
    """Write one pushed file atomically (temporary file, then rename) with mode and owner."""
    path = _absolute(str(spec.get("path", "")))
    mode = _mode(spec, 0o644)
    owner = _owner(spec)
    parent = os.path.dirname(path)
    if spec.get("make-dirs"):
        _make_dirs(parent, 0o755, owner)
    tmp = os.path.join(parent, f".{os.path.basename(path)}.{secrets.token_hex(6)}~")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except OSError as e:
        raise os_failure("open", path, e) from e
    try:
        with os.fdopen(fd, "wb") as handle:
            for chunk in content:
                handle.write(chunk)
            os.fchmod(handle.fileno(), mode)
            if owner.uid is not None:
                os.fchown(handle.fileno(), owner.uid, owner.gid if owner.gid is not None else -1)
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise os_failure("write", path, e) from e
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def make_dir(spec: Mapping[str, Any]) -> None:
    """One entry of action=make-dirs."""
    path = _absolute(str(spec.get("path", "")))
    mode = _mode(spec, 0o755)
    owner = _owner(spec)
    if spec.get("make-parents"):
        _make_dirs(path, mode, owner)
        return
    try:
        os.mkdir(path, mode)
    except OSError as e:
        raise os_failure("mkdir", path, e) from e
    _set_mode_owner(path, mode, owner)


def remove_path(spec: Mapping[str, Any]) -> None:
    """One entry of action=remove (recursive is `rm -rf`)."""
    path = _absolute(str(spec.get("path", "")))
    try:
        if spec.get("recursive"):
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            elif os.path.lexists(path):
                os.remove(path)
        elif os.path.isdir(path) and not os.path.islink(path):
            os.rmdir(path)
        else:
            os.remove(path)
    except OSError as e:
        raise os_failure("remove", path, e) from e


def apply_each(action: str, entries: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Run make-dirs or remove on each entry, collecting per-path results."""
    operation = make_dir if action == "make-dirs" else remove_path
    results: list[dict[str, Any]] = []
    for spec in entries:
        try:
            operation(spec)
            results.append(result(str(spec.get("path", ""))))
        except PathError as e:
            results.append(result(str(spec.get("path", "")), e))
    return results


def write_from_multipart(reader: multipart.MultipartReader) -> list[dict[str, Any]]:
    """POST /v1/files action=write: the "request" part, then one "files" part per file."""
    parts = reader.parts()
    first = next(parts, None)
    if first is None or first.name != "request":
        raise FilesError(400, 'must have a "request" field as the first part')
    try:
        metadata = json.loads(first.read_all())
    except ValueError as e:
        raise FilesError(400, f"cannot decode request metadata: {e}") from e
    if metadata.get("action") != "write":
        raise FilesError(400, f'multipart action must be "write", got "{metadata.get("action")}"')
    specs = {str(spec.get("path")): spec for spec in metadata.get("files") or []}
    outcome: dict[str, PathError | None] = {}
    for part in parts:
        path = part.filename or ""
        if part.name != "files" or path not in specs:
            raise FilesError(400, f'no metadata for path "{path}"')
        try:
            write_file(specs[path], part.iter_content())
            outcome[path] = None
        except PathError as e:
            outcome[path] = e
    return [
        result(
            path,
            outcome[path] if path in outcome else PathError(f'no file content for path "{path}"'),
        )
        for path in specs
    ]
