'use strict'
// felix-client for Node.js. See README.md.
const { Client } = require('./client.js')
const { Publisher, ACK_MODES } = require('./publish.js')
const { Subscription } = require('./subscribe.js')
const { Consumer } = require('./queue.js')
const { FelixError, ERROR_CODES } = require('./error.js')

module.exports = { Client, Publisher, Subscription, Consumer, FelixError, ERROR_CODES, ACK_MODES }
