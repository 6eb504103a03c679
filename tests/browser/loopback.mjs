// Headless Chromium calls itself through turnpike on 127.0.0.1 with
// iceTransportPolicy 'relay': over UDP (data channel echo and fake camera/microphone),
// over TCP, over TLS with a certificate the browser really checks, and a wrong credential
// as the negative control.
import {
  SECRET, call, check, cleanup, run, timings, credential, launch, log, logs, newPeer, stats, startLoopbackTurnpike,
} from './lib.mjs';

async function main() {
  const { turnpike, udp, tcp, tls, fx } = await startLoopbackTurnpike();
  const relayOnly = (urls, cred) => ({
    iceServers: [{ urls, username: cred.username, credential: cred.credential }],
    iceTransportPolicy: 'relay',
  });

  // Chromium with the test CA trusted (HOME with the NSS database).
  const context = await launch({ home: fx.home });

  try {
    await run('udp relay call: data channel echo and media', async () => {
      const [a, b] = [await newPeer(context), await newPeer(context)];
      const cfg = relayOnly([`turn:127.0.0.1:${udp}?transport=udp`], credential(SECRET, 'loop-udp'));
      const r = await call(a, b, cfg, { media: true });
      check(r.connected, `not connected: ${JSON.stringify(r)} ${JSON.stringify(await logs(a))}`);
      log(`connected in ${r.ms} ms`);
      const echoed = await a.evaluate(() => tp.echo(50, 5000));
      check(echoed === 50, `echoed ${echoed}/50`);
      const s1 = await stats(b);
      await new Promise((res) => setTimeout(res, 2000));
      const s2 = await stats(b);
      log('selected pair', JSON.stringify(s2));
      check(s2.local === 'relay' && s2.remote === 'relay', `pair ${s2.local}/${s2.remote}`);
      check(s2.relayProtocol === 'udp', `relayProtocol ${s2.relayProtocol}`);
      check(s2.framesDecoded > s1.framesDecoded, `framesDecoded ${s1.framesDecoded} -> ${s2.framesDecoded}`);
      check(s2.audioPackets > 0, 'audio packets');
      await a.close(); await b.close();
    });

    await run('tcp relay call', async () => {
      const [a, b] = [await newPeer(context), await newPeer(context)];
      const cfg = relayOnly([`turn:127.0.0.1:${tcp}?transport=tcp`], credential(SECRET, 'loop-tcp'));
      const r = await call(a, b, cfg);
      check(r.connected, `not connected: ${JSON.stringify(r)} ${JSON.stringify(await logs(a))}`);
      check(await a.evaluate(() => tp.echo(20, 5000)) === 20, 'echo over tcp');
      const s = await stats(a);
      check(s.local === 'relay' && s.relayProtocol === 'tcp', `pair ${JSON.stringify(s)}`);
      await a.close(); await b.close();
    });

    await run('tls (turns:) relay call, certificate checked by the browser', async () => {
      const [a, b] = [await newPeer(context), await newPeer(context)];
      const cfg = relayOnly([`turns:127.0.0.1:${tls}?transport=tcp`], credential(SECRET, 'loop-tls'));
      const r = await call(a, b, cfg);
      check(r.connected, `not connected: ${JSON.stringify(r)} ${JSON.stringify(await logs(a))}`);
      check(await a.evaluate(() => tp.echo(20, 5000)) === 20, 'echo over tls');
      const s = await stats(a);
      check(s.local === 'relay' && s.relayProtocol === 'tls', `pair ${JSON.stringify(s)}`);
      await a.close(); await b.close();
    });

    await run('negative control: wrong credential does not connect', async () => {
      const [a, b] = [await newPeer(context), await newPeer(context)];
      const bad = credential('not-the-secret', 'intruder');
      const cfg = relayOnly([`turn:127.0.0.1:${udp}?transport=udp`], bad);
      const r = await call(a, b, cfg, { timeoutMs: 8000 });
      check(!r.connected, 'connected with a wrong credential');
      const l = await logs(a);
      log('expected failure; candidate errors:', JSON.stringify(l.errors.slice(0, 2)));
      await a.close(); await b.close();
    });
  } finally {
    await context.close();
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
