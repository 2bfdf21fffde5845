// Types of the felix-client package (the hand-written layer in lib/ over the native module,
// whose generated declarations are ../index.d.ts). test/types.test.js checks that every
// class and method declared here exists at run time and the other way round.

/// <reference types="node" />

/** Stable error codes, the same in every Felix language. */
export type ErrorCode =
  | 'invalid_argument'
  | 'not_found'
  | 'already_exists'
  | 'conflict'
  | 'unauthorized'
  | 'forbidden'
  | 'overloaded'
  | 'frame_too_large'
  | 'unsupported'
  | 'timeout'
  | 'unavailable'
  | 'protocol'
  | 'slow_consumer'
  | 'cancelled'
  | 'closed'
  | 'internal'
  | 'quota_exceeded'
  | 'storage'

export declare const ERROR_CODES: readonly ErrorCode[]

/** Acknowledgement modes of a publish. */
export type AckMode = 'per_batch' | 'per_message' | 'none'
export declare const ACK_MODES: readonly AckMode[]

/** Every error of the package: a stable `code` and whether a retry may succeed. */
export declare class FelixError extends Error {
  constructor(message: string, code: ErrorCode, retryable?: boolean)
  readonly name: 'FelixError'
  readonly code: ErrorCode
  readonly retryable: boolean
  /** For `cancelled`: the AbortSignal's reason. */
  cause?: unknown
}

/** Bytes: Buffer, Uint8Array (any ArrayBufferView or ArrayBuffer), or a string (UTF-8). */
export type Payload = Uint8Array | ArrayBufferView | ArrayBuffer | string

export interface ConnectOptions {
  /** Broker addresses `host:port`, tried in order (default `['127.0.0.1:5000']`). */
  addresses?: string[]
  /** TLS server name to verify (default `'localhost'`). */
  serverName?: string
  /** CA certificate (PEM file) to verify the broker with (default `$TMPDIR/felix-dev-<uid>/ca.pem`). */
  caFile?: string
  /** CA certificate PEM text. */
  caPem?: string
  /** Accept any certificate. Development only. */
  insecureDev?: boolean
  /** Tenant every request acts for (default `'default'`). */
  tenant?: string
  /**
   * Bearer token: a string (static), or a function returning a fresh one (or a promise of
   * it), called before connecting and again before each token expires. A throw or rejection
   * fails with `unauthorized` (at connect, or for calls once the current token expired).
   */
  token?: string | (() => string | Promise<string>)
  /** Longest wait for the token function to settle, ms (default 30000). */
  tokenTimeoutMs?: number
  /** Control plane URL: exchange an OIDC token there for Felix tokens (RFC 8693). */
  tokenExchangeUrl?: string
  /** The OIDC token to exchange (or give `token` as a function returning it). */
  subjectToken?: string
  /** A file holding the OIDC token, read at each exchange (e.g. a Kubernetes projected ServiceAccount token). */
  subjectTokenFile?: string
  /** PEM CA certificate(s) an `https` `tokenExchangeUrl` must chain to (a control plane with a private CA); default: the public web roots. */
  tokenExchangeCaFile?: string
  /** Refresh a changing token at least this often, ms (default: only before its `exp`). */
  tokenRefreshIntervalMs?: number
  /** PEM certificate chain for mTLS. */
  clientCertFile?: string
  /** PEM private key of `clientCertFile`. */
  clientKeyFile?: string
  /** QUIC connections in the pool (default 1). */
  connections?: number
  /** Request streams per connection (default 4). */
  streamsPerConnection?: number
  /** Deadline of a connection attempt, ms (default 5000). */
  connectTimeoutMs?: number
  /** Deadline of every request, ms (default 10000). */
  requestTimeoutMs?: number
  /** First reconnect delay, ms (default 50). */
  reconnectInitialMs?: number
  /** Longest reconnect delay, ms (default 5000). */
  reconnectMaxMs?: number
  /** Events buffered per subscription before the client stops reading (default 1024). */
  subscriptionBuffer?: number
  /** Aborts the connection attempt. */
  signal?: AbortSignal
}

export interface WaitOptions {
  signal?: AbortSignal
}

export interface StreamOptions {
  maxRecords?: number
  maxBytes?: number
  subscriberBuffer?: number
  fullPolicy?: 'block' | 'drop_newest' | 'drop_oldest' | 'disconnect'
}

export interface PublisherOptions {
  maxBatchMessages?: number
  maxBatchBytes?: number
  maxDelayMs?: number
  ack?: AckMode
  queueCapacity?: number
}

