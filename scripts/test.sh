#!/usr/bin/env bash
# The whole test suite, as the README gives it and CI runs it: installs what the tests
# need, then formatting, lints, and every unit, integration, interop and browser test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-test-deps.sh
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets -- -D warnings
echo "== cargo test"
cargo test --all-targets 2>&1
