"""pgBackRest's `info --output=json` as typed records, a table, and its errors explained."""

from __future__ import annotations

import dataclasses
import datetime
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any, Literal, cast

BackupType = Literal["full", "diff", "incr"]

# The s3 interface's field names: every error names the setting as the user knows it.
SETTING_BUCKET = "bucket"
SETTING_ENDPOINT = "endpoint"
SETTING_REGION = "region"
SETTING_PATH = "path"
SETTING_URI_STYLE = "s3-uri-style"
SETTING_ACCESS_KEY = "access-key"
SETTING_SECRET_KEY = "secret-key"  # noqa: S105 - a field name
SETTING_CA_CHAIN = "tls-ca-chain"

# --- `info --output=json` -----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Backup:
    """One backup set as `info` reports it; sizes are bytes, times UTC."""

    label: str
    type: BackupType
    prior: str | None  # the backup a diff or incr is based on
    start: datetime.datetime
    stop: datetime.datetime
    size: int  # the database's size
    delta: int  # what this backup copied from the database
    repo_size: int  # compressed, in the repository
    repo_delta: int
    wal_start: str | None
    wal_stop: str | None
    error: bool  # a page checksum error was found while copying
    annotations: Mapping[str, str] = dataclasses.field(default_factory=lambda: {})

    @property
    def timeline(self) -> int | None:
        """The timeline the backup was taken on (the WAL segment name's first 8 hex digits)."""
        return int(self.wal_start[:8], 16) if self.wal_start else None


@dataclasses.dataclass(frozen=True)
class StanzaInfo:
    """A stanza's status, backups (oldest first) and archived WAL range."""

    name: str
    status_code: int  # 0 ok, 1 missing stanza path, 2 no valid backups, 99 other (see repo_errors)
    status_message: str
    backups: tuple[Backup, ...]
    archive_min: str | None
    archive_max: str | None
    system_ids: tuple[int, ...]  # of every database the stanza has seen (after upgrades)
    repo_errors: tuple[str, ...]  # why a repository could not be read (e.g. an S3 error)
    backup_running: bool

    @property
    def ok(self) -> bool:
        """Whether the stanza exists and holds at least one backup."""
        return self.status_code == 0


def parse_info(json_text: str) -> list[StanzaInfo]:
    """Stanzas from `pgbackrest info --output=json`, which exits 0 even when S3 refused it."""
    return [_stanza(s) for s in cast("list[dict[str, Any]]", json.loads(json_text))]


def _stanza(raw: Mapping[str, Any]) -> StanzaInfo:
    status, archives = _obj(raw, "status"), _objs(raw, "archive")
    return StanzaInfo(
        name=str(raw["name"]),
        status_code=int(status.get("code", 99)),
        status_message=str(status.get("message", "")),
        backups=tuple(_backup(b) for b in _objs(raw, "backup")),
        archive_min=min((str(a["min"]) for a in archives if a.get("min")), default=None),
        archive_max=max((str(a["max"]) for a in archives if a.get("max")), default=None),
        system_ids=tuple(int(db["system-id"]) for db in _objs(raw, "db")),
        repo_errors=tuple(
            str(_obj(r, "status").get("message"))
            for r in _objs(raw, "repo")
            if _obj(r, "status").get("code") != 0
        ),
        backup_running=bool(_obj(_obj(status, "lock"), "backup").get("held", False)),
    )


def _backup(raw: Mapping[str, Any]) -> Backup:
    sizes, stamps, wal = _obj(raw, "info"), _obj(raw, "timestamp"), _obj(raw, "archive")
    repo = _obj(sizes, "repository")
    return Backup(
        label=str(raw["label"]),
        type=cast("BackupType", raw["type"]),
        prior=raw.get("prior"),
        start=_utc(stamps["start"]),
        stop=_utc(stamps["stop"]),
        size=int(sizes.get("size", 0)),
        delta=int(sizes.get("delta", 0)),
        repo_size=int(repo.get("size", 0)),
        repo_delta=int(repo.get("delta", 0)),
        wal_start=wal.get("start"),
        wal_stop=wal.get("stop"),
        error=bool(raw.get("error", False)),
        annotations={str(k): str(v) for k, v in _obj(raw, "annotation").items()},
    )


