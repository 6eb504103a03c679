// Unit tests of turnpike.js with node's test runner and a fake RTCPeerConnection that
// behaves like the browsers where it matters: addIceCandidate rejects without a remote
// description or for another ufrag, and setRemoteDescription takes a moment.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { browserFamily, connect, iceServers, report } from './turnpike.js';

const tick = () => new Promise((r) => setTimeout(r, 1));
const sdp = (ufrag) => `v=0\r\na=ice-ufrag:${ufrag}\r\na=ice-pwd:x\r\n`;
const cand = (n, ufrag = 'u1') => ({ candidate: `candidate:${n} 1 udp 1 10.0.0.${n} 5000 typ host`, sdpMid: '0', usernameFragment: ufrag });

class FakePC extends EventTarget {
  constructor() {
    super();
    this.remoteDescription = null;
    this.localDescription = null;
    this.added = [];
    this.stats = [];
    this.signalingState = 'stable';
    this.connectionState = 'new';
  }

  async setRemoteDescription(d) {
    await tick();
    this.remoteDescription = d;
    this.remoteUfrag = /a=ice-ufrag:(\S+)/.exec(d.sdp)[1];
  }

  async addIceCandidate(c) {
    await tick();
    if (!this.remoteDescription) throw new Error('InvalidStateError: no remote description');
    if (c?.usernameFragment && c.usernameFragment !== this.remoteUfrag) throw new Error('OperationError: unknown ufrag');
    this.added.push(c === undefined ? 'end' : c.candidate);
  }

  async createOffer() { return { type: 'offer', sdp: sdp('local') }; }
  async createAnswer() { return { type: 'answer', sdp: sdp('local') }; }
  async setLocalDescription(d) { this.localDescription = { ...d, toJSON: () => d }; }
  async getStats() { return new Map(this.stats.map((s) => [s.id, s])); }
  close() { this.closed = true; }

  set(prop, value) {
    this[prop] = value;
    this.dispatchEvent(new Event(`${prop.toLowerCase()}change`));
  }
}

function clock() {
  let t = 1000;
  const now = () => t;
  now.advance = (ms) => { t += ms; };
  return now;
}

test('candidates that arrive before the remote description are added after it, in order, end last', async () => {
  const pc = new FakePC();
  const call = connect(pc, { signal: () => {} });
  await call.receive({ candidate: cand(1) });
  await call.receive({ candidate: cand(2) });
  await call.receive({ candidate: null });
  assert.deepEqual(pc.added, []);
  await call.receive({ description: { type: 'answer', sdp: sdp('u1') } });
  assert.deepEqual(pc.added, [cand(1).candidate, cand(2).candidate, 'end']);
  await call.receive({ candidate: cand(3) });
  assert.equal(pc.added.at(-1), cand(3).candidate);
});

test('without the queue an early candidate is lost, as in the app this module was written for', async () => {
  const pc = new FakePC();
  await assert.rejects(pc.addIceCandidate(cand(1)), /InvalidStateError/);
  await pc.setRemoteDescription({ type: 'answer', sdp: sdp('u1') });
  assert.deepEqual(pc.added, []);
});

test('after an ICE restart, candidates for the old ufrag are dropped and early ones for the new ufrag wait', async () => {
  const pc = new FakePC();
  const entries = [];
  const call = connect(pc, { signal: () => {}, log: (e) => entries.push(e) });
  await call.receive({ description: { type: 'answer', sdp: sdp('u1') } });
  await call.receive({ candidate: cand(1, 'u1') });
  // The restart's candidates overtake its description; a late one for u1 arrives too.
  await call.receive({ candidate: cand(2, 'u2') });
  await call.receive({ candidate: cand(3, 'u1') });
  assert.deepEqual(pc.added, [cand(1).candidate, cand(3).candidate]);
  await call.receive({ description: { type: 'answer', sdp: sdp('u3') } });
  assert.deepEqual(pc.added, [cand(1).candidate, cand(3).candidate], 'u2 is not u3: dropped');
  assert.ok(entries.some((e) => e.event === 'candidate dropped'));
  await call.receive({ candidate: cand(4, 'u4') });
  await call.receive({ description: { type: 'answer', sdp: sdp('u4') } });
  assert.equal(pc.added.at(-1), cand(4, 'u4').candidate);
});

