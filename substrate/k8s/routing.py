"""The local substrate's Kubernetes Services: stable addresses that follow Patroni's roles through HAProxy.

On Kubernetes the charm's `<app>-primary` and `<app>-replicas` Services select pods by the role
label Patroni maintains. Here one HAProxy process, in the host's network namespace, plays
kube-proxy: each Service gets a virtual IP on the run's bridge (host part .200-.250 of the run's
/24, above the addresses pods are given) and forwards TCP 5432 to the members whose Patroni REST
API answers 200 on `GET /primary` or `GET /replica`.

Why it is shaped this way:

- HAProxy runs in the host namespace, like kube-proxy on a node: pods reach the virtual IPs over
  the bridge (the host answers ARP for them), the host reaches them locally, and a pod cut off the
  network (`Pod.disconnect`) is cut off from the router too.
- HAProxy is never reloaded: a reload leaves established sessions with the old process, which no
  longer health-checks them, so they would survive a later demotion of their primary. The
  configuration binds every pool address up front (`transparent`: the address need not exist
  yet) with an empty backend per address and role; Services and members are then set through the
  runtime API (a unix socket): a map from virtual IP to backend, servers added one by one. A
  change to one Service touches no other Service's sessions.
- Servers are never deleted: a member that leaves has its server put in maintenance and its
  sessions cut; a member that joins (again) gets a new server, named by its IP and a serial, so
  no health-check result from an earlier life counts. HAProxy 2.6 can free a deleted server while
  a cut session still points at it (a use-after-free that crashed the router when a pod vanished
  under load); a server in maintenance takes no traffic and runs no checks.
- A new server gets weight 0 until its first health check has decided: HAProxy counts a newly
  enabled server as UP until a check says otherwise.
- Checks run every second (`fall 2 rise 1`, faster while a server is failing or down), and
  `on-marked-down shutdown-sessions` cuts the sessions of a member that stops answering: about
  1.5 s after a primary demotes, about 3 s after its Patroni stops answering at all.
- The primary backend refuses new connections unless exactly one server is usable. Only the
  member holding the leader lock with PostgreSQL running answers 200 on `/primary`, and a primary
  cut off from the DCS demotes itself when its leader key's ttl runs out and stops answering 200;
  an overlap can only be brief (during a role change), and then nobody is routed rather than a
  guess.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import ipaddress
import itertools
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

from substrate.host import netns, pods
from workload import layout

Role = Literal["primary", "replica"]
Scheme = Literal["http", "https"]
ROLES: tuple[Role, ...] = ("primary", "replica")

# Host parts of the run's /24 reserved for Service addresses (pods count up from .10).
VIP_FIRST_HOST = 200
VIP_LAST_HOST = 250
# Health checks of Patroni's REST API: the path answering 200 for each role.
CHECK_PATHS: dict[Role, str] = {"primary": "/primary", "replica": "/replica"}
CHECK_TIMING = "inter 1s fastinter 250ms downinter 500ms fall 2 rise 1"
# How long set_service waits for the first health check of a new member.
SETTLE_TIMEOUT = 5.0

# Database sessions idle for long: like a Service, the router does not time them out.
_PREAMBLE = """global
    log stdout format short local0 info
    stats socket {stats_socket} mode 600 level admin
    stats timeout 10s
    # A second HAProxy on these addresses fails instead of sharing the listeners.
    noreuseport
    user nobody
    group nogroup

defaults
    mode tcp
    log global
    option tcplog
    option dontlognull
    option clitcpka
    option srvtcpka
    retries 2
    timeout connect 2s
    timeout check 1s
    timeout client 24h
    timeout server 24h
