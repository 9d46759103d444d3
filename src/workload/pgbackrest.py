"""pgBackRest's configuration file, command lines, `info` output and errors, as pure functions."""

from __future__ import annotations

import dataclasses
import datetime
import posixpath
import re
import shlex
from collections.abc import Mapping, Sequence
from typing import Literal

from workload import layout

# Parsing and errors live in pgbackrest_info; callers use them through this module.
from workload.pgbackrest_info import (
    SETTING_ACCESS_KEY as SETTING_ACCESS_KEY,
)
from workload.pgbackrest_info import (
    SETTING_BUCKET as SETTING_BUCKET,
)
from workload.pgbackrest_info import (
    SETTING_CA_CHAIN as SETTING_CA_CHAIN,
)
from workload.pgbackrest_info import (
    SETTING_ENDPOINT as SETTING_ENDPOINT,
)
from workload.pgbackrest_info import (
    SETTING_PATH as SETTING_PATH,
)
from workload.pgbackrest_info import (
    SETTING_REGION as SETTING_REGION,
)
from workload.pgbackrest_info import (
    SETTING_SECRET_KEY as SETTING_SECRET_KEY,
)
from workload.pgbackrest_info import (
    SETTING_URI_STYLE as SETTING_URI_STYLE,
)
from workload.pgbackrest_info import (
    Backup as Backup,
)
from workload.pgbackrest_info import (
    BackupType as BackupType,
)
from workload.pgbackrest_info import (
    Diagnosis as Diagnosis,
)
from workload.pgbackrest_info import (
    PgBackRestError as PgBackRestError,
)
from workload.pgbackrest_info import (
    StanzaInfo as StanzaInfo,
)
from workload.pgbackrest_info import (
    classify_error as classify_error,
)
from workload.pgbackrest_info import (
    format_table as format_table,
)
from workload.pgbackrest_info import (
    parse_info as parse_info,
)
from workload.pgbackrest_info import (
    summarize as summarize,
)

# The S3 settings live in pgbackrest_s3; callers use them through this module.
from workload.pgbackrest_s3 import (
    DEFAULT_REGION as DEFAULT_REGION,
)
from workload.pgbackrest_s3 import (
    HTTPS_PORT as HTTPS_PORT,
)
from workload.pgbackrest_s3 import (
    InvalidS3SettingsError as InvalidS3SettingsError,
)
from workload.pgbackrest_s3 import (
    S3Settings as S3Settings,
)
from workload.pgbackrest_s3 import (
    UriStyle as UriStyle,
)
from workload.pgbackrest_s3 import (
    parse_endpoint as parse_endpoint,
)
from workload.pgbackrest_s3 import (
    s3_settings as s3_settings,
)

CONF_FILE = posixpath.join(layout.CONF_DIR, "pgbackrest.conf")

_STANZA = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # also a section name and a path part
# A value pgBackRest would misread: a line break starts another option, a NUL ends the line,
# and surrounding spaces are trimmed.
_UNSAFE_VALUE = re.compile(r"[\x00-\x1f\x7f]|\A\s|\s\Z")


# --- configuration ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Retention:
    """How long backups stay: full backups by count or by age in days; differentials by count."""

    full: int = 30
    full_type: Literal["count", "time"] = "time"
    diff: int | None = None

    @classmethod
    def by_count(cls, full: int, diff: int | None = None) -> Retention:
        """Keep the last `full` full backups (and what depends on them)."""
        return cls(full, "count", diff)

    @classmethod
    def by_days(cls, days: int, diff: int | None = None) -> Retention:
        """Keep full backups younger than `days` days, and the newest one older than that."""
        return cls(days, "time", diff)


@dataclasses.dataclass(frozen=True)
class Paths:
    """Where pgBackRest keeps its own files: all of them per member, none in a shared /tmp."""

    lock: str
    log: str
    spool: str
    s3_ca_file: str  # the S3 CA chain, written next to the configuration

    @classmethod
    def under(cls, base: str) -> Paths:
        """Everything under one directory."""
        return cls(
            lock=posixpath.join(base, "lock"),
            log=posixpath.join(base, "log"),
            spool=posixpath.join(base, "spool"),
            s3_ca_file=posixpath.join(base, "s3-ca.pem"),
        )

    def directories(self) -> tuple[str, ...]:
        """What to create (owned by the workload user) before running pgBackRest: it makes none."""
        return (self.lock, self.log, self.spool, posixpath.dirname(self.s3_ca_file))


DEFAULT_PATHS = dataclasses.replace(
    Paths.under(posixpath.join(layout.HOME, "pgbackrest")),
    log=posixpath.join(layout.LOGS_MOUNT, "pgbackrest"),  # persistent, next to PostgreSQL's logs
)


