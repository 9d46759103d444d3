#!/usr/bin/env bash
# Installs, on a Debian/Ubuntu machine, the workload the charm runs in its `postgresql` container:
# the same Debian-layout packages the rock is built from, plus Patroni in a virtualenv that the
# unprivileged `postgres` user can execute. Used by .ci/run, the tests and the local substrate.
# Idempotent: a second run with everything present does nothing but check.
set -euo pipefail

WORKLOAD_VENV=${WORKLOAD_VENV:-/opt/postgresql-k8s/workload}
PATRONI_SPEC=${PATRONI_SPEC:-"patroni[etcd3,psycopg3]==4.1.5"}
APT_PACKAGES=(postgresql-15 postgresql-contrib etcd-server pgbackrest pgbouncer
  prometheus-postgres-exporter prometheus stunnel4 iproute2 util-linux python3-venv haproxy cron)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian starts a cluster and etcd on install where an init system exists; the workload is ours.
pg_lsclusters -h 2>/dev/null | awk '$4=="online"{print $1, $2}' | while read -r v c; do
  pg_ctlcluster "$v" "$c" stop || true
done

# Patroni from PyPI in a venv built from Debian's python3 (readable by `postgres`; a venv from a
# python under /root would not be executable by the workload user).
if ! "$WORKLOAD_VENV/bin/patroni" --version >/dev/null 2>&1; then
  mkdir -p "$(dirname "$WORKLOAD_VENV")"
  /usr/bin/python3 -m venv "$WORKLOAD_VENV"
  "$WORKLOAD_VENV/bin/pip" install -q --disable-pip-version-check "$PATRONI_SPEC"
fi
chmod -R a+rX "$(dirname "$WORKLOAD_VENV")"
"$WORKLOAD_VENV/bin/patroni" --version
