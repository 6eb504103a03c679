// client/turnpike.js in real browsers, on the NAT topology of topology.mjs. Each call is
// made with the module loaded from turnpike's own HTTP endpoint (http.client = true) and
// each end reports its outcome there; /metrics must then count exactly those reports.
//   - both ends on one network: path host;
//   - behind endpoint-independent (cone) NATs, STUN and TURN listed: srflx;
//   - behind symmetric NATs: relay (relay_udp, or relay_peer for the end whose own
//     candidate is its NAT mapping);
//   - the relay unreachable, behind symmetric NATs: failed.
// Chromium <-> Chromium and Firefox <-> Chromium in each (Firefox runs inside dev-a, see
// module_firefox.mjs). Then the signaling race of the app this module was written for: the
// answerer's candidates delivered before its answer. With the module the call connects;
// without the queue (the app's own addIceCandidate) it fails.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  SECRET, check, cleanup, credential, launch, log, run, sh, startTurnpike, timings,
} from './lib.mjs';
import { natTopology } from './topology.mjs';

const SERVER = '198.51.100.1';
const HTTP = `http://${SERVER}:9641`;
const DEAD = '198.51.100.99';
const here = dirname(fileURLToPath(import.meta.url));
const MODULE_PAGE = readFileSync(join(here, 'module.html'), 'utf8');

const turn = (server, transport = 'udp') => `turn:${server}:3478?transport=${transport}`;
const config = (urls, cred, policy = 'all') => ({
  iceServers: [{ urls, username: cred.username, credential: cred.credential }],
  iceTransportPolicy: policy,
});

/// A page of module.html in a Chromium context: `call(method, ...args)` runs tpm[method].
async function chromiumPeer(context) {
  const page = await context.newPage();
  page.on('pageerror', (e) => log('page error:', e.message));
  page.on('console', (m) => m.type() === 'error' && log('console:', m.text()));
  await page.goto(`http://localhost/module.html?server=${HTTP}`);
  await page.waitForFunction(() => window.tpmReady === true, null, { timeout: 10000 });
  return { name: 'chromium', call: (m, ...a) => page.evaluate(([x, y]) => window.tpm[x](...y), [m, a]), close: () => page.close() };
}

/// Firefox inside namespace `ns`, reached over the child's IPC channel.
function firefoxIn(ns) {
  const child = spawn('ip', ['netns', 'exec', ns, process.execPath, join(here, 'module_firefox.mjs')], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'], env: { ...process.env, MODULE_SERVER: HTTP },
  });
  let next = 0;
  const waiting = new Map();
  const ready = new Promise((resolve, reject) => {
    child.on('message', (m) => {
      if (m.ready) return resolve();
      const w = waiting.get(m.id);
      waiting.delete(m.id);
      if (m.ok) w.resolve(m.value); else w.reject(new Error(m.error));
    });
    child.on('exit', (code) => reject(new Error(`firefox side exited ${code}`)));
  });
  const ask = (msg) => new Promise((resolve, reject) => {
    const id = next++;
    waiting.set(id, { resolve, reject });
    child.send({ ...msg, id });
  });
  return {
    ready,
    async peer() {
      const page = await ask({ op: 'open' });
      return { name: 'firefox', call: (method, ...args) => ask({ op: 'call', page, method, args }), close: async () => {} };
    },
    stop: () => new Promise((r) => { child.once('exit', r); child.send({ op: 'exit' }); }),
  };
}

