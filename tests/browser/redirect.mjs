// Redirects that browsers follow (RFC 8489 §10, 300 Try Alternate): relay-only calls
// whose only ICE server is a node that will not take them end up relayed by the node its
// ALTERNATE-SERVER names, on the first try. Real addresses in network namespaces (libwebrtc
// ignores a redirect to loopback), the devices behind symmetric NATs (topology.mjs):
//   - node A drains (SIGUSR1) with server.alternate = B: Chromium over UDP and over TCP,
//     and Firefox, each listing only A, connect through B;
//   - node F is full (relay.max_allocations, taken by a call through F itself): a second
//     call listing only F connects through B, in Chromium and in Firefox.
// Firefox runs inside dev-a (puppeteer drives it over a socket, which a namespace
// cannot share with this process): this script runs itself there as the Firefox side.
import { fileURLToPath } from 'node:url';
import { spawn } from 'node:child_process';
import {
  SECRET, call, check, cleanup, credential, launch, launchFirefox, log, logs, newPeer, run, startTurnpike,
  stats, timings,
} from './lib.mjs';
import { natTopology } from './topology.mjs';

const A = '198.51.100.1';
const B = '198.51.100.2';
const F = '198.51.100.3';

const relayOnly = (server, transport, who) => {
  const c = credential(SECRET, who);
  return {
    iceServers: [{ urls: [`turn:${server}:3478?transport=${transport}`], username: c.username, credential: c.credential }],
    iceTransportPolicy: 'relay',
  };
};

/// Both ends of the call's selected pair are relay candidates on `relay` over `protocol`,
/// and data flows over it.
async function relayedThrough(a, b, r, relay, protocol) {
  check(r.connected, `not connected: ${JSON.stringify(r)} ${JSON.stringify(await logs(a))}`);
  log(`connected in ${r.ms} ms`);
  check(await a.evaluate(() => tp.echo(10, 5000)) === 10, 'data channel echo');
  for (const [page, who] of [[a, 'a'], [b, 'b']]) {
    const s = await stats(page);
    log(`${who}: selected pair`, JSON.stringify(s));
    check(s.local === 'relay', `${who}: local candidate ${s.local}`);
    check(s.localAddress === relay, `${who}: relayed by ${s.localAddress}, wanted ${relay}`);
    check(s.relayProtocol === protocol, `${who}: relayProtocol ${s.relayProtocol}, wanted ${protocol}`);
  }
}

/// The Firefox side, run inside dev-a: one relay-only call between two pages listing only
/// REDIRECT_SERVER, which must be relayed by REDIRECT_EXPECT.
async function firefoxSide() {
  const [server, expect] = [process.env.REDIRECT_SERVER, process.env.REDIRECT_EXPECT];
  const firefox = await launchFirefox();
  try {
    const [a, b] = [await newPeer(firefox), await newPeer(firefox)];
    const r = await call(a, b, relayOnly(server, 'udp', 'firefox'), { timeoutMs: 20000 });
    await relayedThrough(a, b, r, expect, 'udp');
  } finally {
    await firefox.close().catch(() => {});
    await cleanup();
  }
}

/// Runs firefoxSide in namespace `ns`; resolves when it succeeded, throws when it failed.
function firefoxIn(ns, server, expect) {
  const child = spawn('ip', ['netns', 'exec', ns, process.execPath, fileURLToPath(import.meta.url)], {
    stdio: 'inherit',
    env: { ...process.env, REDIRECT_FIREFOX: '1', REDIRECT_SERVER: server, REDIRECT_EXPECT: expect },
  });
  return new Promise((resolve, reject) => child.on('exit', (code) => (code === 0
    ? resolve() : reject(new Error(`firefox in ${ns}: exit ${code}`)))));
}

const nodeConfig = (addr, { alternate = [], maxAllocations = 1000 } = {}) => `
[server]
listen_udp = ["${addr}:3478"]
listen_tcp = ["${addr}:3478"]
shards = 1
alternate = [${alternate.map((x) => `"${x}:3478"`).join(', ')}]
[relay]
ipv4 = "${addr}"
ports = "49152-49999"
max_allocations = ${maxAllocations}
[auth]
secrets = ["${SECRET}"]
[http]
enabled = false
`;

async function main() {
  const { NS, setNat, teardown } = natTopology([A, B, F]);
  setNat('symmetric');
  const nodes = [];
  let browserA;
  let browserB;
  try {
    const nodeA = await startTurnpike(nodeConfig(A, { alternate: [B] }), NS.pub);
    nodes.push(nodeA, await startTurnpike(nodeConfig(B), NS.pub));
    // Two allocations fill F: one for each end of the call that goes through it.
    nodes.push(await startTurnpike(nodeConfig(F, { alternate: [B], maxAllocations: 2 }), NS.pub));
    nodeA.signal('SIGUSR1');
    await nodeA.waitFor('draining on SIGUSR1');
    const opts = { exclude: [A, B, F] };
    browserA = await launch({ ...opts, netns: NS.devA, media: false });
    browserB = await launch({ ...opts, netns: NS.devB, media: false });
    const pages = async () => [await newPeer(browserA), await newPeer(browserB)];

    for (const transport of ['udp', 'tcp']) {
      await run(`chromium, A draining: a call listing only A relays through B over ${transport}`, async () => {
        const [a, b] = await pages();
        const r = await call(a, b, relayOnly(A, transport, 'cr-drain'), { timeoutMs: 20000 });
        await relayedThrough(a, b, r, B, transport);
        await a.close(); await b.close();
      });
    }
    await run('firefox, A draining: a call listing only A relays through B', () => firefoxIn(NS.devA, A, B));

    await run('chromium, F full: a call listing only F relays through B', async () => {
      // The call that fills F stays up while the second one is made.
      const [a1, b1] = await pages();
      const first = await call(a1, b1, relayOnly(F, 'udp', 'cr-fill'), { timeoutMs: 20000 });
      await relayedThrough(a1, b1, first, F, 'udp');
      const [a2, b2] = await pages();
      const r = await call(a2, b2, relayOnly(F, 'udp', 'cr-full'), { timeoutMs: 20000 });
      await relayedThrough(a2, b2, r, B, 'udp');
      await run('firefox, F full: a call listing only F relays through B', () => firefoxIn(NS.devA, F, B));
      for (const p of [a1, b1, a2, b2]) await p.close();
    });
  } finally {
    await browserA?.close().catch(() => {});
    await browserB?.close().catch(() => {});
    for (const n of nodes) await n.stop().catch(() => {});
    teardown();
    await cleanup();
  }
  log('timings:', timings().join('; '));
}

const side = process.env.REDIRECT_FIREFOX ? firefoxSide : main;
side().catch(async (e) => {
  console.error(e);
  await cleanup();
  process.exit(1);
});
