// turnpike.js: the app's half of a WebRTC call through a TURN relay. One ES module, no
// dependencies, no build step. It fixes the four mistakes that make a call work on one
// machine and fail across devices (see README, "Add turnpike to your app"):
//   1. remote candidates that arrive before the remote description are queued, not lost;
//   2. the ICE servers always include TURN, from a cached, short-lived credential;
//   3. every state change is logged with a timestamp, so a failed call says where it failed;
//   4. each call's outcome is reported (signed) to turnpike, which counts it in /metrics.

/** Label values a report may carry; the server maps anything else to "other". */
export const OUTCOMES = ['connected', 'failed', 'closed'];
export const PATHS = ['host', 'srflx', 'prflx', 'relay_udp', 'relay_tcp', 'relay_tls', 'relay_peer', 'none'];
export const BROWSERS = ['chrome', 'firefox', 'safari', 'edge'];

/**
 * A credential cache for new connections. `fetchCredential` returns what turnpike's
 * credential API (or the app's own endpoint in the TURN REST scheme) returns:
 * `{ username, password, ttl, uris }` (`iceServers` is derived when absent). The result is
 * reused until `margin` seconds before it expires, then fetched again; a connection keeps
 * the servers it was created with (a credential is never swapped mid-call).
 * @param {{ fetchCredential: () => Promise<object>, margin?: number, now?: () => number }} opts
 * @returns {() => Promise<{ iceServers: RTCIceServer[], credential: { username: string, password: string, expiresAt: number } }>}
 */
export function iceServers({ fetchCredential, margin = 60, now = () => Date.now() }) {
  let cached = null;
  let pending = null;
  return async function get() {
    if (cached && now() < cached.credential.expiresAt - margin * 1000) return cached;
    // Concurrent callers share one fetch.
    pending ??= (async () => {
      try {
        const c = await fetchCredential();
        cached = {
          iceServers: c.iceServers ?? [{ urls: c.uris, username: c.username, credential: c.password }],
          credential: { username: c.username, password: c.password, expiresAt: expiresAt(c, now()) },
        };
        return cached;
      } finally {
        pending = null;
      }
    })();
    return pending;
  };
}

/** Milliseconds since the epoch when credential `c` (fetched at `fetchedAt`) expires. */
function expiresAt(c, fetchedAt) {
  const rest = /^(\d+)(:|$)/.exec(c.username ?? '');
  if (rest) return Number(rest[1]) * 1000;
  return fetchedAt + (Number(c.ttl) || 0) * 1000;
}

/**
 * Drives one RTCPeerConnection's signaling and watches it until it connects or fails.
 * `signal(message)` sends `{ description }` or `{ candidate }` to the other party; what
 * the other party sends goes to `receive(message)`. Remote candidates wait until the
 * remote description they belong to is set (also across an ICE restart: a candidate for
 * another ufrag waits for its description, and is dropped when a different one arrives).
 * `log(entry)` sees every state change as `{ t, event, value }` (t: ms since connect).
 * @param {RTCPeerConnection} pc
 * @param {{ signal: (message: object) => void, log?: (entry: object) => void, now?: () => number }} opts
 */
