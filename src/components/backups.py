"""Backups to S3 with pgBackRest: configuration and servers on every unit, stanza and archiving from the leader."""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import logging
import posixpath
from typing import cast

import ops

import goal
from charms.postgresql_k8s.v0 import postgresql as pglib
from components import Component, Io
from state import Ready, Snapshot
from workload import internal_tls, layout, patroni, pebble, pgbackrest, scheduler

logger = logging.getLogger(__name__)

SERVICE = "pgbackrest-server"
TLS_DIR = posixpath.join(layout.CONF_DIR, "pgbackrest-tls")
TLS_FILES = pgbackrest.TlsFiles(
    cert_file=posixpath.join(TLS_DIR, "cert.pem"),
    key_file=posixpath.join(TLS_DIR, "key.pem"),
    ca_file=posixpath.join(TLS_DIR, "ca.pem"),
)
PGPASS_FILE = posixpath.join(layout.CONF_DIR, "pgbackrest.pgpass")
CLIENT_CN = "pgbackrest"
TLS_SECRET_LABEL = "pgbackrest-tls"  # noqa: S105 (a label)
COMMAND_TIMEOUT = 3600.0
PROBE_TIMEOUT = 120.0


class BackupError(Exception):
    """Raised when a pgBackRest command fails; the message says why in the user's terms."""


def stanza_name(state: Snapshot) -> str:
    """The stanza: one per application (a second cluster on the same path is refused)."""
    return state.app_name