def _obj(raw: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    return cast("Mapping[str, Any]", raw.get(key) or {})


def _objs(raw: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    return cast("list[Mapping[str, Any]]", raw.get(key) or [])


def _utc(epoch: int) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(epoch, tz=datetime.timezone.utc)


_HEADER = ("backup-id", "type", "status", "start-utc", "stop-utc", "size", "wal", "timeline")


def format_table(backups: Iterable[Backup]) -> str:
    """A fixed-width table of backups for an action's output, oldest first."""
    rows = [_HEADER] + [_row(b) for b in sorted(backups, key=lambda b: b.start)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_HEADER))]
    lines = ("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows)
    return "\n".join(line.rstrip() for line in lines)


def _row(b: Backup) -> tuple[str, ...]:
    when = "%Y-%m-%d %H:%M:%S"
    wal = f"{b.wal_start}..{b.wal_stop}" if b.wal_start else "-"
    return (
        b.label,
        b.type,
        "error" if b.error else "ok",
        b.start.strftime(when),
        b.stop.strftime(when),
        _human(b.size),
        wal,
        str(b.timeline or "-"),
    )


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    return f"{value:.1f}TiB"


# --- errors -------------------------------------------------------------------------------------


class PgBackRestError(Exception):
    """Raised when a pgBackRest command fails.

    Attributes:
        exit_code: pgBackRest's error code (e.g. 28: the repository is another database's).
        stderr_summary: its ERROR and HINT lines and the S3 error code, without HTTP dumps.
        diagnosis: what it means, naming the setting at fault.
    """

    def __init__(self, exit_code: int, stderr_summary: str):
        super().__init__(f"pgBackRest failed ({exit_code}): {stderr_summary}")
        self.exit_code = exit_code
        self.stderr_summary = stderr_summary
        self.diagnosis = classify_error(exit_code, stderr_summary)

    @classmethod
    def from_stderr(cls, exit_code: int, stderr: str) -> PgBackRestError:
        """The error for a command's whole stderr, summarised."""
        return cls(exit_code, summarize(stderr))


@dataclasses.dataclass(frozen=True)
class Diagnosis:
    """What a failure means for the user: the settings to look at, and why."""

    settings: tuple[str, ...]  # s3 interface names; empty when no setting is at fault
    explanation: str

    def __str__(self) -> str:
        names = "/".join(self.settings)
        return f"{names}: {self.explanation}" if names else self.explanation


_S3_CODE = re.compile(r"<Code>(\w+)</Code>")
# (pattern in pgBackRest's output, settings at fault, explanation); the first match wins. The
# patterns are pgBackRest 2.45's messages (its error code in brackets) and S3's error codes, which
# pgBackRest prints when a response has a body: a HEAD (stanza-create's first request) has none,
# so there only the HTTP status tells (403: one of the keys is wrong).
_RULES: tuple[tuple[str, tuple[str, ...], str], ...] = (
    (
        r"\[028\]|do not match the database|system-id \d+ do not match stanza",
        (SETTING_BUCKET, SETTING_PATH),
        "the repository belongs to another cluster; choose another bucket or path",
    ),
    (r"InvalidAccessKeyId", (SETTING_ACCESS_KEY,), "the S3 server does not know this access key"),
    (r"SignatureDoesNotMatch", (SETTING_SECRET_KEY,), "the secret key does not match the key"),
    (r"NoSuchBucket", (SETTING_BUCKET,), "the bucket does not exist"),
    (
        r"AccessDenied|failed with 403",
        (SETTING_ACCESS_KEY, SETTING_SECRET_KEY),
        "the S3 server refused these credentials",
    ),
    (
        r"unable to find hostname .* in certificate",
        (SETTING_ENDPOINT,),
        "the endpoint's host name is not in the S3 server's certificate",
    ),
    (
        r"unable to verify certificate|certificate verify failed",
        (SETTING_CA_CHAIN,),
        "the S3 server's certificate is not signed by a trusted CA",
    ),
    (r"wrong version number", (SETTING_ENDPOINT,), "the endpoint does not speak HTTPS"),
    (
        r"info exists but \w+\.info is missing",
        (SETTING_PATH,),
        "the repository is incomplete (an interrupted stanza-create?): empty the path",
    ),
    (r"has a stanza-create been performed", (), "the repository has no stanza yet"),
    (r"\[027\]|DbConnectError|to 'dbname=", (), "pgBackRest cannot connect to PostgreSQL"),
    (r"\[068\]|archive_command", (), "PostgreSQL does not archive through pgBackRest"),
    (r"\[082\]|not archived before", (), "WAL segments do not reach the repository in time"),
    (r"\[050\]|unable to acquire lock", (), "another pgBackRest command is running"),
    (
        r"\[049\]|unable to get address for|unable to connect to|Connection refused|timed out",
        (SETTING_ENDPOINT,),
        "the S3 endpoint cannot be reached",
    ),
)


def summarize(stderr: str) -> str:
    """ERROR and HINT lines plus the S3 error code: short, and free of the HTTP dump."""
    lines = [line.strip() for line in stderr.splitlines()]
    keep = [line for line in lines if line.startswith(("ERROR:", "HINT:"))] or lines[-1:]
    codes = [f"(S3: {code})" for code in dict.fromkeys(_S3_CODE.findall(stderr))]
    return " ".join([" ".join(keep)[:400], *codes])


def classify_error(exit_code: int, stderr: str) -> Diagnosis:
    """Explain a failed command (or a repository error from `info`) in terms of the settings."""
    for pattern, settings, explanation in _RULES:
        if re.search(pattern, stderr, re.IGNORECASE):
            return Diagnosis(settings, explanation)
    return Diagnosis((), f"pgBackRest failed ({exit_code}): {summarize(stderr)}")
