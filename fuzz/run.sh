#!/usr/bin/env bash
# Fuzz the token parser for a bounded time (default 120 s): atheris when installed,
# the pure-Python mutation loop otherwise. Usage: bash fuzz/run.sh [seconds] [extra args]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-120}"
shift || true
PYTHONPATH=src exec python fuzz/fuzz_token.py --seconds "$seconds" "$@"
