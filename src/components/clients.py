"""Client applications: users, databases, pg_hba rules on every unit, then credentials from the leader."""

from __future__ import annotations

import dataclasses
import logging
import time
import urllib.parse
from collections.abc import Collection, Mapping, Sequence

import ops
import psycopg

import config
import goal
from charms.postgresql_k8s.v0 import postgresql as pglib
from components import Component, Io, client_access, client_policy, system_users
from relations import database
from state import Ready, Snapshot
from workload import layout, patroni
from workload import patroni_client as rest

logger = logging.getLogger(__name__)

SECRET_LABEL = "client-users"  # noqa: S105 (a label, not a password)
UNIT_DIGEST_KEY = "client-rules-digest"
# How long the leader waits, in one hook, for every member to admit a new user: Patroni
# re-reads patroni.yml (and so pg_hba) at its next loop, at most loop_wait later.
ADMIT_TIMEOUT = patroni.LOOP_WAIT + 5.0
_LOGIN_TIMEOUT = 3


@dataclasses.dataclass(frozen=True)
class Cluster:
    """What the leader knows of the cluster for this pass."""

    db: pglib.PostgreSQL
    status: rest.ClusterStatus
    version: str


def _secret_key(user: str) -> str:
    return user.replace("_", "-")


def _passwords(model: ops.Model, users: Collection[str]) -> dict[str, str]:
    """Each current client user's password, generating missing ones and forgetting old ones.

    They live in one application-owned secret, made when the first client arrives.
    """
    try:
        secret = model.get_secret(label=SECRET_LABEL)
    except ops.SecretNotFoundError:
        if not users:
            return {}
        secret = model.app.add_secret(
            {"created": "yes"}, label=SECRET_LABEL, description="client users' passwords"
        )
    content = secret.get_content(refresh=True)
    wanted = {"created": "yes"}
    for user in users:
        key = _secret_key(user)
        wanted[key] = content.get(key) or system_users.generate_password()
    if wanted != content:
        secret.set_content(wanted)
    return {user: wanted[_secret_key(user)] for user in users}


def _admits(host: str, plan: client_policy.ClientPlan, password: str) -> bool:
    try:
        with psycopg.connect(
            host=host,
            port=layout.PORT_POSTGRESQL,
            user=plan.user,
            password=password,
            dbname=plan.database,
            connect_timeout=_LOGIN_TIMEOUT,
        ):
            return True
    except psycopg.Error:
        return False


def wait_admitted(
    hosts: Sequence[str],
    plans: Sequence[client_policy.ClientPlan],
    passwords: Mapping[str, str],
    timeout: float = ADMIT_TIMEOUT,
) -> set[str]:
    """Users that every host lets log in with their password, polling up to `timeout`.

    The deadline holds inside a round too: many users on an unreachable member must not keep
    the hook for their number times the login timeout.
    """
    pending = {(p.user, host) for p in plans for host in hosts}
    by_user = {p.user: p for p in plans}
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        for user, host in sorted(pending):
            if time.monotonic() >= deadline:
                break
            if _admits(host, by_user[user], passwords[user]):
                pending.discard((user, host))
        if pending:
            time.sleep(0.5)
    refused = {user for user, _ in pending}
    return {p.user for p in plans} - refused


def _service(s: Snapshot, suffix: str) -> str:
    return f"{s.app_name}-{suffix}.{s.namespace}.svc.cluster.local:{layout.PORT_POSTGRESQL}"


def credentials(
    s: Snapshot, cluster: Cluster, plan: client_policy.ClientPlan, password: str
) -> database.Credentials:
    """What a requirer is told: the primary Service, and the replicas one while replicas stream."""
    primary = _service(s, "primary")
    has_replicas = any(m.is_healthy and not m.is_leader for m in cluster.status.members)
    read_only = _service(s, "replicas") if has_replicas else primary
    quoted = urllib.parse.quote(password, safe="")

    def uri(endpoint: str) -> str:
        return f"postgresql://{plan.user}:{quoted}@{endpoint}/{plan.database}"

    return database.Credentials(
        username=plan.user,
        password=password,
        database=plan.database,
        endpoints=primary,
        read_only_endpoints=read_only,
        uris=uri(primary),
        read_only_uris=uri(read_only),
        version=cluster.version,
    )


@dataclasses.dataclass
class Outcome:
    """What one pass decided: peer data to save and the problems to show."""

    rules: list[tuple[str, str]]
    admitted: list[str]
    problems: dict[str, str]
    granted: dict[str, str]  # user -> digest of its grants
    published: dict[str, str]  # request key -> digest of the answer
    databases: dict[str, str]  # database -> owning application
    elevated: list[str]  # users holding privileges only an operator may allow


