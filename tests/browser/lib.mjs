// Shared by the browser tests: start turnpike, launch headless Chromium (optionally inside
// a network namespace) or Firefox, and run a call between two pages with the test as
// signaling.
import { spawn, execFileSync } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { createServer } from 'node:http';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import puppeteer from 'puppeteer-core';

const here = dirname(fileURLToPath(import.meta.url));
const PAGE = readFileSync(join(here, 'page.html'), 'utf8');
export const SECRET = 'browser-test-secret';

export function log(...args) {
  console.log(`[${new Date().toISOString().slice(11, 23)}]`, ...args);
}

export function check(cond, msg) {
  if (!cond) throw new Error(`check failed: ${msg}`);
}

const results = [];

/// Runs one named case and records how long it took.
export async function run(name, fn) {
  const t0 = Date.now();
  await fn();
  const secs = ((Date.now() - t0) / 1000).toFixed(1);
  results.push(`${name}: ${secs}s`);
  log(`ok ${name} (${secs}s)`);
}

export function timings() {
  return results;
}

/// TURN REST credential, as an app backend would mint it.
export function credential(secret, user, ttl = 600) {
  const username = `${Math.floor(Date.now() / 1000) + ttl}:${user}`;
  const credential = createHmac('sha1', secret).update(username).digest('base64');
  return { username, credential };
}

const scratch = mkdtempSync(join(tmpdir(), 'turnpike-browser-'));

/// A fresh directory inside this run's scratch directory, removed by cleanup().
export function scratchDir(prefix) {
  return mkdtempSync(join(scratch, prefix));
}
const children = new Set();

