// Shared by the browser tests: start turnpike, launch headless Chromium (optionally inside
// a network namespace), and run a call between two pages with the test as signaling.
import { spawn, execFileSync } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

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
/// has logged that its listeners are up.
export async function startTurnpike(config, netns) {
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
      if (output.includes('turnpike started')) { clearTimeout(timer); resolve(); }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('exit', (code) => { clearTimeout(timer); reject(new Error(`turnpike exited ${code}:\n${output}`)); });
  });
  await ready;
  return {
    output: () => output,
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
  '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
];

/// Launches Chromium, inside `netns` if given (through a wrapper script, which keeps
/// Playwright's pipe to the browser). `exclude` lists addresses the host resolver rules
/// must leave alone (without that, TURN over TCP yields no relay candidate). `home` is a
/// HOME whose NSS database holds the CAs the browser should trust.
export async function launch({ netns, exclude = [], home } = {}) {
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
    args: [...CHROMIUM_ARGS, `--host-resolver-rules=${rules.join(', ')}`],
  });
  // The page is served from here: no web server, in or out of a namespace.
  await context.route('http://localhost/**', (route) =>
    route.fulfill({ status: 200, contentType: 'text/html', body: PAGE }));
  return context;
}

export async function newPeer(context) {
  const page = await context.newPage();
  page.on('pageerror', (e) => log('page error:', e.message));
  await page.goto('http://localhost/call.html');
  return page;
}

/// Runs a call between `a` (offers) and `b` (answers) with ICE config `config`. The test
/// relays the SDP and trickled candidates. Resolves when both sides are connected, or
/// when `timeoutMs` passes or either side fails.
export async function call(a, b, config, { media = false, timeoutMs = 15000 } = {}) {
  const t0 = Date.now();
  await a.evaluate(([c, m]) => tp.create(c, { media: m, channel: true }), [config, media]);
  await b.evaluate(([c, m]) => tp.create(c, { media: m }), [config, media]);
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
  rmSync(scratch, { recursive: true, force: true });
}