def _plans(
    s: Snapshot, cfg: config.CharmConfig, extensions: Collection[str], problems: dict[str, str]
) -> tuple[list[client_policy.ClientPlan], dict[str, str]]:
    """The requests that may be served, and each database's owner; refusals into `problems`."""
    plans: list[client_policy.ClientPlan] = []
    major = s.container.pg_major or 0
    for request in client_policy.bounded(s.clients.requests, problems):
        try:
            plans.append(
                client_policy.plan(request, extensions, cfg.privileges, s.app_name, major)
            )
        except client_policy.RequestRefusedError as e:
            problems[str(request.relation_id)] = f"{request.app}: {e}"
    owners = s.peer_data.client_databases
    return client_policy.claim(plans, owners, cfg.sharing, problems, s.app_name)


def acked_everywhere(s: Snapshot, status: rest.ClusterStatus, digest: str) -> bool:
    """Whether every running member's unit has rendered the rules with this digest."""
    bags = {layout.member_name(unit): bag for unit, bag in s.unit_data.items()}
    return all(
        member.name in bags and bags[member.name].get(UNIT_DIGEST_KEY) == digest
        for member in status.members
        if member.is_healthy
    )


def _ensure_all(
    s: Snapshot,
    db: pglib.PostgreSQL,
    plans: Sequence[client_policy.ClientPlan],
    passwords: Mapping[str, str],
    problems: dict[str, str],
) -> tuple[list[client_policy.ClientPlan], dict[str, str], frozenset[str]]:
    """Create or adjust what each plan needs; the plans ready, their digests, existing users."""
    ready: list[client_policy.ClientPlan] = []
    granted: dict[str, str] = {}
    existing = frozenset(db.list_users())
    for plan in plans:
        try:
            granted[plan.user] = client_access.ensure(
                db,
                plan,
                passwords[plan.user],
                s.peer_data.client_granted.get(plan.user),
                existing,
                adopting=plan.database not in s.peer_data.client_databases,
            )
            ready.append(plan)
        except (pglib.PostgreSQLError, client_policy.RequestRefusedError) as e:
            problems[str(plan.request.relation_id)] = f"{plan.request.app}: {e}"
    elevated = {p.user: p.elevated for p in ready}
    client_access.revoke_withdrawn(db, s.peer_data.client_elevated, elevated, existing)
    return ready, granted, existing


def _admit(
    s: Snapshot,
    cluster: Cluster,
    ready: Sequence[client_policy.ClientPlan],
    passwords: Mapping[str, str],
) -> tuple[list[tuple[str, str]], set[str]]:
    """The pg_hba rules, and the users every running member admits (probed once all acked)."""
    rules = sorted({(p.database, p.user) for p in ready})
    admitted = set(s.peer_data.client_admitted) & {user for _, user in rules}
    waiting = [p for p in ready if p.user not in admitted]
    if waiting and acked_everywhere(s, cluster.status, client_policy.rules_digest(rules)):
        hosts = [m.host for m in cluster.status.members if m.is_healthy]
        admitted |= wait_admitted(hosts, waiting, passwords)
    return rules, admitted


def reconcile(
    s: Snapshot,
    model: ops.Model,
    cluster: Cluster,
    cfg: config.CharmConfig,
    extensions: Collection[str],
    *,
    departing: bool,
) -> Outcome:
    """Leader: create what valid requests need, drop what gone relations had, publish when safe."""
    problems = {str(p.relation_id): f"{p.app}: {p.message}" for p in s.clients.problems}
    plans, owners = _plans(s, cfg, extensions, problems)
    passwords = _passwords(model, sorted({p.user for p in plans}))
    ready, granted, existing = _ensure_all(s, cluster.db, plans, passwords, problems)
    if not departing:
        client_access.drop_gone(cluster.db, s, {p.user for p in plans}, existing)
    rules, admitted = _admit(s, cluster, ready, passwords)
    published: dict[str, str] = {}
    for plan in ready:
        if plan.user in admitted:
            key = database.request_key(plan.request)
            creds = credentials(s, cluster, plan, passwords[plan.user])
            last = s.peer_data.client_published.get(key)
            published[key] = database.publish(model, plan.request, creds, last)
    elevated = sorted(p.user for p in ready if p.elevated)
    # A claim holds once its database was made (or adopted); a refused adoption claims nothing.
    made = {p.database for p in ready} | set(s.peer_data.client_databases)
    owners = {name: app for name, app in owners.items() if name in made}
    return Outcome(rules, sorted(admitted), problems, granted, published, owners, elevated)


