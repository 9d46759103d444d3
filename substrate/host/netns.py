"""Host side of pod networking: the run's identity, its bridge, veth pairs and network namespaces.

Every object a run creates on the host (links, network namespaces, its directory) is named after
the run's prefix `pgk<slot><token>`. The slot is held by an flock for the run's lifetime: a run
that died released its slot with its last file descriptor, which is how the next run knows that
whatever carries that slot's prefix is stale and may be removed without touching a live run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import ipaddress
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

BASE_DIR_ENV = "PGK8S_SUBSTRATE_DIR"
# Set to 1 to keep a run's files (logs, data) after teardown; the next run removes them.
KEEP_FILES_ENV = "PGK8S_SUBSTRATE_KEEP_FILES"
DEFAULT_BASE_DIR = Path("/var/tmp/pgk8s-substrate")  # noqa: S108 - root-owned, 0700 below
NAME_PREFIX = "pgk"
# One /24 per concurrent run, inside a range no machine of ours routes: 10.213.<slot>.0/24.
SUPERNET = ipaddress.IPv4Network("10.213.0.0/16")
MAX_SLOTS = 64
_PREFIX_RE = re.compile(rf"^({NAME_PREFIX}(\d{{2}})[0-9a-f]{{4}})")
# Commands the substrate runs on the host, and the package that ships each on Debian.
HOST_TOOLS = {
    "ip": "iproute2",
    "nsenter": "util-linux",
    "unshare": "util-linux",
    "setpriv": "util-linux",
    "mount": "mount",
    "hostname": "hostname",
}


class SubstrateError(Exception):
    """Raised when a host operation the substrate needs fails; the message names the command."""


def missing_host_tools() -> list[str]:
    """What this host lacks to run pods: each entry names the missing piece, empty when ready."""
    missing = [] if os.geteuid() == 0 else ["root privileges (network and mount namespaces)"]
    for tool, package in HOST_TOOLS.items():
        if shutil.which(tool) is None:
            missing.append(f"`{tool}` (Debian package {package})")
    return missing


def run(argv: list[str], timeout: float = 30.0) -> str:
    """Run a host command; raise SubstrateError naming it and its stderr when it fails."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise SubstrateError(f"{' '.join(argv)}: {e}") from e
    if done.returncode != 0:
        raise SubstrateError(f"{' '.join(argv)}: exit {done.returncode}: {done.stderr.strip()}")
    return done.stdout


def ip(*args: str) -> str:
    """Run `ip <args>` on the host."""
    return run(["ip", *args])


def _ip_json(*args: str) -> list[dict[str, Any]]:
    out = ip("-j", *args).strip()
    return json.loads(out) if out else []


def link_names() -> list[str]:
    """Names of the host's network links."""
    return [str(link["ifname"]) for link in _ip_json("link", "show")]


def netns_names() -> list[str]:
    """Names of the named network namespaces (`ip netns`)."""
    return [str(ns["name"]) for ns in _ip_json("netns", "list")]


def netns_pids(name: str) -> list[int]:
    """PIDs of every process in a named network namespace; empty if it does not exist."""
    try:
        return [int(p) for p in ip("netns", "pids", name).split()]
    except SubstrateError:
        return []


def mac_address(address: ipaddress.IPv4Address) -> str:
    """A locally administered MAC derived from an IPv4 address: the same IP, the same MAC.

    A bridge left to itself takes the lowest MAC among its ports, so adding or deleting a pod
    would change the MAC behind the host's addresses (gateway, Service IPs) while pods still
    cache the old one: connections time out until the neighbour entries are resolved again.
    A pod recreated at its address would likewise come back behind a new MAC.
    """
    return "02:00:" + ":".join(f"{byte:02x}" for byte in address.packed)


def add_bridge(name: str, address: ipaddress.IPv4Interface) -> None:
    """Create a bridge holding `address` on the host and bring it up (no-op if it exists).

    Its MAC is fixed (see `mac_address`): one set by hand is kept whatever ports come and go.
    """
    if name not in link_names():
        ip("link", "add", name, "address", mac_address(address.ip), "type", "bridge")
        ip("addr", "add", str(address), "dev", name)
    ip("link", "set", name, "up")


def delete_link(name: str) -> None:
    """Delete a host link (a veth's peer goes with it); no-op if it does not exist."""
    if name in link_names():
        ip("link", "del", name)


def set_link_up(name: str, up: bool) -> None:
    """Bring a host link up or down."""
    ip("link", "set", name, "up" if up else "down")


def add_netns(name: str, host_veth: str, bridge: str, address: ipaddress.IPv4Interface) -> None:
    """Create a network namespace wired to `bridge` by a veth pair: `eth0` inside at `address`.

    The host side of the pair, `host_veth`, is the pod's cable: taking it down cuts the pod off.
    """
    if name not in netns_names():
        ip("netns", "add", name)
    if host_veth not in link_names():
        ip(
            *("link", "add", host_veth, "type", "veth", "peer", "name", "eth0"),
            *("address", mac_address(address.ip), "netns", name),
        )
    ip("link", "set", host_veth, "master", bridge, "up")
    ip("-n", name, "link", "set", "lo", "up")
    if str(address.ip) not in ip("-n", name, "-o", "addr", "show", "dev", "eth0"):
        ip("-n", name, "addr", "add", str(address), "dev", "eth0")
    ip("-n", name, "link", "set", "eth0", "up")
    ip("-n", name, "route", "replace", "default", "via", str(address.network[1]))


