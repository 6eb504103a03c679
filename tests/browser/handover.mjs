// Issue 18 with the real client: a relay-only Chromium call (data channels and fake
// camera/microphone) through a turnpike that is handed over to a new process by SIGURG.
// Over UDP the relay sockets move: the call must stay connected on the same candidate
// pair with no ICE restart and keep its data flowing. Over TCP the old process keeps the
// connections: the call must stay up on it while the new process serves new UDP calls.
// The negative control (SIGKILL, then a fresh turnpike on the same ports) must trip the
// same checks. Loopback only; every wait is bounded.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import {
  SECRET, call, check, cleanup, credential, freePort, launch, log, logs, metrics, newPeer, run,
  startTurnpike, timings,
} from './lib.mjs';

/// How long the call must go on after the takeover (the brief: at least 8 s).
const AFTER_MS = 8500;
/// The longest a side may leave connected/completed.
const MAX_EXCURSION_MS = 1000;
/// Large, so that the old process still serves the TCP call when the test ends it.
const DRAIN_TIMEOUT = '120s';
/// PIDs this script started (directly or through a handover), ended by PID at the end.
const ours = new Set();
/// The listener ports of the servers started here: a process a failed handover left
/// behind (its PID unknown) is found by them.
const ourPorts = [];

/// turnpike on loopback with UDP, TCP and HTTP listeners on `ports` (fresh ones unless
/// given: the negative control restarts on the same ones).
async function startServer(relayPorts, ports) {
  const [udp, tcp, http] = ports ?? [await freePort(), await freePort(), await freePort()];
  const server = await startTurnpike(`
[server]
listen_udp = ["127.0.0.1:${udp}"]
listen_tcp = ["127.0.0.1:${tcp}"]
shards = 2
drain_timeout = "${DRAIN_TIMEOUT}"
[relay]
ipv4 = "127.0.0.1"
ports = "${relayPorts}"
# Chromium refreshes at half a lifetime under 2 minutes: every 4 s here, so that its
# signed Refreshes (old nonce, moved allocation) cross the handover.
default_lifetime = "8s"
[auth]
secrets = ["${SECRET}"]
[peers]
# Loopback peers are refused by default; this test's browsers live on loopback.
allow = ["127.0.0.0/8"]
[http]
listen = "127.0.0.1:${http}"
`, undefined, { ready: 'HTTP endpoint up' });
  ours.add(server.pid);
  ourPorts.push([udp, tcp, http]);
  return { server, udp, tcp, http, ports: [udp, tcp, http] };
}

/// Gone, or a zombie that nobody reaped yet.
function exited(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return true;
  }
}

