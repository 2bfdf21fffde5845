'use strict'
// Client: the entry point. A thin layer over the native client: every I/O method returns a
// promise settled by the Rust core (nothing here touches the network), argument errors
// become rejected FelixErrors, and waits take an AbortSignal.
const { native, withSignal, bytes } = require('./native.js')
const { FelixError, toFelixError, invalidArgument } = require('./error.js')
const { Publisher } = require('./publish.js')
const { Subscription } = require('./subscribe.js')
const { Consumer } = require('./queue.js')

function rejected(e) {
  return Promise.reject(toFelixError(e))
}

function options(o, what) {
  if (o == null) return {}
  if (typeof o !== 'object') throw invalidArgument(`${what} must be an object`)
  return o
}

// A `token` function becomes the native `tokenRequest`: the core asks on its own thread, this
// runs on the JavaScript thread, and the answer goes back with `provideToken` (see
// src/token.rs). The function may return a string or a promise of one; anything else, a throw
// or a rejection fails the fetch with `unauthorized` carrying the message.
function tokenRequest(fn) {
  return (id) => {
    Promise.resolve()
      .then(() => fn())
      .then(
        (t) =>
          typeof t === 'string'
            ? native.provideToken(id, t, null)
            : native.provideToken(id, null, `the token function returned ${typeof t}, not a string`),
        (e) => native.provideToken(id, null, String((e && e.message) || e)),
      )
  }
}

class Client {
  #native

  /** @internal Use `Client.connect`. */
  constructor(nativeClient) {
    if (!(nativeClient instanceof native.NativeClient)) {
      throw new FelixError('invalid_argument: use Client.connect(options)', 'invalid_argument')
    }
    this.#native = nativeClient
  }

  /**
   * Connects to a broker. Options: addresses, serverName, caFile, caPem, insecureDev,
   * tenant, token (a string, or a function returning a fresh one or a promise of it),
   * tokenTimeoutMs, tokenExchangeUrl, subjectToken, subjectTokenFile, tokenExchangeCaFile,
   * tokenRefreshIntervalMs,
   * clientCertFile, clientKeyFile, connections, streamsPerConnection, connectTimeoutMs,
   * requestTimeoutMs, reconnectInitialMs, reconnectMaxMs, subscriptionBuffer, signal.
   */
  static async connect(opts = {}) {
    let rest
    let signal
    try {
      ;({ signal, ...rest } = options(opts, 'options'))
      if (typeof rest.token === 'function') {
        rest.tokenRequest = tokenRequest(rest.token)
        delete rest.token
      }
    } catch (e) {
      return rejected(e)
    }
    const n = await withSignal(signal, (t) => native.NativeClient.connect(rest, t))
    return new Client(n)
  }

  /** Closes the client: pending calls fail with `closed`, subscriptions end. */
  close() {
    this.#native.close()
  }

  /** Whether `close()` was called. */
  get closed() {
    return this.#native.isClosed()
  }

  /** Round trip to the broker; resolves to milliseconds. */
  ping({ signal } = {}) {
    return withSignal(signal, (t) => this.#native.ping(t))
  }

  // --- publish ---------------------------------------------------------------------------

  /** Publishes one message; resolves when the broker acknowledged it. */
  publish(namespace, stream, payload) {
    try {
      return this.#native.publish(namespace, stream, bytes(payload))
    } catch (e) {
      return rejected(e)
    }
  }

  /**
   * Publishes messages atomically and in order. `ack`: `'per_batch'` (default),
   * `'per_message'` or `'none'` (resolves once written).
   */
  publishBatch(namespace, stream, payloads, { ack } = {}) {
    try {
      if (!Array.isArray(payloads)) throw new TypeError('payloads must be an array')
      return this.#native.publishBatch(namespace, stream, payloads.map(bytes), ack)
    } catch (e) {
      return rejected(e)
    }
  }

  /** A batching publisher for `namespace/stream` (options: maxBatchMessages, maxBatchBytes, maxDelayMs, ack, queueCapacity). */
  publisher(namespace, stream, opts = {}) {
    try {
      return new Publisher(this.#native.publisher(namespace, stream, options(opts, 'options')), namespace, stream)
    } catch (e) {
      throw toFelixError(e)
    }
  }

  /** Creates a stream with settings (maxRecords, maxBytes, subscriberBuffer, fullPolicy). */
  createStream(namespace, stream, opts = {}) {
    try {
      return this.#native.createStream(namespace, stream, options(opts, 'options'))
    } catch (e) {
      return rejected(e)
    }
  }

  // --- subscribe -------------------------------------------------------------------------

  /**
   * Subscribes to a stream, or a `*` / `>` pattern. `from`: `'latest'` (default),
   * `'earliest'` or an offset. Resolves once the broker accepted the subscription.
   */
  async subscribe(namespace, stream, { from, signal } = {}) {
    const n = await withSignal(signal, (t) => this.#native.subscribe(namespace, stream, from, t))
    return new Subscription(n)
  }

  // --- queue -----------------------------------------------------------------------------

  /** A consumer in `group` on `namespace/stream`. */
  consumer(namespace, stream, group) {
    try {
      return new Consumer(this.#native.consumer(namespace, stream, group), namespace, stream, group)
    } catch (e) {
      throw toFelixError(e)
    }
  }

  /** Creates a consumer group (from: 'earliest' | 'latest', ackTimeoutMs, maxDeliveries). */
  createGroup(namespace, stream, group, opts = {}) {
    try {
      return this.#native.createGroup(namespace, stream, group, options(opts, 'options'))
    } catch (e) {
      return rejected(e)
    }
  }

  // --- cache -----------------------------------------------------------------------------

  /** The value of a key, or `null` when missing or expired. */
  cacheGet(namespace, cache, key) {
    try {
      return this.#native.cacheGet(namespace, cache, key)
    } catch (e) {
      return rejected(e)
    }
  }

  /** `{value, version}` of a key, or `null`. */
  cacheGetEntry(namespace, cache, key) {
    try {
      return this.#native.cacheGetEntry(namespace, cache, key)
    } catch (e) {
      return rejected(e)
    }
  }

  /**
   * Writes a key; resolves to the new version. Options: `ttlMs`, `ifAbsent` or `ifVersion`
   * (a failed condition rejects with `conflict`).
   */
  cachePut(namespace, cache, key, value, opts) {
    try {
      return this.#native.cachePut(namespace, cache, key, bytes(value), opts == null ? undefined : options(opts, 'options'))
    } catch (e) {
      return rejected(e)
    }
  }

  /** Deletes a key; resolves to whether a live entry existed. */
  cacheDelete(namespace, cache, key) {
    try {
      return this.#native.cacheDelete(namespace, cache, key)
    } catch (e) {
      return rejected(e)
    }
  }

  /** `{value, version}` or `null` for each key, in order, in one round trip. */
  cacheGetMany(namespace, cache, keys) {
    try {
      return this.#native.cacheGetMany(namespace, cache, keys)
    } catch (e) {
      return rejected(e)
    }
  }

  /** Creates a cache (maxBytes, defaultTtlMs). */
  createCache(namespace, cache, opts = {}) {
    try {
      return this.#native.createCache(namespace, cache, options(opts, 'options'))
    } catch (e) {
      return rejected(e)
    }
  }
}

module.exports = { Client }
