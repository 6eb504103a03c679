// The self-test page (GET /selftest) in headless Chromium, as an admin opens it: against a
// healthy turnpike it must read "works" for UDP, TCP and TLS; against one whose relay port
// range is dropped by nftables (inside a network namespace this script creates) it must
// read the failure in words. Screenshots go to SCREENSHOT_DIR.
// Helpers are copied from lib.mjs on purpose: that file is being reworked for Firefox.
import { spawn, execFileSync } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const TOKEN = 'selftest-token-0123456789';
const SECRET = 'selftest-secret-123';
const scratch = mkdtempSync(join(tmpdir(), 'turnpike-selftest-'));
const shots = process.env.SCREENSHOT_DIR || scratch;
const children = new Set();
const namespaces = new Set();

function log(...args) {
  console.log(`[${new Date().toISOString().slice(11, 23)}]`, ...args);
}

function check(cond, msg) {
  if (!cond) throw new Error(`check failed: ${msg}`);
}

function sh(cmd, ...args) {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    throw new Error(`${cmd} ${args.join(' ')}: ${e.stderr || e.message}`);
  }
}

async function freePort() {
  const s = createSocket('udp4');
  await new Promise((r) => s.bind(0, '127.0.0.1', r));
  const { port } = s.address();
  s.close();
  return port;
}

/// A test CA, a server certificate for 127.0.0.1 and a browser HOME trusting the CA.
function makeTlsFixture() {
  const dir = mkdtempSync(join(scratch, 'tls-'));
  const p = (f) => join(dir, f);
  sh('openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2',
    '-subj', '/CN=turnpike selftest CA', '-keyout', p('ca.key'), '-out', p('ca.crt'),
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign');
  sh('openssl', 'req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=127.0.0.1',
    '-keyout', p('server.key'), '-out', p('server.csr'));
  writeFileSync(p('ext.cnf'), 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
  sh('openssl', 'x509', '-req', '-in', p('server.csr'), '-CA', p('ca.crt'), '-CAkey', p('ca.key'),
    '-CAcreateserial', '-days', '2', '-extfile', p('ext.cnf'), '-out', p('server.crt'));
  const home = p('home');
  mkdirSync(join(home, '.pki', 'nssdb'), { recursive: true });
  sh('certutil', '-d', `sql:${home}/.pki/nssdb`, '-N', '--empty-password');
  sh('certutil', '-d', `sql:${home}/.pki/nssdb`, '-A', '-t', 'C,,', '-n', 'selftest-ca', '-i', p('ca.crt'));
  return { cert: p('server.crt'), key: p('server.key'), home };
}

/// Starts turnpike (inside `netns` if given); resolves once its HTTP endpoint is up.
async function startTurnpike(config, netns) {
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
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`turnpike did not start:\n${output}`)), 10000);
    const onData = (d) => {
      output += d;
      if (output.includes('HTTP endpoint up')) { clearTimeout(timer); resolve(); }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('exit', (code) => { clearTimeout(timer); reject(new Error(`turnpike exited ${code}:\n${output}`)); });
  });
  return {
    async stop() {
      if (child.exitCode !== null) return;
      const done = new Promise((r) => child.once('exit', r));
      child.kill('SIGINT'); // stop at once: SIGTERM would drain live allocations first
      await done;
      children.delete(child);
    },
  };
}

async function launch({ netns, home }) {
  let executablePath = '/usr/bin/chromium';
  if (netns) {
    // A wrapper that keeps Playwright's pipe to the browser inside the namespace.
    executablePath = join(scratch, `chromium-${netns}.sh`);
    writeFileSync(executablePath, `#!/bin/sh\nexec ip netns exec ${netns} /usr/bin/chromium "$@"\n`);
    chmodSync(executablePath, 0o755);
  }
  const profile = mkdtempSync(join(scratch, 'profile-'));
  return chromium.launchPersistentContext(profile, {
    executablePath,
    headless: true,
    env: home ? { ...process.env, HOME: home } : process.env,
    viewport: { width: 1100, height: 900 },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--allow-loopback-in-peer-connection',
      '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1'],
  });
}

function config({ udp, tcp, tls, http, ports, fx }) {
  return `
[server]
listen_udp = ["127.0.0.1:${udp}"]
listen_tcp = ["127.0.0.1:${tcp}"]
${fx ? `listen_tls = ["127.0.0.1:${tls}"]` : ''}
shards = 1
${fx ? `[tls]\ncert = "${fx.cert}"\nkey = "${fx.key}"` : ''}
[relay]
ipv4 = "127.0.0.1"
ports = "${ports}"
[auth]
secrets = ["${SECRET}"]
[peers]
# Test only: the browser's relay candidates are on loopback.
allow = ["127.0.0.0/8"]
[http]
listen = "127.0.0.1:${http}"
credentials_token = "${TOKEN}"
selftest = true
uris = ["turn:127.0.0.1:${udp}?transport=udp", "turn:127.0.0.1:${tcp}?transport=tcp"${fx ? `, "turns:127.0.0.1:${tls}?transport=tcp"` : ''}]
`;
}

