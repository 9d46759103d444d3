"""Tier 2: the local substrate's pod network: link-layer addresses and names as pods come and go.

A Linux bridge left to itself takes the lowest MAC among its ports: every pod added or deleted
could move the MAC behind the host's addresses (the gateway, every Service IP) while the other
pods still cache the old one, and their connections would time out until they resolve it again.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from substrate.host import netns, pods

pytestmark = pytest.mark.integration


def pod_mac(pod: pods.Pod) -> str:
    """eth0's MAC as the pod sees it (netlink: the pod's /sys is the host's)."""
    line = pod.exec(["ip", "-o", "link", "show", "eth0"]).stdout
    return line.split("link/ether ", 1)[1].split()[0]


def test_the_host_keeps_its_mac_and_pods_have_theirs_whatever_pods_come_and_go(
    substrate: pods.Substrate,
):
    bridge = Path("/sys/class/net") / substrate.slot.bridge
    fixed = netns.mac_address(ipaddress.IPv4Address(substrate.host_ip))
    assert (bridge / "address").read_text().strip() == fixed
    made = [substrate.add_pod(f"churn-{i}", storage=()) for i in range(4)]
    try:
        for pod in made:
            assert pod_mac(pod) == netns.mac_address(ipaddress.IPv4Address(pod.ip))
        assert (bridge / "address").read_text().strip() == fixed
        for pod in made[:2]:
            substrate.delete_pod(pod.name)
        assert (bridge / "address").read_text().strip() == fixed
        # What pods resolve the host's addresses to is that MAC.
        survivor = made[2]
        survivor.exec(["bash", "-c", f"exec 3<>/dev/tcp/{substrate.host_ip}/9"], check=False)
        neighbours = survivor.exec(["ip", "neigh", "show", substrate.host_ip]).stdout
        assert fixed in neighbours, neighbours
    finally:
        for pod in made[2:]:
            substrate.delete_pod(pod.name)


def resolved(pod: pods.Pod, name: str) -> str:
    """The IPv4 address the pod's /etc/hosts resolves `name` to (empty when it does not)."""
    # Files only: a name that is not there would wait for the pod's unreachable DNS.
    out = pod.exec(["getent", "-s", "files", "ahostsv4", name], check=False).stdout.split()
    return out[0] if out else ""


def test_every_pod_resolves_the_pods_the_services_and_added_names_as_pods_come_and_go(
    substrate: pods.Substrate,
):
    first = substrate.add_pod("names-a", hostnames=("names-a.app-endpoints",), storage=())
    second = substrate.add_pod("names-b", storage=())
    try:
        substrate.hosts.set_services({"app-primary": first.ip, "s3.example.test": first.ip})
        substrate.hosts.add("s3.example.test", substrate.host_ip)

        assert resolved(second, "names-a.app-endpoints") == first.ip
        assert resolved(second, "names-a") == first.ip
        assert resolved(first, "names-b") == second.ip
        assert resolved(second, "app-primary") == first.ip
        # An added name wins over a Service's, and survives the Services being replaced.
        assert resolved(second, "s3.example.test") == substrate.host_ip
        substrate.hosts.set_services({})
        assert resolved(second, "app-primary") == ""
        assert resolved(second, "s3.example.test") == substrate.host_ip

        substrate.hosts.set_services({"app-primary": second.ip})
        substrate.delete_pod(first.name)
        third = substrate.add_pod("names-c", storage=())
        assert resolved(second, "names-a") == ""
        assert resolved(third, "names-b") == second.ip
        assert resolved(third, "app-primary") == second.ip
        assert resolved(third, "s3.example.test") == substrate.host_ip
    finally:
        substrate.hosts.set_services({})
        for name in ("names-a", "names-b", "names-c"):
            if name in {p.name for p in substrate.pods}:
                substrate.delete_pod(name)
