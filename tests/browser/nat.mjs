// The cross-device call: two headless Chromiums on different private networks, each behind
// its own NAT, turnpike on the public side, all in network namespaces this test creates
// (and removes). Behind symmetric NATs the call must fail with no ICE servers and with
// STUN alone, and connect through turnpike (UDP and TCP) with media flowing. Behind cone
// NATs STUN alone connects: the positive control that the topology itself works.
//
//   dev-a 10.0.1.2 -- nat-a 10.0.1.1 | 198.51.100.10 --+
//                                                        br0 in pub: 198.51.100.1, turnpike :3478
//   dev-b 10.0.2.2 -- nat-b 10.0.2.1 | 198.51.100.20 --+
import {
  SECRET, call, check, cleanup, run, timings, credential, launch, log, logs, newPeer, startTurnpike, stats,
} from './lib.mjs';
import { natTopology } from './topology.mjs';

const SERVER = '198.51.100.1';

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
# Default peer policy: the devices' private addresses (10.0.x.x) are refused.
[http]
enabled = false
`, NS.pub);
  const opts = { exclude: [SERVER] };
  const browserA = await launch({ ...opts, netns: NS.devA });
  const browserB = await launch({ ...opts, netns: NS.devB });
  const turn = (transport, who) => {
    const c = credential(SECRET, who);
    return { urls: [`turn:${SERVER}:3478?transport=${transport}`], username: c.username, credential: c.credential };
  };
  const stun = { urls: [`stun:${SERVER}:3478`] };
  const attempt = async (config, opts2) => {
    const [a, b] = [await newPeer(browserA), await newPeer(browserB)];
    const r = await call(a, b, config, opts2);
    return { a, b, r };
  };
  const close = async ({ a, b }) => { await a.close(); await b.close(); };
  // A failing call is given this long: the connecting ones take 1-4 s.
  const NEG_MS = 12000;

  try {
    setNat('symmetric');
    await run('symmetric NAT, no ICE servers: no connection', async () => {
      const x = await attempt({ iceServers: [] }, { timeoutMs: NEG_MS });
      check(!x.r.connected, `connected without any server: ${JSON.stringify(x.r)}`);
      await close(x);
    });
    await run('symmetric NAT, STUN only: no connection', async () => {
      const x = await attempt({ iceServers: [stun] }, { timeoutMs: NEG_MS });
      check(!x.r.connected, `connected with STUN alone: ${JSON.stringify(x.r)}`);
      await close(x);
    });
    await run('symmetric NAT, turnpike over UDP: connected with media', async () => {
      const x = await attempt({ iceServers: [stun, turn('udp', 'dev-a')] }, { media: true, timeoutMs: 20000 });
      check(x.r.connected, `no connection: ${JSON.stringify(x.r)} ${JSON.stringify(await logs(x.a))}`);
      log(`connected in ${x.r.ms} ms`);
      check(await x.a.evaluate(() => tp.echo(30, 5000)) === 30, 'data channel echo');
      const s1 = await stats(x.b);
      // Media keeps flowing while the browsers' checks towards each other's private
      // addresses are refused: the allocations survive them.
      await new Promise((res) => setTimeout(res, 3000));
      const s2 = await stats(x.b);
      log('selected pair', JSON.stringify(s2));
      check(s2.local === 'relay' || s2.remote === 'relay', `pair ${s2.local}/${s2.remote} is not relayed`);
      check(s2.framesDecoded > s1.framesDecoded + 10, `frames ${s1.framesDecoded} -> ${s2.framesDecoded}`);
      check(s2.audioPackets > 0, 'audio');
      await close(x);
    });
    await run('symmetric NAT, turnpike over TCP: connected', async () => {
      const cfg = { iceServers: [turn('tcp', 'dev-a')] };
      const x = await attempt(cfg, { timeoutMs: 20000 });
      check(x.r.connected, `no connection: ${JSON.stringify(x.r)} ${JSON.stringify(await logs(x.a))}`);
      check(await x.a.evaluate(() => tp.echo(20, 5000)) === 20, 'data channel echo');
      const [sa, sb] = [await stats(x.a), await stats(x.b)];
      log('selected pair a', JSON.stringify(sa));
      check(sa.relayProtocol === 'tcp' || sb.relayProtocol === 'tcp', 'relayed over tcp');
      await close(x);
    });
    setNat('cone');
    await run('cone NAT, STUN only: connected (positive control)', async () => {
      const x = await attempt({ iceServers: [stun] }, { timeoutMs: 20000 });
      check(x.r.connected, `cone NAT with STUN did not connect: ${JSON.stringify(x.r)}`);
      const s = await stats(x.a);
      log('selected pair', JSON.stringify(s));
      check(s.local !== 'relay' && s.remote !== 'relay', 'no relay was offered');
      await close(x);
    });
  } finally {
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