export function connect(pc, { signal, log = () => {}, now = () => performance.now() }) {
  const t0 = now();
  const events = [];
  const note = (event, value) => {
    const entry = { t: Math.round(now() - t0), event, value };
    events.push(entry);
    log(entry);
  };
  const queue = new CandidateQueue(pc, note);
  let settle;
  const outcome = new Promise((resolve) => { settle = resolve; });
  let done = false;
  const finish = async (kind) => {
    if (done) return;
    done = true;
    const ms = Math.round(now() - t0);
    const seen = await readStats(pc, kind).catch(() => ({}));
    settle({ outcome: kind, connectMs: kind === 'connected' ? ms : null, browser: browserFamily(), ...seen, events });
  };

  pc.addEventListener('icecandidate', (e) => signal({ candidate: e.candidate ? e.candidate.toJSON() : null }));
  for (const [event, prop] of [
    ['signalingstatechange', 'signalingState'],
    ['icegatheringstatechange', 'iceGatheringState'],
    ['iceconnectionstatechange', 'iceConnectionState'],
    ['connectionstatechange', 'connectionState'],
  ]) {
    pc.addEventListener(event, () => {
      note(prop, pc[prop]);
      if (prop === 'connectionState' && pc.connectionState === 'connected') finish('connected');
      if (prop === 'connectionState' && pc.connectionState === 'failed') finish('failed');
    });
  }
  pc.addEventListener('icecandidateerror', (e) => note('icecandidateerror', { code: e.errorCode, text: e.errorText, url: e.url }));

  return {
    /** Creates the offer, sets it locally and signals it. */
    async offer(options) {
      await pc.setLocalDescription(await pc.createOffer(options));
      signal({ description: pc.localDescription.toJSON() });
    },
    /** Takes a message from the other party: a description (an offer is answered) or a candidate. */
    async receive({ description, candidate }) {
      if (description) {
        await queue.setRemoteDescription(description);
        if (description.type === 'offer') {
          await pc.setLocalDescription(await pc.createAnswer());
          signal({ description: pc.localDescription.toJSON() });
        }
      } else if (candidate !== undefined) {
        await queue.add(candidate);
      }
    },
    /** Resolves once, when the connection connects, fails or is closed before connecting. */
    outcome,
    /** Every state change so far. */
    events,
    /** Closes the connection; one that never connected reports `closed`. */
    close() {
      finish('closed');
      pc.close();
    },
  };
}

/** The ICE ufrag of a session description (the first one: bundled media share it). */
function ufragOf(sdp) {
  return /^a=ice-ufrag:(\S+)/m.exec(sdp ?? '')?.[1] ?? null;
}

/**
 * Remote candidates in arrival order, added once their description is set. One chain of
 * promises, so a candidate is never added while the description it needs is being set.
 */
class CandidateQueue {
  constructor(pc, note) {
    this.pc = pc;
    this.note = note;
    this.waiting = [];
    this.ufrag = null;
    this.chain = Promise.resolve();
  }

  run(step) {
    this.chain = this.chain.then(step, step);
    return this.chain;
  }

  setRemoteDescription(description) {
    return this.run(async () => {
      await this.pc.setRemoteDescription(description);
      this.ufrag = ufragOf(description.sdp);
      const waiting = this.waiting;
      this.waiting = [];
      for (const c of waiting) await this.place(c, true);
    });
  }

  add(candidate) {
    return this.run(() => this.place(candidate, false));
  }

  /** Adds `c` now, keeps it for a later description, or (flushing) drops a stale one. */
  async place(c, flushing) {
    const end = c === null || c.candidate === '';
    const ufrag = c?.usernameFragment ?? null;
    if (!this.pc.remoteDescription || (ufrag && ufrag !== this.ufrag)) {
      if (flushing && this.pc.remoteDescription) {
        this.note('candidate dropped', `ufrag ${ufrag} is not the remote description's ${this.ufrag}`);
      } else {
        this.waiting.push(c);
      }
      return;
    }
    try {
      await this.pc.addIceCandidate(end ? undefined : c);
    } catch (e) {
      this.note('addIceCandidate failed', String(e?.message ?? e));
    }
  }
}