@dataclasses.dataclass(frozen=True)
class PgInstance:
    """How pgBackRest reaches a PostgreSQL data directory and server on its own host."""

    path: str = layout.PGDATA
    port: int = layout.PORT_POSTGRESQL
    socket_path: str = layout.SOCKET_DIR
    user: str = layout.SystemUser.BACKUP.value


@dataclasses.dataclass(frozen=True)
class TlsFiles:
    """A certificate, its key and the CA that both sides trust, as file paths."""

    cert_file: str
    key_file: str
    ca_file: str


@dataclasses.dataclass(frozen=True)
class TlsServer:
    """The `pgbackrest server` every member runs, so a standby can back up with the primary's help.

    `client_cn` is the certificate common name allowed in, for this stanza only.
    """

    address: str
    tls: TlsFiles
    client_cn: str
    port: int = layout.PORT_PGBACKREST_SERVER


@dataclasses.dataclass(frozen=True)
class RemotePrimary:
    """The primary, as a standby that takes the backup reaches it: a TLS server and its instance."""

    host: str
    tls: TlsFiles  # the client certificate, whose CN the primary's server authorises
    pg: PgInstance = PgInstance()
    port: int = layout.PORT_PGBACKREST_SERVER


def render_config(
    stanza: str,
    s3: S3Settings,
    pg: PgInstance,
    *,
    retention: Retention = Retention(),
    paths: Paths = DEFAULT_PATHS,
    server: TlsServer | None = None,
    primary: RemotePrimary | None = None,
    remotes: Sequence[RemotePrimary] = (),
    process_max: int = 2,
) -> str:
    """pgbackrest.conf. It holds the S3 key pair: write it 0600, owned by the workload user.

    With `primary`, this member is a standby that takes backups itself (`backup-standby`),
    asking the primary's TLS server only for what must come from the primary.
    """
    if not _STANZA.fullmatch(stanza):
        raise ValueError(f"not a stanza name: {stanza!r}")
    lines = ["[global]", *_repo_lines(s3, paths), *_retention_lines(retention)]
    lines += _kv(
        {
            "compress-type": "zst",  # built into Debian's and Ubuntu's pgBackRest; fast, small
            "process-max": str(process_max),
            "start-fast": "y",  # a backup starts now, not at the next scheduled checkpoint
            "lock-path": paths.lock,
            "log-path": paths.log,
            "spool-path": paths.spool,
        }
    )
    if server is not None:
        lines += _server_lines(stanza, server)
    lines += ["", f"[{stanza}]", *_pg_lines(1, pg)]
    if primary is not None:
        lines += ["backup-standby=y", *_remote_lines(2, primary)]
    # Every other member: pgBackRest finds the primary (and a standby) among them by itself, so
    # any member can run any command whatever the roles are now.
    for index, remote in enumerate(remotes, start=2 + (primary is not None)):
        lines += _remote_lines(index, remote)
    return "\n".join(lines) + "\n"


def _kv(options: Mapping[str, str]) -> list[str]:
    # S3Settings cannot hold such a value; this guards the charm's own paths and names.
    for key, value in options.items():
        if _UNSAFE_VALUE.search(value):
            raise ValueError(f"pgBackRest option {key} holds a line break or control character")
    return [f"{key}={value}" for key, value in options.items()]


def _repo_lines(s3: S3Settings, paths: Paths) -> list[str]:
    options = {
        "repo1-type": "s3",
        "repo1-path": s3.repo_path,
        "repo1-s3-bucket": s3.bucket,
        "repo1-s3-endpoint": s3.host,
        "repo1-storage-port": str(s3.port),
        "repo1-s3-region": s3.region,
        "repo1-s3-uri-style": s3.uri_style,
        "repo1-s3-key": s3.access_key,
        "repo1-s3-key-secret": s3.secret_key,
        "repo1-storage-verify-tls": "y" if s3.tls_verify else "n",
        # Small files travel together in a few objects: fewer requests, which S3 bills and which
        # dominate small databases (measured: a 22 MB full backup took 10.6 s without, 2.8 s with).
        "repo1-bundle": "y",
    }
    if s3.ca_chain:
        options["repo1-storage-ca-file"] = paths.s3_ca_file
    return _kv(options)


def _retention_lines(retention: Retention) -> list[str]:
    options = {
        "repo1-retention-full-type": retention.full_type,
        "repo1-retention-full": str(retention.full),
    }
    if retention.diff is not None:
        options["repo1-retention-diff"] = str(retention.diff)
    return _kv(options)


def _server_lines(stanza: str, server: TlsServer) -> list[str]:
    return _kv(
        {
            "tls-server-address": server.address,
            "tls-server-port": str(server.port),
            "tls-server-cert-file": server.tls.cert_file,
            "tls-server-key-file": server.tls.key_file,
            "tls-server-ca-file": server.tls.ca_file,
            "tls-server-auth": f"{server.client_cn}={stanza}",
        }
    )


