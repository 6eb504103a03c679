#!/usr/bin/env bash
# Coverage-guided fuzzing of the decoder and the relay core (fuzz/), for a bounded time.
# Usage: scripts/fuzz.sh [seconds per target, default 45] [target...]
#
# libFuzzer (via the libfuzzer-sys crate) on the stable toolchain: the coverage
# instrumentation is LLVM's SanitizerCoverage pass, reached with stable `-C passes` and
# `-C llvm-args` flags (the same ones cargo-fuzz passes). Only AddressSanitizer would need
# nightly, and the code under test has no `unsafe`, so it is left out. `cargo fuzz run`
# works the same way (`cargo fuzz run -s none core`); this script builds with cargo alone
# so CI needs no extra tool and keeps parallel codegen (cargo-fuzz forces one unit).
# Exits non-zero when a target crashes (a panic or failed invariant); the input that did
# it is left in target/fuzz/artifacts/TARGET/.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs=${1:-45}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(decode core)
triple=$(rustc -vV | sed -n 's/^host: //p')
out=../target/fuzz
export RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4
  -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table
  -Cllvm-args=-sanitizer-coverage-trace-compares"
# --target keeps build scripts and proc macros uninstrumented (they run on the host).
cargo build --quiet --profile fuzz --target "$triple" --target-dir "$out" --bins
for t in "${targets[@]}"; do
  corpus=$out/corpus/$t
  artifacts=$out/artifacts/$t
  mkdir -p "$corpus" "$artifacts"
  seeds=()
  if [ -d "seeds/$t" ]; then seeds=("seeds/$t"); fi
  echo "== fuzz $t for ${secs}s"
  log=$out/$t.log
  # New inputs go to the first corpus dir (under target/); the committed seeds are read only.
  if ! "$out/$triple/fuzz/$t" -max_total_time="$secs" -max_len=4096 -timeout=10 \
      -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$artifacts/" \
      "$corpus" "${seeds[@]}" >"$log" 2>&1; then
    tail -n 60 "$log"
    echo "fuzz: $t crashed; reproducer in $artifacts/ (replay: (cd fuzz && $out/$triple/fuzz/$t FILE))" >&2
    exit 1
  fi
  grep -E '^stat::number_of_executed_units|^stat::new_units_added|^#[0-9]+.*DONE' "$log" || tail -n 5 "$log"
done
