// Type declarations for turnpike.js (the module itself has no build step).

export declare const OUTCOMES: readonly ['connected', 'failed', 'closed'];
export declare const PATHS: readonly ['host', 'srflx', 'prflx', 'relay_udp', 'relay_tcp', 'relay_tls', 'relay_peer', 'none'];
export declare const BROWSERS: readonly ['chrome', 'firefox', 'safari', 'edge'];

/** What a credential endpoint returns (turnpike's credential API, or the app's own). */
export interface CredentialResponse {
  username: string;
  password: string;
  /** Seconds the credential lives (used when the username carries no expiry). */
  ttl?: number;
  uris?: string[];
  iceServers?: RTCIceServer[];
}

export interface Credential {
  username: string;
  password: string;
  /** Milliseconds since the epoch. */
  expiresAt: number;
}

export interface IceConfig {
  iceServers: RTCIceServer[];
  credential: Credential;
}

/** A cached credential for new connections, fetched again `margin` seconds before expiry. */
export declare function iceServers(opts: {
  fetchCredential: () => Promise<CredentialResponse>;
  margin?: number;
  now?: () => number;
}): () => Promise<IceConfig>;

export type SignalMessage = { description: RTCSessionDescriptionInit } | { candidate: RTCIceCandidateInit | null };

export interface LogEntry {
  /** Milliseconds since connect(). */
  t: number;
  event: string;
  value: unknown;
}

export interface Outcome {
  outcome: 'connected' | 'failed' | 'closed';
  /** Milliseconds from connect() to connected; null otherwise. */
  connectMs: number | null;
  browser: string;
  /** Connected: the selected pair's path. Otherwise: the best candidate type gathered here. */
  path?: string;
  /** Candidate types gathered here (relay ones as relay_udp/relay_tcp/relay_tls). */
  gathered?: string[];
  /** Candidate pairs by their final state. */
  pairsTried?: Record<string, number>;
  local?: string;
  remote?: string;
  protocol?: string;
  relayProtocol?: string;
  rttMs?: number | null;
  events: LogEntry[];
}

export interface Call {
  /** Creates the offer, sets it locally and signals it. */
  offer(options?: RTCOfferOptions): Promise<void>;
  /** A message from the other party: a description (an offer is answered) or a candidate. */
  receive(message: Partial<{ description: RTCSessionDescriptionInit; candidate: RTCIceCandidateInit | null }>): Promise<void>;
  /** Resolves once: connected, failed, or closed before connecting. */
  outcome: Promise<Outcome>;
  events: LogEntry[];
  close(): void;
}

/** Drives one connection's signaling, queues early candidates, logs every state change. */
export declare function connect(
  pc: RTCPeerConnection,
  opts: { signal: (message: SignalMessage) => void; log?: (entry: LogEntry) => void; now?: () => number },
): Call;

/** chrome, edge, firefox, safari or other, from a user agent string. */
export declare function browserFamily(ua?: string): string;

/** Sends an outcome to turnpike's POST /api/v1/reports, signed with the credential; resolves to the status. */
export declare function report(
  outcome: Outcome,
  opts: { url: string; credential: { username: string; password: string }; fetch?: typeof fetch },
): Promise<number>;

/** base64(HMAC-SHA1(key, body)). */
export declare function sign(key: string, body: string): Promise<string>;
