#!/usr/bin/env bash
# Installs everything the tests need on a fresh Debian machine (apt packages, then the Python
# package with its test extras into ./.venv) and runs the whole test suite. Extra arguments go
# to pytest. Needs root (or sudo) for apt.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(zookeeper docker.io busybox-static chromium chromium-driver)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "installing apt packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -e ".[test]"
./deploy/install_pymesos.sh .venv
exec .venv/bin/python -m pytest "$@"
