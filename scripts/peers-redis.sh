#!/usr/bin/env bash
# Herald over Redis beside Redis Streams on the same Redis, in one peerbench
# run (../shared/peers), with appendfsync always and everysec; optionally an
# older Herald binary beside this one on the embedded backend (OLD=path).
#
#   cargo build --release
#   cargo build --release --locked --manifest-path ../shared/peers/Cargo.toml --target-dir target/peerbench
#   scripts/peers-redis.sh                 # results in target/peers-redis/
#   OLD=/path/to/old/herald scripts/peers-redis.sh
#
# Loopback only; servers are stopped by PID; data under a temp directory.
set -u
cd "$(dirname "$0")/.."
NEW=target/release/herald
PB=target/peerbench/release/peerbench
N="${N:-100000}" RUNS="${RUNS:-3}"
out=target/peers-redis; mkdir -p "$out"
work="$(mktemp -d)"; pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; wait; rm -rf "$work"' EXIT
mkdir -p "$work"/{ra,re,hra,hre,old,new}
redis-server --port 6390 --bind 127.0.0.1 --save "" --appendonly yes --appendfsync always --auto-aof-rewrite-percentage 0 --dir "$work/ra" --daemonize no >/dev/null 2>&1 & pids+=($!)
redis-server --port 6391 --bind 127.0.0.1 --save "" --appendonly yes --appendfsync everysec --auto-aof-rewrite-percentage 0 --dir "$work/re" --daemonize no >/dev/null 2>&1 & pids+=($!)
sleep 0.5
node() { env -i PATH="$PATH" HERALD_HTTP__ENABLED=false "$@" & pids+=($!); }
node env HERALD_STORAGE__BACKEND=redis HERALD_REDIS__URL=redis://127.0.0.1:6390 $NEW serve --listen 127.0.0.1:50071 --data-dir "$work/hra" >"$work/hra.log" 2>&1
node env HERALD_STORAGE__BACKEND=redis HERALD_REDIS__URL=redis://127.0.0.1:6391 $NEW serve --listen 127.0.0.1:50072 --data-dir "$work/hre" >"$work/hre.log" 2>&1
sleep 2
$PB suite \
  --target 'redis|redis|appendfsync always|127.0.0.1:6390' \
  --target 'redis|redis|appendfsync everysec|127.0.0.1:6391' \
  --target 'herald|herald over redis|redis appendfsync always|127.0.0.1:50071' \
  --target 'herald|herald over redis|redis appendfsync everysec|127.0.0.1:50072' \
  --scenarios pub-pipe,consume --n "$N" --size 256 --runs "$RUNS" --max-secs 20 \
  --jsonl "$out/redis.jsonl" --md "$out/redis.md" > "$out/redis.log" 2>&1
if [ -n "${OLD:-}" ]; then
  node "$OLD" serve --listen 127.0.0.1:50081 --data-dir "$work/old/data" --fsync always >"$work/old.log" 2>&1
  node $NEW serve --listen 127.0.0.1:50082 --data-dir "$work/new/data" --fsync always >"$work/new.log" 2>&1
  sleep 2
  $PB suite \
    --target 'herald|herald old|fsync always|127.0.0.1:50081' \
    --target 'herald|herald new|fsync always|127.0.0.1:50082' \
    --n "$N" --size 256 --runs "$RUNS" --rate 5000 --e2e-secs 5 --max-secs 20 \
    --jsonl "$out/embedded.jsonl" --md "$out/embedded.md" > "$out/embedded.log" 2>&1
fi
cat "$out"/*.md
