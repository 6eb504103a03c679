// The kernel fast path (issue 19) under a real WebRTC call: turnpike with native XDP on
// its one interface behind a router, Chromium A relay-only over UDP in the client's
// network, Chromium B with host candidates only in the peer's (two relay-only ends on one
// server would be relay-to-relay, which stays on the socket path by design). The call
// connects with media and a data channel, and /metrics says the kernel carried most of
// its packets each way. Negative controls: once the sessions API ends the allocation the
// kernel carries nothing more; with the fast path disabled the same call works and the
// kernel carries nothing. All in network namespaces this test creates (root).
//
//   client c0 10.12.1.2 -- r1 | router | r0 -- s0 10.12.0.2 turnpike, XDP on s0
//                                      | r2 -- p0 10.12.2.2 peer
import {
  SECRET, call, check, cleanup, credential, launch, log, logs, newPeer, parseMetrics, run, sh, startTurnpike, stats, timings,
} from './lib.mjs';
import { routedTopology } from './topology.mjs';

const SERVER = '10.12.0.2';
const HTTP = '127.0.0.1:9310';
const ADMIN = 'admin-token-0123456789';
const USER = 'fastpath-a';
const DIRS = ['client_to_peer', 'peer_to_client'];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function config(fastpath) {
  return `
[server]
listen_udp = ["${SERVER}:3478"]
shards = 1
[relay]
ipv4 = "${SERVER}"
ports = "49152-49999"
[auth]
secrets = ["${SECRET}"]
[peers]
# The peer's network is private: allowed as an operator would for an internal peer.
allow = ["10.12.2.0/24"]
[http]
listen = "${HTTP}"
admin_token = "${ADMIN}"
[fastpath]
enabled = ${fastpath}
interface = "s0"
mode = "auto"
`;
}

/// turnpike's /metrics read inside its namespace: (name, labels) -> sum of the samples.
function scrape(ns) {
  return parseMetrics(sh('ip', 'netns', 'exec', ns, 'curl', '-sf', '--max-time', '5', `http://${HTTP}/metrics`));
}

/// Kernel and total relayed packets per direction, as /metrics counts them now.
function counts(ns) {
  const m = scrape(ns);
  const out = {};
  for (const d of DIRS) {
    out[d] = {
      kernel: m('turnpike_fastpath_packets_total', { direction: d }),
      relayed: m('turnpike_relayed_packets_total', { direction: d, transport: 'udp' }),
    };
  }
  out.mode = ['xdp', 'xdp-generic', 'tc', 'off'].find((k) => m('turnpike_fastpath_info', { mode: k }) === 1);
  return out;
}

/// A call from A (relay-only, turnpike over UDP) to B (host candidates only) with media
/// and a data channel; checks what the browsers see and returns the pages.
async function relayedCall(browserA, browserB) {
  const [a, b] = [await newPeer(browserA), await newPeer(browserB)];
  const c = credential(SECRET, USER);
  const configA = {
    iceServers: [{ urls: [`turn:${SERVER}:3478?transport=udp`], username: c.username, credential: c.credential }],
    iceTransportPolicy: 'relay',
  };
  const r = await call(a, b, [configA, { iceServers: [] }], { media: true, timeoutMs: 20000 });
  check(r.connected, `not connected: ${JSON.stringify(r)} ${JSON.stringify(await logs(a))}`);
  log(`connected in ${r.ms} ms`);
  const echoed = await a.evaluate(() => tp.echo(50, 5000));
  check(echoed === 50, `data channel echoed ${echoed}/50`);
  const [a1, b1] = [await stats(a), await stats(b)];
  await sleep(3000);
  const [a2, b2] = [await stats(a), await stats(b)];
  log('selected pair at A', JSON.stringify(a2));
  check(a2.local === 'relay' && a2.remote === 'host', `A's pair ${a2.local}/${a2.remote}`);
  check(a2.relayProtocol === 'udp', `relayProtocol ${a2.relayProtocol}`);
  check(b2.local === 'host' && b2.remote === 'relay', `B's pair ${b2.local}/${b2.remote}`);
  for (const [who, s1, s2] of [['A', a1, a2], ['B', b1, b2]]) {
    check(s2.framesDecoded > s1.framesDecoded + 10, `${who} frames ${s1.framesDecoded} -> ${s2.framesDecoded}`);
    check(s2.audioPackets > s1.audioPackets, `${who} audio ${s1.audioPackets} -> ${s2.audioPackets}`);
  }
  return { a, b };
}

