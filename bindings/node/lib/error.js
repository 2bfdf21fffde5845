'use strict'
// FelixError: the one error type of the package. Every rejection and every synchronous throw
// is a FelixError with `code` (a stable string, the same in every Felix language) and
// `retryable`. The native module builds them directly (it is handed this class at load).

/** Stable error codes (felix_wire::ErrorCode). */
const ERROR_CODES = Object.freeze([
  'invalid_argument',
  'not_found',
  'already_exists',
  'conflict',
  'unauthorized',
  'forbidden',
  'overloaded',
  'frame_too_large',
  'unsupported',
  'timeout',
  'unavailable',
  'protocol',
  'slow_consumer',
  'cancelled',
  'closed',
  'internal',
  'quota_exceeded',
  'storage',
])

class FelixError extends Error {
  /**
   * @param {string} message
   * @param {string} code one of ERROR_CODES
   * @param {boolean} [retryable]
   */
  constructor(message, code, retryable = false) {
    super(message)
    this.name = 'FelixError'
    this.code = code
    this.retryable = Boolean(retryable)
  }
}

/** Any thrown value as a FelixError (argument conversion errors become `invalid_argument`). */
function toFelixError(e) {
  if (e instanceof FelixError) return e
  const err = new FelixError(e && e.message ? e.message : String(e), 'invalid_argument', false)
  err.cause = e
  return err
}

function invalidArgument(message) {
  return new FelixError(`invalid_argument: ${message}`, 'invalid_argument', false)
}

/** The rejection of a wait whose AbortSignal fired. */
function abortError(signal) {
  const err = new FelixError('cancelled: the operation was aborted', 'cancelled', false)
  err.cause = signal.reason
  return err
}

module.exports = { FelixError, ERROR_CODES, toFelixError, invalidArgument, abortError }
