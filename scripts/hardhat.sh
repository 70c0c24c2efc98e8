#!/usr/bin/env bash
# Runs one npm script of hardhat/ (test, gas, check-artifacts, export-artifacts, deploy, build)
# with the project's Node 22 first on PATH. Installs what is missing first.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup-hardhat.sh" >/dev/null
export PATH="$("$ROOT/scripts/setup-hardhat.sh" --print-path):$PATH"
cd "$ROOT/hardhat"
exec npm run --silent "$@"
