// A call in a fleet (README "Scale out"), in real Chromium behind symmetric NATs
// (topology.mjs): turnpike nodes A (region "us") and B (region "eu") on public addresses
// share a real redis-server (Debian's, no persistence) on the public namespace's loopback.
// Each page fetches its own credential from node A's credential API itself (fetch with
// the bearer token; http.cors_origins lets the page's origin in), naming its caller's
// region with ?region=eu, and calls relay-only with the iceServers it got:
//   - control: without a region A hands out its own URIs (equal load, then by name);
//   - with ?region=eu A hands out B's URIs only (credential_nodes = 1), and the call is
//     relayed by B on both ends; data flows;
//   - B drains (SIGUSR1): A's API stops listing B within about a heartbeat (measured; it
//     must happen within cluster.ttl: a draining node keeps its heartbeat, so it could
//     never drop out by age);
//   - a second call, its credentials again from A with ?region=eu, is relayed by A (no
//     node of region eu has room, so another region's) and data flows;
//   - two TTLs into the drain, A's registry still lists B as draining, its credentials
//     still lack B, and the first call is still connected, relayed by B; data flows.
import { spawn } from 'node:child_process';
import {
  SECRET, call, check, cleanup, launch, log, logs, newPeer, run, sh, startTurnpike, stats, timings,
} from './lib.mjs';
import { natTopology } from './topology.mjs';

const A = '198.51.100.1';
const B = '198.51.100.2';
const TOKEN = 'fleet-call-credentials-token';
const ADMIN = 'fleet-call-admin-token-0123';
const REDIS_PORT = 6379; // on the public namespace's own loopback
const HEARTBEAT_MS = 500;
const TTL_MS = 2000;
const urisOf = (addr) => [`turn:${addr}:3478?transport=udp`, `turn:${addr}:3478?transport=tcp`];

const nodeConfig = (name, addr, region) => `
[server]
listen_udp = ["${addr}:3478"]
listen_tcp = ["${addr}:3478"]
shards = 1
[relay]
ipv4 = "${addr}"
ports = "49152-49999"
[auth]
secrets = ["${SECRET}"]
[http]
listen = "${addr}:9641"
credentials_token = "${TOKEN}"
admin_token = "${ADMIN}"
# The page's origin (lib.mjs serves it as http://localhost/call.html).
cors_origins = ["http://localhost"]
[cluster]
redis_url = "redis://127.0.0.1:${REDIS_PORT}"
node_name = "${name}"
region = "${region}"
uris = [${urisOf(addr).map((u) => `"${u}"`).join(', ')}]
heartbeat = "${HEARTBEAT_MS}ms"
ttl = "${TTL_MS}ms"
credential_nodes = 1
`;

