"""Backups to S3 with pgBackRest: configuration on every unit, stanza and archiving from the leader."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import posixpath
from typing import cast

import ops
import psycopg

import cluster
from charms.postgresql_k8s.v0 import postgresql as pglib
from relations import s3 as s3_relation
from state import State
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
# Archiving off: WAL segments are recycled as soon as PostgreSQL is done with them.
NO_ARCHIVE = "/bin/true"
COMMAND_TIMEOUT = 3600.0
PROBE_TIMEOUT = 120.0


class BackupError(Exception):
    """Raised when a pgBackRest command fails; the message says why in the user's terms."""


def stanza_name(state: State) -> str:
    """The stanza: one per application (a second cluster on the same path is refused)."""
    return state.app_name


def settings_digest(state: State, settings: pgbackrest.S3Settings) -> str:
    """What the stanza was created for: another digest means another repository."""
    text = json.dumps([stanza_name(state), dataclasses.asdict(settings)], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def archiving(state: State, s3: s3_relation.S3State) -> bool:
    """Whether WAL goes to the repository: the S3 settings are valid and the stanza exists."""
    return bool(
        s3.settings is not None
        and state.peer_data.backup_stanza
        and state.peer_data.backup_stanza == settings_digest(state, s3.settings)
    )


def archive_command(state: State, s3: s3_relation.S3State) -> str:
    """PostgreSQL's archive_command: pgBackRest's archive-push once the stanza is ready."""
    if not archiving(state, s3):
        return NO_ARCHIVE
    return pgbackrest.archive_command(pgbackrest.CONF_FILE, stanza_name(state))


def _pgpass(password: str) -> str:
    escaped = password.replace("\\", "\\\\").replace(":", "\\:")
    return f"*:*:*:{layout.SystemUser.BACKUP.value}:{escaped}\n"


def render(state: State, settings: pgbackrest.S3Settings) -> str:
    """pgbackrest.conf for this unit: its own instance first, every other member over TLS."""
    pg = pgbackrest.PgInstance()  # as the backup role: no superuser (see cluster.BACKUP_FUNCTIONS)
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


def retention(state: State) -> pgbackrest.Retention:
    """Full backups kept: by count or by age in days, from config."""
    cfg = state.config
    if cfg is None or cfg.backup_retention_full <= 0:
        return pgbackrest.Retention()
    if cfg.backup_retention_type == "count":
        return pgbackrest.Retention.by_count(cfg.backup_retention_full)
    return pgbackrest.Retention.by_days(cfg.backup_retention_full)


def read_tls(model: ops.Model, secret_id: str | None) -> internal_tls.InternalTls | None:
    """The members' shared TLS material for pgBackRest's servers, once the leader made it."""
    if not secret_id:
        return None
    try:
        content = model.get_secret(id=secret_id).get_content(refresh=True)
    except (ops.SecretNotFoundError, ops.ModelError):
        return None
    if not {"ca-cert", "cert", "key"} <= content.keys():
        return None
    return internal_tls.InternalTls(
        ca=content["ca-cert"], cert=content["cert"], key=content["key"]
    )


def ensure_tls(app: ops.Application, model: ops.Model, state: State) -> str:
    """Leader: make the TLS material once (members are `<pod>.<app>-endpoints`); its secret id."""
    if state.peer_data.backup_tls_secret and read_tls(model, state.peer_data.backup_tls_secret):
        return state.peer_data.backup_tls_secret
    names = [f"*.{state.app_name}-endpoints", f"*.{state.app_name}-endpoints.{state.namespace}"]
    names.append(f"*.{state.app_name}-endpoints.{state.namespace}.svc.cluster.local")
    tls = internal_tls.generate(CLIENT_CN, names)
    secret = app.add_secret(
        {"ca-cert": tls.ca, "cert": tls.cert, "key": tls.key},
        label=TLS_SECRET_LABEL,
        description="pgBackRest servers' TLS",
    )
    assert secret.id is not None
    return secret.id


def reconcile_files(
    workload: cluster.Workload,
    state: State,
    s3: s3_relation.S3State,
    tls: internal_tls.InternalTls | None,
) -> bool:
    """Write pgbackrest.conf, its password file, TLS and CA files; True if the server can run."""
    if s3.settings is None or tls is None or state.passwords is None:
        return False
    for path in (*pgbackrest.DEFAULT_PATHS.directories(), TLS_DIR):
        workload.ensure_dir(path)  # pgBackRest does not create its log directory itself
    workload_write = workload.write
    workload_write(pgbackrest.CONF_FILE, render(state, s3.settings), 0o600)
    workload_write(PGPASS_FILE, _pgpass(state.passwords[layout.SystemUser.BACKUP]), 0o600)
    workload_write(TLS_FILES.ca_file, tls.ca, 0o600)
    workload_write(TLS_FILES.cert_file, tls.cert, 0o600)
    workload_write(TLS_FILES.key_file, tls.key, 0o600)
    if s3.settings.ca_chain:
        workload_write(pgbackrest.DEFAULT_PATHS.s3_ca_file, s3.settings.ca_chain, 0o600)
    return True


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


def ensure_stanza(container: ops.Container, state: State) -> None:
    """Leader: create the stanza, or check it is this cluster's (pgBackRest finds the primary)."""
    argv = pgbackrest.stanza_create(pgbackrest.CONF_FILE, stanza_name(state))
    run(container, _probe(argv), PROBE_TIMEOUT)


def info(container: ops.Container, state: State) -> pgbackrest.StanzaInfo | None:
    """The stanza's backups and archive."""
    argv = pgbackrest.info(pgbackrest.CONF_FILE, stanza_name(state))
    out = run(container, _probe(argv), PROBE_TIMEOUT)
    stanzas = pgbackrest.parse_info(out)
    return stanzas[0] if stanzas else None


def take_backup(
    container: ops.Container,
    state: State,
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


def dcs_remove(container: ops.Container, state: State) -> None:
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


def reconcile_stanza(
    container: ops.Container, state: State, s3: s3_relation.S3State
) -> dict[str, str]:
    """Leader: create the stanza for the related repository; the peer data to change.

    Archiving follows `backup-stanza`: it is on only while the stanza matches the settings.
    """
    if s3.settings is None:
        wanted = {"backup_stanza": "", "backup_error": s3.error or ""}
    elif state.peer_data.backup_stanza == settings_digest(state, s3.settings):
        return {}
    elif not servers_ready(state, settings_digest(state, s3.settings)):
        return {}  # pgBackRest looks for the primary among every member: wait for them all
    else:
        try:
            ensure_stanza(container, state)
            wanted = {"backup_stanza": settings_digest(state, s3.settings), "backup_error": ""}
        except BackupError as e:
            wanted = {"backup_stanza": "", "backup_error": f"S3 repository refused: {e}"}
    current = {
        "backup_stanza": state.peer_data.backup_stanza,
        "backup_error": state.peer_data.backup_error,
    }
    return {} if wanted == current else wanted


def _segment(wal_name: str) -> int | None:
    """A WAL segment's position as a count (timeline ignored; 16 MB segments), None otherwise.

    The last archived file can also be a timeline history file or a backup label.
    """
    head = wal_name[:24]
    if len(head) != 24 or any(c not in "0123456789ABCDEFabcdef" for c in head):
        return None
    return int(head[8:16], 16) * 0x100 + int(head[16:24], 16)


def archive_lag(db: pglib.PostgreSQL) -> str:
    """How far WAL archiving is behind the primary's current WAL file, for the status line."""
    try:
        with db.connect() as conn:
            row = conn.execute(
                "SELECT last_archived_wal, pg_walfile_name(pg_current_wal_lsn()),"
                " coalesce(last_failed_time > coalesce(last_archived_time, 'epoch'), false)"
                " FROM pg_stat_archiver"
            ).fetchone()
    except psycopg.Error as e:
        raise pglib.PostgreSQLError(f"cannot read pg_stat_archiver: {e}") from None
    assert row is not None
    last, current, failing = row
    if failing:
        return "WAL archiving failing"
    if not last:
        return "no WAL archived yet"
    last_segment, current_segment = _segment(str(last)), _segment(str(current))
    if last_segment is None or current_segment is None:
        return "WAL archiving on"
    behind = max(current_segment - last_segment - 1, 0)
    return f"archive lag {behind} WAL file{'s' if behind != 1 else ''}"


SERVER_KEY = "pgbackrest-server"


def servers_ready(state: State, digest: str) -> bool:
    """Whether every unit runs its pgBackRest server with the configuration for `digest`."""
    if state.peers is None or state.peer_unit_data.get(SERVER_KEY) != digest:
        return False
    return all(state.peers.data[u].get(SERVER_KEY) == digest for u in state.peers.units)


def services(
    workload: cluster.Workload,
    state: State,
    s3: s3_relation.S3State,
    tls: internal_tls.InternalTls | None,
) -> tuple[dict[str, ops.pebble.ServiceDict], str]:
    """PgBackRest's server on every unit, the backup scheduler on the leader's; files they need.

    Returns the services for the layer and the settings digest this unit's server runs with
    (empty when it does not run), which the unit acknowledges to the leader.
    """
    server = reconcile_files(workload, state, s3, tls)
    layer = {SERVICE: pebble.pgbackrest_server(pgbackrest.CONF_FILE, PGPASS_FILE, enabled=server)}
    cfg = state.config
    full = cfg.backup_schedule_full if cfg else ""
    incremental = cfg.backup_schedule_incremental if cfg else ""
    scheduled = state.is_leader and server and bool(full or incremental)
    # Written on every unit, empty unless scheduled: a removed schedule or a lost leadership
    # leaves cron no job even while it still runs (Pebble restarts a running service whose
    # definition changed, whatever its startup).
    schedules = (full, incremental) if scheduled else ("", "")
    for path, (text, mode) in scheduler.files(*schedules).items():
        workload.write(path, text, mode)
    layer[scheduler.SERVICE] = scheduler.service(enabled=scheduled)
    digest = settings_digest(state, s3.settings) if server and s3.settings else ""
    return layer, digest