/// Starts turnpike with `config` (TOML), in namespace `netns` if given. Resolves once it
/// has logged `ready` (by default the line saying its listeners are up).
export async function startTurnpike(config, netns, { ready: readyLine = 'turnpike started' } = {}) {
  const bin = process.env.TURNPIKE_BIN;
  check(bin, 'TURNPIKE_BIN must name the turnpike binary');
  const file = join(scratch, `turnpike-${children.size}.toml`);
  writeFileSync(file, config);
  const [cmd, args] = netns
    ? ['ip', ['netns', 'exec', netns, bin, '--config', file]]
    : [bin, ['--config', file]];
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  let output = '';
  const ready = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`turnpike did not start:\n${output}`)), 10000);
    const onData = (d) => {
      output += d;
      if (output.includes(readyLine)) { clearTimeout(timer); resolve(); }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('exit', (code) => { clearTimeout(timer); reject(new Error(`turnpike exited ${code}:\n${output}`)); });
  });
  await ready;
  return {
    pid: child.pid,
    output: () => output,
    signal: (sig) => child.kill(sig),
    /// Resolves once turnpike has printed `text` (after what it printed so far).
    async waitFor(text, ms = 5000) {
      const from = output.length;
      const t0 = Date.now();
      while (!output.slice(from).includes(text)) {
        check(Date.now() - t0 < ms, `turnpike did not print "${text}" within ${ms} ms:\n${output}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    async stop() {
      if (child.exitCode !== null) return;
      const done = new Promise((r) => child.once('exit', r));
      child.kill('SIGINT'); // stop at once: SIGTERM would drain live allocations first
      await done;
      children.delete(child);
    },
  };
}

const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];
/// A fake camera and microphone, granted without asking.
const FAKE_MEDIA_ARGS = ['--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream'];

/// Launches Chromium, inside `netns` if given (through a wrapper script, which keeps
/// Playwright's pipe to the browser). `exclude` lists addresses the host resolver rules
/// must leave alone (without that, TURN over TCP yields no relay candidate). `home` is a
/// HOME whose NSS database holds the CAs the browser should trust.
/// turnpike on loopback with a UDP, a TCP and a TLS listener (the test CA's certificate),
/// loopback peers allowed as only a test should: { turnpike, udp, tcp, tls, fx }.
export async function startLoopbackTurnpike() {
  const [udp, tcp, tls] = [await freePort(), await freePort(), await freePort()];
  const fx = makeTlsFixture();
  const turnpike = await startTurnpike(`
[server]
listen_udp = ["127.0.0.1:${udp}"]
listen_tcp = ["127.0.0.1:${tcp}"]
listen_tls = ["127.0.0.1:${tls}"]
shards = 1
[tls]
cert = "${fx.cert}"
key = "${fx.key}"
[relay]
ipv4 = "127.0.0.1"
ports = "57000-57999"
[auth]
secrets = ["${SECRET}"]
[peers]
# Loopback peers are refused by default; this test's browsers live on loopback.
allow = ["127.0.0.0/8"]
[http]
enabled = false
`);
  return { turnpike, udp, tcp, tls, fx };
}

/// `loopback` lets Chromium gather candidates in a namespace whose only interface is lo;
/// `viewport` sizes the pages (screenshots); `media` gives them a fake camera and mic
/// (the self-test page measures a data-channel-only call and runs without).
export async function launch({ netns, exclude = [], home, loopback = false, viewport, media = true } = {}) {
  let executablePath = '/usr/bin/chromium';
  if (netns) {
    executablePath = join(scratch, `chromium-${netns}.sh`);
    writeFileSync(executablePath, `#!/bin/sh\nexec ip netns exec ${netns} /usr/bin/chromium "$@"\n`);
    chmodSync(executablePath, 0o755);
  }
  const rules = ['MAP * ~NOTFOUND', 'EXCLUDE localhost', 'EXCLUDE 127.0.0.1', ...exclude.map((a) => `EXCLUDE ${a}`)];
  const profile = mkdtempSync(join(scratch, 'profile-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath,
    headless: true,
    env: home ? { ...process.env, HOME: home } : process.env,
    ...(viewport ? { viewport } : {}),
    args: [
      ...CHROMIUM_ARGS,
      ...(media ? FAKE_MEDIA_ARGS : []),
      ...(loopback ? ['--allow-loopback-in-peer-connection'] : []),
      `--host-resolver-rules=${rules.join(', ')}`,
    ],
  });
  // The page is served from here: no web server, in or out of a namespace.
  await context.route('http://localhost/**', (route) =>
    route.fulfill({ status: 200, contentType: 'text/html', body: PAGE }));
  return context;
}

/// A page with page.html in `browser` (a Playwright context or a Puppeteer browser).
export async function newPeer(browser) {
  const page = await browser.newPage();
  page.on('pageerror', (e) => log('page error:', e.message));
  // Playwright serves the page by route(); Puppeteer's Firefox loads it from a server.
  await page.goto(browser.route ? 'http://localhost/call.html' : await pageUrl());
  return page;
}

/// Runs a call between `a` (offers) and `b` (answers) with ICE config `config`, or
/// `[configA, configB]` when each end has its own credential. The test relays the SDP and
/// trickled candidates. Resolves when both sides are connected, or when `timeoutMs`
/// passes or either side fails.
export async function call(a, b, config, { media = false, timeoutMs = 15000 } = {}) {
  const t0 = Date.now();
  const [configA, configB] = Array.isArray(config) ? config : [config, config];
  await a.evaluate(([c, m]) => tp.create(c, { media: m, channel: true }), [configA, media]);
  await b.evaluate(([c, m]) => tp.create(c, { media: m }), [configB, media]);
  const offer = await a.evaluate(() => tp.offer());
  // Trickle starts before the answer exists: b must queue what arrives early.
  const early = await a.evaluate(() => tp.takeCandidates());
  for (const c of early) await b.evaluate((x) => tp.addCandidate(x), c);
  const answer = await b.evaluate((o) => tp.answer(o), offer);
  await a.evaluate((x) => tp.accept(x), answer);
  let sa = 'new';
  let sb = 'new';
  while (Date.now() - t0 < timeoutMs) {
    for (const [from, to] of [[a, b], [b, a]]) {
      const cands = await from.evaluate(() => tp.takeCandidates());
      for (const c of cands) await to.evaluate((x) => tp.addCandidate(x), c);
    }
    sa = await a.evaluate(() => tp.state());
    sb = await b.evaluate(() => tp.state());
    if (sa === 'connected' && sb === 'connected') break;
    if (sa === 'failed' || sb === 'failed') break;
    await new Promise((r) => setTimeout(r, 50));
  }
  const connected = sa === 'connected' && sb === 'connected';
  return { connected, ms: Date.now() - t0, states: [sa, sb] };
}

export async function stats(page) {
  return page.evaluate(() => tp.stats());
}

export async function logs(page) {
  return page.evaluate(() => ({ log: tp.log, errors: tp.errors }));
}

/// Runs `cmd args...` (as root for `ip`/`iptables`), throwing with its output on failure.
export function sh(cmd, ...args) {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    throw new Error(`${cmd} ${args.join(' ')}: ${e.stderr || e.message}`);
  }
}

/// Stops every turnpike this process started and removes the scratch directory.
export async function cleanup() {
  for (const c of children) {
    if (c.exitCode === null) c.kill('SIGTERM');
  }
  pageServer?.close();
  rmSync(scratch, { recursive: true, force: true });
}

/// A port free on 127.0.0.1 right now (asked of UDP; turnpike binds it moments later, and
/// a clash would fail its start loudly).
export async function freePort() {
  const s = createSocket('udp4');
  await new Promise((r) => s.bind(0, '127.0.0.1', r));
  const { port } = s.address();
  s.close();
  return port;
}

/// A test CA and a server certificate for 127.0.0.1 and TURN_HOST, and a browser HOME
/// whose NSS database trusts that CA (Chromium): the real certificate path, no
/// --ignore-certificate-errors. Firefox gets the CA in its profile (launchFirefox).
export function makeTlsFixture() {
  const dir = scratchDir('tls-');
  const p = (f) => join(dir, f);
  sh('openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2',
    '-subj', '/CN=turnpike test CA', '-keyout', p('ca.key'), '-out', p('ca.crt'),
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign');
  sh('openssl', 'req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=127.0.0.1',
    '-keyout', p('server.key'), '-out', p('server.csr'));
  // Firefox gathers no turns: candidate for an IP literal: it gets TURN_HOST, which its
  // network.dns.localDomains pref maps to 127.0.0.1.
  writeFileSync(p('ext.cnf'), `subjectAltName=IP:127.0.0.1,DNS:${TURN_HOST}\nextendedKeyUsage=serverAuth\n`);
  sh('openssl', 'x509', '-req', '-in', p('server.csr'), '-CA', p('ca.crt'), '-CAkey', p('ca.key'),
    '-CAcreateserial', '-days', '2', '-extfile', p('ext.cnf'), '-out', p('server.crt'));
  const home = p('home');
  mkdirSync(join(home, '.pki', 'nssdb'), { recursive: true });
  trustCa(`${home}/.pki/nssdb`, p('ca.crt'));
  return { cert: p('server.crt'), key: p('server.key'), ca: p('ca.crt'), home };
}

/// Creates an NSS database in `dir` that trusts `ca` for TLS servers.
function trustCa(dir, ca) {
  sh('certutil', '-d', `sql:${dir}`, '-N', '--empty-password');
  sh('certutil', '-d', `sql:${dir}`, '-A', '-t', 'C,,', '-n', 'turnpike-test-ca', '-i', ca);
}

/// Runs the calling script again inside a network namespace of its own and returns there;
/// the outer process waits, removes the namespace and exits with the inner one's status.
/// The namespace has `lo` and a dead-end default route (a veth pair whose both ends stay
/// inside, 203.0.113.1/24 on one end, default via 203.0.113.2 that never answers):
/// Firefox gathers no candidate without a default route, and nothing a browser sends on
/// its own can leave the namespace.
export async function inDeadEndNamespace(script) {
  if (process.env.TURNPIKE_TEST_NETNS) return process.env.TURNPIKE_TEST_NETNS;
  const ns = `tpdead${process.pid % 100000}`;
  const teardown = () => {
    let pids = '';
    try { pids = sh('ip', 'netns', 'pids', ns).trim(); } catch { return; }
    for (const pid of pids.split(/\s+/).filter(Boolean)) {
      try { process.kill(Number(pid), 'SIGKILL'); } catch { /* already gone */ }
    }
    try { sh('ip', 'netns', 'del', ns); } catch { /* not created */ }
  };
  try {
    sh('ip', 'netns', 'add', ns);
    const ip = (...a) => sh('ip', '-n', ns, ...a);
    ip('link', 'set', 'lo', 'up');
    ip('link', 'add', 'dead0', 'type', 'veth', 'peer', 'name', 'dead1');
    ip('addr', 'add', '203.0.113.1/24', 'dev', 'dead0');
    ip('link', 'set', 'dead0', 'up');
    ip('link', 'set', 'dead1', 'up');
    // A permanent fake neighbour: sends towards the route are dropped quietly, no ARP.
    ip('neigh', 'add', '203.0.113.2', 'lladdr', '02:00:00:00:00:02', 'dev', 'dead0', 'nud', 'permanent');
    ip('route', 'add', 'default', 'via', '203.0.113.2', 'dev', 'dead0');
  } catch (e) {
    teardown();
    throw e;
  }
  const child = spawn('ip', ['netns', 'exec', ns, process.execPath, script], {
    stdio: 'inherit', env: { ...process.env, TURNPIKE_TEST_NETNS: ns },
  });
  const finish = async (code) => {
    teardown();
    await cleanup();
    process.exit(code);
  };
  for (const sig of ['SIGINT', 'SIGTERM']) {
    process.on(sig, () => {
      child.kill('SIGTERM');
      // The inner script gets a moment to close its browsers; then everything goes.
      setTimeout(() => finish(130), 3000);
    });
  }
  const code = await new Promise((r) => child.on('exit', (c) => r(c ?? 1)));
  await finish(code);
  return new Promise(() => {});
}

let pageServer;

/// Serves page.html on 127.0.0.1 (for Firefox; Playwright serves Chromium's by route()).
async function pageUrl() {
  if (!pageServer) {
    pageServer = createServer((_, res) => {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end(PAGE);
    });
    await new Promise((r) => pageServer.listen(0, '127.0.0.1', r));
  }
  return `http://127.0.0.1:${pageServer.address().port}/call.html`;
}

export const FIREFOX = '/usr/bin/firefox-esr';
/// A host name for turnpike that Firefox resolves to 127.0.0.1 by itself (no DNS).
export const TURN_HOST = 'turn.test';

/// Launches headless Firefox (the system's firefox-esr) through puppeteer-core over
/// WebDriver BiDi, with a fresh profile whose NSS database trusts `ca` if given, fake
/// camera and microphone, loopback candidates allowed, and `prefs` on top.
export async function launchFirefox({ ca, prefs = {} } = {}) {
  const profile = mkdtempSync(join(scratch, 'firefox-'));
  if (ca) trustCa(profile, ca);
  return puppeteer.launch({
    browser: 'firefox',
    executablePath: FIREFOX,
    headless: true,
    userDataDir: profile,
    env: { ...process.env, HOME: profile },
    extraPrefsFirefox: {
      'media.navigator.streams.fake': true,
      'media.navigator.permission.disabled': true,
      'media.peerconnection.ice.loopback': true,
      'network.dns.localDomains': TURN_HOST,
      ...prefs,
    },
  });
}

/// The per-session log lines (target turnpike::session) turnpike has printed so far;
/// it must run with `[log] format = "json"`.
export function sessionLines(turnpike) {
  const out = [];
  for (const line of turnpike.output().split('\n')) {
    if (!line.startsWith('{')) continue;
    let j;
    try { j = JSON.parse(line); } catch { continue; }
    if (j.target === 'turnpike::session') out.push({ ...j, ...(j.fields || {}) });
  }
  return out;
}

/// turnpike's /metrics at `addr`, as a function (name, { label: value }) -> the sum of the
/// samples of `name` that carry those labels (0 if none).
export async function metrics(addr) {
  return parseMetrics(await (await fetch(`http://${addr}/metrics`)).text());
}

/// A Prometheus text exposition, as `metrics` returns it.
export function parseMetrics(text) {
  const samples = [];
  for (const line of text.split('\n')) {
    const m = /^(\w+)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) continue;
    const labels = Object.fromEntries([...(m[2] || '').matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    samples.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return (name, want = {}) => samples
    .filter((x) => x.name === name && Object.entries(want).every(([k, v]) => x.labels[k] === v))
    .reduce((sum, x) => sum + x.value, 0);
}
