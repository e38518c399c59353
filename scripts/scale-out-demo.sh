#!/usr/bin/env bash
# Starts one Redis (appendonly, appendfsync everysec) and three Herald nodes
# over it on this machine, all on loopback, then waits; Ctrl-C stops them.
#
#   scripts/scale-out-demo.sh            # Redis on 6390, nodes on 50061-50063
#   REDIS_PORT=7000 scripts/scale-out-demo.sh
#
# Try: publish through one node, consume through another, kill -9 a node.
set -euo pipefail
cd "$(dirname "$0")/.."

REDIS_PORT="${REDIS_PORT:-6390}"
BASE_PORT="${BASE_PORT:-50061}"
work="$(mktemp -d)"
pids=()
stop() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap stop EXIT INT TERM

command -v redis-server >/dev/null || { echo "redis-server is not installed (apt-get install redis-server)"; exit 1; }
cargo build --release --quiet

redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$work" \
  --appendonly yes --appendfsync everysec --save "" --daemonize no >"$work/redis.log" 2>&1 &
pids+=($!)
until redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; do sleep 0.1; done
echo "redis      127.0.0.1:$REDIS_PORT (data in $work)"

for i in 0 1 2; do
  port=$((BASE_PORT + i))
  HERALD_STORAGE__BACKEND=redis \
  HERALD_REDIS__URL="redis://127.0.0.1:$REDIS_PORT" \
  HERALD_HTTP__LISTEN="127.0.0.1:$((8081 + i))" \
    target/release/herald serve --listen "127.0.0.1:$port" --data-dir "$work/node$i" \
    >"$work/node$i.log" 2>&1 &
  pids+=($!)
  echo "herald $i   127.0.0.1:$port (console http://127.0.0.1:$((8081 + i)), log $work/node$i.log)"
done
echo
echo "e.g.  target/release/herald --server http://127.0.0.1:$BASE_PORT publish -t orders --type OrderPlaced --data '{}'"
echo "      target/release/herald --server http://127.0.0.1:$((BASE_PORT + 1)) subscribe -t orders -g billing"
wait
