'use strict'
// Consumer: one member of a consumer group. `pull` is one long poll; iterating the consumer
// pulls in a loop and yields message by message.
const { withSignal } = require('./native.js')
const { FelixError, toFelixError } = require('./error.js')

/** Offsets from a number, a message, or an array of either. */
function toOffsets(x) {
  if (x == null) throw new TypeError('offsets are required')
  const list = Array.isArray(x) ? x : [x]
  return list.map((o) => (typeof o === 'object' && o !== null ? o.offset : o))
}

function guard(fn) {
  try {
    return fn()
  } catch (e) {
    return Promise.reject(toFelixError(e))
  }
}

class Consumer {
  #native
  #closed = false
  #controllers = new Set()

  /** @internal */
  constructor(native, namespace, stream, group) {
    this.#native = native
    this.namespace = namespace
    this.stream = stream
    this.group = group
  }

  /**
   * Takes up to `max` messages (default 100), waiting up to `waitMs` (default 0) for the
   * first one. Each message: `{offset, payload, attempt, leaseMs}`.
   */
  pull(max = 100, { waitMs = 0, signal } = {}) {
    if (this.#closed) return Promise.reject(new FelixError('closed: consumer was closed', 'closed'))
    return withSignal(signal, (t) => this.#native.pull(max, waitMs, t))
  }

  /** Acknowledges messages (offsets, messages, or one of either); resolves to the count. */
  ack(messages) {
    return guard(() => this.#native.ack(toOffsets(messages)))
  }

  /** Returns messages for redelivery after `delayMs` (default 0); resolves to the count. */
  nack(messages, { delayMs = 0 } = {}) {
    return guard(() => this.#native.nack(toOffsets(messages), delayMs))
  }

  /** Extends the leases of messages to `byMs` from now; resolves to the count. */
  extend(messages, byMs) {
    return guard(() => this.#native.extend(toOffsets(messages), byMs))
  }

  /** Dead letters, oldest first: `{offset, payload, attempts, reason}`. */
  deadLetters(max = 100) {
    return guard(() => this.#native.deadLetters(max))
  }

  /** Makes dead letters deliverable again (all when `messages` is omitted). */
  redrive(messages) {
    return guard(() => this.#native.redrive(messages == null ? null : toOffsets(messages)))
  }

  /** Drops dead letters (all when `messages` is omitted). */
  discard(messages) {
    return guard(() => this.#native.discard(messages == null ? null : toOffsets(messages)))
  }

  /**
   * Messages as an async iterator: pulls up to `max` at a time, each pull waiting up to
   * `waitMs` (default 1000) and pulling again when nothing came. Acknowledge each message
   * (`consumer.ack(msg)`) or it is redelivered after its lease. Leaving the loop nacks the
   * messages pulled but not yet yielded; `signal` or `close()` ends it.
   */
  messages({ max = 100, waitMs = 1000, signal } = {}) {
    const consumer = this
    const ctl = new AbortController()
    const signals = signal ? [signal, ctl.signal] : [ctl.signal]
    const combined = signals.length === 1 ? signals[0] : AbortSignal.any(signals)
    this.#controllers.add(ctl)
    let buf = []
    let done = false
    const finish = async () => {
      done = true
      consumer.#controllers.delete(ctl)
      const rest = buf
      buf = []
      if (rest.length > 0 && !consumer.#closed) await consumer.nack(rest).catch(() => {})
    }
    return {
      [Symbol.asyncIterator]() {
        return this
      },
      async next() {
        while (!done) {
          if (buf.length > 0) return { value: buf.shift(), done: false }
          try {
            buf = await consumer.pull(max, { waitMs, signal: combined })
          } catch (e) {
            await finish()
            // close() ends the loop quietly; the caller's own abort is reported.
            if (ctl.signal.aborted && !(signal && signal.aborted)) break
            throw e
          }
        }
        return { value: undefined, done: true }
      },
      async return() {
        await finish()
        return { value: undefined, done: true }
      },
    }
  }

  [Symbol.asyncIterator]() {
    return this.messages()
  }

  /** Ends every iteration over this consumer (pending pulls are cancelled). */
  close() {
    this.#closed = true
    for (const c of this.#controllers) c.abort()
    this.#controllers.clear()
  }
}

module.exports = { Consumer }
