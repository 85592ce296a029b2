#!/usr/bin/env bash
# Run every fuzz target for SECONDS each (default 600), one after another, with the project's
# pinned stable toolchain (RUSTC_BOOTSTRAP lets it take cargo-fuzz's -Z flags; the pinned
# toolchain has the wasm32-wasip2 target the host's build script needs). Crashes land in
# fuzz/artifacts/TARGET/; a crash found becomes a regression test.
#   bash fuzz/run.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-600}; shift || true
targets=("$@"); ((${#targets[@]})) || targets=(workflow template webhook compose)
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  cargo fuzz run --sanitizer none "$t" "corpus/$t" seeds/"$t" -- \
    -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -max_len=65536
done
