"""The Pebble-compatible daemon as a pod's entrypoint: started from the host, reached by a client.

Host side (it imports ops and the pod sandbox; the daemon itself never imports this module). Both
tiers run the workload this way: tier 3 (substrate.backends.local) hands the charm a client of
it, tier 2 (substrate.fixtures.patroni_cluster) adds the charm's layer and replans as the charm
does. The daemon holds its services until told to start them, runs them on the workload image's
PATH, and translates Patroni's Kubernetes DCS settings to etcd (environment variables only).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import ops

from substrate.host import netns, pods, processes

REPO = Path(__file__).resolve().parents[2]
# Juju mounts a directory of its own at /charm/container in each workload container and runs
# Pebble with PEBBLE_SOCKET=/charm/container/pebble.socket (PEBBLE=/charm/container/pebble):
# what a cron job in the image must be told to reach it.
POD_PEBBLE_DIR = "/charm/container"
POD_SOCKET = f"{POD_PEBBLE_DIR}/pebble.socket"
POD_STATE_DIR = f"{POD_PEBBLE_DIR}/pebble"
# Where tools/install-workload.sh puts Patroni (the image has it in /usr/bin).
WORKLOAD_VENV = os.environ.get("WORKLOAD_VENV", "/opt/postgresql-k8s/workload")
# The PATH of the workload container: the `pebble` command first, as in the image.
WORKLOAD_PATH = f"/usr/local/bin:{WORKLOAD_VENV}/bin:/usr/sbin:/usr/bin:/sbin:/bin"
START_TIMEOUT = 15.0


class PebbleStartError(netns.SubstrateError):
    """Raised when the daemon exits or does not listen on its socket in time."""


@dataclasses.dataclass
class PodPebble:
    """A pod's running Pebble: its process, and its socket and files as the host sees them."""

    pod: pods.Pod
    process: processes.PodProcess
    socket: Path
    log_path: Path

    def client(self, timeout: float = 5.0) -> ops.pebble.Client:
        """A client of this Pebble, as the charm's container gets one."""
        return ops.pebble.Client(socket_path=str(self.socket), timeout=timeout)

    def service_log(self, service: str) -> Path:
        """Host file of a service's output (what `pebble logs <service>` shows)."""
        return self.pod.host_path(f"{POD_STATE_DIR}/logs/{service}.log")


def _install_cli(pod: pods.Pod) -> None:
    """Put the `pebble` command on the pod's PATH: the standard-library-only CLI, run by Python."""
    path = pod.host_path("/usr/local/bin/pebble")
    shutil.copyfile(REPO / "substrate" / "pebble" / "cli.py", path)
    path.write_text("#!/usr/bin/python3 -I\n" + path.read_text())
    path.chmod(0o755)


def start(
    pod: pods.Pod,
    log_path: Path,
    *,
    etcd_url: str | None = None,
    environment: Mapping[str, str] | None = None,
) -> PodPebble:
    """Start Pebble in the pod, holding its services, with Patroni's DCS pointed at `etcd_url`.

    `environment` adds to the daemon's (and so its services'), as an image's ENV would. Returns
    once the daemon listens; its own log and its services' output go to `log_path`.
    """
    _install_cli(pod)
    pythonpath = ":".join(str(p) for p in (REPO, REPO / "src", REPO / "lib"))
    env = {"PYTHONPATH": pythonpath, "PATH": WORKLOAD_PATH, "LANG": "C.UTF-8"}
    env |= dict(environment or {})
    argv = [
        sys.executable,
        *("-m", "substrate.pebble.daemon"),
        *("--socket", POD_SOCKET, "--state-dir", POD_STATE_DIR, "--hold"),
        *(("--dcs-etcd3", etcd_url) if etcd_url else ()),
    ]
    pod.bind_private_dir(POD_PEBBLE_DIR)
    process = pod.run(argv, env=env, log_path=log_path)
    socket = pod.host_path(POD_SOCKET)
    deadline = time.monotonic() + START_TIMEOUT
    while not socket.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise PebbleStartError(f"Pebble did not start in pod {pod.name}: see {log_path}")
        time.sleep(0.05)
    return PodPebble(pod, process, socket, log_path)
