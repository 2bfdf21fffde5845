'use strict'
// Subscription: an async iterable of events. The native side hands over events in batches
// (whatever is buffered, one promise per batch); this layer yields them one at a time.
const { withSignal } = require('./native.js')

const BATCH = 256

class Subscription {
  #native
  #buf = []
  #pos = 0
  #ended = false

  /** @internal */
  constructor(native) {
    this.#native = native
  }

  /**
   * The next event, or `null` once the subscription has ended (closed, or after its
   * terminal error was thrown). Rejects with `cancelled` when `signal` aborts (no event is
   * lost: the subscription stays usable).
   */
  async next({ signal } = {}) {
    if (this.#pos < this.#buf.length) return this.#take()
    if (this.#ended) return null
    const batch = await withSignal(signal, (t) => this.#native.next(BATCH, t))
    if (batch === null) {
      this.#ended = true
      return null
    }
    this.#buf = batch
    this.#pos = 0
    return this.#take()
  }

  /** An event that is already buffered, or `null` (never waits). */
  tryNext() {
    if (this.#pos < this.#buf.length) return this.#take()
    if (this.#ended) return null
    const batch = this.#native.tryNext(BATCH)
    if (batch.length === 0) return null
    this.#buf = batch
    this.#pos = 0
    return this.#take()
  }

  #take() {
    const ev = this.#buf[this.#pos]
    this.#buf[this.#pos++] = undefined
    return ev
  }

  /**
   * Gaps (`{stream, from, to, reset}`: events lost across a reconnect or, with `reset`, a
   * broker restart) since the last call. In order: the gaps taken right after `next()` gave
   * an event precede it.
   */
  takeGaps() {
    return this.#native.takeGaps()
  }

  /** Ends the subscription on the broker; a pending `next()` resolves to `null`. */
  close() {
    this.#ended = true
    this.#buf = []
    this.#pos = 0
    this.#native.close()
  }

  /** Whether the subscription was closed (by `close()`, its client's, or `break`). */
  get closed() {
    return this.#ended && this.#native.isClosed()
  }

  /**
   * Events as an async iterator; `signal` ends the loop with a `cancelled` error. Leaving
   * the loop (break, return, throw) closes the subscription.
   */
  events({ signal } = {}) {
    const sub = this
    return {
      [Symbol.asyncIterator]() {
        return this
      },
      async next() {
        const value = await sub.next({ signal })
        if (value === null) return { value: undefined, done: true }
        return { value, done: false }
      },
      async return() {
        sub.close()
        return { value: undefined, done: true }
      },
    }
  }

  [Symbol.asyncIterator]() {
    return this.events()
  }
}

module.exports = { Subscription }
