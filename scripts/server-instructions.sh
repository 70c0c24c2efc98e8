#!/usr/bin/env bash
# Instructions the server executes per ingested event, all its threads together (user space:
# the kernel's TCP is not counted), under `loadgen --mode events`. callgrind counts the same on
# any machine of this architecture, so two builds compare on a noisy or slow machine where
# wall-clock numbers do not.
#
#   scripts/server-instructions.sh [PLED_BINARY] [SECONDS]
#
# The server runs under callgrind with instrumentation off; after the load has run a while it
# is switched on for SECONDS (default 30), dumped, and divided by the growth of
# pled_events_ingested_total over the same window. Needs valgrind (callgrind_control) and a
# release build of pled and loadgen. The profile stays in $OUT (default /tmp/pled-server-cg).
# The load is a closed loop of 16 connections (the server saturated, large write groups);
# RATE=N offers N events/s instead (open loop; under callgrind the server serves a few hundred
# per second, so RATE=150 is a light load: small write groups, more wake-ups per event).
# LOADGEN_ARGS adds loadgen flags (e.g. --idempotency-keys).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
T="${CARGO_TARGET_DIR:-$ROOT/target}/release"
PLED="$(realpath "${1:-$T/pled}")"
SECONDS_ON="${2:-30}"
OUT="${OUT:-/tmp/pled-server-cg}"
mkdir -p "$OUT"
rm -f "$OUT"/callgrind.out* "$OUT"/loadgen.log

# loadgen starts `pled serve` (and `pled token create`) through --pled: wrap serve in callgrind.
cat >"$OUT/pled" <<EOF
#!/bin/sh
if [ "\$1" = serve ]; then
  exec valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file=$OUT/callgrind.out "$PLED" "\$@"
fi
exec "$PLED" "\$@"
EOF
chmod +x "$OUT/pled"

"$T/loadgen" --pled "$OUT/pled" --mode events --connections 16 --seconds 100000 ${RATE:+--rate "$RATE"} ${LOADGEN_ARGS:-} \
  --serve-arg=--chain --serve-arg=off --server-log warn,pled_api::server=info >"$OUT/loadgen.log" 2>&1 &
LOADGEN=$!
trap 'kill $LOADGEN 2>/dev/null || true; pkill -f "callgrind-out-file=$OUT/" || true' EXIT

for _ in $(seq 1 300); do grep -q "warming up" "$OUT/loadgen.log" && break; sleep 1; done
grep -q "warming up" "$OUT/loadgen.log" || { echo "the load never started; see $OUT/loadgen.log" >&2; exit 1; }
ADDR=$(grep -o 'listening on http://[0-9.:]*' "$OUT/loadgen.log" | head -1 | sed 's/listening on //')
PID=$(pgrep -f "callgrind-out-file=$OUT/" | head -1)
events() { curl -s "$ADDR/metrics" | awk '/^pled_events_ingested_total/ {s += $2} END {printf "%.0f", s}'; }

sleep 5
echo "server pid $PID at $ADDR: counting for ${SECONDS_ON} s" >&2
callgrind_control -i on "$PID" >/dev/null 2>&1
E0=$(events)
sleep "$SECONDS_ON"
callgrind_control -d "$PID" >/dev/null 2>&1
E1=$(events)
callgrind_control -i off "$PID" >/dev/null 2>&1
INSTR=$(awk '/^summary:/ {print $2}' "$OUT/callgrind.out.1")
echo "events=$((E1 - E0)) instructions=$INSTR per_event=$((INSTR / (E1 - E0)))  (profile: $OUT/callgrind.out.1)"