def close_orphaned_sessions(s: Snapshot, r: Ready, io: Io) -> int:
    """Every unit: end the sessions, on its own member, of users that no longer exist."""
    member = s.cluster.member(s.member) if s.cluster else None
    if member is None or not member.is_healthy:
        return 0
    # The primary's are closed when the user is dropped; a replica receives the DROP ROLE
    # through replication, which leaves its sessions open.
    try:
        closed = io.db(r.pod_ip, r.passwords).terminate_orphaned_sessions()
    except pglib.PostgreSQLError as e:
        logger.info("cannot look for sessions of dropped users yet: %s", e)
        return 0
    if closed:
        logger.info("closed %d session(s) of dropped users", closed)
    return closed


_SECRET_GROUPS = ("user", "tls", "extra")


def forget_secrets(model: ops.Model, published: Collection[str], live: Collection[int]) -> None:
    """Remove the secrets answered on relations that are gone (their credentials with them).

    `published` holds `<relation id>/<request id>` keys; the relation library labels a request's
    secrets `database.<relation id>[.<request id>].<group>.secret`.
    """
    for key in sorted(published):
        relation_id, _, request_id = key.partition("/")
        if not relation_id.isdigit() or int(relation_id) in live:
            continue
        for group in _SECRET_GROUPS:
            for middle in (f"{relation_id}.{request_id}", relation_id):
                try:
                    secret = model.get_secret(label=f"{database.RELATION}.{middle}.{group}.secret")
                    secret.remove_all_revisions()
                except (ops.SecretNotFoundError, ops.ModelError):
                    continue


def _hba(rules: Sequence[tuple[str, str]]) -> list[patroni.HbaRule]:
    # Names were validated by the leader; quoting keeps pg_hba keywords (all, replication,
    # sameuser, ...) from taking their special meaning.
    return [patroni.HbaRule(f'"{db}"', f'"{user}"') for db, user in rules]


class Clients(Component):
    """The `database` relation: rules on every unit, users and credentials from the leader."""

    def contribute(self, s: Snapshot, r: Ready) -> goal.Contribution:
        """One pg_hba rule per client user and database; the unit acknowledges the set."""
        rules = s.peer_data.client_rules
        return goal.Contribution(
            hba=_hba(rules), acks={UNIT_DIGEST_KEY: client_policy.rules_digest(rules)}
        )

    def unit_step(self, s: Snapshot, r: Ready, io: Io) -> Snapshot:
        """End sessions of users the primary dropped (a replica keeps them open)."""
        close_orphaned_sessions(s, r, io)
        return s

    def leader_step(self, s: Snapshot, r: Ready, io: Io) -> Snapshot:
        """Extensions from config, then every client request."""
        db = io.primary_db(s)
        if db is None or s.cluster is None:
            return s
        try:
            enabled = config.enabled_extensions(r.config)
            applied, error = client_access.reconcile_extensions(
                db, enabled, frozenset(s.peer_data.extensions_applied)
            )
            outcome = reconcile(
                s,
                io.model,
                Cluster(db, s.cluster, db.get_server_version()),
                r.config,
                applied & enabled,
                departing=s.departing or s.planned_units == 0,
            )
        except pglib.PostgreSQLError as e:
            logger.warning("client reconcile incomplete, retried on the next event: %s", e)
            return s
        forget_secrets(io.model, s.peer_data.client_published, s.clients.relation_ids)
        return io.peers.save(
            s,
            {
                "extensions_applied": sorted(applied),
                "extensions_error": error,
                "client_rules": outcome.rules,
                "client_admitted": outcome.admitted,
                "client_problems": outcome.problems,
                "client_granted": outcome.granted,
                "client_published": outcome.published,
                "client_databases": outcome.databases,
                "client_elevated": outcome.elevated,
            },
        )

    def app_statuses(self, s: Snapshot) -> list[ops.StatusBase]:
        """Blocked naming each relation that cannot be served, and a failed extension change."""
        data = s.peer_data
        statuses: list[ops.StatusBase] = []
        if data.extensions_error:
            statuses.append(ops.BlockedStatus(data.extensions_error))
        for relation_id, problem in sorted(data.client_problems.items()):
            statuses.append(ops.BlockedStatus(f"database relation {relation_id}: {problem}"))
        return statuses
