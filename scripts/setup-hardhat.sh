#!/usr/bin/env bash
# Installs what hardhat/ needs, idempotently and offline-friendly (npm registry only):
#   1. a Node 22 binary from the npm package `node@22` into hardhat/.node/ (the machine has
#      Node 20; Hardhat 3 needs >= 22, and npm must run under 22 or Hardhat's native EDR
#      package is skipped and Hardhat fails with HHE27),
#   2. hardhat/node_modules from hardhat/package-lock.json (a clean `npm install` that must
#      leave the lock unchanged; see below why not `npm ci`), with that Node first on PATH,
#   3. checks that EDR, solc (soljson.js) and the anvil binary are there.
# A stamp keyed on the hash of package.json + package-lock.json + the Node version makes a
# second run a no-op.
#
# Afterwards, to use Hardhat by hand:
#   export PATH="$PWD/hardhat/.node/node_modules/.bin:$PATH"; cd hardhat; npm test
# (or `scripts/setup-hardhat.sh --print-path` prints that directory).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HH="$ROOT/hardhat"
# Must equal the `node` devDependency in hardhat/package.json.
NODE_VERSION="22.23.3"
NODE_PREFIX="$HH/.node"
NODE_BIN_DIR="$NODE_PREFIX/node_modules/.bin"
STAMP="$HH/node_modules/.pled-setup-stamp"
ANVIL="$HH/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"

if [[ "${1:-}" == "--print-path" ]]; then
  echo "$NODE_BIN_DIR"
  exit 0
fi

log() { echo "setup-hardhat: $*"; }
die() { echo "setup-hardhat: error: $*" >&2; exit 1; }

command -v npm >/dev/null 2>&1 || die "npm not found on PATH"
grep -q "\"node\": \"$NODE_VERSION\"" "$HH/package.json" ||
  die "NODE_VERSION=$NODE_VERSION here differs from the node devDependency in hardhat/package.json"
mkdir -p "$NODE_PREFIX"

# Serialize concurrent runs (e.g. several test processes calling this at once).
if command -v flock >/dev/null 2>&1; then
  exec 9>"$NODE_PREFIX/.lock"
  flock 9
fi

# npm's own chatter ("Unknown user config ...") is noise here; keep errors. Lock entries
# carry no registry URL, whatever the user's npmrc says, so the lock stays byte-stable.
# --prefer-offline: the lock pins versions and integrity, so cached tarballs are as good.
npm_quiet() { npm --no-audit --no-fund --prefer-offline --loglevel=error --omit-lockfile-registry-resolved=true "$@"; }

# --- 1. Node 22 -------------------------------------------------------------------------
have_node="$("$NODE_BIN_DIR/node" --version 2>/dev/null || true)"
if [[ "$have_node" == "v$NODE_VERSION" ]]; then
  log "node $have_node present in hardhat/.node"
else
  log "installing node@$NODE_VERSION into hardhat/.node"
  [[ -f "$NODE_PREFIX/package.json" ]] || echo '{ "private": true }' >"$NODE_PREFIX/package.json"
  (cd "$NODE_PREFIX" && npm_quiet install --no-package-lock "node@$NODE_VERSION" >/dev/null)
  have_node="$("$NODE_BIN_DIR/node" --version 2>/dev/null || true)"
  [[ "$have_node" == "v$NODE_VERSION" ]] || die "node@$NODE_VERSION did not install a working binary (got '${have_node:-nothing}')"
  log "node $have_node installed"
fi
export PATH="$NODE_BIN_DIR:$PATH"

# --- 2. node_modules ----------------------------------------------------------------------
hash_inputs() {
  {
    echo "node=$NODE_VERSION"
    cat "$HH/package.json"
    if [[ -f "$HH/package-lock.json" ]]; then cat "$HH/package-lock.json"; fi
  } | sha256sum | cut -d' ' -f1
}
want="$(hash_inputs)"
installed_ok() {
  [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]] &&
    [[ -x "$HH/node_modules/.bin/hardhat" ]] &&
    [[ -d "$HH/node_modules/@nomicfoundation/edr-linux-x64-gnu" ]]
}
if installed_ok; then
  log "hardhat/node_modules up to date"
else
  # Not `npm ci`: registries differ in which other platforms' optional packages they serve
  # (EDR's and anvil's darwin/win32/arm64 builds), and `npm ci` refuses a lock that lists
  # fewer of them than the registry offers ("Missing: ... from lock file"). The committed lock
  # lists all of them; npm never downloads another platform's. So: a clean `npm install`
  # (which follows the lock) and a check that the lock did not change.
  rm -rf "$HH/node_modules"
  if [[ -f "$HH/package-lock.json" ]]; then
    lock_before="$(sha256sum <"$HH/package-lock.json")"
    log "npm install in hardhat/ from package-lock.json (node $(node --version))"
    (cd "$HH" && npm_quiet install >/dev/null)
    if [[ "$(sha256sum <"$HH/package-lock.json")" != "$lock_before" ]]; then
      die "npm changed hardhat/package-lock.json: it was out of sync with package.json. Review the new lock (git diff hardhat/package-lock.json), commit it, and run this again."
    fi
  else
    log "npm install in hardhat/ (no lock yet; node $(node --version))"
    (cd "$HH" && npm_quiet install >/dev/null)
    want="$(hash_inputs)"
  fi
  # --- 3. checks ----------------------------------------------------------------------------
  [[ -d "$HH/node_modules/@nomicfoundation/edr-linux-x64-gnu" ]] ||
    die "Hardhat's native EDR package is missing (was npm run under Node 22?)"
  [[ -f "$HH/node_modules/solc/soljson.js" ]] || die "solc/soljson.js is missing"
  [[ -f "$ANVIL" ]] || die "anvil binary missing at $ANVIL"
  [[ -x "$ANVIL" ]] || chmod +x "$ANVIL"
  "$ANVIL" --version >/dev/null 2>&1 || die "anvil at $ANVIL does not run"
  echo "$want" >"$STAMP"
  log "hardhat/node_modules installed"
fi

log "ready: PATH=$NODE_BIN_DIR:\$PATH; anvil at ${ANVIL#"$ROOT"/}"
