// The README's two-party example (examples/call/index.html) as a user meets it: two tabs
// of headless Chromium, the page's server played by this script (it answers
// /turn-credentials from turnpike's credential API and passes /client/turnpike.js and
// /api/v1/reports through to turnpike's HTTP endpoint). Both tabs must show "connected",
// turnpike must count both reports, and a screenshot of the connected call is left in
// SCREENSHOT_DIR (target/tmp/example-call.png).
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { check, cleanup, freePort, launch, log, metrics, run, startTurnpike } from './lib.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const PAGE = readFileSync(join(here, '../../examples/call/index.html'), 'utf8');
const TOKEN = 'example-call-token-0123456789';

async function main() {
  const [udp, http] = [await freePort(), await freePort()];
  const turnpike = await startTurnpike(`
[server]
listen_udp = ["127.0.0.1:${udp}"]
shards = 1
[relay]
ipv4 = "127.0.0.1"
ports = "57100-57199"
[auth]
secrets = ["example-call-secret"]
[peers]
# The two tabs are on loopback: a test-only allowance.
allow = ["127.0.0.0/8"]
[http]
listen = "127.0.0.1:${http}"
credentials_token = "${TOKEN}"
client = true
`);
  const base = `http://127.0.0.1:${http}`;
  const browser = await launch({ loopback: true, viewport: { width: 360, height: 300 } });
  try {
    await browser.route('http://localhost/call/**', (r) => r.fulfill({ status: 200, contentType: 'text/html', body: PAGE }));
    await browser.route('http://localhost/turn-credentials', async (r) => {
      const c = await fetch(`${base}/api/v1/credentials?user=example&ttl=600`, { headers: { authorization: `Bearer ${TOKEN}` } });
      await r.fulfill({ status: c.status, contentType: 'application/json', body: await c.text() });
    });
    for (const path of ['client/turnpike.js', 'api/v1/reports']) {
      await browser.route(`http://localhost/${path}`, async (r) => r.fulfill({ response: await r.fetch({ url: `${base}/${path}` }) }));
    }
    await run('the example call connects in two tabs and both report it', async () => {
      const [a, b] = [await browser.newPage(), await browser.newPage()];
      for (const p of [a, b]) p.on('console', (m) => m.type() === 'error' && log('console:', m.text()));
      // Both at once: they hear each other's hello, and only one may call.
      await Promise.all([a.goto('http://localhost/call/index.html'), b.goto('http://localhost/call/index.html')]);
      for (const p of [a, b]) {
        await p.waitForFunction(() => document.querySelector('#status').textContent.startsWith('connected'), null, { timeout: 20000 });
      }
      log('status:', await b.textContent('#status'));
      // The remote video plays: frames arrive from the other tab's fake camera.
      await b.waitForFunction(() => document.querySelector('#remote').videoWidth > 0, null, { timeout: 10000 });
      const shots = process.env.SCREENSHOT_DIR;
      if (shots) await b.screenshot({ path: join(shots, 'example-call.png') });
      const t0 = Date.now();
      let counted = 0;
      while (Date.now() - t0 < 5000 && counted < 2) {
        counted = (await metrics(`127.0.0.1:${http}`))('turnpike_client_connections_total', { outcome: 'connected' });
        await new Promise((r) => setTimeout(r, 100));
      }
      check(counted === 2, `turnpike counted ${counted} connected reports, wanted 2`);
    });
  } finally {
    await browser.close().catch(() => {});
    await turnpike.stop().catch(() => {});
    await cleanup();
  }
}

main().catch(async (e) => {
  console.error(e);
  await cleanup();
  process.exit(1);
});