/// The totals agree with each other and the kernel carried at least `share` of each
/// direction's packets.
function checkKernelShare(n, share) {
  for (const d of DIRS) {
    const { kernel, relayed } = n[d];
    log(`${d}: kernel ${kernel} of ${relayed} relayed (${(100 * kernel / relayed).toFixed(1)}%)`);
    check(kernel > 0, `${d}: the kernel relayed nothing`);
    check(relayed >= kernel, `${d}: relayed ${relayed} < kernel ${kernel}`);
    check(kernel >= share * relayed, `${d}: kernel ${kernel} < ${share * 100}% of ${relayed}`);
  }
}

/// Ends A's allocation through the sessions API; the kernel must then carry nothing more.
async function endAllocation(ns, pages) {
  const out = sh('ip', 'netns', 'exec', ns, 'curl', '-sf', '--max-time', '5', '-X', 'DELETE',
    '-H', `Authorization: Bearer ${ADMIN}`, `http://${HTTP}/api/v1/sessions?user=${USER}`);
  check(JSON.parse(out).ended === 1, `DELETE answered ${out}`);
  // Packets already in flight may still be counted: take the baseline a moment later.
  await sleep(500);
  const before = counts(ns);
  const s1 = await stats(pages.b);
  await sleep(2000);
  const after = counts(ns);
  const s2 = await stats(pages.b);
  for (const d of DIRS) {
    log(`${d} after the allocation ended: kernel ${before[d].kernel} -> ${after[d].kernel}`);
    check(after[d].kernel === before[d].kernel, `${d}: the kernel still relays`);
  }
  log(`B's frames after the end: ${s1.framesDecoded} -> ${s2.framesDecoded}`);
  check(s2.framesDecoded - s1.framesDecoded < 5, 'media still reaches B without an allocation');
}

async function cases(NS, browserA, browserB) {
  let turnpike = await startTurnpike(config(true), NS.server, { ready: 'HTTP endpoint up' });
  let pages;
  await run('fast path on: relayed call carried by the kernel', async () => {
    check(counts(NS.server).mode === 'xdp', 'native XDP attached');
    pages = await relayedCall(browserA, browserB);
    checkKernelShare(counts(NS.server), 0.8);
  });
  await run('fast path on, allocation ended: the kernel stops', () => endAllocation(NS.server, pages));
  await pages.a.close(); await pages.b.close();
  await turnpike.stop();

  turnpike = await startTurnpike(config(false), NS.server, { ready: 'HTTP endpoint up' });
  await run('fast path off: the same call works, the kernel relays nothing', async () => {
    check(counts(NS.server).mode === 'off', 'mode off');
    const p = await relayedCall(browserA, browserB);
    const n = counts(NS.server);
    for (const d of DIRS) {
      log(`${d}: kernel ${n[d].kernel} of ${n[d].relayed} relayed`);
      check(n[d].kernel === 0 && n[d].relayed > 0, `${d}: ${JSON.stringify(n[d])}`);
    }
    await p.a.close(); await p.b.close();
  });
  await turnpike.stop();
}

async function main() {
  const { NS, teardown } = routedTopology();
  let browserA;
  let browserB;
  try {
    // The pages must show real host addresses (not mDNS names): both ends take media.
    browserA = await launch({ netns: NS.client, exclude: [SERVER] });
    browserB = await launch({ netns: NS.peer, exclude: [SERVER] });
    await cases(NS, browserA, browserB);
  } finally {
    await browserA?.close().catch(() => {});
    await browserB?.close().catch(() => {});
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
