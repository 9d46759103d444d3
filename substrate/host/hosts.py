"""Every pod's /etc/hosts: the one place that decides what the pods resolve and writes it.

A pod's /etc/hosts is a host file bind-mounted into the pod (substrate.host.pods). Every pod of a
run gets the same content: the pods' own names, then the Services' names (set as a whole by the
router, substrate.k8s.routing), then names of servers outside the pods, which win on a clash.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pods imports this module
    from substrate.host import pods

_HEADER = ("127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback")
# A DNS name of dot-separated labels (RFC 1123), as /etc/hosts takes them.
_LABEL = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
_HOSTNAME = re.compile(rf"(?=.{{1,253}}\Z){_LABEL}(\.{_LABEL})*\Z", re.IGNORECASE)


def render(pod_list: Iterable[pods.Pod], extra: Mapping[str, str]) -> str:
    """A hosts file: every pod's names, then `extra` (name -> IP)."""
    lines = list(_HEADER)
    lines += [f"{p.ip}\t{' '.join((*p.hostnames, p.name))}" for p in pod_list]
    lines += [f"{ip}\t{name}" for name, ip in extra.items()]
    return "\n".join(lines) + "\n"


class PodHosts:
    """What every pod of a run resolves; each change rewrites every pod's hosts file."""

    def __init__(self, pod_list: Callable[[], Iterable[pods.Pod]]):
        self._pods = pod_list
        self._services: dict[str, str] = {}
        self._static: dict[str, str] = {}

    def set_services(self, entries: Mapping[str, str]) -> None:
        """The Services' names (name -> IP), replacing the previous ones; static names stay."""
        self._services = dict(entries)
        self.write()

    def add(self, name: str, ip: str) -> None:
        """Make every pod, present and future, resolve `name` to `ip` until the run ends.

        For servers outside the pods, such as an S3 endpoint listening on the host. Unlike the
        Services' names, these are never replaced by set_services; on a clash they win.
        """
        if not _HOSTNAME.match(name):
            raise ValueError(f"not a host name: {name!r}")
        self._static[name] = str(ipaddress.ip_address(ip))
        self.write()

    def write(self) -> None:
        """Rewrite every pod's file (after a pod came or went, or a name changed)."""
        pod_list = list(self._pods())
        text = render(pod_list, self._services | self._static)
        for pod in pod_list:
            # Rewritten in place: the bind mount follows the inode, so a rename would not be seen.
            pod.hosts_file.write_text(text)
