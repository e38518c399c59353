#!/usr/bin/env bash
# Refreshes the console screenshots shown in the README: runs the browser
# test (which writes them under target/console-screenshots/) and copies
# them to docs/console/. Needs chromium and chromedriver
# (apt-get install chromium chromium-driver).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v chromium >/dev/null && command -v chromedriver >/dev/null || {
  echo "install chromium and chromium-driver first" >&2
  exit 1
}
target="${CARGO_TARGET_DIR:-target}"
rm -rf "$target/console-screenshots"
cargo test --test system console_browser:: -- --nocapture
for name in overview group dead-letters group-phone; do
  cp "$target/console-screenshots/$name.png" "docs/console/$name.png"
done
ls -l docs/console/
