"""A typed client for Patroni's REST API, with bounded retries and typed errors."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from typing import Any, cast

import requests
import tenacity

# Roles /cluster reports for members that replicate synchronously.
SYNC_ROLES = frozenset({"sync_standby", "quorum_standby"})
LEADER_ROLES = frozenset({"leader", "standby_leader"})
# Read timeout of the operations Patroni answers only once they are over: /restart waits for
# PostgreSQL to accept connections again, /switchover polls the new leader for up to
# 2 * max(10, loop_wait) seconds. Measured: a replica restart ~1.5-10 s, a switchover ~2-3 s.
OPERATION_TIMEOUT = 60.0


class PatroniError(Exception):
    """Base class of every error this client raises."""


class PatroniUnreachableError(PatroniError):
    """Raised when the REST API cannot be reached (connection refused, timeout) after retries."""


class PatroniRequestError(PatroniError):
    """Raised when Patroni answers with an unexpected HTTP status.

    Attributes:
        status: the HTTP status code; 503 usually means the operation failed on Patroni's side.
        reason: Patroni's answer body, which explains the refusal.
    """

    def __init__(self, method: str, path: str, status: int, reason: str):
        super().__init__(f"{method} {path}: HTTP {status}: {reason.strip()[:200]}")
        self.status = status
        self.reason = reason


class SwitchoverRefusedError(PatroniRequestError):
    """Raised when Patroni refuses a switchover precondition (HTTP 412).

    In synchronous mode the candidate must be a synchronous standby; the leader named must be
    the current one.
    """


@dataclasses.dataclass(frozen=True)
class Member:
    """One member as /cluster reports it."""

    name: str
    role: str  # leader | replica | sync_standby | quorum_standby | standby_leader
    state: str  # running | streaming | starting | stopped | ...
    host: str
    api_url: str
    timeline: int | None
    lag: int | None  # bytes behind the leader; None when unknown
    pending_restart: bool

    @property
    def is_leader(self) -> bool:
        """Whether this member holds the leader lock."""
        return self.role in LEADER_ROLES

    @property
    def is_sync_standby(self) -> bool:
        """Whether this member is a synchronous standby (a safe switchover candidate)."""
        return self.role in SYNC_ROLES

    @property
    def is_healthy(self) -> bool:
        """Whether PostgreSQL runs: the leader `running`, a replica `streaming`."""
        return self.state == "running" if self.is_leader else self.state == "streaming"

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Member:
        """Build a member from one entry of /cluster's `members` list."""
        lag = data.get("lag")
        timeline = data.get("timeline")
        return cls(
            name=str(data.get("name", "")),
            role=str(data.get("role", "")),
            state=str(data.get("state", "")),
            host=str(data.get("host", "")),
            api_url=str(data.get("api_url", "")),
            timeline=int(timeline) if isinstance(timeline, int) else None,
            lag=int(lag) if isinstance(lag, int) else None,
            pending_restart=bool(data.get("pending_restart", False)),
        )


@dataclasses.dataclass(frozen=True)
class ClusterStatus:
    """An immutable snapshot of /cluster, built once and read many times."""

    members: tuple[Member, ...]

    @property
    def leader(self) -> Member | None:
        """The member holding the leader lock, if any."""
        return next((m for m in self.members if m.is_leader), None)

    @property
    def sync_standbys(self) -> tuple[Member, ...]:
        """Members replicating synchronously."""
        return tuple(m for m in self.members if m.is_sync_standby)

    def member(self, name: str) -> Member | None:
        """The member of that name, if it is in the cluster."""
        return next((m for m in self.members if m.name == name), None)

    @property
    def healthy(self) -> bool:
        """A leader runs and every other member streams from it."""
        return self.leader is not None and all(m.is_healthy for m in self.members)


