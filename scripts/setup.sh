#!/usr/bin/env bash
# Installs what building and testing PLED needs, idempotently: fast (about a second) when
# everything is already there. Sourced by ./run; safe to run on its own.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { printf 'setup: %s\n' "$*" >&2; }

# RocksDB's Rust bindings are generated with bindgen, which needs libclang; HTTPS (webhooks,
# RPC endpoints) uses the system's OpenSSL, found with pkg-config.
if ! ldconfig -p 2>/dev/null | grep -q 'libclang[-.0-9]*\.so' || ! pkg-config --exists openssl 2>/dev/null; then
  say "installing clang, libclang-dev, libssl-dev and pkg-config (apt)"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq clang libclang-dev libssl-dev pkg-config >/dev/null
fi

# The independent verifiers in the test suite (Python blake3 + rfc8785, keccak), and
# Schemathesis, which checks the server against its OpenAPI document (pinned: its seeded
# runs are repeatable within one version).
SCHEMATHESIS=4.32.5
if ! python3 -c 'import blake3, rfc8785, eth_hash.auto' 2>/dev/null \
  || [ "$(python3 -c 'import importlib.metadata as m; print(m.version("schemathesis"))' 2>/dev/null)" != "$SCHEMATHESIS" ]; then
  say "installing Python packages blake3, rfc8785, eth-hash, schemathesis $SCHEMATHESIS (pip)"
  python3 -m pip install -q --disable-pip-version-check blake3 rfc8785 'eth-hash[pycryptodome]' \
    "schemathesis==$SCHEMATHESIS" 2>&1 | grep -v 'Running pip as' >&2 || true
fi

if ! cargo nextest --version >/dev/null 2>&1; then
  say "installing cargo-nextest (cargo)"
  cargo install --locked cargo-nextest
fi

# Hardhat (contracts, their tests) and anvil (the local chain), from npm.
if [ -x scripts/setup-hardhat.sh ]; then
  scripts/setup-hardhat.sh
fi