"""
_SERVICE_NAME = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")  # a DNS-1035 label
_SOCKET_PATH_MAX = 100  # sun_path holds 108 bytes
# `show servers state` columns: op_state 0 = stopped; check_result 3 = passed.
_OP_STOPPED = "0"
_CHECK_PASSED = "3"
_ADMIN_MAINT = 0x07  # forced, inherited or configured maintenance


class RoutingError(netns.SubstrateError):
    """Raised when HAProxy cannot be started, has died, or refuses a runtime command."""


def missing_tools() -> list[str]:
    """What this host lacks to route Services; empty when ready."""
    return [] if shutil.which("haproxy") else ["`haproxy` (Debian package haproxy)"]


@dataclasses.dataclass(frozen=True)
class Service:
    """A Service as routed: its address, the role it selects and the member IPs it may use."""

    name: str
    address: str
    role: Role
    members: frozenset[str]
    api_scheme: Scheme

    @property
    def backend(self) -> str:
        """The HAProxy backend serving the Service (one per address and role)."""
        return backend_name(self.address, self.role)


def backend_name(address: str, role: Role) -> str:
    """Name of the backend that routes `address` for `role` (e.g. `vip200-primary`)."""
    return f"vip{address.rsplit('.', 1)[1]}-{role}"


def server_options(api_scheme: Scheme, api_port: int = layout.PORT_PATRONI) -> str:
    """Options of a member's server line: staged at weight 0, checked on Patroni's REST API."""
    options = f"weight 0 check port {api_port} {CHECK_TIMING} on-marked-down shutdown-sessions"
    if api_scheme == "https":
        # The check only needs the status code; the router holds no CA to verify it with.
        options += " check-ssl verify none"
    return options


def render_config(
    addresses: Sequence[str], port: int, stats_socket: Path, services_map: Path
) -> str:
    """haproxy.cfg: one frontend on every pool address, an empty backend per address and role."""
    lines = [
        *_PREAMBLE.format(stats_socket=stats_socket).splitlines(),
        "",
        "frontend services",
        *(f"    bind {address}:{port} transparent" for address in addresses),
        f"    use_backend %[dst,map_ip({services_map})]",
        "    default_backend unrouted",
        "",
        "backend unrouted",
        "    tcp-request content reject",
    ]
    for address in addresses:
        for role in ROLES:
            lines += [
                "",
                f"backend {backend_name(address, role)}",
                "    balance first" if role == "primary" else "    balance leastconn",
                "    option httpchk",
                f"    http-check send meth GET uri {CHECK_PATHS[role]}",
                "    http-check expect status 200",
            ]
            if role == "primary":
                lines.append("    tcp-request content reject if !{ nbsrv eq 1 }")
    return "\n".join(lines) + "\n"


class _RuntimeApi:
    """HAProxy's runtime API: one command per connection on the admin stats socket."""

    def __init__(self, path: Path):
        self.path = path

    def command(self, command: str, timeout: float = 5.0) -> str:
        """Send one command and return HAProxy's answer (stripped)."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            try:
                sock.connect(str(self.path))
                sock.sendall(command.encode() + b"\n")
                sock.shutdown(socket.SHUT_WR)
                chunks: list[bytes] = []
                while chunk := sock.recv(65536):
                    chunks.append(chunk)
            except OSError as e:
                raise RoutingError(f"HAProxy runtime API `{command}`: {e}") from e
        return b"".join(chunks).decode(errors="replace").strip()

    def expect(self, command: str, answer: str = "") -> None:
        """Send a command; RoutingError unless HAProxy answers `answer`."""
        got = self.command(command)
        if got != answer:
            raise RoutingError(f"HAProxy refused `{command}`: {got or 'no answer'}")

    def servers(self, backend: str) -> dict[str, dict[str, str]]:
        """`show servers state` of one backend: server name -> column -> value."""
        lines = self.command(f"show servers state {backend}").splitlines()
        header = next((line[1:].split() for line in lines if line.startswith("# be_id")), None)
        if header is None:
            raise RoutingError(f"unexpected `show servers state {backend}`: {lines[:3]}")
        rows = [line.split() for line in lines if not line.startswith("#")]
        servers = [dict(zip(header, row, strict=True)) for row in rows if len(row) == len(header)]
        return {server["srv_name"]: server for server in servers}


class ServiceRouter:
    """Kubernetes Services of one substrate run, served by one HAProxy (see the module doc).

    One router per Substrate: it binds port 5432 on the whole address pool of the run. Removed
    by `teardown()`, which also runs at exit, before the Substrate's own teardown.
    """

    def __init__(
        self,
        substrate: pods.Substrate,
        *,
        api_scheme: Scheme = "http",
        port: int = layout.PORT_POSTGRESQL,
        api_port: int = layout.PORT_PATRONI,
        settle_timeout: float = SETTLE_TIMEOUT,
        namespace: str | None = None,
    ):
        self.substrate = substrate
        # Kubernetes DNS also resolves `<service>.<namespace>.svc.cluster.local`.
        self.namespace = namespace
        self.api_scheme: Scheme = api_scheme
        self.port = port
        self.api_port = api_port
        self.settle_timeout = settle_timeout
        network = substrate.slot.network
        self.pool = [str(network[h]) for h in range(VIP_FIRST_HOST, VIP_LAST_HOST + 1)]
        self.dir = substrate.run_dir / "routing"
        self.config_path = self.dir / "haproxy.cfg"
        self.map_path = self.dir / "services.map"
        self.log_path = self.dir / "haproxy.log"
        self._services: dict[str, Service] = {}
        self._serials = itertools.count(1)
        self._lock = threading.RLock()
        self._process: subprocess.Popen[bytes] | None = None
        self._closed = False
        self._api = _RuntimeApi(self._socket_path())
        if self._answers():
            raise RoutingError(f"a ServiceRouter already serves this run at {self._api.path}")
        try:
            self._start()
        except BaseException:
            self.teardown()
            raise
        atexit.register(self.teardown)

    def __enter__(self) -> ServiceRouter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.teardown()

    def address(self, name: str) -> str:
        """The Service's virtual IP (KeyError if there is no such Service)."""
        with self._lock:
            return self._services[name].address

    def set_service(
        self, name: str, members: Iterable[str], role: Role, *, api_scheme: Scheme | None = None
    ) -> str:
        """Create or update a Service routing port 5432 to those of `members` in `role`; its IP.

        Idempotent and cheap when nothing changed (it may be called on every loop of a
        controller). New members get traffic only after their first health check (up to
        `settle_timeout`); removed members' sessions are cut. Other Services are untouched.
        """
        if not _SERVICE_NAME.match(name):
            raise ValueError(f"a Service name is a DNS-1035 label, got {name!r}")
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, got {role!r}")
        wanted = frozenset(self._check_member(m) for m in members)
        scheme: Scheme = api_scheme or self.api_scheme
        with self._lock:
            self._check_running()
            current = self._services.get(name)
            address = current.address if current else self._allocate()
            service = Service(name, address, role, wanted, scheme)
            if current is None:
                self._create(service)
            else:
                self._update(current, service)
            self._services[name] = service
            self.sync_hosts()
            return address

    def routed_to(self, name: str) -> list[str]:
        """Member IPs the Service sends new connections to now (none while it refuses them)."""
        with self._lock:
            service = self._services[name]
            usable = sorted(
                row["srv_addr"]
                for row in self._live_servers(service.backend).values()
                if row["srv_op_state"] != _OP_STOPPED and row["srv_uweight"] != "0"
            )
        if service.role == "primary" and len(usable) != 1:
            return []
        return usable

    def _create(self, service: Service) -> None:
        """Route the address: servers first, then the map entry, then the address itself."""
        try:
            self._add_servers(service, service.members)
            # A failed attempt may have left an entry: `add map` would add a second one.
            self._api.command(f"del map {self.map_path} {service.address}")
            self._api.expect(f"add map {self.map_path} {service.address} {service.backend}")
            bridge = self.substrate.slot.bridge
            netns.ip("addr", "replace", f"{service.address}/32", "dev", bridge)
        except BaseException:
            with contextlib.suppress(netns.SubstrateError):
                self._withdraw(service)
            raise

    def _update(self, current: Service, service: Service) -> None:
        if current.role != service.role:
            self._add_servers(service, service.members)
            self._api.expect(f"set map {self.map_path} {service.address} {service.backend}")
            self._remove_servers(current.backend, current.members)
        elif current.api_scheme != service.api_scheme:
            # Other check options: new servers.
            self._remove_servers(current.backend, current.members)
            self._add_servers(service, service.members)
        else:
            # Members without a live server get one (also one a failed call left in maintenance).
            self._add_servers(service, service.members)
            self._remove_servers(current.backend, current.members - service.members)
            self._promote_decided(service.backend, wait=0.0)

    def _withdraw(self, service: Service) -> None:
        """Unroute the address, then cut its sessions and retire its servers."""
        self._api.command(f"del map {self.map_path} {service.address}")
        self._del_address(service.address)
        self._remove_servers(service.backend, self._members(service.backend))

    # Servers: a live one (out of maintenance) per member, named `<ip>-<serial>`; retired ones
    # stay in maintenance (see the module doc). Adding and removing are idempotent, so that a call
    # that failed halfway is completed by the next one (a server left in maintenance by a failed
    # add is simply never used).

    def _live_servers(self, backend: str) -> dict[str, dict[str, str]]:
        """Server name -> state, of the servers of `backend` not in maintenance."""
        return {
            name: row
            for name, row in self._api.servers(backend).items()
            if not int(row["srv_admin_state"]) & _ADMIN_MAINT
        }

    def _members(self, backend: str) -> set[str]:
        return {row["srv_addr"] for row in self._live_servers(backend).values()}

    def _add_servers(self, service: Service, members: Iterable[str]) -> None:
        """Add members at weight 0, enable their checks, then let them in once checked."""
        backend = service.backend
        present = self._members(backend)
        options = server_options(service.api_scheme, self.api_port)
        enabled = 0
        for ip in sorted(set(members) - present):
            server = f"{backend}/{ip}-{next(self._serials)}"
            self._api.expect(
                f"add server {server} {ip}:{self.port} {options}", "New server registered."
            )
            self._api.expect(f"enable health {server}")
            self._api.expect(f"enable server {server}")
            enabled += 1
        if enabled:
            self._promote_decided(backend, wait=self.settle_timeout)

    def _promote_decided(self, backend: str, wait: float) -> None:
        """Give weight 1 to staged servers whose health check has decided (UP and passed, or DOWN).

        A server still undecided after `wait` stays staged; the next call retries it.
        """
        deadline = time.monotonic() + wait
        while True:
            undecided = 0
            for name, row in self._live_servers(backend).items():
                if row["srv_uweight"] != "0":
                    continue
                if row["srv_op_state"] == _OP_STOPPED or row["srv_check_result"] == _CHECK_PASSED:
                    self._api.expect(f"set server {backend}/{name} weight 1")
                else:
                    undecided += 1
            if not undecided or time.monotonic() >= deadline:
                return
            time.sleep(0.05)

    def _remove_servers(self, backend: str, members: Iterable[str]) -> None:
        """Retire the live servers of `members`: maintenance (no new traffic), sessions cut."""
        wanted = set(members)
        for name, row in sorted(self._live_servers(backend).items()):
            if row["srv_addr"] in wanted:
                self._api.expect(f"disable server {backend}/{name}")
                self._api.expect(f"shutdown sessions server {backend}/{name}")

    # Names in pods' /etc/hosts.

    def hosts_entries(self) -> dict[str, str]:
        """What every pod resolves: Service name -> virtual IP."""
        with self._lock:
            entries = {name: s.address for name, s in sorted(self._services.items())}
        if self.namespace:
            suffix = f".{self.namespace}.svc.cluster.local"
            entries |= {name + suffix: address for name, address in list(entries.items())}
        return entries

    def sync_hosts(self) -> None:
        """Make every pod resolve the Services' names (kept across pod changes, see host.hosts)."""
        self.substrate.hosts.set_services(self.hosts_entries())

    # HAProxy.

    @property
    def pid(self) -> int | None:
        """PID of the HAProxy process, while it runs."""
        process = self._process
        return process.pid if process is not None and process.poll() is None else None

    def _socket_path(self) -> Path:
        path = self.dir / "haproxy.sock"
        if len(str(path)) <= _SOCKET_PATH_MAX:
            return path
        # A long base directory: fall back to a short path that still names the run.
        return Path("/run") / f"{self.substrate.slot.prefix}-haproxy.sock"

    def _start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.map_path.write_text("")
        self.config_path.write_text(
            render_config(self.pool, self.port, self._api.path, self.map_path)
        )
        try:
            netns.run(["haproxy", "-c", "-f", str(self.config_path)])
        except netns.SubstrateError as e:
            raise RoutingError(f"invalid {self.config_path}: {e}") from e
        self._process = self.substrate.start_host_process(
            ["haproxy", "-db", "-f", str(self.config_path)], self.log_path
        )
        deadline = time.monotonic() + 10.0
        while not self._answers():
            self._check_running()
            if time.monotonic() > deadline:
                raise RoutingError(f"HAProxy's runtime API did not answer, see {self.log_path}")
            time.sleep(0.05)

    def _answers(self) -> bool:
        """Whether an HAProxy answers on the runtime API socket."""
        try:
            return "Pid:" in self._api.command("show info", timeout=1.0)
        except RoutingError:
            return False

    def _check_running(self) -> None:
        if self._closed:
            raise RoutingError("the router has been torn down")
        code = None if self._process is None else self._process.poll()
        if self._process is None or code is not None:
            log = self.log_path
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            how = "never started" if self._process is None else f"exited with status {code}"
            raise RoutingError(f"HAProxy is not running ({how}), see {self.log_path}:\n{tail}")

    def _check_member(self, member: str) -> str:
        network = self.substrate.slot.network
        address = ipaddress.ip_address(member)
        host = int(address) - int(network.network_address)
        # .1 is the host's; from VIP_FIRST_HOST on, addresses are Services'.
        if address not in network or not 2 <= host < VIP_FIRST_HOST:
            raise ValueError(f"{member} is not a pod address of {network}")
        return str(address)

    def _allocate(self) -> str:
        taken = {s.address for s in self._services.values()}
        pod_ips = {p.ip for p in self.substrate.pods}
        for address in self.pool:
            if address not in taken and address not in pod_ips:
                return address
        raise RoutingError(f"no Service address left in {self.pool[0]}-{self.pool[-1]}")

    def _del_address(self, address: str) -> None:
        bridge = self.substrate.slot.bridge
        if bridge in netns.link_names():
            with contextlib.suppress(netns.SubstrateError):
                netns.ip("addr", "del", f"{address}/32", "dev", bridge)

    def teardown(self) -> None:
        """Stop HAProxy, remove the Service addresses and names (idempotent, also after failures)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            atexit.unregister(self.teardown)
            try:
                if self._process is not None and self._process.poll() is None:
                    self._process.terminate()
                    try:
                        self._process.wait(timeout=5.0)
                    except subprocess.TimeoutExpired:
                        self._process.kill()
                        self._process.wait(timeout=5.0)
                for service in self._services.values():
                    self._del_address(service.address)
                self._services.clear()
                with contextlib.suppress(OSError):
                    self.substrate.hosts.set_services({})
            finally:
                with contextlib.suppress(OSError):
                    self._api.path.unlink(missing_ok=True)
