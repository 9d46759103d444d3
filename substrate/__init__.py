"""The local substrate: Kubernetes-like pods, a DCS and workload services on one Linux host.

Tests and benchmarks run the charm's real workload (Patroni, PostgreSQL) in per-pod network and
mount namespaces, so that addresses, ports and paths are those of the Kubernetes deployment.
Everything here needs root and the host tools named by `netns.missing_host_tools()`.
"""
