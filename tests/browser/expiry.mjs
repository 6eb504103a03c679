// Calls whose TURN credential expires mid-call, in headless Chromium and Firefox at once.
// Each (browser, policy) pair gets its own turnpike so its counters and log lines are its
// own. Lifetimes are short so a minute covers several refreshes: the credential lives 20 s,
// allocations 30 s (Chromium refreshes at half the lifetime, Firefox ~10 s before it ends),
// nonces 30 s (so stale-nonce retries come with the expired credential).
//  - lenient (auth.strict_expiry = false, the default): the call keeps relaying for 55 s past
//    the expiry: data channel pings answered in every 5 s window, bytes on the relay pair
//    growing, allocation refreshes accepted after the expiry, no session ended.
//  - strict (auth.strict_expiry = true): the call relays until the expiry, then ends (ICE
//    disconnected or failed, pings unanswered) and turnpike logs the session line with
//    reason "credential_expired" and counts it.
//  - max session (lenient, auth.max_session_duration = "45s"): relays past the expiry, ends
//    once the allocation is 45 s old, reason "max_session".
// Everything runs in a namespace of its own with a dead-end default route.
import { fileURLToPath } from 'node:url';
import {
  SECRET, call, check, cleanup, credential, freePort, inDeadEndNamespace, launch, launchFirefox, log, logs,
  metrics, newPeer, run, sessionLines, startTurnpike, stats, timings,
} from './lib.mjs';

await inDeadEndNamespace(fileURLToPath(import.meta.url));

const TTL_S = 20;
const MAX_SESSION_S = 45;
// How long past the credential's expiry each call is watched.
const WATCH_AFTER_EXPIRY_MS = 55000;
const SAMPLE_MS = 5000;

const POLICIES = [
  { name: 'lenient', auth: 'strict_expiry = false' },
  { name: 'strict', auth: 'strict_expiry = true', reason: 'credential_expired' },
  { name: 'max-session', auth: `strict_expiry = false\nmax_session_duration = "${MAX_SESSION_S}s"`, reason: 'max_session' },
];

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function startServer(policy, index) {
  const [udp, http] = [await freePort(), await freePort()];
  const base = 50000 + index * 100;
  const turnpike = await startTurnpike(`
[server]
listen_udp = ["127.0.0.1:${udp}"]
shards = 1
[relay]
ipv4 = "127.0.0.1"
ports = "${base}-${base + 99}"
default_lifetime = "30s"
max_lifetime = "30s"
[auth]
secrets = ["${SECRET}"]
nonce_lifetime = "30s"
${policy.auth}
[peers]
# Loopback peers are refused by default; this test's browsers live on loopback.
allow = ["127.0.0.0/8"]
[http]
listen = "127.0.0.1:${http}"
[log]
format = "json"
`);
  return { turnpike, udp, http: `127.0.0.1:${http}` };
}


/// One sample of a call: the offerer's pings, the pair's bytes, and its server's counters.
async function sample(c) {
  const ticks = await c.a.evaluate(() => tp.tickStats());
  const s = await stats(c.a);
  const m = await metrics(c.server.http);
  return {
    t: Date.now(), ...ticks, bytesReceived: s.bytesReceived ?? 0, bytesSent: s.bytesSent ?? 0,
    local: s.local, refreshOk: m('turnpike_requests_total', { method: 'refresh', code: '200' }),
  };
}

function show(c, x) {
  const rel = ((x.t - c.expiresAt) / 1000).toFixed(0).padStart(4);
  return `${c.name} expiry${rel >= 0 ? '+' : ''}${rel}s ice=${x.ice} pings ${x.answered}/${x.sent} `
    + `last ${x.sinceLastMs}ms ago, pair rx ${x.bytesReceived} B, refresh ok ${x.refreshOk}`;
}

/// The call relays across the whole watch: every window past the expiry has answered pings,
/// growing pair bytes, and refreshes were accepted after the expiry, some of them retried
/// after a 438 (the nonce went stale, so the browser signed again with the expired
/// credential).
async function checkLives(c, policy) {
  const after = c.samples.filter((x) => x.t > c.expiresAt + 1000);
  check(after.length >= 8, `${c.name}: only ${after.length} samples after the expiry`);
  const atExpiry = c.samples.filter((x) => x.t <= c.expiresAt + 1000).at(-1);
  let prev = atExpiry;
  for (const x of after) {
    check(x.ice === 'connected' || x.ice === 'completed', `${c.name}: ${show(c, x)}`);
    check(x.answered > prev.answered, `${c.name}: no ping answered in a window: ${show(c, x)}`);
    check(x.bytesReceived > prev.bytesReceived, `${c.name}: pair bytes stalled: ${show(c, x)}`);
    prev = x;
  }
  check(after.at(-1).refreshOk > atExpiry.refreshOk,
    `${c.name}: no refresh accepted after the expiry (${atExpiry.refreshOk} -> ${after.at(-1).refreshOk})`);
  const stale = (await metrics(c.server.http))('turnpike_requests_total', { code: '438' });
  check(stale >= 1, `${c.name}: no stale nonce answered during the call`);
  const endedLines = sessionLines(c.server.turnpike);
  check(endedLines.length === 0, `${c.name}: sessions ended under ${policy.name}: ${JSON.stringify(endedLines)}`);
}