/// Opens the page, runs it with the token and returns the verdict lines.
async function runPage(context, http, shot) {
  const page = await context.newPage();
  page.on('pageerror', (e) => log('page error:', e.message));
  await page.goto(`http://127.0.0.1:${http}/selftest`);
  await page.fill('#token', TOKEN);
  const t0 = Date.now();
  await page.click('#run');
  await page.waitForSelector('body[data-done="1"]', { timeout: 60000 });
  const verdicts = await page.$$eval('.verdict', (els) => Object.fromEntries(els.map((e) => [e.id, e.textContent])));
  const rows = await page.$$eval('#candidates tr', (trs) => trs.length);
  const path = join(shots, shot);
  await page.screenshot({ path, fullPage: true });
  log(`page done in ${Date.now() - t0} ms, ${rows} candidate rows, screenshot ${path}`);
  for (const [k, v] of Object.entries(verdicts)) log(`  ${k}: ${v}`);
  const results = await page.evaluate(() => window.selftestResults);
  await page.close();
  return { verdicts, rows, results };
}

async function healthy() {
  const [udp, tcp, tls, http] = [await freePort(), await freePort(), await freePort(), await freePort()];
  const fx = makeTlsFixture();
  const turnpike = await startTurnpike(config({ udp, tcp, tls, http, ports: '58000-58099', fx }));
  const context = await launch({ home: fx.home });
  try {
    const { verdicts, rows, results } = await runPage(context, http, 'selftest-healthy.png');
    for (const t of ['udp', 'tcp', 'tls']) {
      const v = verdicts[`verdict-${t}`] || '';
      check(v.includes(`${t.toUpperCase()} relay works`), `${t}: ${v}`);
      check(results[t].connected === true, `${t} connected`);
      check(results[t].pair && results[t].pair.local.startsWith('relay'), `${t} pair ${JSON.stringify(results[t].pair)}`);
      check(results[t].relayProtocol === t, `${t} relayProtocol ${results[t].relayProtocol}`);
      check(results[t].pair.bytesSent > 0 && results[t].pair.bytesReceived > 0, `${t} bytes ${JSON.stringify(results[t].pair)}`);
    }
    check(rows >= 6, `candidate rows ${rows}`);
  } finally {
    await context.close();
    await turnpike.stop();
  }
}

async function blockedRelayRange() {
  const ns = `tpself${process.pid}`;
  sh('ip', 'netns', 'add', ns);
  namespaces.add(ns);
  sh('ip', 'netns', 'exec', ns, 'ip', 'link', 'set', 'lo', 'up');
  const rules = join(scratch, 'block.nft');
  // The listeners stay reachable; the relay range is dropped, as a cloud firewall would.
  writeFileSync(rules, 'table inet selftest {\n chain input {\n  type filter hook input priority 0; policy accept;\n  udp dport 58100-58199 drop\n }\n}\n');
  sh('ip', 'netns', 'exec', ns, 'nft', '-f', rules);
  const [udp, tcp, http] = [await freePort(), await freePort(), await freePort()];
  const turnpike = await startTurnpike(config({ udp, tcp, http, ports: '58100-58199' }), ns);
  const context = await launch({ netns: ns });
  try {
    const { verdicts, results } = await runPage(context, http, 'selftest-blocked-relay-range.png');
    for (const t of ['udp', 'tcp']) {
      const v = verdicts[`verdict-${t}`] || '';
      check(v.includes(`${t.toUpperCase()} relay fails`) && v.includes('relay port range is blocked'), `${t}: ${v}`);
      check(results[t].connected === false && results[t].relays.length > 0, `${t}: ${JSON.stringify(results[t])}`);
    }
    check((verdicts['verdict-tls'] || '').includes('not offered'), `tls: ${verdicts['verdict-tls']}`);
  } finally {
    await context.close();
    await turnpike.stop();
  }
}

async function cleanup() {
  for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
  for (const ns of namespaces) {
    try { sh('ip', 'netns', 'del', ns); } catch (e) { log(e.message); }
  }
  rmSync(scratch, { recursive: true, force: true });
}

async function main() {
  let t = Date.now();
  await healthy();
  log(`ok healthy server: UDP, TCP and TLS work (${((Date.now() - t) / 1000).toFixed(1)}s)`);
  t = Date.now();
  await blockedRelayRange();
  log(`ok blocked relay range: failure read on the page (${((Date.now() - t) / 1000).toFixed(1)}s)`);
  await cleanup();
}

process.on('SIGTERM', async () => { await cleanup(); process.exit(1); });
main().catch(async (e) => {
  console.error(e);
  await cleanup();
  process.exit(1);
});