def _pg_lines(index: int, pg: PgInstance) -> list[str]:
    return _kv(
        {
            f"pg{index}-path": pg.path,
            f"pg{index}-port": str(pg.port),
            f"pg{index}-socket-path": pg.socket_path,
            f"pg{index}-user": pg.user,
        }
    )


def _remote_lines(index: int, remote: RemotePrimary) -> list[str]:
    host = _kv(
        {
            f"pg{index}-host": remote.host,
            f"pg{index}-host-type": "tls",
            f"pg{index}-host-port": str(remote.port),
            f"pg{index}-host-cert-file": remote.tls.cert_file,
            f"pg{index}-host-key-file": remote.tls.key_file,
            f"pg{index}-host-ca-file": remote.tls.ca_file,
        }
    )
    return host + _pg_lines(index, remote.pg)


# --- command lines ------------------------------------------------------------------------------
# No secret is ever on argv: pgBackRest reads the key pair from the configuration file.


def command(config: str, stanza: str | None, name: str, *options: str) -> list[str]:
    """`pgbackrest --config=<config> [--stanza=<stanza>] <options> <name>`."""
    head = ["pgbackrest", f"--config={config}"]
    if stanza is not None:
        head.append(f"--stanza={stanza}")
    return [*head, *options, name]


def stanza_create(config: str, stanza: str) -> list[str]:
    """Create the stanza in the repository, or check that it matches this database."""
    return command(config, stanza, "stanza-create")


def check(config: str, stanza: str) -> list[str]:
    """Check the configuration, the repository, and that WAL archiving works."""
    return command(config, stanza, "check")


def backup(
    config: str, stanza: str, backup_type: BackupType, annotations: Mapping[str, str] | None = None
) -> list[str]:
    """Take a backup; annotations (e.g. who asked for it) are kept in the backup's metadata."""
    notes = [f"--annotation={key}={value}" for key, value in (annotations or {}).items()]
    return command(config, stanza, "backup", f"--type={backup_type}", *notes)


def info(config: str, stanza: str) -> list[str]:
    """The stanza's backups and archive as JSON (see parse_info)."""
    return command(config, stanza, "info", "--output=json")


def expire(config: str, stanza: str, backup_set: str | None = None) -> list[str]:
    """Apply the retention policy, or expire one backup set."""
    return command(config, stanza, "expire", *([f"--set={backup_set}"] if backup_set else []))


@dataclasses.dataclass(frozen=True)
class Latest:
    """Restore the newest backup and replay every archived WAL segment."""


@dataclasses.dataclass(frozen=True)
class BackupSet:
    """Restore one backup exactly as it was: recovery stops as soon as it is consistent."""

    label: str


@dataclasses.dataclass(frozen=True)
class PointInTime:
    """Restore to a moment; pgBackRest picks the newest backup before it unless `label` is set.

    `timeline`: None follows PostgreSQL's default (the latest timeline in the archive);
    `current` stays on the backup's timeline; a number selects that timeline.
    """

    target: datetime.datetime
    label: str | None = None
    timeline: str | None = None


RestoreTarget = Latest | BackupSet | PointInTime


def restore(config: str, stanza: str, target: RestoreTarget, delta: bool = False) -> list[str]:
    """Restore into the configured pg1-path; PostgreSQL promotes once the target is reached.

    `delta` reuses files already in the data directory that match the backup's checksums.
    """
    options = ["--delta"] if delta else []
    if isinstance(target, BackupSet):
        options += [f"--set={target.label}", "--type=immediate", "--target-action=promote"]
    elif isinstance(target, PointInTime):
        options += ["--type=time", f"--target={format_target(target.target)}"]
        options += ["--target-action=promote"]
        options += [f"--set={target.label}"] if target.label else []
        options += [f"--target-timeline={target.timeline}"] if target.timeline else []
    return command(config, stanza, "restore", *options)


def format_target(moment: datetime.datetime) -> str:
    """A timestamp both pgBackRest and PostgreSQL read unambiguously (UTC, microseconds)."""
    if moment.tzinfo is None:
        raise ValueError("a restore target needs a time zone")
    return moment.astimezone(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f+00")


def archive_command(config: str, stanza: str) -> str:
    """PostgreSQL's archive_command."""
    return shlex.join(command(config, stanza, "archive-push")) + " %p"


def restore_command(config: str, stanza: str) -> str:
    """PostgreSQL's restore_command."""
    return shlex.join(command(config, stanza, "archive-get")) + ' %f "%p"'


def server(config: str) -> list[str]:
    """The TLS server, a long-running process (a Pebble service)."""
    return command(config, None, "server")


def server_ping(config: str, address: str, port: int = layout.PORT_PGBACKREST_SERVER) -> list[str]:
    """Whether a TLS server accepts connections (no authentication is attempted)."""
    options = (f"--tls-server-address={address}", f"--tls-server-port={port}")
    return command(config, None, "server-ping", *options)