/// The call relayed from `liveFrom` to `liveUntil`, then ended for `policy.reason` before
/// `deadBy`.
async function checkEnds(c, policy, { liveFrom, liveUntil, deadBy }) {
  const live = c.samples.filter((x) => x.t >= liveFrom && x.t <= liveUntil);
  check(live.length >= 2 && live.at(-1).answered > live[0].answered,
    `${c.name}: not relaying while it should: ${live.map((x) => show(c, x)).join(' | ')}`);
  const last = c.samples.at(-1);
  check(last.ice !== 'connected' && last.ice !== 'completed', `${c.name}: still connected: ${show(c, last)}`);
  const lastAnswerAt = last.t - last.sinceLastMs;
  check(lastAnswerAt < deadBy, `${c.name}: pings answered until ${lastAnswerAt - c.expiresAt} ms past the expiry`);
  check(last.sinceLastMs > 10000, `${c.name}: pings still answered: ${show(c, last)}`);
  const lines = sessionLines(c.server.turnpike).filter((l) => l.reason === policy.reason);
  check(lines.length >= 1, `${c.name}: no session line with reason ${policy.reason}:\n${c.server.turnpike.output().slice(-3000)}`);
  log(`${c.name}: session line`, JSON.stringify(lines[0]));
  const m = await metrics(c.server.http);
  const n = m('turnpike_allocations_ended_total', { reason: policy.reason });
  check(n >= 1, `${c.name}: turnpike_allocations_ended_total{reason="${policy.reason}"} = ${n}`);
}

async function main() {
  const servers = [];
  let chromium;
  let firefox;
  try {
    for (const [i, p] of POLICIES.entries()) {
      servers.push(await startServer(p, 2 * i), await startServer(p, 2 * i + 1));
    }
    [chromium, firefox] = await Promise.all([launch(), launchFirefox()]);
    // The six calls start together, so their credentials expire within a second or two.
    const setups = [];
    for (const [i, policy] of POLICIES.entries()) {
      for (const [j, [bname, browser]] of [['chromium', chromium], ['firefox', firefox]].entries()) {
        setups.push((async () => {
          const server = servers[2 * i + j];
          const name = `${bname}/${policy.name}`;
          const [a, b] = [await newPeer(browser), await newPeer(browser)];
          const cred = credential(SECRET, `${bname}-${policy.name}`, TTL_S);
          const expiresAt = Number(cred.username.split(':')[0]) * 1000;
          const cfg = {
            iceServers: [{ urls: [`turn:127.0.0.1:${server.udp}?transport=udp`], ...cred }],
            iceTransportPolicy: 'relay',
          };
          const r = await call(a, b, cfg);
          check(r.connected, `${name}: not connected: ${JSON.stringify(r)} ${JSON.stringify(await logs(a))}`);
          const s = await stats(a);
          check(s.local === 'relay' && s.remote === 'relay', `${name}: pair ${s.local}/${s.remote}`);
          await a.evaluate(() => tp.startTicks(500));
          log(`${name}: connected in ${r.ms} ms, credential expires in ${expiresAt - Date.now()} ms`);
          const c = { name, policy, server, a, b, expiresAt, startedAt: Date.now(), samples: [] };
          c.samples.push(await sample(c));
          return c;
        })());
      }
    }
    const calls = await Promise.all(setups);
    const until = Math.max(...calls.map((c) => c.expiresAt)) + WATCH_AFTER_EXPIRY_MS;
    await run('credential expiry mid-call, chromium and firefox, three policies at once', async () => {
      while (Date.now() < until) {
        for (const c of calls) {
          const x = await sample(c);
          c.samples.push(x);
          log(show(c, x));
        }
        await sleep(SAMPLE_MS);
      }
      const failures = [];
      for (const c of calls) {
        try {
          if (c.policy.name === 'lenient') await checkLives(c, c.policy);
          else if (c.policy.name === 'strict') {
            await checkEnds(c, c.policy,
              { liveFrom: 0, liveUntil: c.expiresAt - 1000, deadBy: c.expiresAt + 30000 });
          } else {
            // The allocation was created while the call connected: it must outlive the
            // credential, and end once it is MAX_SESSION_S old.
            const end = c.startedAt + MAX_SESSION_S * 1000;
            check(c.expiresAt + 5000 < end - 5000, `${c.name}: no time between expiry and max session`);
            await checkEnds(c, c.policy,
              { liveFrom: c.expiresAt + 1000, liveUntil: end - 5000, deadBy: end + 30000 });
          }
          log(`ok ${c.name}`);
        } catch (e) {
          failures.push(e.message);
        }
      }
      check(failures.length === 0, failures.join('\n'));
    });
  } finally {
    await firefox?.close().catch(() => {});
    await chromium?.close().catch(() => {});
    for (const s of servers) await s.turnpike.stop().catch(() => {});
    await cleanup();
  }
  log('timings:', timings().join('; '));
}

main().catch(async (e) => {
  console.error(e);
  await cleanup();
  process.exit(1);
});
