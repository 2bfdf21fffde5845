'use strict'
// Publisher: a batching publisher bound to one stream; many publishes may be in flight and
// the core batches whatever queued up while the previous batch was being written.
const { bytes } = require('./native.js')
const { toFelixError } = require('./error.js')

const ACK_MODES = Object.freeze(['per_batch', 'per_message', 'none'])

class Publisher {
  #native

  /** @internal */
  constructor(native, namespace, stream) {
    this.#native = native
    this.namespace = namespace
    this.stream = stream
  }

  /** Publishes one message; resolves when its batch is acknowledged. */
  publish(payload) {
    try {
      return this.#native.publish(bytes(payload))
    } catch (e) {
      return Promise.reject(toFelixError(e))
    }
  }
}

module.exports = { Publisher, ACK_MODES }
