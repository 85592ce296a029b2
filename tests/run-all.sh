#!/usr/bin/env bash
# The whole test suite, from a fresh machine of this kind (Debian 12, root): the wasm target,
# the services (PostgreSQL, Kafka-protocol broker, Docker API), formatting, lints, every test.
# KEEP_SERVICES=1 leaves the services running afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."

rustup target add wasm32-wasip2 >/dev/null 2>&1 || rustup target add wasm32-wasip2
rustup component add rustfmt clippy >/dev/null 2>&1 || true
# The Python plugin toolchain (PyPI); the JavaScript one (componentize-js, esbuild from npm) is
# installed by `orch plugin build` into each JS plugin's directory, as for a user.
python3 -m pip install --quiet --disable-pip-version-check 'componentize-py==0.25.1'
command -v node >/dev/null || { apt-get update -qq && apt-get install -y -qq nodejs npm; }

bash tests/services.sh start
# shellcheck disable=SC1090
source "$(bash tests/services.sh env)"
[ "${KEEP_SERVICES:-0}" = 1 ] || trap 'bash tests/services.sh stop' EXIT

bash tests/layers.sh
cargo fmt --all -- --check
(cd plugins && cargo fmt --all -- --check)
(cd plugins && cargo clippy --target wasm32-wasip2 --release --target-dir ../target/plugins -- -D warnings)
# The Rust SDK is publishable: every public item documented, rustdoc clean.
(cd plugins && RUSTDOCFLAGS="-D warnings" cargo doc -p orch-sdk --no-deps --target wasm32-wasip2 --target-dir ../target/plugins)
# Clippy lints the host while the tests build: clippy-driver as the workspace's rustc wrapper
# lints and compiles in one pass, so the ~480 dependencies are compiled once instead of being
# checked by `cargo clippy` and built again by `cargo test` (what `cargo clippy --workspace
# --all-targets -- -D warnings` reports fails this build the same way).
export RUSTC_WORKSPACE_WRAPPER="$(rustup which clippy-driver)"
export CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__"
cargo test --workspace --all-targets --no-run
# The e2e tests mostly wait (on services, schedules, sleeps in plugins): 4 at a time on 2 cores.
cargo test --workspace -- --test-threads 4
unset RUSTC_WORKSPACE_WRAPPER CLIPPY_ARGS
# The Python SDK's pure logic (schema from dataclasses, config parsing) in plain CPython.
(cd plugins/sdk-python && python3 -m unittest discover -s tests)
# The plugins' pure logic (compose parsing, interpolation, hashing...) is unit-tested natively.
(cd plugins && cargo test --workspace --target "$(rustc -vV | sed -n 's/^host: //p')" --target-dir ../target/plugins-native)
