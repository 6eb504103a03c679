// The self-test page (GET /selftest) in headless Chromium, as an admin opens it: against a
// healthy turnpike it must read "works" for UDP, TCP and TLS; against one whose relay port
// range is dropped by nftables (inside a network namespace this script creates) it must
// read the failure in words. Screenshots go to SCREENSHOT_DIR.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  check, cleanup as cleanupLib, freePort, launch, log, makeTlsFixture, scratchDir, sh, startTurnpike,
} from './lib.mjs';

const TOKEN = 'selftest-token-0123456789';
const SECRET = 'selftest-secret-123';
const scratch = scratchDir('selftest-');
const shots = process.env.SCREENSHOT_DIR || scratch;
const namespaces = new Set();
/// The page's credential API and /selftest must be up before the browser opens it.
const HTTP_UP = { ready: 'HTTP endpoint up' };
const VIEWPORT = { width: 1100, height: 900 };

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
  const turnpike = await startTurnpike(config({ udp, tcp, tls, http, ports: '58000-58099', fx }), undefined, HTTP_UP);
  const context = await launch({ home: fx.home, loopback: true, viewport: VIEWPORT, media: false });
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
  const turnpike = await startTurnpike(config({ udp, tcp, http, ports: '58100-58199' }), ns, HTTP_UP);
  const context = await launch({ netns: ns, loopback: true, viewport: VIEWPORT, media: false });
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
  await cleanupLib();
  for (const ns of namespaces) {
    try { sh('ip', 'netns', 'del', ns); } catch (e) { log(e.message); }
  }
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
