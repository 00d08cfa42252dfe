#!/usr/bin/env bash
# Installs pymesos 0.3.15 (the compatibility tests run it unmodified) into the venv given as
# $1. pymesos needs http-parser, whose C extension no longer compiles on Python 3.11; its
# pure-Python parser works, so http-parser 0.9.0 is built from its sdist with the extension off.
set -euo pipefail
venv="${1:-.venv}"
pip=("$venv/bin/pip" install -q --disable-pip-version-check)
if "$venv/bin/python" -c "import pymesos, http_parser" 2>/dev/null; then
  exit 0
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$venv/bin/pip" download -q --disable-pip-version-check --no-deps --no-binary :all: -d "$tmp" \
  http-parser==0.9.0
tar -xzf "$tmp"/http-parser-0.9.0.tar.gz -C "$tmp"
sed -i 's/run_setup(not IS_PYPY)/run_setup(False)/' "$tmp/http-parser-0.9.0/setup.py"
"${pip[@]}" --no-build-isolation "$tmp/http-parser-0.9.0"
"${pip[@]}" pymesos==0.3.15
