// Firefox pages for module.mjs, run inside a device's network namespace (puppeteer reaches
// Firefox over a local socket, which a namespace does not share with the driver). The
// driver talks to it over the IPC channel node sets up for a child: { id, op: 'open' }
// opens a page of module.html, { id, op: 'call', page, method, args } runs tpm[method].
import { createServer } from 'node:http';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cleanup, launchFirefox } from './lib.mjs';

const html = readFileSync(join(dirname(fileURLToPath(import.meta.url)), 'module.html'), 'utf8');
const server = createServer((_, res) => { res.writeHead(200, { 'content-type': 'text/html' }); res.end(html); });
await new Promise((r) => server.listen(0, '127.0.0.1', r));
// Host candidates as addresses, not mDNS names: the Chromium at the other end cannot
// resolve Firefox's .local names here, and would never start its checks.
const firefox = await launchFirefox({ prefs: { 'media.peerconnection.ice.obfuscate_host_addresses': false } });
const pages = [];

async function handle({ op, page, method, args }) {
  if (op === 'open') {
    const p = await firefox.newPage();
    await p.goto(`http://127.0.0.1:${server.address().port}/module.html?server=${process.env.MODULE_SERVER}`);
    await p.waitForFunction(() => window.tpmReady === true, { timeout: 10000 });
    pages.push(p);
    return pages.length - 1;
  }
  return pages[page].evaluate((m, a) => window.tpm[m](...a), method, args);
}

process.on('message', async (msg) => {
  if (msg.op === 'exit') {
    await firefox.close().catch(() => {});
    server.close();
    await cleanup();
    process.exit(0);
  }
  try {
    process.send({ id: msg.id, ok: true, value: await handle(msg) });
  } catch (e) {
    process.send({ id: msg.id, ok: false, error: String(e?.stack ?? e) });
  }
});
process.send({ ready: true });
