// Headless Firefox (Debian's firefox-esr, driven over WebDriver BiDi by puppeteer-core)
// calls itself through turnpike with iceTransportPolicy 'relay': over UDP, TCP and TLS
// (the test CA in the profile's NSS database), each with fake camera and microphone; a
// wrong credential as the negative control; and a Firefox <-> Chromium call. Everything
// runs in a network namespace of its own with a dead-end default route (see
// inDeadEndNamespace), turnpike on its 127.0.0.1.
import {
  fileURLToPath } from 'node:url'; import {   SECRET, call, check, cleanup, credential, inDeadEndNamespace, launch, launchFirefox, log, logs, newPeer, run, stats, timings, TURN_HOST, startLoopbackTurnpike,
} from './lib.mjs';

await inDeadEndNamespace(fileURLToPath(import.meta.url));

const relayOnly = (urls, cred) => ({
  iceServers: [{ urls, username: cred.username, credential: cred.credential }],
  iceTransportPolicy: 'relay',
});

/// A relay-only call between `a` and `b` with media: data channel echo, both ends of the
/// selected pair relayed over `protocol`, bytes on the pair and decoded frames growing.
async function relayedMediaCall(a, b, cfg, protocol) {
  const r = await call(a, b, cfg, { media: true, timeoutMs: 20000 });
  check(r.connected, `not connected: ${JSON.stringify(r)} ${JSON.stringify(await logs(a))}`);
  log(`connected in ${r.ms} ms`);
  check(await a.evaluate(() => tp.echo(30, 5000)) === 30, 'data channel echo');
  const [a1, b1] = [await stats(a), await stats(b)];
  await new Promise((res) => setTimeout(res, 2000));
  const [a2, b2] = [await stats(a), await stats(b)];
  log('selected pair', JSON.stringify(b2));
  for (const [s1, s2, who] of [[a1, a2, 'a'], [b1, b2, 'b']]) {
    check(s2.local === 'relay' && s2.remote === 'relay', `${who}: pair ${s2.local}/${s2.remote}`);
    check(s2.relayProtocol === protocol, `${who}: relayProtocol ${s2.relayProtocol}, wanted ${protocol}`);
    check(s2.bytesReceived > s1.bytesReceived && s2.bytesSent > s1.bytesSent,
      `${who}: pair bytes did not grow: ${JSON.stringify([s1, s2])}`);
    check(s2.framesDecoded > s1.framesDecoded, `${who}: framesDecoded ${s1.framesDecoded} -> ${s2.framesDecoded}`);
    check(s2.audioPackets > s1.audioPackets, `${who}: audio packets ${s1.audioPackets} -> ${s2.audioPackets}`);
  }
}

async function main() {
  const { turnpike, udp, tcp, tls, fx } = await startLoopbackTurnpike();
  let firefox;
  let chromium;
  try {
    firefox = await launchFirefox({ ca: fx.ca });
    for (const [name, url, protocol] of [
      ['udp', `turn:127.0.0.1:${udp}?transport=udp`, 'udp'],
      ['tcp', `turn:127.0.0.1:${tcp}?transport=tcp`, 'tcp'],
      ['tls', `turns:${TURN_HOST}:${tls}?transport=tcp`, 'tls'],
    ]) {
      await run(`firefox ${name} relay call with media`, async () => {
        const [a, b] = [await newPeer(firefox), await newPeer(firefox)];
        await relayedMediaCall(a, b, relayOnly([url], credential(SECRET, `ff-${name}`)), protocol);
        await a.close(); await b.close();
      });
    }

    await run('firefox negative control: wrong credential does not connect', async () => {
      const [a, b] = [await newPeer(firefox), await newPeer(firefox)];
      const bad = credential('not-the-secret', 'intruder');
      const r = await call(a, b, relayOnly([`turn:127.0.0.1:${udp}?transport=udp`], bad), { timeoutMs: 8000 });
      check(!r.connected, 'connected with a wrong credential');
      const { errors } = await logs(a);
      log('expected failure; states', r.states.join('/'), JSON.stringify(errors.slice(0, 2)));
      // The failure is turnpike's refusal, not something else breaking the call.
      check(errors.some((e) => e.startsWith('401')), `no 401 from turnpike: ${JSON.stringify(errors)}`);
      await a.close(); await b.close();
    });

    chromium = await launch({ home: fx.home });
    await run('firefox <-> chromium relay call with media', async () => {
      const [a, b] = [await newPeer(firefox), await newPeer(chromium)];
      await relayedMediaCall(a, b, relayOnly([`turn:127.0.0.1:${udp}?transport=udp`], credential(SECRET, 'ff-cr')), 'udp');
      await a.close(); await b.close();
    });
  } finally {
    await firefox?.close().catch(() => {});
    await chromium?.close().catch(() => {});
    await turnpike.stop();
    await cleanup();
  }
  log('timings:', timings().join('; '));
}

main().catch(async (e) => {
  console.error(e);
  await cleanup();
  process.exit(1);
});