/// Debian's redis-server in namespace `ns` on its loopback, nothing kept on disk.
async function startRedis(ns) {
  const child = spawn('ip', ['netns', 'exec', ns, 'redis-server', '--port', `${REDIS_PORT}`,
    '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`redis-server did not start:\n${output}`)), 10000);
    const onData = (d) => {
      output += d;
      if (output.includes('Ready to accept connections')) { clearTimeout(timer); resolve(); }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('exit', (code) => { clearTimeout(timer); reject(new Error(`redis-server exited ${code}:\n${output}`)); });
  });
  return child;
}

/// Node A's registry (GET /api/v1/nodes, admin token), asked from inside `ns`.
function fleetAsSeenByA(ns) {
  const out = sh('ip', 'netns', 'exec', ns, 'curl', '-sf', '-H', `Authorization: Bearer ${ADMIN}`,
    `http://${A}:9641/api/v1/nodes`);
  return JSON.parse(out).nodes;
}

/// A credential from node A's API, fetched by the page itself (a CORS request with the
/// bearer token, as a browser app calls it directly); `region` names the caller's.
async function credentialFromA(page, user, region) {
  const query = `user=${user}${region ? `&region=${region}` : ''}`;
  const r = await page.evaluate(async ([url, token]) => {
    const res = await fetch(url, { headers: { Authorization: `Bearer ${token}` } });
    return { status: res.status, body: res.ok ? await res.json() : await res.text() };
  }, [`http://${A}:9641/api/v1/credentials?${query}`, TOKEN]);
  check(r.status === 200, `credential for ${user}: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
}

const relayOnly = (cred) => ({ iceServers: cred.iceServers, iceTransportPolicy: 'relay' });
const same = (x, y) => JSON.stringify(x) === JSON.stringify(y);

/// The call `r` between `a` and `b` connected.
async function connected(a, r) {
  check(r.connected, `not connected: ${JSON.stringify(r)} ${JSON.stringify(await logs(a))}`);
  log(`connected in ${r.ms} ms`);
}

/// Both ends of the call's selected pair are relay candidates on `relay`, and data flows.
async function relayedThrough(a, b, relay) {
  await echoes(a);
  for (const [page, who] of [[a, 'a'], [b, 'b']]) {
    const s = await stats(page);
    log(`${who}: selected pair`, JSON.stringify(s));
    check(s.local === 'relay' && s.remote === 'relay', `${who}: pair ${s.local}/${s.remote}, wanted relay/relay`);
    check(s.localAddress === relay, `${who}: relayed by ${s.localAddress}, wanted ${relay}`);
    check(s.remoteAddress === relay, `${who}: the other end relayed by ${s.remoteAddress}, wanted ${relay}`);
  }
}

/// Ten pings from `a` over the data channel, all answered.
async function echoes(a) {
  const n = await a.evaluate(() => { tp.echoed = 0; return tp.echo(10, 5000); });
  check(n === 10, `data channel echo: ${n}/10`);
}

/// Polls `cond` every 50 ms until it holds or `ms` pass; returns how long it took.
async function waitUntil(what, ms, cond) {
  const t0 = Date.now();
  for (;;) {
    if (await cond()) return Date.now() - t0;
    check(Date.now() - t0 < ms, `${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/// Redis, then nodes A and B in namespace `ns`, recorded in `fleet` as they start (for
/// stopFleet); resolves once A's registry lists both.
async function startFleet(ns, fleet) {
  fleet.redis = await startRedis(ns);
  for (const [name, addr, region] of [['a', A, 'us'], ['b', B, 'eu']]) {
    fleet.nodes.push(await startTurnpike(nodeConfig(name, addr, region), ns));
  }
  await run('the fleet forms: A lists A and B', async () => {
    const took = await waitUntil('A lists both nodes', 3 * TTL_MS, () => {
      const names = fleetAsSeenByA(ns).map((n) => n.name).sort();
      return same(names, ['a', 'b']);
    });
    log(`A listed both nodes ${took} ms after B started`);
  });
  return fleet.nodes;
}

async function stopFleet({ nodes, redis }) {
  for (const n of nodes) await n.stop().catch(() => {});
  if (redis && redis.exitCode === null) {
    const gone = new Promise((r) => { redis.once('exit', r); setTimeout(r, 3000); });
    process.kill(redis.pid, 'SIGTERM'); // teardown() SIGKILLs it if it is still there
    await gone;
  }
}

async function main() {
  const { NS, setNat, teardown } = natTopology([A, B]);
  setNat('symmetric');
  const fleet = { nodes: [], redis: null };
  let browserA;
  let browserB;
  try {
    const [, nodeB] = await startFleet(NS.pub, fleet);
    const opts = { exclude: [A, B], media: false };
    browserA = await launch({ ...opts, netns: NS.devA });
    browserB = await launch({ ...opts, netns: NS.devB });
    const pages = async () => [await newPeer(browserA), await newPeer(browserB)];
    const [a1, b1] = await pages();

    await run('control: without a region A hands out its own URIs', async () => {
      const c = await credentialFromA(a1, 'control', null);
      check(same(c.uris, urisOf(A)), `no region: ${JSON.stringify(c.uris)}, wanted A's`);
    });

    await run('call 1: credentials from A for region eu, relayed by B', async () => {
      const [ca, cb] = [await credentialFromA(a1, 'call1-a', 'eu'), await credentialFromA(b1, 'call1-b', 'eu')];
      for (const c of [ca, cb]) check(same(c.uris, urisOf(B)), `region eu: ${JSON.stringify(c.uris)}, wanted B's only`);
      await connected(a1, await call(a1, b1, [relayOnly(ca), relayOnly(cb)], { timeoutMs: 20000 }));
      await relayedThrough(a1, b1, B);
    });

    const [a2, b2] = await pages();
    let ca2;
    let drainedAt;
    await run('B drains: A stops listing B within the TTL', async () => {
      drainedAt = Date.now();
      nodeB.signal('SIGUSR1');
      await nodeB.waitFor('draining on SIGUSR1');
      // Within the TTL of the signal: a draining node heartbeats on, so only its draining
      // flag can take it out of the credentials.
      await waitUntil('B out of A\'s credentials', drainedAt + TTL_MS - Date.now(), async () => {
        ca2 = await credentialFromA(a2, 'call2-a', 'eu');
        return !ca2.uris.some((u) => u.includes(B));
      });
      const took = Date.now() - drainedAt;
      log(`B left A's credentials ${took} ms after SIGUSR1 (heartbeat ${HEARTBEAT_MS} ms, ttl ${TTL_MS} ms)`);
    });

    await run('call 2: credentials from A for region eu, relayed by A', async () => {
      const cb2 = await credentialFromA(b2, 'call2-b', 'eu');
      for (const c of [ca2, cb2]) check(same(c.uris, urisOf(A)), `region eu, B draining: ${JSON.stringify(c.uris)}, wanted A's only`);
      await connected(a2, await call(a2, b2, [relayOnly(ca2), relayOnly(cb2)], { timeoutMs: 20000 }));
      await relayedThrough(a2, b2, A);
    });

    await run('call 1 outlives the drain: still relayed by B, data flows', async () => {
      // Two TTLs into the drain: B heartbeats on as a draining node (it neither ages out
      // of the registry nor comes back into the credentials), and its calls go on.
      await new Promise((r) => setTimeout(r, Math.max(0, drainedAt + 2 * TTL_MS - Date.now())));
      const b = fleetAsSeenByA(NS.pub).find((n) => n.name === 'b');
      check(b?.draining === true, `B in A's registry: ${JSON.stringify(b)}`);
      const c = await credentialFromA(a1, 'late', 'eu');
      check(same(c.uris, urisOf(A)), `region eu, B draining: ${JSON.stringify(c.uris)}, wanted A's only`);
      const states = [await a1.evaluate(() => tp.state()), await b1.evaluate(() => tp.state())];
      check(same(states, ['connected', 'connected']), `call 1: ${states}`);
      await relayedThrough(a1, b1, B);
    });
    for (const p of [a1, b1, a2, b2]) await p.close();
  } finally {
    await browserA?.close().catch(() => {});
    await browserB?.close().catch(() => {});
    await stopFleet(fleet);
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
