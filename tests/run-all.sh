#!/usr/bin/env bash
# The whole test suite, from a fresh machine of this kind (Debian 12, root): the wasm target,
# the services (PostgreSQL, Kafka-protocol broker, Docker API), formatting, lints, every test.
# KEEP_SERVICES=1 leaves the services running afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."

rustup target add wasm32-wasip2 >/dev/null 2>&1 || rustup target add wasm32-wasip2
rustup component add rustfmt clippy >/dev/null 2>&1 || true

bash tests/services.sh start
# shellcheck disable=SC1090
source "$(bash tests/services.sh env)"
[ "${KEEP_SERVICES:-0}" = 1 ] || trap 'bash tests/services.sh stop' EXIT

cargo fmt --all -- --check
(cd plugins && cargo fmt --all -- --check)
cargo clippy --workspace --all-targets -- -D warnings
(cd plugins && cargo clippy --target wasm32-wasip2 --release --target-dir ../target/plugins -- -D warnings)
cargo test --workspace
# The plugins' pure logic (compose parsing, interpolation, hashing...) is unit-tested natively.
(cd plugins && cargo test --workspace --target "$(rustc -vV | sed -n 's/^host: //p')" --target-dir ../target/plugins-native)
