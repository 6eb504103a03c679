#!/usr/bin/env bash
# Runs one group of the integration tests in tests/, which are named by what they need:
#   loopback  tests/loopback_*.rs: only loopback sockets (turnpike in-process or a child)
#   netns     tests/netns_*.rs: network namespaces (root)
#   ext       tests/ext_*.rs: external tools from scripts/install-test-deps.sh (coturn,
#             browsers, systemd-nspawn, cargo-deb, hadolint, promtool; some need root too)
# Cargo has no pattern for --test, so each file of the group is passed as one.
# Usage: scripts/tests.sh loopback|netns|ext [cargo test arguments, e.g. -- --nocapture]
set -euo pipefail
cd "$(dirname "$0")/.."
group=${1:-}
case $group in
  loopback | netns | ext) shift ;;
  *) echo "usage: scripts/tests.sh loopback|netns|ext [cargo test arguments]" >&2; exit 2 ;;
esac
tests=()
for f in tests/"$group"_*.rs; do
  [ -e "$f" ] && tests+=(--test "$(basename "$f" .rs)")
done
if [ ${#tests[@]} -eq 0 ]; then
  echo "no tests/${group}_*.rs" >&2
  exit 0
fi
exec cargo test "${tests[@]}" "$@"
