#!/usr/bin/env bash
# Installs Mensa into ./.venv and runs a local cluster: one standalone master, two agents and
# the example scheduler. Ctrl-C stops everything it started. Extra arguments go to `mensa local`.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -e .
exec .venv/bin/mensa local "$@"