def delete_netns(name: str) -> None:
    """Delete a named network namespace; no-op if it does not exist."""
    if name in netns_names():
        ip("netns", "delete", name)


def is_running(pid: int) -> bool:
    """Whether a process exists and has not exited (a zombie counts as exited)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def kill_all(pids: Iterable[int], timeout: float = 10.0) -> None:
    """SIGKILL every process at once, then wait (bounded) until none of them runs."""
    pending = set(pids)
    for pid in pending:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while pending := {p for p in pending if is_running(p)}:
        if time.monotonic() > deadline:
            raise SubstrateError(f"processes survived SIGKILL: {sorted(pending)}")
        time.sleep(0.05)


@dataclasses.dataclass
class RunSlot:
    """A run's identity: a slot held by an flock, and the names and addresses derived from it."""

    index: int
    token: str
    base_dir: Path
    lock_fd: int | None

    @property
    def prefix(self) -> str:
        """Prefix of every host object this run creates."""
        return f"{NAME_PREFIX}{self.index:02d}{self.token}"

    @property
    def network(self) -> ipaddress.IPv4Network:
        """The run's pod network; the bridge holds its first address."""
        return list(SUPERNET.subnets(new_prefix=24))[self.index]

    @property
    def run_dir(self) -> Path:
        """The run's directory: pods' private files, storage, DCS data."""
        return self.base_dir / "runs" / self.prefix

    @property
    def bridge(self) -> str:
        """Name of the run's bridge."""
        return f"{self.prefix}br"

    def host_veth(self, index: int) -> str:
        """Host-side veth of the index-th pod (at most 15 characters, the kernel's limit)."""
        return f"{self.prefix}h{index}"

    def netns(self, pod: str) -> str:
        """Network namespace name of a pod."""
        return f"{self.prefix}-{pod}"

    def release(self) -> None:
        """Give the slot back (idempotent)."""
        if self.lock_fd is not None:
            os.close(self.lock_fd)
            self.lock_fd = None


def base_dir() -> Path:
    """Directory holding every run's files and the slot locks."""
    return Path(os.environ.get(BASE_DIR_ENV, str(DEFAULT_BASE_DIR)))


def _try_lock(base: Path, index: int) -> int | None:
    base.mkdir(parents=True, exist_ok=True, mode=0o700)
    locks = base / "locks"
    locks.mkdir(exist_ok=True, mode=0o700)
    # O_CLOEXEC: a pod process inheriting the lock would keep the slot "alive" after we die.
    fd = os.open(locks / f"slot-{index:02d}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def acquire_slot(base: Path) -> RunSlot:
    """Take the first free slot; a slot is free when no live run holds its lock."""
    for index in range(MAX_SLOTS):
        fd = _try_lock(base, index)
        if fd is not None:
            return RunSlot(index, secrets.token_hex(2), base, fd)
    raise SubstrateError(f"all {MAX_SLOTS} substrate slots are in use under {base}")


def _stale_prefixes(base: Path) -> dict[str, int]:
    names = [*link_names(), *netns_names()]
    runs = base / "runs"
    if runs.is_dir():
        names += [p.name for p in runs.iterdir()]
    found: dict[str, int] = {}
    for name in names:
        if match := _PREFIX_RE.match(name):
            found[match.group(1)] = int(match.group(2))
    return found


def _recorded_host_pids(run_dir: Path) -> list[int]:
    """Host-side processes a run recorded (e.g. its DCS), if they still carry its prefix."""
    pids: list[int] = []
    with contextlib.suppress(OSError):
        for line in (run_dir / "host-pids").read_text().split():
            with contextlib.suppress(OSError, ValueError):
                if run_dir.name.encode() in Path(f"/proc/{int(line)}/cmdline").read_bytes():
                    pids.append(int(line))
    return pids


def remove_run(base: Path, prefix: str) -> None:
    """Remove everything a run left on the host: processes, links, namespaces, files."""
    run_dir = base / "runs" / prefix
    namespaces = [n for n in netns_names() if n.startswith(prefix)]
    pids = [pid for ns in namespaces for pid in netns_pids(ns)]
    kill_all([*pids, *_recorded_host_pids(run_dir)])
    # Host veths first, then the bridge they are enslaved to.
    for link in sorted(
        (n for n in link_names() if n.startswith(prefix)), key=lambda n: n.endswith("br")
    ):
        delete_link(link)
    for ns in namespaces:
        delete_netns(ns)
    shutil.rmtree(run_dir, ignore_errors=True)


def cleanup_stale(held: RunSlot) -> list[str]:
    """Remove what dead runs left behind; returns their prefixes.

    A prefix is stale when its slot's lock is free, or when it is a different run in the slot we
    hold. Slots held by live runs are left alone.
    """
    removed: list[str] = []
    for prefix, index in sorted(_stale_prefixes(held.base_dir).items()):
        if prefix == held.prefix:
            continue
        fd = None if index == held.index else _try_lock(held.base_dir, index)
        if index != held.index and fd is None:
            continue  # a live run owns it
        try:
            remove_run(held.base_dir, prefix)
            removed.append(prefix)
        finally:
            if fd is not None:
                os.close(fd)
    return removed
