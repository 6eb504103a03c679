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
  SECRET, call, check, cleanup, run, timings, credential, launch, log, logs, newPeer, sh, startTurnpike, stats,
} from './lib.mjs';

const P = `tp${process.pid % 10000}`;
const NS = { pub: `${P}-pub`, natA: `${P}-nata`, natB: `${P}-natb`, devA: `${P}-deva`, devB: `${P}-devb` };
const SERVER = '198.51.100.1';
const ip = (...a) => sh('ip', ...a);
const inNs = (ns, ...a) => sh('ip', 'netns', 'exec', ns, ...a);

function veth(a, nsA, b, nsB) {
  ip('link', 'add', a, 'type', 'veth', 'peer', 'name', b);
  try {
    ip('link', 'set', a, 'netns', nsA);
    ip('link', 'set', b, 'netns', nsB);
  } catch (e) {
    // Whichever end is still on the host would outlive the namespaces: delete the pair.
    for (const end of [a, b]) { try { ip('link', 'del', end); } catch { /* moved */ } }
    throw e;
  }
}

function buildTopology() {
  for (const ns of Object.values(NS)) {
    ip('netns', 'add', ns);
    ip('-n', ns, 'link', 'set', 'lo', 'up');
  }
  ip('-n', NS.pub, 'link', 'add', 'br0', 'type', 'bridge');
  ip('-n', NS.pub, 'addr', 'add', `${SERVER}/24`, 'dev', 'br0');
  ip('-n', NS.pub, 'link', 'set', 'br0', 'up');
  // A default route into a sink: the relay's sends towards the devices' private
  // addresses must go somewhere and be lost, as on the internet.
  ip('-n', NS.pub, 'link', 'add', 'sink0', 'type', 'veth', 'peer', 'name', 'sink1');
  ip('-n', NS.pub, 'addr', 'add', '203.0.113.1/24', 'dev', 'sink0');
  ip('-n', NS.pub, 'link', 'set', 'sink0', 'up');
  ip('-n', NS.pub, 'link', 'set', 'sink1', 'up');
  ip('-n', NS.pub, 'neigh', 'add', '203.0.113.2', 'lladdr', '02:00:00:00:00:02', 'dev', 'sink0', 'nud', 'permanent');
  ip('-n', NS.pub, 'route', 'add', 'default', 'via', '203.0.113.2', 'dev', 'sink0');
  for (const [side, nat, dev, wanIp, lan] of [
    ['a', NS.natA, NS.devA, '198.51.100.10', '10.0.1'],
    ['b', NS.natB, NS.devB, '198.51.100.20', '10.0.2'],
  ]) {
    veth(`${P}w${side}`, nat, `${P}p${side}`, NS.pub);
    ip('-n', NS.pub, 'link', 'set', `${P}p${side}`, 'master', 'br0', 'up');
    ip('-n', nat, 'link', 'set', `${P}w${side}`, 'name', 'wan');
    ip('-n', nat, 'addr', 'add', `${wanIp}/24`, 'dev', 'wan');
    ip('-n', nat, 'link', 'set', 'wan', 'up');
    veth(`${P}l${side}`, nat, `${P}d${side}`, dev);
    ip('-n', nat, 'link', 'set', `${P}l${side}`, 'name', 'lan');
    ip('-n', nat, 'addr', 'add', `${lan}.1/24`, 'dev', 'lan');
    ip('-n', nat, 'link', 'set', 'lan', 'up');
    ip('-n', dev, 'link', 'set', `${P}d${side}`, 'name', 'eth0');
    ip('-n', dev, 'addr', 'add', `${lan}.2/24`, 'dev', 'eth0');
    ip('-n', dev, 'link', 'set', 'eth0', 'up');
    ip('-n', dev, 'route', 'add', 'default', 'via', `${lan}.1`);
    inNs(nat, 'sysctl', '-qw', 'net.ipv4.ip_forward=1');
  }
}

/// Symmetric NAT: a fresh random port per destination. Cone NAT: port-preserving
/// MASQUERADE, and unsolicited inbound dropped on the router (otherwise Linux breaks port
/// preservation). Both: LAN->WAN allowed, WAN->LAN only for established flows.
function setNat(kind) {
  for (const nat of [NS.natA, NS.natB]) {
    inNs(nat, 'iptables', '-t', 'nat', '-F');
    inNs(nat, 'iptables', '-F');
    inNs(nat, 'iptables', '-P', 'FORWARD', 'DROP');
    inNs(nat, 'iptables', '-A', 'FORWARD', '-i', 'lan', '-o', 'wan', '-j', 'ACCEPT');
    inNs(nat, 'iptables', '-A', 'FORWARD', '-i', 'wan', '-o', 'lan', '-m', 'conntrack',
      '--ctstate', 'ESTABLISHED,RELATED', '-j', 'ACCEPT');
    const masq = ['iptables', '-t', 'nat', '-A', 'POSTROUTING', '-o', 'wan', '-j', 'MASQUERADE'];
    if (kind === 'symmetric') {
      inNs(nat, ...masq, '--random-fully');
    } else {
      inNs(nat, ...masq);
      inNs(nat, 'iptables', '-A', 'INPUT', '-i', 'wan', '-m', 'conntrack', '--ctstate', 'NEW,INVALID', '-j', 'DROP');
    }
    try { inNs(nat, 'conntrack', '-F'); } catch { /* conntrack tool optional: new calls use new ports */ }
  }
}

function teardown() {
  for (const ns of Object.values(NS)) {
    let pids = '';
    try { pids = ip('netns', 'pids', ns).trim(); } catch { continue; }
    for (const pid of pids.split(/\s+/).filter(Boolean)) {
      try { process.kill(Number(pid), 'SIGKILL'); } catch { /* already gone */ }
    }
  }
  for (const ns of Object.values(NS)) {
    try { ip('netns', 'del', ns); } catch { /* not created */ }
  }
}

async function main() {
  buildTopology();
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

for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => { teardown(); process.exit(130); });
}
main().catch(async (e) => {
  console.error(e);
  teardown();
  await cleanup();
  process.exit(1);
});
