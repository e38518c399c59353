#!/usr/bin/env bash
# Builds every fuzz target and runs each for a few seconds (default 5) on
# its seed corpus: CI's fuzz step. A crash fails the script and leaves its
# input in fuzz/artifacts/<target>/.
#
#   fuzz/smoke.sh [SECONDS_PER_TARGET]
#
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`) and the nightly
# toolchain (without it, it builds on stable with RUSTC_BOOTSTRAP=1).
# Debug builds (--dev) with coverage instrumentation and no sanitizer: the
# whole step must stay under 5 minutes on CI's 2 cores, and
# AddressSanitizer adds about 40 s to the build. SANITIZER=address turns
# it on (nightly only); the long campaign in the README (section Security)
# always runs with it, optimised.
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-5}
sanitizer=${SANITIZER:-none}
if cargo +nightly --version >/dev/null 2>&1; then
  fuzz=(cargo +nightly fuzz)
else
  echo "fuzz: no nightly toolchain; building on stable without a sanitizer"
  export RUSTC_BOOTSTRAP=1
  fuzz=(cargo fuzz)
  sanitizer=none
fi
# Corpora are scratch space (seeds are kept in seeds/); temp files of the
# recovery target go to memory when /dev/shm exists.
if [ -d /dev/shm ] && [ -w /dev/shm ]; then export TMPDIR=/dev/shm; fi
started=$(date +%s)
# A one-off build: incremental compilation only costs time.
export CARGO_INCREMENTAL=0
"${fuzz[@]}" build --dev --sanitizer "$sanitizer"
echo "fuzz: built in $(( $(date +%s) - started )) s"
bin="target/$(rustc -vV | sed -n 's/^host: //p')/debug"
for target in $("${fuzz[@]}" list); do
  corpus="corpus/$target"
  mkdir -p "$corpus"
  if [ -d "seeds/$target" ]; then cp -n seeds/"$target"/* "$corpus"/ 2>/dev/null || true; fi
  # The built binary itself: `cargo fuzz run` would check the build again
  # for each target (about 2 s each).
  mkdir -p "artifacts/$target"
  out=$("$bin/$target" "$corpus" -artifact_prefix="artifacts/$target/" \
    -max_total_time="$seconds" -rss_limit_mb=2048 -print_final_stats=1 2>&1) || {
    echo "$out" | tail -40
    echo "fuzz: $target FAILED (input in fuzz/artifacts/$target/)"
    exit 1
  }
  runs=$(echo "$out" | grep -o 'stat::number_of_executed_units: *[0-9]*' | grep -o '[0-9]*$' || echo "?")
  echo "fuzz: $target ok, $runs runs in ${seconds} s"
done
echo "fuzz: all targets ok in $(( $(date +%s) - started )) s"
