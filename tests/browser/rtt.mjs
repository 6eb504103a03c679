// A benchmark, not a test (the suite does not run it): headless Chromium calls itself
// over TURN/TCP (iceTransportPolicy 'relay') through turnpike and through coturn, in
// alternating rounds, and measures the data channel's round trip (sequential pings, 20 ms
// apart) and getStats' currentRoundTripTime. Loopback only.
//   TURNPIKE_BIN=target/release/turnpike ROUNDS=3 node tests/browser/rtt.mjs
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  SECRET, call, check, cleanup, credential, freePort, launch, log, newPeer, scratchDir, startTurnpike, stats,
} from './lib.mjs';

const ROUNDS = Number(process.env.ROUNDS || 3);
const PINGS = Number(process.env.PINGS || 30);

async function startCoturn(port) {
  const dir = scratchDir('coturn-');
  const conf = join(dir, 'coturn.conf');
  writeFileSync(conf, [
    'listening-ip=127.0.0.1', `listening-port=${port}`, 'relay-ip=127.0.0.1',
    'min-port=58000', 'max-port=58999', 'use-auth-secret', `static-auth-secret=${SECRET}`,
    'realm=turnpike', 'allow-loopback-peers', 'no-tls', 'no-dtls', 'no-cli', 'no-rfc5780',
    `log-file=${join(dir, 'coturn.log')}`, 'simple-log',
  ].join('\n'));
  const child = spawn('turnserver', ['-c', conf], { stdio: 'ignore' });
  await new Promise((r) => setTimeout(r, 1000));
  check(child.exitCode === null, 'coturn did not start');
  return child;
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function main() {
  const [tpPort, ctPort] = [await freePort(), await freePort()];
  await startTurnpike(`
[server]
listen_udp = ["127.0.0.1:${tpPort}"]
listen_tcp = ["127.0.0.1:${tpPort}"]
shards = 1
[relay]
ipv4 = "127.0.0.1"
ports = "57000-57999"
[auth]
secrets = ["${SECRET}"]
[peers]
allow = ["127.0.0.0/8"]
[http]
enabled = false
`);
  const coturn = await startCoturn(ctPort);
  const context = await launch({});
  const results = { turnpike: [], coturn: [] };
  try {
    for (let r = 0; r < ROUNDS; r++) {
      const order = r % 2 ? ['coturn', 'turnpike'] : ['turnpike', 'coturn'];
      for (const server of order) {
        const port = server === 'turnpike' ? tpPort : ctPort;
        const [a, b] = [await newPeer(context), await newPeer(context)];
        const cred = credential(SECRET, `rtt-${server}`);
        const cfg = {
          iceServers: [{ urls: [`turn:127.0.0.1:${port}?transport=tcp`], ...cred }],
          iceTransportPolicy: 'relay',
        };
        const c = await call(a, b, cfg);
        check(c.connected, `${server}: not connected`);
        const rtts = await a.evaluate(async (n) => {
          // ICE can report connected before the data channel opens.
          for (let i = 0; i < 500 && tp.dc?.readyState !== 'open'; i++) {
            await new Promise((res) => setTimeout(res, 10));
          }
          const out = [];
          for (let i = 0; i < n; i++) {
            const t0 = performance.now();
            await new Promise((res) => {
              const h = (e) => {
                if (e.data === `pong r${i}`) { tp.dc.removeEventListener('message', h); res(); }
              };
              tp.dc.addEventListener('message', h);
              tp.dc.send(`ping r${i}`);
            });
            out.push(performance.now() - t0);
            await new Promise((res) => setTimeout(res, 20));
          }
          return out;
        }, PINGS);
        const s = await stats(a);
        check(s.relayProtocol === 'tcp', `${server}: relayProtocol ${s.relayProtocol}`);
        const row = { p50: median(rtts), max: Math.max(...rtts), ice_rtt_ms: (s.rtt ?? NaN) * 1000 };
        results[server].push(row);
        log(server, 'round', r + 1, JSON.stringify(row), 'all:', rtts.map((x) => x.toFixed(1)).join(' '));
        await a.close(); await b.close();
      }
    }
    for (const server of ['turnpike', 'coturn']) {
      const rs = results[server];
      log(`${server}: data-channel RTT p50 per round ${rs.map((x) => x.p50.toFixed(1)).join(' / ')} ms;`,
        `ICE currentRoundTripTime ${rs.map((x) => x.ice_rtt_ms.toFixed(1)).join(' / ')} ms`);
    }
  } finally {
    await context.close();
    coturn.kill('SIGTERM');
    await cleanup();
  }
}

main().catch((e) => { console.error(e); process.exit(1); });
