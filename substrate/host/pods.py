"""Pods: Kubernetes-like sandboxes (own network, mount and UTS namespaces) and the run that holds them.

A pod is held open by a long-lived "pause" process: `nsenter` into the pod's named network
namespace, then `unshare --mount --uts --propagation private sleep infinity`. Its mount namespace
carries the pod's private tree (a per-pod home over layout.HOME, per-pod /tmp, /run,
/usr/local/bin, /etc/hosts and cron's crontabs) and its storage, which lives apart so that it
survives the pod.
Processes enter the pod with `nsenter --target <pause> --net --mount --uts` and drop privileges with
`setpriv`, both of which exec in place, so a returned PID is the workload's own
(substrate.host.processes).
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import grp
import ipaddress
import os
import posixpath
import pwd
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from substrate.host import hosts, netns, processes
from workload import layout

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Where Debian's cron reads crontabs: the system crontab, its drop-in directory, users' spool.
CRON_TABLE = "/etc/crontab"
CRON_DIR = "/etc/cron.d"
CRON_SPOOL = "/var/spool/cron/crontabs"
_FIRST_POD_HOST = 10  # pod IPs are .10, .11, ...: below are the host's
_LAST_POD_HOST = 199  # from .200 on, addresses are Services' (substrate.k8s.routing)


@dataclasses.dataclass(frozen=True)
class StorageMount:
    """A persistent volume: `storage/<pod>/<name>` on the host, mounted at `target` in the pod."""

    name: str
    target: str


# Juju storage of the charm: "pgdata" and "logs".
DEFAULT_STORAGE = (
    StorageMount("pgdata", layout.DATA_MOUNT),
    StorageMount("logs", layout.LOGS_MOUNT),
)


def _wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise netns.SubstrateError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.02)


class Pod:
    """One pod: an IP on the run's bridge, a private filesystem view, processes inside it."""

    def __init__(
        self,
        substrate: Substrate,
        name: str,
        index: int,
        hostnames: Sequence[str],
        storage: Sequence[StorageMount],
    ):
        slot = substrate.slot
        self.substrate = substrate
        self.name = name
        self.index = index
        self.hostnames = tuple(hostnames)
        self.storage = tuple(storage)
        self.interface = ipaddress.IPv4Interface(
            f"{slot.network[_FIRST_POD_HOST + index]}/{slot.network.prefixlen}"
        )
        self.netns = slot.netns(name)
        self.host_veth = slot.host_veth(index)
        self.dir = slot.run_dir / "pods" / name
        self.hosts_file = self.dir / "hosts"
        self.pause: subprocess.Popen[bytes] | None = None
        self._mounts: list[tuple[str, Path]] = []
        self._processes: list[processes.PodProcess] = []

    @property
    def ip(self) -> str:
        """The pod's IP address."""
        return str(self.interface.ip)

    @property
    def pause_pid(self) -> int:
        """PID of the process holding the pod's namespaces."""
        if self.pause is None:
            raise netns.SubstrateError(f"pod {self.name} is not running")
        return self.pause.pid

    def storage_dir(self, name: str) -> Path:
        """Host directory of one of the pod's storage volumes."""
        return self.substrate.storage_dir(self.name) / name

    # Lifecycle (driven by Substrate).

    def create(self, home: str, home_owner: str) -> None:
        """Build the pod on the host (called by Substrate.add_pod)."""
        for sub, mode in (("home", 0o755), ("tmp", 0o1777), ("run", 0o755), ("bin", 0o755)):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
            os.chmod(self.dir / sub, mode)
        owner = pwd.getpwnam(home_owner)
        os.chown(self.dir / "home", owner.pw_uid, owner.pw_gid)
        self.hosts_file.touch()
        for volume in self.storage:
            self.storage_dir(volume.name).mkdir(parents=True, exist_ok=True)
        slot = self.substrate.slot
        netns.add_netns(self.netns, self.host_veth, slot.bridge, self.interface)
        self._start_pause()
        self._mount_tree(home)

    def _start_pause(self) -> None:
        self.pause = subprocess.Popen(
            [
                *("nsenter", f"--net=/run/netns/{self.netns}", "--"),
                *("unshare", "--mount", "--uts", "--propagation", "private", "--"),
                *("sleep", "infinity"),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        own_mnt = os.readlink("/proc/self/ns/mnt")
        pid = self.pause.pid

        def unshared() -> bool:
            if self.pause is not None and self.pause.poll() is not None:
                raise netns.SubstrateError(f"pod {self.name}: pause process exited")
            with contextlib.suppress(OSError):
                comm = Path(f"/proc/{pid}/comm").read_text().strip()
                return comm == "sleep" and os.readlink(f"/proc/{pid}/ns/mnt") != own_mnt
            return False

        _wait_until(unshared, 5.0, f"pod {self.name}'s namespaces")
        netns.run(["nsenter", f"--target={pid}", "--uts", "--", "hostname", self.name])

    def _mount_tree(self, home: str) -> None:
        self._bind(self.dir / "home", home)
        for volume in self.storage:
            # Mount points under the home exist only in the pod's home directory.
            if volume.target.startswith(home.rstrip("/") + "/"):
                self.host_path(volume.target).mkdir(parents=True, exist_ok=True)
            self._bind(self.storage_dir(volume.name), volume.target)
        self._bind(self.dir / "tmp", "/tmp")  # noqa: S108 - the pod's own /tmp
        self._bind(self.dir / "run", "/run")
        self._bind(self.dir / "bin", "/usr/local/bin")
        self._bind(self.hosts_file, "/etc/hosts")
        self._private_cron()
        # The pod's own /tmp, /run... hide the host's; code the substrate runs in pods (this
        # checkout and its virtualenv) must stay visible wherever it lives, /tmp included.
        hidden = ("/tmp", "/run", "/usr/local/bin", home)  # noqa: S108
        kept: list[str] = []
        for path in sorted(_host_paths_for_pods()):
            if any(path == k or path.startswith(k + "/") for k in kept):
                continue  # already visible through a directory above it
            if any(path == h or path.startswith(h.rstrip("/") + "/") for h in hidden):
                kept.append(path)
                self.host_path(path).mkdir(parents=True, exist_ok=True)
                self._bind(Path(f"/proc/{os.getpid()}/root{path}"), path)

    def _private_cron(self) -> None:
        """Give the pod empty crontabs of its own where the host has cron's.

        Cron in a pod (an image's `cron` run by Pebble) then runs the pod's own schedule only:
        not the host's /etc/crontab (run-parts of /etc/cron.daily...) nor its /etc/cron.d jobs
        once per pod, and no pod's schedule reaches another pod's cron. Its pid file is under the
        pod's own /run already.
        """
        if os.path.isdir(CRON_DIR):
            self.bind_private_dir(CRON_DIR)
        if os.path.isfile(CRON_TABLE):
            private = self.dir / "crontab"
            private.write_text("# The pod's own system crontab: no jobs.\n")
            os.chmod(private, 0o644)
            self._bind(private, CRON_TABLE)
        if os.path.isdir(CRON_SPOOL):
            # As Debian makes it: root and the crontab group may add files, nobody may list them.
            group = "crontab" if _group_exists("crontab") else "root"
            self.bind_private_dir(CRON_SPOOL, mode=0o1730, group=group)

    def bind_private_dir(self, target: str, mode: int = 0o755, group: str = "root") -> Path:
        """Give the pod an empty directory of its own at `target` (owner root); its host path.

        A mount point is needed on the host: `target` is created there (empty) if missing.
        """
        private = self.dir / "private" / target.strip("/").replace("/", "_")
        private.mkdir(parents=True, exist_ok=True)
        _set_owner_mode(private, mode, "root", group)
        Path(target).mkdir(parents=True, exist_ok=True)
        self._bind(private, target)
        return private

    def _bind(self, source: Path, target: str) -> None:
        netns.run(
            [
                *("nsenter", f"--target={self.pause_pid}", "--mount", "--"),
                *("mount", "--bind", str(source), target),
            ]
        )
        self._mounts.append((target, source))

    def _reap(self) -> None:
        for process in self._processes:
            process.wait(timeout=5.0)
            process.close()
        self._processes.clear()
        if self.pause is not None:
            self.pause.wait(timeout=10.0)
            self.pause = None

    def destroy(self, destroy_storage: bool, keep_files: bool = False) -> None:
        """Kill the pod's processes and remove it from the host (called by the Substrate)."""
        netns.kill_all(self.pids())
        self._reap()
        netns.delete_link(self.host_veth)
        netns.delete_netns(self.netns)
        if not keep_files:
            shutil.rmtree(self.dir, ignore_errors=True)
        if destroy_storage:
            shutil.rmtree(self.substrate.storage_dir(self.name), ignore_errors=True)

    # Files, seen from the host.

    def host_path(self, path: str) -> Path:
        """Where a path of the pod's filesystem lives on the host."""
        path = posixpath.normpath(path)
        for target, source in sorted(self._mounts, key=lambda m: len(m[0]), reverse=True):
            if path == target or path.startswith(target.rstrip("/") + "/"):
                return source / posixpath.relpath(path, target)
        return Path(f"/proc/{self.pause_pid}/root{path}")

    def make_dir(
        self, path: str, mode: int = 0o755, owner: str | None = None, group: str | None = None
    ) -> None:
        """Create a directory and its missing parents (like Pebble's make_dir); set mode/owner."""
        target = self.host_path(path)
        missing = [p for p in (target, *target.parents) if not p.exists()]
        for directory in [*reversed(missing), target]:
            directory.mkdir(exist_ok=True)
            _set_owner_mode(directory, mode, owner, group)

    def write_file(
        self,
        path: str,
        data: str | bytes,
        mode: int = 0o644,
        owner: str | None = None,
        group: str | None = None,
    ) -> None:
        """Write a file in the pod; the mode is set before any content is written."""
        target = self.host_path(path)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as f:
            _set_owner_mode(target, mode, owner, group)
            f.write(data.encode() if isinstance(data, str) else data)

    # Processes.

    def _enter(self, user: str | None, group: str | None, cwd: str) -> list[str]:
        argv = ["nsenter", f"--target={self.pause_pid}", "--net", "--mount", "--uts"]
        argv += [f"--wdns={cwd}", "--"]
        if user not in (None, "root"):
            gid = group or str(pwd.getpwnam(user).pw_gid)
            argv += ["setpriv", f"--reuid={user}", f"--regid={gid}", "--init-groups", "--"]
        return argv

    @staticmethod
    def environment(user: str | None, env: Mapping[str, str] | None) -> dict[str, str]:
        """The complete environment of a pod process: the user's basics, then `env` on top.

        Passed through exec rather than set by `setpriv --reset-env` plus `env K=V`, so that no
        value (a password one day) ever appears in a process's argv.
        """
        account = pwd.getpwnam(user or "root")
        base = {
            "HOME": account.pw_dir,
            "USER": account.pw_name,
            "LOGNAME": account.pw_name,
            "SHELL": account.pw_shell,
            "PATH": DEFAULT_PATH,
            "LANG": "C.UTF-8",
        }
        return base | dict(env or {})

    def run(
        self,
        argv: Sequence[str],
        *,
        user: str | None = None,
        group: str | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str = "/",
        log_path: Path | None = None,
    ) -> processes.PodProcess:
        """Start a long-running process in the pod; stdout and stderr go to `log_path` (host)."""
        process = processes.spawn(
            [*self._enter(user, group, cwd), *argv], self.environment(user, env), log_path
        )
        self._processes.append(process)
        return process

    def exec(
        self,
        argv: Sequence[str],
        *,
        user: str | None = None,
        group: str | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str = "/",
        input: str | None = None,
        timeout: float = 60.0,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command in the pod to completion and return its output."""
        return subprocess.run(
            self._enter(user, group, cwd) + list(argv),
            env=self.environment(user, env),
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=check,
        )

    def pids(self) -> list[int]:
        """Every process running in the pod, the pause process included."""
        return netns.netns_pids(self.netns)

    def signal(self, pid: int, sig: int) -> None:
        """Send a signal to one of the pod's processes (refuses a PID outside the pod)."""
        if pid not in self.pids():
            raise netns.SubstrateError(f"process {pid} is not in pod {self.name}")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)

    # Network.

    def disconnect(self) -> None:
        """Cut the pod off the network (its cable, the host-side veth, goes down)."""
        netns.set_link_up(self.host_veth, up=False)

    def reconnect(self) -> None:
        """Plug the pod back in."""
        netns.set_link_up(self.host_veth, up=True)


def _host_paths_for_pods() -> set[str]:
    """Host directories pod processes run code from: this checkout and the Python environment."""
    repo = Path(__file__).resolve().parents[2]
    return {str(repo), sys.prefix, sys.base_prefix}


def _group_exists(name: str) -> bool:
    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True


def _set_owner_mode(path: Path, mode: int, owner: str | None, group: str | None) -> None:
    if owner or group:
        account = pwd.getpwnam(owner) if owner else None
        uid = account.pw_uid if account else -1
        gid = grp.getgrnam(group).gr_gid if group else (account.pw_gid if account else -1)
        os.chown(path, uid, gid)
    os.chmod(path, mode)


class Substrate:
    """One run: a slot, a bridge, the pods on it and the host processes serving them.

    Creating it removes whatever dead runs left behind; `teardown()` (also run at exit) removes
    everything it created, processes first, all pods at once.
    """

    def __init__(self, base: Path | None = None):
        self.slot = netns.acquire_slot(base or netns.base_dir())
        self._pods: dict[str, Pod] = {}
        self._next_index = 0
        self._host_processes: list[subprocess.Popen[bytes]] = []
        # What every pod resolves (its /etc/hosts): the pods, the Services, outside servers.
        self.hosts = hosts.PodHosts(self._pods.values)
        self._closed = False
        try:
            self.stale_removed = netns.cleanup_stale(self.slot)
            self.run_dir.mkdir(parents=True, exist_ok=True, mode=0o755)
            netns.add_bridge(self.slot.bridge, self.host_interface)
        except BaseException:
            netns.remove_run(self.slot.base_dir, self.slot.prefix)
            self.slot.release()
            raise
        atexit.register(self.teardown)

    def __enter__(self) -> Substrate:
        return self

    def __exit__(self, *exc: object) -> None:
        self.teardown()

    @property
    def run_dir(self) -> Path:
        """The run's directory on the host."""
        return self.slot.run_dir

    @property
    def host_interface(self) -> ipaddress.IPv4Interface:
        """The bridge's address: the host as pods see it (where host services listen)."""
        network = self.slot.network
        return ipaddress.IPv4Interface(f"{network[1]}/{network.prefixlen}")

    @property
    def host_ip(self) -> str:
        """The host's address on the pod network."""
        return str(self.host_interface.ip)

    @property
    def pods(self) -> tuple[Pod, ...]:
        """The pods, in creation order."""
        return tuple(self._pods.values())

    def storage_dir(self, pod_name: str) -> Path:
        """Host directory of a pod's storage volumes (kept when the pod is deleted)."""
        return self.run_dir / "storage" / pod_name

    def add_pod(
        self,
        name: str,
        hostnames: Sequence[str] = (),
        storage: Sequence[StorageMount] = DEFAULT_STORAGE,
        home: str = layout.HOME,
        home_owner: str = layout.WORKLOAD_USER,
    ) -> Pod:
        """Create a pod (its storage is reattached if a pod of that name had some)."""
        if name in self._pods:
            raise netns.SubstrateError(f"pod {name} already exists")
        if _FIRST_POD_HOST + self._next_index > _LAST_POD_HOST:
            raise netns.SubstrateError(f"no address left for pod {name} in {self.slot.network}")
        pod = Pod(self, name, self._next_index, hostnames, storage)
        self._next_index += 1
        try:
            pod.create(home, home_owner)
        except BaseException:
            pod.destroy(destroy_storage=False)
            raise
        self._pods[name] = pod
        self.hosts.write()
        return pod

    def delete_pod(self, name: str, destroy_storage: bool = False) -> None:
        """Delete a pod: kill its processes, remove its namespaces and private files."""
        pod = self._pods.pop(name)
        pod.destroy(destroy_storage)
        self.hosts.write()

    def start_host_process(
        self, argv: Sequence[str], log_path: Path, env: Mapping[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """Start a host-side process (a DCS, an S3 server) that lives and dies with the run."""
        with open(log_path, "ab") as log:
            process = subprocess.Popen(
                list(argv),
                env=dict(env) if env is not None else None,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._host_processes.append(process)
        # Recorded so that the next run can remove it if this one dies without tearing down.
        with open(self.run_dir / "host-pids", "a") as f:
            f.write(f"{process.pid}\n")
        return process

    def teardown(self, keep_files: bool | None = None) -> None:
        """Remove everything the run created (idempotent).

        Processes of every pod and the host processes are killed at once, then links and
        namespaces are removed, then the files unless `keep_files` (default: the environment
        variable netns.KEEP_FILES_ENV is 1).
        """
        if self._closed:
            return
        if keep_files is None:
            keep_files = os.environ.get(netns.KEEP_FILES_ENV) == "1"
        self._closed = True
        atexit.unregister(self.teardown)
        try:
            pods = list(self._pods.values())
            targets = [pid for pod in pods for pid in pod.pids()]
            targets += [p.pid for p in self._host_processes if p.poll() is None]
            netns.kill_all(targets)
            for process in self._host_processes:
                process.wait(timeout=10.0)
            for pod in pods:
                pod.destroy(destroy_storage=False, keep_files=keep_files)
            self._pods.clear()
            netns.delete_link(self.slot.bridge)
            if not keep_files:
                shutil.rmtree(self.run_dir, ignore_errors=True)
        finally:
            self.slot.release()
