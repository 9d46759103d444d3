#!/usr/bin/env bash
# Everything a fresh Debian/Ubuntu machine needs to run the tests and the local substrate:
# the workload's system packages (tools/install-workload.sh), uv, and the locked Python
# dependencies. Idempotent; used by `make deps` and by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

bash tools/install-workload.sh

if ! command -v uv >/dev/null 2>&1; then
  echo "installing uv"
  python3 -m pip install --quiet uv 2>/dev/null \
    || python3 -m pip install --quiet --break-system-packages uv
  hash -r
fi
uv sync --frozen
