#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian machine:
# the package with all extras and dev tools, and redis-server for the shared-store tests.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v redis-server >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq && apt-get install -y -qq redis-server >/dev/null
    else
        echo "redis-server is missing: install it (sudo apt-get install redis-server)" >&2
    fi
fi
python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
