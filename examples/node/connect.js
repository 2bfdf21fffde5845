'use strict'
// Shared by the examples: connection options from the environment, defaulting to the dev
// broker of `cargo run --release -p felix-broker`.
const os = require('node:os')
const path = require('node:path')

function connectOptions() {
  return {
    addresses: (process.env.FELIX_ADDR || '127.0.0.1:5000').split(','),
    caFile: process.env.FELIX_CA || path.join(os.tmpdir(), `felix-dev-${process.geteuid()}`, 'ca.pem'),
    token: process.env.FELIX_TOKEN,
  }
}

module.exports = { connectOptions, namespace: process.env.FELIX_NAMESPACE || 'examples' }
