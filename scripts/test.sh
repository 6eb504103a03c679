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
echo "== shape (function and file length)"; python3 scripts/check_shape.py
echo "== imports (layers, no cycles)"; python3 scripts/check_imports.py
# Coverage-guided fuzzing of the decoder and the core, bounded: fails on any crash.
echo "== fuzz (45 s per target)"
bash scripts/fuzz.sh 45
echo "== client/turnpike.js (node's test runner)"
node --test client/
echo "== cargo test"
out=$(mktemp)
trap 'rm -f "$out"' EXIT
# Library, binary and tests/ (examples hold no tests). The output is kept to total it;
# every test binary runs even after one fails, so one failure hides no other.
cargo test --no-fail-fast --lib --bins --tests 2>&1 | tee "$out"
awk '/^test result:/ { p += $4; f += $6 } END { printf "total: %d passed, %d failed\n", p, f }' "$out"
