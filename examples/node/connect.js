'use strict'
// Shared by the examples: connection options from the environment, defaulting to the dev
// broker of `cargo run --release -p felix-broker`, and the checks that make an example fail
// (exit 1, saying what was wrong) when the broker does not answer as the example says.
const os = require('node:os')
const path = require('node:path')

function connectOptions() {
  return {
    addresses: (process.env.FELIX_ADDR || '127.0.0.1:5000').split(','),
    caFile: process.env.FELIX_CA || path.join(os.tmpdir(), `felix-dev-${process.geteuid()}`, 'ca.pem'),
    token: process.env.FELIX_TOKEN,
  }
}

class WrongOutput extends Error {}

/** Throws a WrongOutput unless `actual` equals `expected` (compared as JSON). */
function expectEqual(actual, expected, what) {
  const a = JSON.stringify(actual)
  const e = JSON.stringify(expected)
  if (a !== e) throw new WrongOutput(`${what}: got ${a}, expected ${e}`)
}

/** Runs an example's main: any error, or a wrong result, exits 1 with a message on stderr. */
function run(main) {
  main().then(
    () => process.exit(0),
    (e) => {
      if (e instanceof WrongOutput) console.error(`wrong output: ${e.message}`)
      else console.error(`error ${e.code || e.name}: ${e.message}`)
      process.exit(1)
    },
  )
}

module.exports = { connectOptions, namespace: process.env.FELIX_NAMESPACE || 'examples', expectEqual, run }
