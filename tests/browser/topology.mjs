// The cross-device topology of the NAT tests, in network namespaces this process creates
// (and removes): two devices on different private networks, each behind its own NAT
// router, the TURN servers on the public side. No route leads out of the namespaces.
//
//   dev-a 10.0.1.2 -- nat-a 10.0.1.1 | 198.51.100.10 --+
//                                                        br0 in pub: the servers' addresses
//   dev-b 10.0.2.2 -- nat-b 10.0.2.1 | 198.51.100.20 --+
//
// And the kernel fast path's routed topology (routedTopology, below).
import { writeFileSync } from 'node:fs';
import { arch } from 'node:os';
import { join } from 'node:path';
import { scratchDir, sh } from './lib.mjs';

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

/// Builds the topology with `servers` (addresses in 198.51.100.0/24) on the public bridge.
/// Returns the namespace names, `setNat(kind)` and `teardown()`, which kills every process
/// left in the namespaces and deletes them (also on SIGINT/SIGTERM).
export function natTopology(servers) {
  const P = `tp${process.pid % 10000}`;
  const NS = { pub: `${P}-pub`, natA: `${P}-nata`, natB: `${P}-natb`, devA: `${P}-deva`, devB: `${P}-devb` };
  const teardown = namespaces(NS, () => build(P, NS, servers));
  return { NS, setNat: (kind) => setNat(NS, kind), teardown };
}

/// Creates the namespaces in `NS` and runs `buildFn`; returns `teardown()`, which kills
/// every process left in them and deletes them (run on exit, SIGINT and SIGTERM too).
function namespaces(NS, buildFn) {
  const teardown = () => {
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
  };
  // Synchronous, so it also runs on every exit path ('exit' handlers cannot await).
  process.on('exit', teardown);
  for (const sig of ['SIGINT', 'SIGTERM']) {
    process.on(sig, () => process.exit(130));
  }
  try {
    for (const ns of Object.values(NS)) {
      ip('netns', 'add', ns);
      ip('-n', ns, 'link', 'set', 'lo', 'up');
    }
    buildFn();
  } catch (e) {
    teardown();
    throw e;
  }
  return teardown;
}

/// The kernel fast path's deployment (the shape of tests/support/veth.rs): the server on
/// one interface behind a router, the client and the peer on networks of their own.
///
///   client c0 10.12.1.2 -- r1 | router | r0 -- s0 10.12.0.2 server
///                                      | r2 -- p0 10.12.2.2 peer
export function routedTopology() {
  const P = `tp${process.pid % 10000}`;
  const NS = { client: `${P}-cli`, server: `${P}-srv`, peer: `${P}-peer`, router: `${P}-rtr` };
  const teardown = namespaces(NS, () => buildRouted(P, NS));
  return { NS, teardown };
}

function buildRouted(P, NS) {
  for (const [ns, dev, rdev, x] of [[NS.client, 'c0', 'r1', 1], [NS.server, 's0', 'r0', 0], [NS.peer, 'p0', 'r2', 2]]) {
    veth(`${P}${dev}`, ns, `${P}${rdev}`, NS.router);
    ip('-n', ns, 'link', 'set', `${P}${dev}`, 'name', dev);
    ip('-n', NS.router, 'link', 'set', `${P}${rdev}`, 'name', rdev);
    ip('-n', ns, 'addr', 'add', `10.12.${x}.2/24`, 'dev', dev);
    ip('-n', NS.router, 'addr', 'add', `10.12.${x}.1/24`, 'dev', rdev);
    ip('-n', ns, 'link', 'set', dev, 'up');
    ip('-n', NS.router, 'link', 'set', rdev, 'up');
    ip('-n', ns, 'route', 'add', 'default', 'via', `10.12.${x}.1`);
  }
  inNs(NS.router, 'sysctl', '-qw', 'net.ipv4.ip_forward=1');
  // Full checksums from the senders, as from a real NIC (a veth sends partial ones).
  inNs(NS.client, 'ethtool', '-K', 'c0', 'tx', 'off');
  inNs(NS.peer, 'ethtool', '-K', 'p0', 'tx', 'off');
  // A veth takes the frames its peer sends back with XDP_TX only when it has an XDP
  // program of its own.
  ip('-n', NS.router, 'link', 'set', 'dev', 'r0', 'xdpdrv', 'obj', passProgram(), 'sec', 'xdp');
}

/// An XDP program that passes everything, compiled with clang.
function passProgram() {
  const dir = scratchDir('xdp-pass-');
  const src = join(dir, 'pass.c');
  writeFileSync(src, '#include <linux/bpf.h>\n#include <bpf/bpf_helpers.h>\n'
    + 'SEC("xdp") int pass(struct xdp_md *c) { return XDP_PASS; }\n'
    + 'char LICENSE[] SEC("license") = "GPL";\n');
  const multiarch = { x64: 'x86_64', arm64: 'aarch64' }[arch()] ?? arch();
  sh('clang', '-O2', '-target', 'bpf', `-I/usr/include/${multiarch}-linux-gnu`, '-c', src, '-o', join(dir, 'pass.o'));
  return join(dir, 'pass.o');
}

function build(P, NS, servers) {
  ip('-n', NS.pub, 'link', 'add', 'br0', 'type', 'bridge');
  for (const s of servers) ip('-n', NS.pub, 'addr', 'add', `${s}/24`, 'dev', 'br0');
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
function setNat(NS, kind) {
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