test('an offer is answered and both descriptions are signalled', async () => {
  const pc = new FakePC();
  const sent = [];
  const call = connect(pc, { signal: (m) => sent.push(m) });
  await call.receive({ description: { type: 'offer', sdp: sdp('r') } });
  assert.equal(sent[0].description.type, 'answer');
  await call.offer();
  assert.equal(sent[1].description.type, 'offer');
});

test('every state change and icecandidateerror is logged with its time since connect', async () => {
  const pc = new FakePC();
  const now = clock();
  const entries = [];
  connect(pc, { signal: () => {}, log: (e) => entries.push(e), now });
  now.advance(40);
  pc.set('iceGatheringState', 'gathering');
  now.advance(10);
  pc.set('iceConnectionState', 'checking');
  pc.set('signalingState', 'have-local-offer');
  const err = new Event('icecandidateerror');
  Object.assign(err, { errorCode: 701, errorText: 'timeout', url: 'turn:x' });
  pc.dispatchEvent(err);
  assert.deepEqual(entries.map((e) => [e.t, e.event, e.value]), [
    [40, 'iceGatheringState', 'gathering'],
    [50, 'iceConnectionState', 'checking'],
    [50, 'signalingState', 'have-local-offer'],
    [50, 'icecandidateerror', { code: 701, text: 'timeout', url: 'turn:x' }],
  ]);
});

test('connected: the selected pair once, the path and the time to connect', async () => {
  const pc = new FakePC();
  const now = clock();
  const call = connect(pc, { signal: () => {}, now });
  pc.stats = [
    { id: 'T', type: 'transport', selectedCandidatePairId: 'P' },
    { id: 'P', type: 'candidate-pair', state: 'succeeded', localCandidateId: 'L', remoteCandidateId: 'R', currentRoundTripTime: 0.042 },
    { id: 'Q', type: 'candidate-pair', state: 'failed', localCandidateId: 'L2', remoteCandidateId: 'R' },
    { id: 'L', type: 'local-candidate', candidateType: 'relay', relayProtocol: 'tcp', protocol: 'udp' },
    { id: 'L2', type: 'local-candidate', candidateType: 'host', protocol: 'udp' },
    { id: 'R', type: 'remote-candidate', candidateType: 'srflx' },
  ];
  now.advance(850);
  pc.set('connectionState', 'connected');
  const o = await call.outcome;
  assert.equal(o.outcome, 'connected');
  assert.equal(o.connectMs, 850);
  assert.equal(o.path, 'relay_tcp');
  assert.equal(o.rttMs, 42);
  assert.deepEqual(o.gathered, ['host', 'relay_tcp']);
  assert.deepEqual(o.pairsTried, { succeeded: 1, failed: 1 });
});

test('firefox names the selected pair on the pair itself; a relayed peer is relay_peer', async () => {
  const pc = new FakePC();
  const call = connect(pc, { signal: () => {} });
  pc.stats = [
    { id: 'P', type: 'candidate-pair', state: 'succeeded', selected: true, localCandidateId: 'L', remoteCandidateId: 'R' },
    { id: 'L', type: 'local-candidate', candidateType: 'srflx' },
    { id: 'R', type: 'remote-candidate', candidateType: 'relay' },
  ];
  pc.set('connectionState', 'connected');
  assert.equal((await call.outcome).path, 'relay_peer');
});

test('paths: a remote prflx on a LAN is host; this end behind its NAT is srflx or prflx', async () => {
  const cases = [
    ['host', 'prflx', 'host'], ['host', 'host', 'host'], ['host', 'srflx', 'srflx'],
    ['srflx', 'prflx', 'srflx'], ['prflx', 'host', 'prflx'],
  ];
  for (const [local, remote, want] of cases) {
    const pc = new FakePC();
    const call = connect(pc, { signal: () => {} });
    pc.stats = [
      { id: 'T', type: 'transport', selectedCandidatePairId: 'P' },
      { id: 'P', type: 'candidate-pair', state: 'succeeded', localCandidateId: 'L', remoteCandidateId: 'R' },
      { id: 'L', type: 'local-candidate', candidateType: local },
      { id: 'R', type: 'remote-candidate', candidateType: remote },
    ];
    pc.set('connectionState', 'connected');
    assert.equal((await call.outcome).path, want, `${local}/${remote}`);
  }
});