def settings_digest(state: Snapshot, settings: pgbackrest.S3Settings) -> str:
    """What the stanza was created for: another digest means another repository."""
    text = json.dumps([stanza_name(state), dataclasses.asdict(settings)], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def archiving(state: Snapshot) -> bool:
    """Whether WAL goes to the repository: the S3 settings are valid and the stanza exists."""
    s3 = state.s3
    return bool(
        s3.settings is not None
        and state.peer_data.backup_stanza
        and state.peer_data.backup_stanza == settings_digest(state, s3.settings)
    )


def archive_command(state: Snapshot) -> str:
    """PostgreSQL's archive_command: pgBackRest's archive-push once the stanza is ready."""
    if not archiving(state):
        return patroni.NO_ARCHIVE
    return pgbackrest.archive_command(pgbackrest.CONF_FILE, stanza_name(state))


def _pgpass(password: str) -> str:
    escaped = password.replace("\\", "\\\\").replace(":", "\\:")
    return f"*:*:*:{layout.SystemUser.BACKUP.value}:{escaped}\n"


def render(state: Snapshot, settings: pgbackrest.S3Settings) -> str:
    """pgbackrest.conf for this unit: its own instance first, every other member over TLS."""
    pg = (
        pgbackrest.PgInstance()
    )  # as the backup role: no superuser (see system_users.BACKUP_FUNCTIONS)
    members = [m for m in state.peer_members if m != state.member]
    remotes = [
        pgbackrest.RemotePrimary(host=f"{m}.{state.app_name}-endpoints", tls=TLS_FILES, pg=pg)
        for m in members
    ]
    server = pgbackrest.TlsServer(address="0.0.0.0", tls=TLS_FILES, client_cn=CLIENT_CN)  # noqa: S104
    return pgbackrest.render_config(
        stanza_name(state),
        settings,
        pg,
        retention=retention(state),
        server=server,
        remotes=remotes,
    )


def retention(state: Snapshot) -> pgbackrest.Retention:
    """Full backups kept: by count or by age in days, from config."""
    cfg = state.config
    if cfg is None or cfg.backup_retention_full <= 0:
        return pgbackrest.Retention()
    if cfg.backup_retention_type == "count":
        return pgbackrest.Retention.by_count(cfg.backup_retention_full)
    return pgbackrest.Retention.by_days(cfg.backup_retention_full)


def make_tls(app: str, namespace: str) -> internal_tls.InternalTls:
    """Fresh TLS material valid for every member's stable name, short and qualified."""
    names = [f"*.{app}-endpoints", f"*.{app}-endpoints.{namespace}"]
    names.append(f"*.{app}-endpoints.{namespace}.svc.cluster.local")
    return internal_tls.generate(CLIENT_CN, names)


def ensure_tls(s: Snapshot, io: Io) -> Snapshot:
    """Leader: make the members' TLS material once (members are `<pod>.<app>-endpoints`)."""
    if s.backup_tls is not None:
        return s
    tls = make_tls(s.app_name, s.namespace)
    secret = io.model.app.add_secret(
        {"ca-cert": tls.ca, "cert": tls.cert, "key": tls.key},
        label=TLS_SECRET_LABEL,
        description="pgBackRest servers' TLS",
    )
    assert secret.id is not None
    s = dataclasses.replace(s, backup_tls=tls)
    return io.peers.save(s, {"backup_tls_secret": secret.id})


OWNED_FILES = (
    pgbackrest.CONF_FILE,
    PGPASS_FILE,
    TLS_FILES.ca_file,
    TLS_FILES.cert_file,
    TLS_FILES.key_file,
    pgbackrest.DEFAULT_PATHS.s3_ca_file,
)


def files(s: Snapshot, r: Ready) -> dict[str, goal.File]:
    """pgbackrest.conf, its password file, the TLS and CA files; empty while it cannot run."""
    settings, tls = s.s3.settings, s.backup_tls
    if settings is None or tls is None:
        return {}
    out = {
        pgbackrest.CONF_FILE: goal.File(render(s, settings)),
        PGPASS_FILE: goal.File(_pgpass(r.passwords[layout.SystemUser.BACKUP])),
        TLS_FILES.ca_file: goal.File(tls.ca),
        TLS_FILES.cert_file: goal.File(tls.cert),
        TLS_FILES.key_file: goal.File(tls.key),
    }
    if settings.ca_chain:
        out[pgbackrest.DEFAULT_PATHS.s3_ca_file] = goal.File(settings.ca_chain)
    return out


def run(container: ops.Container, argv: list[str], timeout: float = COMMAND_TIMEOUT) -> str:
    """Run a pgBackRest command as the workload user; BackupError explains a failure."""
    try:
        process = container.exec(
            argv,
            user=layout.WORKLOAD_USER,
            group=layout.WORKLOAD_GROUP,
            environment={"PGPASSFILE": PGPASS_FILE},
            timeout=timeout,
        )
        out, _ = process.wait_output()
        return out
    except ops.pebble.ExecError as e:  # pyright: ignore[reportUnknownVariableType]
        failed = cast("ops.pebble.ExecError[str]", e)
        stderr = (failed.stderr or "") + (failed.stdout or "")
        error = pgbackrest.PgBackRestError.from_stderr(failed.exit_code, stderr)
        raise BackupError(str(error.diagnosis)) from None
    except (ops.pebble.TimeoutError, ops.pebble.ChangeError) as e:
        # Pebble ends an exec past its timeout with a change error "timed out after …".
        if isinstance(e, ops.pebble.ChangeError) and "timed out" not in e.err:
            raise BackupError(f"{argv[-1]} could not run: {' '.join(e.err.split())}") from None
        raise BackupError(f"{argv[-1]} did not finish within {timeout:.0f} s") from None


# Probes fail fast: an unreachable endpoint or member should not hold a hook for minutes.
PROBE_OPTIONS = ("--io-timeout=15", "--db-timeout=15", "--protocol-timeout=30")
INFO_PROBE_OPTIONS = ("--io-timeout=15", "--protocol-timeout=30")  # info takes no db-timeout


def _probe(argv: list[str]) -> list[str]:
    options = PROBE_OPTIONS if argv[-1] == "stanza-create" else INFO_PROBE_OPTIONS
    return [*argv[:-1], *options, argv[-1]]


def ensure_stanza(container: ops.Container, state: Snapshot) -> None:
    """Leader: create the stanza, or check it is this cluster's (pgBackRest finds the primary)."""
    argv = pgbackrest.stanza_create(pgbackrest.CONF_FILE, stanza_name(state))
    run(container, _probe(argv), PROBE_TIMEOUT)


def info(container: ops.Container, state: Snapshot) -> pgbackrest.StanzaInfo | None:
    """The stanza's backups and archive."""
    argv = pgbackrest.info(pgbackrest.CONF_FILE, stanza_name(state))
    out = run(container, _probe(argv), PROBE_TIMEOUT)
    stanzas = pgbackrest.parse_info(out)
    return stanzas[0] if stanzas else None


def take_backup(
    container: ops.Container,
    state: Snapshot,
    backup_type: pgbackrest.BackupType,
    from_standby: bool,
    requested_by: str,
) -> pgbackrest.Backup:
    """Take a backup (from a standby when there is one) and return what pgBackRest recorded."""
    argv = pgbackrest.backup(
        pgbackrest.CONF_FILE, stanza_name(state), backup_type, {"requested-by": requested_by}
    )
    argv.insert(-1, "--backup-standby" if from_standby else "--no-backup-standby")
    run(container, argv)
    stanza = info(container, state)
    if stanza is None or not stanza.backups:
        raise BackupError("the backup finished but the repository does not list it")
    return stanza.backups[-1]


def dcs_remove(container: ops.Container, state: Snapshot) -> None:
    """Forget the cluster in the DCS (every member stopped), so a restored one can bootstrap."""
    assert state.pod_ip is not None
    env = patroni.dcs_environment(state.app_name, state.namespace, state.pod_ip)
    scope = state.app_name
    process = container.exec(
        ["patronictl", "-c", layout.PATRONI_CONF, "remove", scope],
        user=layout.WORKLOAD_USER,
        group=layout.WORKLOAD_GROUP,
        environment=env,
        stdin=f"{scope}\nYes I am aware\n",
        timeout=PROBE_TIMEOUT,
    )
    process.wait_output()


def reconcile_stanza(container: ops.Container, s: Snapshot) -> dict[str, str]:
    """Leader: create the stanza for the related repository; the peer data to change.

    Archiving follows `backup-stanza`: it is on only while the stanza matches the settings.
    """
    settings = s.s3.settings
    if settings is None:
        wanted = {"backup_stanza": "", "backup_error": s.s3.error or ""}
    elif s.peer_data.backup_stanza == settings_digest(s, settings):
        return {}
    elif not servers_ready(s, settings_digest(s, settings)):
        return {}  # pgBackRest looks for the primary among every member: wait for them all
    else:
        try:
            ensure_stanza(container, s)
            wanted = {"backup_stanza": settings_digest(s, settings), "backup_error": ""}
        except BackupError as e:
            wanted = {"backup_stanza": "", "backup_error": f"S3 repository refused: {e}"}
    current = {
        "backup_stanza": s.peer_data.backup_stanza,
        "backup_error": s.peer_data.backup_error,
    }
    return {} if wanted == current else wanted


def archive_lag(db: pglib.PostgreSQL) -> str:
    """How far WAL archiving is behind the primary's current WAL file, for the status line."""
    status = db.get_archiver_status()
    if status.failing:
        return "WAL archiving failing"
    if not status.last_archived_wal:
        return "no WAL archived yet"
    behind = status.segments_behind
    if behind is None:
        return "WAL archiving on"
    return f"archive lag {behind} WAL file{'s' if behind != 1 else ''}"


SERVER_KEY = "pgbackrest-server"


def servers_ready(s: Snapshot, digest: str) -> bool:
    """Whether every unit runs its pgBackRest server with the configuration for `digest`."""
    return not s.not_acked(SERVER_KEY, digest)


def _scheduler(s: Snapshot, r: Ready, server: bool) -> goal.Contribution:
    """The image's cron, on the leader's unit while a schedule is set, waking the charm.

    Every unit writes the crontab (empty unless it schedules), so a unit that lost leadership
    or a schedule removed leaves no job behind even before its cron is stopped.
    """
    full, incremental = r.config.backup_schedule_full, r.config.backup_schedule_incremental
    scheduled = s.is_leader and server and bool(full or incremental)
    schedules = (full, incremental) if scheduled else ("", "")
    return goal.Contribution(
        services={scheduler.SERVICE: scheduler.service(enabled=scheduled)},
        files={
            path: goal.File(text, mode)
            for path, (text, mode) in scheduler.files(*schedules).items()
        },
    )


class Backups(Component):
    """pgBackRest's configuration and server on every unit; the stanza from the leader."""

    def prepare(self, s: Snapshot, io: Io) -> Snapshot:
        """The members' TLS material, once a repository is related."""
        return ensure_tls(s, io) if s.s3.related else s

    def contribute(self, s: Snapshot, r: Ready) -> goal.Contribution:
        """archive_command, pgBackRest's files and server, the scheduler; what this unit serves."""
        written = files(s, r)
        server = bool(written)
        digest = settings_digest(s, s.s3.settings) if server and s.s3.settings else ""
        schedule = _scheduler(s, r, server)
        return goal.Contribution(
            parameters={"archive_command": archive_command(s)},
            files={**written, **schedule.files},
            # The S3 keys (in pgbackrest.conf), the backup password and the TLS key go with S3.
            absent=tuple(p for p in OWNED_FILES if p not in written),
            dirs=(*pgbackrest.DEFAULT_PATHS.directories(), TLS_DIR) if server else (),
            services={
                SERVICE: pebble.pgbackrest_server(pgbackrest.CONF_FILE, PGPASS_FILE, server),
                **schedule.services,
            },
            acks={SERVER_KEY: digest},
        )

    def leader_step(self, s: Snapshot, r: Ready, io: Io) -> Snapshot:
        """Create the stanza once every server runs; read the archive's progress for status."""
        s = io.peers.save(s, reconcile_stanza(io.container, s))
        if not archiving(s):
            return s
        db = io.primary_db(s)
        try:
            summary = archive_lag(db) if db is not None else ""
        except pglib.PostgreSQLError as e:
            logger.info("archive lag unknown: %s", e)
            summary = ""
        return dataclasses.replace(s, archive_summary=summary)

    def app_statuses(self, s: Snapshot) -> list[ops.StatusBase]:
        """Backup problems (blocked), or the last backup and the archive's progress (active)."""
        now = datetime.datetime.now(datetime.timezone.utc)
        statuses = problems(s, now)
        summary = ", ".join(p for p in (last_backup(s), s.archive_summary) if p)
        if summary and archiving(s):
            statuses.append(ops.ActiveStatus(summary))
        return statuses


# A schedule is "missed" when no backup of its kind succeeded this long after it fired.
MISSED_GRACE = datetime.timedelta(minutes=30)


def _missed(
    kind: str, schedule: str, s: Snapshot, now: datetime.datetime
) -> ops.StatusBase | None:
    if not schedule:
        return None
    due = scheduler.last_due(schedule, now - MISSED_GRACE)
    last = s.peer_data.backup_succeeded.get(kind)
    if last is not None and datetime.datetime.fromisoformat(last) >= due:
        return None
    if s.peer_data.backup_fired.get(kind) is None and last is None:
        return None  # never fired yet: the schedule was set after `due`
    return ops.BlockedStatus(f"scheduled {kind} backup of {due:%Y-%m-%d %H:%M}Z missed")


def problems(s: Snapshot, now: datetime.datetime) -> list[ops.StatusBase]:
    """What keeps backups from working: the repository, the stanza, a missed schedule."""
    statuses: list[ops.StatusBase] = []
    if s.s3.error:
        statuses.append(ops.BlockedStatus(s.s3.error))
    elif s.peer_data.backup_error and s.s3.related:
        statuses.append(ops.BlockedStatus(s.peer_data.backup_error))
    if s.config is not None and s.peer_data.backup_stanza:
        for kind, schedule in (
            ("full", s.config.backup_schedule_full),
            ("incremental", s.config.backup_schedule_incremental),
        ):
            if (missed := _missed(kind, schedule, s, now)) is not None:
                statuses.append(missed)
    return statuses


def last_backup(s: Snapshot) -> str:
    """`last backup <time>` for the active message, or empty."""
    if not s.peer_data.backup_succeeded:
        return ""
    latest = max(datetime.datetime.fromisoformat(t) for t in s.peer_data.backup_succeeded.values())
    return f"last backup {latest:%Y-%m-%d %H:%M}Z"
