"""The local substrate's DCS: a single-node etcd 3.4, and the translation that points Patroni at it.

The translation of environment variables is the only difference between what the charm runs on
Kubernetes and what runs here.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import requests

from substrate.host import netns

if TYPE_CHECKING:  # the pod's Pebble imports this module: it must not need the charm's code
    from substrate.host import pods

KUBERNETES_ENV_PREFIX = "PATRONI_KUBERNETES_"
ETCD3_HOSTS_ENV = "PATRONI_ETCD3_HOSTS"
CLIENT_PORT = 2379
PEER_PORT = 2380


def translate_dcs_env(env: Mapping[str, str], etcd_url: str) -> dict[str, str]:
    """The charm's service environment with its Kubernetes DCS replaced by etcd3.

    Drops every PATRONI_KUBERNETES_* variable (with none left, Patroni builds no kubernetes
    section) and adds PATRONI_ETCD3_HOSTS; everything else passes through untouched.
    `etcd_url` is one or more comma-separated `http://host:port` client URLs.
    """
    hosts: list[str] = []
    for url in etcd_url.split(","):
        parsed = urllib.parse.urlsplit(url.strip())
        if parsed.scheme != "http" or not parsed.hostname or not parsed.port:
            raise ValueError(f"expected http://host:port, got {url!r}")
        hosts.append(f"{parsed.hostname}:{parsed.port}")
    kept = {k: v for k, v in env.items() if not k.startswith(KUBERNETES_ENV_PREFIX)}
    return kept | {ETCD3_HOSTS_ENV: ",".join(hosts)}


def missing_tools() -> list[str]:
    """What this host lacks to run the DCS."""
    return [] if shutil.which("etcd") else ["`etcd` (Debian package etcd-server, 3.4)"]


class Etcd:
    """A single-node etcd listening on the substrate's bridge address, where every pod reaches it."""

    def __init__(self, substrate: pods.Substrate, name: str = "etcd"):
        self.substrate = substrate
        self.name = name
        self.host = substrate.host_ip
        self.url = f"http://{self.host}:{CLIENT_PORT}"
        self.data_dir = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=substrate.run_dir))
        self.log_path = self.data_dir.with_suffix(".log")
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 15.0) -> None:
        """Start etcd and wait (bounded) until it reports healthy (idempotent)."""
        if self._process is not None and self._process.poll() is None:
            return
        peer = f"http://{self.host}:{PEER_PORT}"
        argv = [
            "etcd",
            f"--name={self.name}",
            f"--data-dir={self.data_dir / 'data'}",
            f"--listen-client-urls={self.url}",
            f"--advertise-client-urls={self.url}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster={self.name}={peer}",
            "--initial-cluster-state=new",
            "--logger=zap",
            "--log-outputs=stderr",
        ]
        self._process = self.substrate.start_host_process(argv, self.log_path)
        deadline = time.monotonic() + timeout
        while not self.healthy():
            if self._process.poll() is not None:
                raise netns.SubstrateError(
                    f"etcd exited ({self._process.returncode}), see {self.log_path}"
                )
            if time.monotonic() > deadline:
                raise netns.SubstrateError(
                    f"etcd not healthy after {timeout:.0f}s, see {self.log_path}"
                )
            time.sleep(0.1)

    def healthy(self) -> bool:
        """Whether etcd answers /health with health true."""
        try:
            answer = requests.get(f"{self.url}/health", timeout=1.0)
            return answer.json().get("health") == "true"
        except (requests.RequestException, ValueError):
            return False

    def stop(self, timeout: float = 10.0) -> None:
        """Stop etcd: SIGTERM, then SIGKILL after `timeout` (idempotent)."""
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None