/// One call between `a` (offers) and `b`; the driver carries the signaling. `early`
/// delivers b's candidates to a before b's answer. Resolves to both ends' results.
async function callBetween(a, b, cfg, { naive = false, early = false, timeoutMs = 20000 } = {}) {
  const creds = cfg.iceServers[0];
  const credentialOf = { username: creds.username, password: creds.credential };
  await a.call('start', cfg, { naive, credential: credentialOf });
  await b.call('start', cfg, { naive, credential: credentialOf });
  await a.call('offer');
  for (const m of await a.call('take')) await b.call('receive', m);
  const t0 = Date.now();
  if (early) {
    // Hold b's answer until its candidates (to the end of gathering) have gone first.
    const held = [];
    while (Date.now() - t0 < 5000 && !held.some((m) => m.candidate === null)) {
      held.push(...await b.call('take'));
      await new Promise((r) => setTimeout(r, 50));
    }
    const cands = held.filter((m) => 'candidate' in m);
    check(cands.length > 1, `b gathered no candidate before the answer went: ${JSON.stringify(held)}`);
    for (const m of cands) await a.call('receive', m);
    for (const m of held.filter((x) => x.description)) await a.call('receive', m);
  }
  let sa;
  let sb;
  while (Date.now() - t0 < timeoutMs) {
    for (const [from, to] of [[a, b], [b, a]]) {
      for (const m of await from.call('take')) await to.call('receive', m);
    }
    [sa, sb] = [await a.call('state'), await b.call('state')];
    if (sa.reportStatus && sb.reportStatus) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  return [sa, sb];
}

/// The sum of every series of `name` with `labels`, from turnpike's /metrics.
function metricsNow(ns) {
  const text = sh('ip', 'netns', 'exec', ns, 'curl', '-sf', `${HTTP}/metrics`);
  return (name, labels = {}) => text.split('\n')
    .filter((l) => l.startsWith(`${name}{`) && Object.entries(labels).every(([k, v]) => l.includes(`${k}="${v}"`)))
    .reduce((sum, l) => sum + Number(l.split(' ').pop()), 0);
}

async function main() {
  const { NS, setNat, teardown } = natTopology([SERVER]);
  const turnpike = await startTurnpike(`
[server]
listen_udp = ["${SERVER}:3478"]
listen_tcp = ["${SERVER}:3478"]
shards = 1
[relay]
ipv4 = "${SERVER}"
ports = "49152-49999"
[auth]
secrets = ["${SECRET}"]
[http]
listen = "${SERVER}:9641"
client = true
cors_origins = ["*"]
`, NS.pub);
  const opts = { exclude: [SERVER, DEAD], media: true };
  const browserA = await launch({ ...opts, netns: NS.devA });
  const browserB = await launch({ ...opts, netns: NS.devB });
  for (const b of [browserA, browserB]) {
    await b.route(/^http:\/\/localhost\/module\.html/, (r) => r.fulfill({ status: 200, contentType: 'text/html', body: MODULE_PAGE }));
  }
  const firefox = firefoxIn(NS.devA);
  const reports = [];
  const before = metricsNow(NS.pub);
  // Each call its own user: one user's reports are rate-limited (a few a second).
  let calls = 0;
  const expect = async (name, pair, cfgOf, want, opts2) => {
    const cfg = cfgOf(`${name.replace(/ /g, '-')}-${calls++}`);
    const [a, b] = await pair();
    const results = await callBetween(a, b, cfg, opts2);
    for (const [peer, s] of [[a, results[0]], [b, results[1]]]) {
      check(s?.result, `${name}: ${peer.name} has no outcome: ${JSON.stringify(s)}`);
      const { outcome, path, browser } = s.result;
      log(`${name}: ${peer.name} ${outcome} via ${path} in ${s.result.connectMs} ms, report ${s.reportStatus}`);
      check(s.reportStatus === 204, `${name}: report answered ${s.reportStatus}`);
      check(want(outcome, path), `${name}: ${peer.name} ${outcome} via ${path}: ${JSON.stringify(s.result.events)}`);
      reports.push({ outcome, path, browser });
    }
    await a.call('close'); await b.call('close');
  };
  const connected = (paths) => (o, p) => o === 'connected' && paths.includes(p);
  try {
    await firefox.ready;
    const cr = (ctxA, ctxB) => async () => [await chromiumPeer(ctxA), await chromiumPeer(ctxB)];
    const ff = (ctxB) => async () => [await firefox.peer(), await chromiumPeer(ctxB)];
    const stunTurn = (who) => config([`stun:${SERVER}:3478`, turn(SERVER)], credential(SECRET, who));
    const deadTurn = (who) => config([turn(DEAD)], credential(SECRET, who));
    setNat('symmetric');
    for (const [browser, pair] of [['chromium', cr(browserA, browserA)], ['firefox', ff(browserA)]]) {
      await run(`${browser}: one network, path host`, () => expect('one network', pair, stunTurn, connected(['host'])));
    }
    for (const [browser, pair] of [['chromium', cr(browserA, browserB)], ['firefox', ff(browserB)]]) {
      await run(`${browser}: symmetric NATs, path relay`, () => expect('symmetric', pair, stunTurn,
        connected(['relay_udp', 'relay_peer'])));
    }
    await run('chromium and firefox: relay unreachable, failed', () => Promise.all([
      expect('unreachable', cr(browserA, browserB), deadTurn,
        (o) => o === 'failed', { timeoutMs: 60000 }),
      expect('unreachable', ff(browserB), deadTurn,
        (o) => o === 'failed', { timeoutMs: 60000 }),
    ]));
    setNat('cone');
    for (const [browser, pair] of [['chromium', cr(browserA, browserB)], ['firefox', ff(browserB)]]) {
      await run(`${browser}: cone NATs, path srflx`, () => expect('cone', pair, stunTurn, connected(['srflx'])));
    }

    await run('metrics count exactly the reports', async () => {
      const after = metricsNow(NS.pub);
      const total = (m) => m('turnpike_client_connections_total');
      check(total(after) - total(before) === reports.length, `${total(after) - total(before)} counted, ${reports.length} reported`);
      const seen = new Map();
      for (const r of reports) seen.set(JSON.stringify(r), (seen.get(JSON.stringify(r)) ?? 0) + 1);
      for (const [key, n] of seen) {
        const labels = JSON.parse(key);
        const got = after('turnpike_client_connections_total', labels) - before('turnpike_client_connections_total', labels);
        check(got === n, `${key}: ${got} counted, ${n} reported`);
      }
      log('counted', JSON.stringify([...seen]));
    });

    setNat('symmetric');
    const relayOnly = (who) => config([turn(SERVER)], credential(SECRET, who), 'relay');
    await run('candidates before the answer: the module connects', async () => {
      const [a, b] = await cr(browserA, browserB)();
      const [sa, sb] = await callBetween(a, b, relayOnly('early'), { early: true });
      check(sa?.result?.outcome === 'connected' && sb?.result?.outcome === 'connected', `${JSON.stringify([sa, sb])}`);
      await a.call('close'); await b.call('close');
    });
    await run('candidates before the answer: without the queue the call fails', async () => {
      const [a, b] = await cr(browserA, browserB)();
      const [sa] = await callBetween(a, b, relayOnly('naive'), { early: true, naive: true, timeoutMs: 12000 });
      check(sa?.result?.outcome !== 'connected', `connected without the queue: ${JSON.stringify(sa)}`);
      const errors = await a.call('state');
      log('naive side:', JSON.stringify(errors.connection));
      await a.call('close'); await b.call('close');
    });
  } finally {
    await firefox.stop().catch(() => {});
    await browserA.close().catch(() => {});
    await browserB.close().catch(() => {});
    await turnpike.stop().catch(() => {});
    teardown();
    await cleanup();
  }
  log('timings:', timings().join('; '));
}

main().catch(async (e) => {
  console.error(e);
  await cleanup();
  process.exit(1);
});
