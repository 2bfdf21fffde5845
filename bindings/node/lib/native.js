'use strict'
// Loads the native addon (through the napi-generated loader) and hands it the error class.
const native = require('../index.js')
const { FelixError, toFelixError, abortError } = require('./error.js')

native.setErrorClass(FelixError)

/**
 * Runs `start(token)` (a native call taking an optional CancelToken) so that `signal`
 * cancels it: the promise rejects with a FelixError `cancelled` whose `cause` is the
 * signal's reason. Synchronous throws become rejections.
 */
function withSignal(signal, start) {
  if (signal == null) {
    try {
      return start(undefined)
    } catch (e) {
      return Promise.reject(toFelixError(e))
    }
  }
  if (typeof signal.aborted !== 'boolean' || typeof signal.addEventListener !== 'function') {
    return Promise.reject(toFelixError(new TypeError('signal must be an AbortSignal')))
  }
  if (signal.aborted) return Promise.reject(abortError(signal))
  const token = new native.CancelToken()
  const onAbort = () => token.cancel()
  signal.addEventListener('abort', onAbort, { once: true })
  let p
  try {
    p = start(token)
  } catch (e) {
    signal.removeEventListener('abort', onAbort)
    return Promise.reject(toFelixError(e))
  }
  return p.then(
    (v) => {
      signal.removeEventListener('abort', onAbort)
      return v
    },
    (e) => {
      signal.removeEventListener('abort', onAbort)
      if (e && e.code === 'cancelled' && signal.aborted && e.cause === undefined) e.cause = signal.reason
      throw e
    },
  )
}

/** A payload as bytes: Buffer and Uint8Array pass through, strings are UTF-8 encoded. */
function bytes(p) {
  if (p instanceof Uint8Array) return p
  if (typeof p === 'string') return Buffer.from(p)
  if (ArrayBuffer.isView(p)) return new Uint8Array(p.buffer, p.byteOffset, p.byteLength)
  if (p instanceof ArrayBuffer) return new Uint8Array(p)
  throw new TypeError(`payload must be a Buffer, Uint8Array or string, got ${p === null ? 'null' : typeof p}`)
}

module.exports = { native, withSignal, bytes }
