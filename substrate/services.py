"""Pebble's part in a pod until a real Pebble runs there: start a layer's service as Pebble would.

A fake `pebble notify` on the pod's PATH records custom notices to a file in the pod, so that
the charm's role-change callback works and tests can read what it raised.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
from pathlib import Path

import ops

from substrate.host import pods, processes
from substrate.k8s import dcs
from workload import layout

# Where tools/install-workload.sh puts Patroni (the image has it in /usr/bin).
WORKLOAD_VENV = os.environ.get("WORKLOAD_VENV", "/opt/postgresql-k8s/workload")
FAKE_PEBBLE = "/usr/local/bin/pebble"
NOTICES_DIR = "/run/pebble"
NOTICES_FILE = f"{NOTICES_DIR}/notices"

# `pebble notify [--repeat-after=<d>] <key> [<k>=<v>...]`, recorded one notice per line as
# tab-separated fields: key, then k=v pairs. Any other command fails loudly.
_FAKE_PEBBLE_SCRIPT = f"""#!/bin/sh
# Stand-in for Pebble's CLI in a substrate pod: records custom notices, does nothing else.
set -eu
if [ "${{1:-}}" != notify ]; then
  echo "fake pebble: only 'notify' is implemented, got: $*" >&2
  exit 2
fi
shift
while [ $# -gt 0 ]; do
  case "$1" in --*) shift ;; *) break ;; esac
done
[ $# -ge 1 ] || {{ echo "fake pebble: notify needs a key" >&2; exit 2; }}
line="$1"
shift
for kv in "$@"; do line="$line	$kv"; done
printf '%s\\n' "$line" >> {NOTICES_FILE}
"""


@dataclasses.dataclass(frozen=True)
class Notice:
    """One custom notice a pod's processes raised with `pebble notify`."""

    key: str
    data: dict[str, str]


def service_path(pg_major: int) -> str:
    """PATH of workload services: the fake pebble, Patroni, PostgreSQL, then the system."""
    return ":".join(
        ["/usr/local/bin", f"{WORKLOAD_VENV}/bin", layout.pg_bin_dir(pg_major), "/usr/bin", "/bin"]
    )


def missing_tools(pg_major: int) -> list[str]:
    """What this host lacks to run the workload services."""
    needed = {
        f"{WORKLOAD_VENV}/bin/patroni": "Patroni venv (tools/install-workload.sh)",
        f"{layout.pg_bin_dir(pg_major)}/postgres": f"PostgreSQL {pg_major} server (postgresql-{pg_major})",
    }
    return [f"`{path}` ({what})" for path, what in needed.items() if not os.access(path, os.X_OK)]


def install_fake_pebble(pod: pods.Pod) -> None:
    """Put the fake `pebble` on the pod's PATH; any pod user may raise notices, as with Pebble."""
    pod.make_dir(NOTICES_DIR, mode=0o1777)
    pod.write_file(FAKE_PEBBLE, _FAKE_PEBBLE_SCRIPT, mode=0o755)


def notices(pod: pods.Pod) -> list[Notice]:
    """Notices recorded in the pod so far, oldest first."""
    path = pod.host_path(NOTICES_FILE)
    if not path.exists():
        return []
    recorded: list[Notice] = []
    for line in path.read_text().splitlines():
        key, *pairs = line.split("\t")
        recorded.append(Notice(key, dict(p.split("=", 1) for p in pairs if "=" in p)))
    return recorded


def service_log(pod: pods.Pod, name: str) -> Path:
    """Host file collecting a service's stdout and stderr (what `pebble logs` would show)."""
    return pod.dir / "services" / f"{name}.log"


def start_service(
    pod: pods.Pod, name: str, service: ops.pebble.ServiceDict, etcd_url: str, pg_major: int
) -> processes.PodProcess:
    """Start a Pebble layer service in the pod as Pebble would.

    Its command runs as its user and group with its environment, in which the Kubernetes DCS is
    translated to etcd (dcs.translate_dcs_env), on PATH service_path() and LANG=C.UTF-8.
    """
    env = {
        "PATH": service_path(pg_major),
        "LANG": "C.UTF-8",
        **dcs.translate_dcs_env(service.get("environment", {}), etcd_url),
    }
    command = service.get("command")
    if not command:
        raise ValueError(f"service {name} has no command")
    user = service.get("user")
    log = service_log(pod, name)
    log.parent.mkdir(parents=True, exist_ok=True)
    return pod.run(
        shlex.split(command),
        user=user,
        group=service.get("group"),
        env=env,
        cwd=service.get("working-dir") or pods.Pod.environment(user, None)["HOME"],
        log_path=log,
    )
