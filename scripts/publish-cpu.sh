#!/usr/bin/env bash
# Server CPU per one-event Publish (issue 11, item 3): a release `herald
# serve` (embedded, fsync always unless FSYNC is set) takes N unary Publish
# calls of one 256-byte event from peerbench's pub-conc scenario (16
# concurrent callers, one event per call), and this prints the server
# process's CPU time (user + system, from /proc) divided by N. Before the
# publishes, the same server takes N health checks from
# `examples/rpc_floor.rs` (same client shape): its CPU per health check is
# the floor under any unary RPC here (tonic, HTTP/2, loopback TCP,
# scheduling), printed beside the Publish figure.
#
#   cargo build --release
#   cargo build --release --example rpc_floor
#   cargo build --release --locked --manifest-path ../shared/peers/Cargo.toml --target-dir target/peerbench
#   scripts/publish-cpu.sh                  # N=100000 FSYNC=always
#   HERALD_BIN=/path/to/other/herald scripts/publish-cpu.sh
#
# Loopback only; the server is stopped by PID; data in a temp directory.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${HERALD_BIN:-target/release/herald}"
PB=target/peerbench/release/peerbench
FLOOR="${FLOOR_BIN:-target/release/examples/rpc_floor}"
N="${N:-100000}" FSYNC="${FSYNC:-always}" PORT="${PORT:-50091}"
work="$(mktemp -d)"
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
env -i PATH="$PATH" ${TOKIO_WORKER_THREADS:+TOKIO_WORKER_THREADS=$TOKIO_WORKER_THREADS} HERALD_HTTP__ENABLED=false "$BIN" serve --listen "127.0.0.1:$PORT" \
  --data-dir "$work/data" --fsync "$FSYNC" >"$work/server.log" 2>&1 &
pid=$!
for _ in $(seq 100); do
  grep -q "herald is serving" "$work/server.log" 2>/dev/null && break
  sleep 0.1
done
ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
hz=$(getconf CLK_TCK)
before=$(ticks)
"$FLOOR" "127.0.0.1:$PORT" "$N" 16 >"$work/floor.log"
after=$(ticks)
cat "$work/floor.log"
awk -v t=$((after - before)) -v hz="$hz" -v n="$N" 'BEGIN {
  printf "server CPU: %.2f s for %d health checks: %.1f µs per call (the floor)\n", t / hz, n, t / hz / n * 1e6
}'
before=$(ticks)
started=$(date +%s.%N)
"$PB" suite --target "herald|herald|fsync $FSYNC|127.0.0.1:$PORT" --scenarios pub-conc \
  --n "$N" --size 256 --runs 1 --max-secs 120 >"$work/pb.log" 2>&1 || { cat "$work/pb.log"; exit 1; }
after=$(ticks)
ended=$(date +%s.%N)
grep -E "^\|" "$work/pb.log" || tail -20 "$work/pb.log"
# The calls made (the row's msgs/run: fewer than N when the time cap hit).
n=$(grep "^| publish" "$work/pb.log" | awk -F'|' '{gsub(/ /, "", $6); print $6}')
awk -v t=$((after - before)) -v hz="$hz" -v n="${n:-$N}" -v s="$started" -v e="$ended" 'BEGIN {
  cpu = t / hz
  printf "server CPU: %.2f s for %d one-event Publish calls: %.1f µs per call (wall %.1f s)\n", cpu, n, cpu / n * 1e6, e - s
}'