/** What getStats says about the connection: the selected pair, or what was tried. */
async function readStats(pc, kind) {
  const report = await pc.getStats();
  const byId = new Map();
  report.forEach((s) => byId.set(s.id, s));
  const all = [...byId.values()];
  const gathered = [...new Set(all.filter((s) => s.type === 'local-candidate')
    .map((s) => (s.candidateType === 'relay' ? `relay_${s.relayProtocol ?? 'udp'}` : s.candidateType)))].sort();
  const pairs = all.filter((s) => s.type === 'candidate-pair');
  const tried = {};
  for (const p of pairs) tried[p.state] = (tried[p.state] ?? 0) + 1;
  // Not connected: the path is the best this end had gathered, so the operator can tell
  // a call that had no TURN candidate from one that failed with one.
  if (kind !== 'connected') return { path: BEST_FIRST.find((t) => gathered.includes(t)) ?? 'none', gathered, pairsTried: tried };
  const transport = all.find((s) => s.type === 'transport' && s.selectedCandidatePairId);
  // Firefox marks the pair itself as selected rather than naming it on the transport.
  const pair = transport ? byId.get(transport.selectedCandidatePairId)
    : pairs.find((p) => p.selected || (p.nominated && p.state === 'succeeded'));
  const local = pair && byId.get(pair.localCandidateId);
  const remote = pair && byId.get(pair.remoteCandidateId);
  return {
    path: pathOf(local, remote),
    gathered,
    pairsTried: tried,
    local: local?.candidateType,
    remote: remote?.candidateType,
    protocol: local?.protocol,
    relayProtocol: local?.relayProtocol,
    rttMs: pair?.currentRoundTripTime != null ? Math.round(pair.currentRoundTripTime * 1000) : null,
  };
}

/** Candidate types from the most to the least able to get through NATs and firewalls. */
const BEST_FIRST = ['relay_udp', 'relay_tcp', 'relay_tls', 'srflx', 'prflx', 'host'];

/**
 * The path label of a selected pair, seen from here: through a relay at either end, else
 * through this end's NAT mapping (srflx, or prflx learned during the checks), else
 * through the other end's (srflx), else direct (host). A remote prflx alone says nothing:
 * on a LAN the other end's checks often arrive before its candidates do.
 */
function pathOf(local, remote) {
  if (!local || !remote) return 'none';
  if (local.candidateType === 'relay') return `relay_${local.relayProtocol ?? 'udp'}`;
  if (remote.candidateType === 'relay') return 'relay_peer';
  if (local.candidateType === 'srflx' || local.candidateType === 'prflx') return local.candidateType;
  return remote.candidateType === 'srflx' ? 'srflx' : 'host';
}

/** chrome, edge, firefox, safari or other. */
export function browserFamily(ua = globalThis.navigator?.userAgent ?? '') {
  if (/Edg\//.test(ua)) return 'edge';
  if (/Firefox\//.test(ua)) return 'firefox';
  if (/Chrom(e|ium)\//.test(ua)) return 'chrome';
  if (/Safari\//.test(ua)) return 'safari';
  return 'other';
}

/**
 * Sends one call's outcome to turnpike (`POST {url}`, normally
 * `https://turn.example.com:9641/api/v1/reports`), signed with the credential the
 * connection used: header `X-Turnpike-Signature` = base64(HMAC-SHA1(password, body)),
 * the MAC that MESSAGE-INTEGRITY uses, keyed with the credential's password.
 * Only holders of a live credential can report. Resolves to the HTTP status.
 * @param {object} outcome what `connect(...).outcome` resolved to
 * @param {{ url: string, credential: { username: string, password: string }, fetch?: typeof fetch }} opts
 */
export async function report(outcome, { url, credential, fetch: fetchFn = globalThis.fetch }) {
  const body = JSON.stringify({
    v: 1,
    username: credential.username,
    outcome: outcome.outcome,
    path: outcome.path ?? 'none',
    browser: outcome.browser ?? browserFamily(),
    connect_ms: outcome.connectMs ?? null,
    gathered: outcome.gathered ?? [],
    pairs_tried: outcome.pairsTried ?? {},
    rtt_ms: outcome.rttMs ?? null,
  });
  const r = await fetchFn(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-turnpike-signature': await sign(credential.password, body) },
    body,
    keepalive: true,
  });
  return r.status;
}

/** base64(HMAC-SHA1(key, body)) with WebCrypto. */
export async function sign(key, body) {
  const enc = new TextEncoder();
  const k = await crypto.subtle.importKey('raw', enc.encode(key), { name: 'HMAC', hash: 'SHA-1' }, false, ['sign']);
  const mac = new Uint8Array(await crypto.subtle.sign('HMAC', k, enc.encode(body)));
  return btoa(String.fromCharCode(...mac));
}