export interface SubscribeOptions extends WaitOptions {
  /** `'latest'` (default), `'earliest'` or an offset. */
  from?: 'latest' | 'earliest' | number
}

export interface GroupOptions {
  from?: 'earliest' | 'latest'
  ackTimeoutMs?: number
  maxDeliveries?: number
}

export interface PutOptions {
  /** Time to live, ms (positive). */
  ttlMs?: number
  /** Only when no live entry exists (else `conflict`). */
  ifAbsent?: boolean
  /** Only when the live entry has this version (else `conflict`). */
  ifVersion?: number
}

export interface CacheOptions {
  maxBytes?: number
  defaultTtlMs?: number
}

export interface CacheEntry {
  value: Buffer
  version: number
}

export interface Event {
  /** The stream it was published to (differs per event for wildcard subscriptions). */
  stream: string
  /** Offset in that stream (`null` from a broker without offsets). */
  offset: number | null
  payload: Buffer
}

/**
 * Offsets `[from, to)` of `stream` a resumed subscription could not get back. With `reset`,
 * the broker recreated the stream's log (an in-memory broker restarted): `from` is in the old
 * log (its undelivered events from there on are lost, how many is unknown), `to` in the new.
 */
export interface Gap {
  stream: string
  from: number
  to: number
  reset: boolean
}

export interface QueueMessage {
  offset: number
  payload: Buffer
  attempt: number
  leaseMs: number
}

export interface DeadLetter {
  offset: number
  payload: Buffer
  attempts: number
  reason: 'max_deliveries' | 'rejected' | string
}

/** Offsets, or messages carrying them; one or many. */
export type MessageRefs = number | { offset: number } | Array<number | { offset: number }>

export declare class Client {
  private constructor(native: unknown)
  static connect(options?: ConnectOptions): Promise<Client>
  close(): void
  readonly closed: boolean
  ping(options?: WaitOptions): Promise<number>

  publish(namespace: string, stream: string, payload: Payload): Promise<void>
  publishBatch(namespace: string, stream: string, payloads: Payload[], options?: { ack?: AckMode }): Promise<void>
  publisher(namespace: string, stream: string, options?: PublisherOptions): Publisher
  createStream(namespace: string, stream: string, options?: StreamOptions): Promise<void>

  subscribe(namespace: string, stream: string, options?: SubscribeOptions): Promise<Subscription>

  consumer(namespace: string, stream: string, group: string): Consumer
  createGroup(namespace: string, stream: string, group: string, options?: GroupOptions): Promise<void>

  cacheGet(namespace: string, cache: string, key: string): Promise<Buffer | null>
  cacheGetEntry(namespace: string, cache: string, key: string): Promise<CacheEntry | null>
  cachePut(namespace: string, cache: string, key: string, value: Payload, options?: PutOptions): Promise<number>
  cacheDelete(namespace: string, cache: string, key: string): Promise<boolean>
  cacheGetMany(namespace: string, cache: string, keys: string[]): Promise<Array<CacheEntry | null>>
  createCache(namespace: string, cache: string, options?: CacheOptions): Promise<void>
}

export declare class Publisher {
  private constructor(native: unknown, namespace: string, stream: string)
  readonly namespace: string
  readonly stream: string
  publish(payload: Payload): Promise<void>
}

export declare class Subscription implements AsyncIterable<Event> {
  private constructor(native: unknown)
  next(options?: WaitOptions): Promise<Event | null>
  tryNext(): Event | null
  takeGaps(): Gap[]
  close(): void
  readonly closed: boolean
  events(options?: WaitOptions): AsyncIterableIterator<Event>
  [Symbol.asyncIterator](): AsyncIterableIterator<Event>
}

export declare class Consumer implements AsyncIterable<QueueMessage> {
  private constructor(native: unknown, namespace: string, stream: string, group: string)
  readonly namespace: string
  readonly stream: string
  readonly group: string
  pull(max?: number, options?: { waitMs?: number; signal?: AbortSignal }): Promise<QueueMessage[]>
  ack(messages: MessageRefs): Promise<number>
  nack(messages: MessageRefs, options?: { delayMs?: number }): Promise<number>
  extend(messages: MessageRefs, byMs: number): Promise<number>
  deadLetters(max?: number): Promise<DeadLetter[]>
  redrive(messages?: MessageRefs): Promise<number>
  discard(messages?: MessageRefs): Promise<number>
  messages(options?: { max?: number; waitMs?: number; signal?: AbortSignal }): AsyncIterableIterator<QueueMessage>
  [Symbol.asyncIterator](): AsyncIterableIterator<QueueMessage>
  close(): void
}