class PatroniClient:
    """Patroni REST API of one member.

    GETs are retried a bounded number of times on connection errors; operations that change
    state are sent once, because Patroni may have acted on a request whose answer was lost.
    """

    def __init__(
        self,
        base_url: str,
        auth: tuple[str, str] | None = None,
        verify: str | bool = True,
        timeout: float = 5.0,
        attempts: int = 3,
    ):
        self.base_url = base_url.rstrip("/")
        self._session = requests.Session()
        self._session.auth = auth
        self._session.verify = verify
        self._timeout = timeout
        self._attempts = attempts

    def for_member(self, api_url: str) -> PatroniClient:
        """A client for another member's API (from /cluster's `api_url`), same credentials."""
        base = api_url.removesuffix("/patroni")
        auth = cast("tuple[str, str] | None", self._session.auth)
        return PatroniClient(base, auth, self._session.verify, self._timeout, self._attempts)

    def _send(
        self, method: str, path: str, body: Mapping[str, Any] | None, read_timeout: float | None
    ) -> requests.Response:
        # A long operation keeps the short connect timeout: an unreachable member fails fast.
        timeout = self._timeout if read_timeout is None else (self._timeout, read_timeout)
        try:
            return self._session.request(method, self.base_url + path, json=body, timeout=timeout)
        except requests.RequestException as e:
            raise PatroniUnreachableError(f"{method} {path}: {type(e).__name__}") from e

    def _request(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        ok: tuple[int, ...] = (200,),
        read_timeout: float | None = None,
    ) -> requests.Response:
        attempts = self._attempts if method == "GET" else 1
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(attempts),
            wait=tenacity.wait_exponential(multiplier=0.2, max=2),
            retry=tenacity.retry_if_exception_type(PatroniUnreachableError),
            reraise=True,
        )
        response = retrying(self._send, method, path, body, read_timeout)
        if response.status_code not in ok:
            error = SwitchoverRefusedError if response.status_code == 412 else PatroniRequestError
            raise error(method, path, response.status_code, response.text)
        return response

    def cluster(self) -> ClusterStatus:
        """GET /cluster: every member's role, state, lag and pending restart."""
        data = self._request("GET", "/cluster").json()
        return ClusterStatus(tuple(Member.from_json(m) for m in data.get("members", [])))

    def get_config(self) -> dict[str, Any]:
        """GET /config: the dynamic (DCS) configuration."""
        return self._request("GET", "/config").json()

    def patch_config(self, patch: Mapping[str, Any]) -> dict[str, Any]:
        """PATCH /config: merge a patch into the dynamic configuration (null deletes a key)."""
        return self._request("PATCH", "/config", patch).json()

    def restart(self, pending_only: bool = True) -> bool:
        """POST /restart on this member; with pending_only, only if a restart is pending.

        Returns whether PostgreSQL was restarted (Patroni answers 503 when there was nothing to
        restart or the restart failed; /cluster tells which).
        """
        body = {"restart_pending": True} if pending_only else {}
        response = self._request(
            "POST", "/restart", body, ok=(200, 503), read_timeout=OPERATION_TIMEOUT
        )
        return response.status_code == 200

    def switchover(self, leader: str, candidate: str) -> None:
        """POST /switchover: hand the leader lock to `candidate` (200 on success).

        Raises SwitchoverRefusedError (412) when the candidate is not a sync standby or `leader`
        is not the current leader, PatroniRequestError (503) when the switchover failed.
        """
        self._request(
            "POST",
            "/switchover",
            {"leader": leader, "candidate": candidate},
            read_timeout=OPERATION_TIMEOUT,
        )

    def failover(self, candidate: str) -> None:
        """POST /failover: make `candidate` the leader without a healthy one (200 on success).

        Transactions the candidate did not receive are lost: only for a cluster whose primary
        is gone. Raises PatroniRequestError when Patroni refuses (412: the candidate cannot
        take over, e.g. in synchronous mode it is not synchronous) or fails (503).
        """
        self._request(
            "POST", "/failover", {"candidate": candidate}, read_timeout=OPERATION_TIMEOUT
        )

    def wait_for(
        self,
        predicate: Callable[[ClusterStatus], bool],
        timeout: float = 60.0,
        interval: float = 1.0,
    ) -> ClusterStatus:
        """Poll /cluster until predicate(status) holds; raise PatroniError at the deadline."""
        deadline = time.monotonic() + timeout
        last: ClusterStatus | None = None
        while True:
            try:
                last = self.cluster()
                if predicate(last):
                    return last
            except PatroniError:
                pass
            if time.monotonic() >= deadline:
                raise PatroniError(f"cluster did not reach the expected state: {last}")
            time.sleep(interval)