test('failed: which candidate types were gathered and which pairs were tried', async () => {
  const pc = new FakePC();
  const call = connect(pc, { signal: () => {} });
  pc.stats = [
    { id: 'L', type: 'local-candidate', candidateType: 'host' },
    { id: 'L3', type: 'local-candidate', candidateType: 'srflx' },
    { id: 'P', type: 'candidate-pair', state: 'failed' },
    { id: 'P2', type: 'candidate-pair', state: 'failed' },
  ];
  pc.set('connectionState', 'failed');
  const o = await call.outcome;
  assert.equal(o.outcome, 'failed');
  assert.equal(o.connectMs, null);
  assert.equal(o.path, 'srflx', 'the best it had: no TURN candidate');
  assert.deepEqual(o.gathered, ['host', 'srflx']);
  assert.deepEqual(o.pairsTried, { failed: 2 });
});

test('closed before connecting reports closed once; a later state change changes nothing', async () => {
  const pc = new FakePC();
  const call = connect(pc, { signal: () => {} });
  call.close();
  pc.set('connectionState', 'connected');
  assert.equal((await call.outcome).outcome, 'closed');
  assert.ok(pc.closed);
});

test('iceServers: one fetch for concurrent callers, cached until the margin before expiry', async () => {
  let t = 1_700_000_000_000;
  let fetches = 0;
  const get = iceServers({
    now: () => t,
    margin: 60,
    fetchCredential: async () => {
      fetches += 1;
      await tick();
      return { username: `${t / 1000 + 600}:alice`, password: 'p', ttl: 600, uris: ['turn:a:3478'] };
    },
  });
  const [a, b] = await Promise.all([get(), get()]);
  assert.equal(fetches, 1);
  assert.equal(a, b);
  assert.deepEqual(a.iceServers, [{ urls: ['turn:a:3478'], username: a.credential.username, credential: 'p' }]);
  t += 539_000;
  await get();
  assert.equal(fetches, 1, 'still 61 s to go');
  t += 2_000;
  const c = await get();
  assert.equal(fetches, 2, 'within the margin: fetched again');
  assert.notEqual(c.credential.username, a.credential.username);
});

test('iceServers: a username without an expiry lives ttl seconds from the fetch', async () => {
  let t = 0;
  let fetches = 0;
  const get = iceServers({ now: () => t, margin: 0, fetchCredential: async () => { fetches += 1; return { username: 'static', password: 'p', ttl: 10 }; } });
  await get();
  t = 9_999;
  await get();
  t = 10_000;
  await get();
  assert.equal(fetches, 2);
});

test('report: the body signed with HMAC-SHA1 of the credential password', async () => {
  let seen;
  const fetch = async (url, init) => { seen = { url, ...init }; return { status: 204 }; };
  const outcome = { outcome: 'connected', path: 'relay_udp', browser: 'firefox', connectMs: 420, gathered: ['host'], pairsTried: { succeeded: 1 }, rttMs: 5 };
  const status = await report(outcome, { url: 'http://t/api/v1/reports', credential: { username: '99:bob', password: 'pw' }, fetch });
  assert.equal(status, 204);
  assert.equal(seen.method, 'POST');
  const body = JSON.parse(seen.body);
  assert.deepEqual(body, { v: 1, username: '99:bob', outcome: 'connected', path: 'relay_udp', browser: 'firefox', connect_ms: 420, gathered: ['host'], pairs_tried: { succeeded: 1 }, rtt_ms: 5 });
  const want = createHmac('sha1', 'pw').update(seen.body).digest('base64');
  assert.equal(seen.headers['x-turnpike-signature'], want);
});

test('browserFamily', () => {
  const chrome = 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36';
  assert.equal(browserFamily(chrome), 'chrome');
  assert.equal(browserFamily(`${chrome} Edg/131.0.0.0`), 'edge');
  assert.equal(browserFamily('Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0'), 'firefox');
  assert.equal(browserFamily('Mozilla/5.0 (Macintosh) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Safari/605.1.15'), 'safari');
  assert.equal(browserFamily('curl/8'), 'other');
});