async function waitUntil(what, ms, cond) {
  const t0 = Date.now();
  while (!(await cond())) {
    check(Date.now() - t0 < ms, `${what} within ${ms} ms`);
    await sleep(20);
  }
  return Date.now() - t0;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/// The PIDs holding `port` open (ss: udp or tcp listeners).
function portOwners(proto, port) {
  const out = execFileSync('ss', ['-H', `-l${proto === 'udp' ? 'u' : 't'}np`, `sport = :${port}`], { encoding: 'utf8' });
  return [...new Set([...out.matchAll(/pid=(\d+)/g)].map((m) => Number(m[1])))];
}

/// In the page: samples iceConnectionState every 100 ms (and on every change) with
/// wall-clock times, and opens an unreliable data channel on which the sender sends a
/// numbered message every 20 ms and the other side acks it: loss shows there (the
/// reliable channel would only show delay).
async function watch(page, sender) {
  await page.evaluate((sender) => {
    const pc = tp.pc;
    const w = { states: [], sent: [], acked: [] };
    const note = () => w.states.push([Date.now(), pc.iceConnectionState]);
    note();
    pc.addEventListener('iceconnectionstatechange', note);
    w.timers = [setInterval(note, 100)];
    const ch = pc.createDataChannel('lossy', { negotiated: true, id: 42, ordered: false, maxRetransmits: 0 });
    ch.onmessage = (e) => {
      const [kind, seq] = e.data.split(' ');
      if (kind === 'seq') ch.send(`ack ${seq}`);
      else w.acked.push([Number(seq), Date.now()]);
    };
    if (sender) {
      w.timers.push(setInterval(() => {
        if (ch.readyState !== 'open') return;
        ch.send(`seq ${w.sent.length}`);
        w.sent.push(Date.now());
      }, 20));
    }
    window.hw = w;
  }, sender);
}

async function watched(page) {
  return page.evaluate(() => {
    for (const t of hw.timers) clearInterval(t);
    return { states: hw.states, sent: hw.sent, acked: hw.acked };
  });
}

/// The selected pair as getStats tells it, with what an ICE restart would change.
async function snapshot(page) {
  return page.evaluate(async () => {
    const by = new Map();
    (await tp.pc.getStats()).forEach((s) => by.set(s.id, s));
    // What stays when no pair is selected any more (the negative control).
    const out = { framesDecoded: 0, relayCandidates: 0, pairId: 'none', local: 'none', remote: 'none', bytesReceived: 0, packetsReceived: 0 };
    for (const s of by.values()) {
      if (s.type === 'local-candidate' && s.candidateType === 'relay') out.relayCandidates++;
      if (s.type === 'inbound-rtp' && s.kind === 'video') out.framesDecoded += s.framesDecoded || 0;
      if (s.type !== 'transport' || !s.selectedCandidatePairId) continue;
      const p = by.get(s.selectedCandidatePairId);
      const l = by.get(p.localCandidateId);
      const r = by.get(p.remoteCandidateId);
      Object.assign(out, {
        pairId: p.id, pairChanges: s.selectedCandidatePairChanges, ufrag: s.iceLocalUsernameFragment,
        local: `${l.candidateType} ${l.relayProtocol} ${l.address}:${l.port}`,
        remote: `${r.candidateType} ${r.address}:${r.port}`,
        bytesReceived: p.bytesReceived, packetsReceived: p.packetsReceived,
      });
    }
    out.sdpUfrag = /a=ice-ufrag:(\S+)/.exec(tp.pc.localDescription.sdp)?.[1];
    return out;
  });
}

/// The longest stretch (ms) within [from, to] that `states` spent outside connected/completed.
function longestExcursion(states, from, to) {
  const good = (s) => s === 'connected' || s === 'completed';
  let worst = 0;
  let badSince = null;
  for (const [t, s] of [...states].sort((x, y) => x[0] - y[0])) {
    if (t < from || t > to) continue;
    if (!good(s) && badSince === null) badSince = t;
    if (good(s) && badSince !== null) { worst = Math.max(worst, t - badSince); badSince = null; }
  }
  if (badSince !== null) worst = Math.max(worst, to - badSince);
  return worst;
}

/// Loss on the unreliable channel: of the messages sent in [from, to), how many were never
/// acked, and the longest wait between two acks (ms) after `from`.
function loss(w, from, to) {
  const acked = new Set(w.acked.map(([seq]) => seq));
  let sent = 0;
  let lost = 0;
  w.sent.forEach((t, seq) => {
    if (t < from || t >= to) return;
    sent++;
    if (!acked.has(seq)) lost++;
  });
  let gap = 0;
  let gapEnd = from;
  let prev = from;
  for (const [, t] of [...w.acked, [null, to]]) {
    if (t < from || t > to) continue;
    if (t - prev > gap) [gap, gapEnd] = [t - prev, t];
    prev = t;
  }
  return { sent, lost, longestAckGap: gap, gapEnd };
}

/// Every check of the brief on one call across the event at `at` (ms since the epoch),
/// watched until `end`. Returns the problems found (none: the call went through untouched)
/// and prints the numbers either way.
function judge(name, { w, before, after, at, end, echoed, media }) {
  const problems = [];
  for (const side of ['a', 'b']) {
    const ex = longestExcursion(w[side].states, before[side].t, end);
    const seen = {};
    for (const [, st] of w[side].states) seen[st] = (seen[st] ?? 0) + 1;
    log(`${name} ${side}: iceConnectionState samples ${JSON.stringify(seen)}`);
    log(`${name} ${side}: longest time out of connected/completed ${ex} ms; pair ${before[side].pairId} ${before[side].local} -> ${after[side].pairId} ${after[side].local}`);
    if (ex > MAX_EXCURSION_MS) problems.push(`${side} left connected for ${ex} ms`);
    for (const k of ['pairId', 'local', 'remote', 'pairChanges', 'ufrag', 'sdpUfrag', 'relayCandidates']) {
      if (before[side][k] !== after[side][k]) problems.push(`${side} ${k} ${before[side][k]} -> ${after[side][k]}`);
    }
    const grew = after[side].bytesReceived - before[side].atEvent.bytesReceived;
    const packets = after[side].packetsReceived - before[side].atEvent.packetsReceived;
    log(`${name} ${side}: after the event ${grew} bytes, ${packets} packets received on the pair`);
    if (!(grew > 0 && packets > 0)) problems.push(`${side} received nothing on the pair after the event`);
    if (media) {
      const frames = after[side].framesDecoded - before[side].atEvent.framesDecoded;
      log(`${name} ${side}: ${frames} video frames decoded after the event`);
      if (frames < 30) problems.push(`${side} decoded ${frames} frames after the event`);
    }
  }
  const around = loss(w.a, at - 1000, at + 2000);
  const late = loss(w.a, at + 2000, end - 500);
  log(`${name}: unreliable channel, around the event ${around.lost}/${around.sent} lost, longest ack gap ${around.longestAckGap} ms (ending ${around.gapEnd - at} ms after the event); afterwards ${late.lost}/${late.sent} lost; reliable echo after it ${echoed}/50`);
  if (around.lost > 2) problems.push(`${around.lost} of ${around.sent} messages lost around the event`);
  if (late.sent === 0 || late.lost > late.sent / 10) problems.push(`${late.lost} of ${late.sent} messages lost after the event`);
  if (around.longestAckGap > MAX_EXCURSION_MS) problems.push(`no ack for ${around.longestAckGap} ms`);
  if (echoed !== 50) problems.push(`reliable echo ${echoed}/50 after the event`);
  return problems;
}

/// A connected relay-only call between two new pages, watched from now on.
async function watchedCall(context, url, user, media) {
  const [a, b] = [await newPeer(context), await newPeer(context)];
  const cfg = {
    iceServers: [{ urls: [url], ...credential(SECRET, user) }],
    iceTransportPolicy: 'relay',
  };
  const r = await call(a, b, cfg, { media });
  check(r.connected, `not connected: ${JSON.stringify(r)} ${JSON.stringify(await logs(a))}`);
  await watch(a, true);
  await watch(b, false);
  check(await a.evaluate(() => tp.echo(10, 5000)) === 10, 'echo before the event');
  await sleep(1500); // a steady state to compare with
  const snap = async () => ({ a: await snapshot(a), b: await snapshot(b) });
  const before = await snap();
  for (const side of ['a', 'b']) before[side].t = Date.now() - 1000;
  return { a, b, before, snap, r };
}

/// Keeps the call going until AFTER_MS past `from`, then runs the echo and gathers what
/// judge() needs.
async function finish(c, at, from, media) {
  await sleep(Math.max(0, from + AFTER_MS - Date.now()));
  const echoed = await c.a.evaluate(() => { tp.echoed = 0; return tp.echo(50, 3000); });
  const after = await c.snap();
  const end = Date.now();
  const w = { a: await watched(c.a), b: await watched(c.b) };
  return { w, before: c.before, after, at, end, echoed, media };
}

/// turnpike_requests_total of the requests a client makes on its allocation, by
/// "method code".
async function allocationRequests(http) {
  const text = await (await fetch(`http://127.0.0.1:${http}/metrics`)).text();
  const out = {};
  for (const m of text.matchAll(/^turnpike_requests_total\{(.*)\} (\d+)$/gm)) {
    const method = /method="(\w+)"/.exec(m[1])[1];
    const code = /code="(\w+)"/.exec(m[1])[1];
    if (['refresh', 'create_permission', 'channel_bind'].includes(method)) out[`${method} ${code}`] = Number(m[2]);
  }
  return out;
}

/// What `b` counts more than `a`, non-zero entries only.
function grown(a, b) {
  return Object.fromEntries(Object.entries(b).map(([k, v]) => [k, v - (a[k] ?? 0)]).filter(([, v]) => v > 0));
}

/// SIGURG, then waits (bounded) for the new process to say it took over. Returns the
/// SIGURG time, the takeover time and the new PID.
async function handOver(s) {
  const from = s.server.output().length;
  const at = Date.now();
  process.kill(s.server.pid, 'SIGURG');
  const since = () => s.server.output().slice(from);
  await waitUntil('the new process says it took over', 15000, () => since().includes('took over from the old process'));
  const took = Date.now();
  // The old process logs its side just after the new one's line, or just before.
  const line = /handover done.*new_pid=(\d+).*kept_tcp_tls=(\d+) duration_ms=(\d+)/;
  await waitUntil('the old process says "handover done"', 5000, () => line.test(since()));
  const done = line.exec(since());
  const pid = Number(done[1]);
  ours.add(pid);
  log(`handover: took over ${took - at} ms after SIGURG, new pid ${pid} (old ${s.server.pid}), kept_tcp_tls=${done[2]}, old process stood still ${done[3]} ms`);
  return { at, took, pid, kept: Number(done[2]) };
}

async function udpCase(context) {
  const s = await startServer('59200-59299');
  const c = await watchedCall(context, `turn:127.0.0.1:${s.udp}?transport=udp`, 'handover-udp', true);
  log(`udp call connected in ${c.r.ms} ms; a ${c.before.a.local}, b ${c.before.b.local}`);
  check(c.before.a.local.startsWith('relay udp 127.0.0.1:'), `a's pair ${c.before.a.local}`);
  c.before.a.atEvent = await snapshot(c.a);
  c.before.b.atEvent = await snapshot(c.b);
  const h = await handOver(s);
  const requests = await allocationRequests(s.http);
  await waitUntil('the old process exits', 5000, () => exited(s.server.pid));
  const problems = judge('udp', await finish(c, h.at, h.took, true));
  check(problems.length === 0, `udp call across the handover: ${problems.join('; ')}`);
  // Chromium's signed requests on its moved allocations (nonce from the old process).
  const more = grown(requests, await allocationRequests(s.http));
  log(`udp: requests on the allocations after the takeover: ${JSON.stringify(more)}`);
  check((more['refresh 200'] ?? 0) >= 2, 'both ends refreshed their allocation with the new process');
  check(Object.keys(more).every((k) => k.endsWith(' 200')), `requests refused after the takeover: ${JSON.stringify(more)}`);
  const owners = [...portOwners('udp', s.udp), ...portOwners('tcp', s.tcp)];
  log(`udp: listener ports held by pids ${[...new Set(owners)]} (old ${s.server.pid} exited)`);
  check(owners.length > 0 && owners.every((p) => p === h.pid), `the new process holds the listeners: ${owners}`);
  const m = await metrics(`127.0.0.1:${s.http}`);
  const took = m('turnpike_handover_total', { result: 'took_over' });
  log(`udp: turnpike_handover_total{result="took_over"} ${took}`);
  check(took === 1, `turnpike_handover_total{result="took_over"} is ${took}`);
  await c.a.close(); await c.b.close();
  await stopPid(h.pid);
}

async function tcpCase(context) {
  const s = await startServer('59300-59399');
  const c = await watchedCall(context, `turn:127.0.0.1:${s.tcp}?transport=tcp`, 'handover-tcp', true);
  log(`tcp call connected in ${c.r.ms} ms; a ${c.before.a.local}, b ${c.before.b.local}`);
  check(c.before.a.local.startsWith('relay tcp 127.0.0.1:'), `a's pair ${c.before.a.local}`);
  c.before.a.atEvent = await snapshot(c.a);
  c.before.b.atEvent = await snapshot(c.b);
  const h = await handOver(s);
  check(h.kept >= 2, `the old process keeps both TCP connections (kept_tcp_tls=${h.kept})`);
  // Meanwhile a new UDP call, which only the new process can serve now.
  const d = await watchedCall(context, `turn:127.0.0.1:${s.udp}?transport=udp`, 'after-handover', false);
  log(`new udp call after the handover connected in ${d.r.ms} ms (${d.before.a.local})`);
  const m = await metrics(`127.0.0.1:${s.http}`);
  const [udpAllocs, tcpAllocs] = [m('turnpike_allocations', { transport: 'udp' }), m('turnpike_allocations', { transport: 'tcp' })];
  log(`tcp: the new process (pid ${h.pid}) has ${udpAllocs} udp and ${tcpAllocs} tcp allocations`);
  check(udpAllocs === 2 && tcpAllocs === 0, `new process allocations udp ${udpAllocs} tcp ${tcpAllocs}`);
  const problems = judge('tcp', await finish(c, h.at, h.took, true));
  check(problems.length === 0, `tcp call across the handover: ${problems.join('; ')}`);
  check(!exited(s.server.pid), 'the old process still serves the TCP call');
  // The old process keeps its copies of the listeners' descriptors (unread) while it lives.
  const owners = portOwners('tcp', s.tcp);
  log(`tcp: TCP listener held by pids ${owners} while the old process lives`);
  check(owners.includes(h.pid), `the new process holds the TCP listener: ${owners}`);
  await c.a.close(); await c.b.close();
  // Its last connection gone, the old process leaves (long before drain_timeout).
  const gone = await waitUntil('the old process exits once the TCP call ends', 10000, () => exited(s.server.pid));
  log(`tcp: old process ${s.server.pid} exited ${gone} ms after the TCP call ended`);
  const after = [...portOwners('udp', s.udp), ...portOwners('tcp', s.tcp)];
  check(after.length > 0 && after.every((p) => p === h.pid), `only the new process holds the listeners: ${after}`);
  check(await d.a.evaluate(() => { tp.echoed = 0; return tp.echo(20, 3000); }) === 20, 'the new udp call still relays');
  await d.a.close(); await d.b.close();
  await stopPid(h.pid);
}

/// SIGKILL and a fresh turnpike on the same ports: the same checks must see the break.
async function negativeControl(context) {
  const s = await startServer('59400-59499');
  const c = await watchedCall(context, `turn:127.0.0.1:${s.udp}?transport=udp`, 'killed', false);
  c.before.a.atEvent = await snapshot(c.a);
  c.before.b.atEvent = await snapshot(c.b);
  const at = Date.now();
  process.kill(s.server.pid, 'SIGKILL');
  await waitUntil('the killed process is gone', 5000, () => exited(s.server.pid));
  const again = await startServer('59400-59499', s.ports);
  log(`negative control: killed ${s.server.pid}, restarted as ${again.server.pid} in ${Date.now() - at} ms`);
  const problems = judge('killed', await finish(c, at, Date.now(), false));
  log(`negative control: the checks found ${problems.length} problems: ${problems.join('; ')}`);
  check(problems.some((p) => /left connected|lost|received nothing|no ack|echo/.test(p)),
    'the checks did not notice a SIGKILLed server');
  await c.a.close(); await c.b.close();
  await again.server.stop();
}

/// SIGINT (stop at once) to a PID of ours, SIGKILL if it is still there after 5 s.
async function stopPid(pid) {
  if (exited(pid)) return;
  process.kill(pid, 'SIGINT');
  try {
    await waitUntil(`pid ${pid} stops`, 5000, () => exited(pid));
  } catch {
    process.kill(pid, 'SIGKILL');
  }
}

/// SIGKILL to every turnpike of ours still there, also one started by a handover whose
/// PID the test did not learn (it holds one of our listener ports).
function killOurs() {
  for (const [udp, tcp, http] of ourPorts) {
    for (const pid of [...portOwners('udp', udp), ...portOwners('tcp', tcp), ...portOwners('tcp', http)]) ours.add(pid);
  }
  for (const pid of ours) if (!exited(pid)) process.kill(pid, 'SIGKILL');
}

async function main() {
  const context = await launch();
  try {
    await run('udp call across a SIGURG handover', () => udpCase(context));
    await run('tcp call stays with the old process across a SIGURG handover', () => tcpCase(context));
    await run('negative control: SIGKILL and restart breaks the call', () => negativeControl(context));
  } finally {
    await context.close();
    killOurs();
    await cleanup();
  }
  log('timings:', timings().join('; '));
}

main().catch(async (e) => {
  console.error(e);
  killOurs();
  await cleanup();
  process.exit(1);
});
