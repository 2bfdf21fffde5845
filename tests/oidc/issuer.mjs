// A real OpenID Connect issuer (the OpenID-certified `oidc-provider`) on 127.0.0.1, for the
// control plane's end-to-end tests. No hand-made JWT stands in for it.
//
//   node issuer.mjs [--accounts FILE] [--tls-cert PEM --tls-key PEM]
//
// Listens on a free port and prints ONE JSON line: {"issuer": "http://127.0.0.1:PORT"}
// (with --tls-*: HTTPS, {"issuer": "https://localhost:PORT"}; the certificate must name
// localhost, and clients need its CA, e.g. NODE_EXTRA_CA_CERTS for get-id-token.mjs).
// Exits when its standard input closes (so a test that dies leaves no issuer behind) or on
// SIGTERM/SIGINT.
//
// Accounts: any login is accepted (devInteractions); FILE maps a login (the `sub`) to extra
// claims put in its ID token, e.g. {"alice": {"groups": ["payments-admins"]}}.
//
// Clients (client_secret_basic, secret = "<client_id>-secret", redirect http://127.0.0.1/cb):
//   felix-test    ID tokens signed RS256, one hour
//   felix-es256   ID tokens signed ES256
//   felix-eddsa   ID tokens signed EdDSA
//   felix-ps256   ID tokens signed PS256
//   felix-other   RS256, for audience checks (a client the control plane does not trust)
//   felix-short   RS256, ID tokens valid for 1 second (expiry checks)
import http from 'node:http';
import https from 'node:https';
import fs from 'node:fs';
import Provider from 'oidc-provider';
import { generateKeyPair, exportJWK } from 'jose';

const args = process.argv.slice(2);
let accounts = {};
let tlsCert;
let tlsKey;
for (let i = 0; i < args.length; i += 1) {
  if (args[i] === '--accounts') accounts = JSON.parse(fs.readFileSync(args[i += 1], 'utf8'));
  else if (args[i] === '--tls-cert') tlsCert = fs.readFileSync(args[i += 1]);
  else if (args[i] === '--tls-key') tlsKey = fs.readFileSync(args[i += 1]);
  else throw new Error(`unknown argument ${args[i]}`);
}

async function key(alg, options) {
  const { privateKey } = await generateKeyPair(alg, { extractable: true, ...options });
  const jwk = await exportJWK(privateKey);
  return { ...jwk, alg, use: 'sig', kid: `${alg.toLowerCase()}-${Math.random().toString(36).slice(2, 10)}` };
}

const server = tlsCert ? https.createServer({ cert: tlsCert, key: tlsKey }) : http.createServer();
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const issuer = tlsCert
  ? `https://localhost:${server.address().port}`
  : `http://127.0.0.1:${server.address().port}`;

const CLIENT = (id, alg) => ({
  client_id: id,
  client_secret: `${id}-secret`,
  redirect_uris: ['http://127.0.0.1/cb'],
  grant_types: ['authorization_code'],
  response_types: ['code'],
  id_token_signed_response_alg: alg,
});

const provider = new Provider(issuer, {
  clients: [
    CLIENT('felix-test', 'RS256'),
    CLIENT('felix-es256', 'ES256'),
    CLIENT('felix-eddsa', 'EdDSA'),
    CLIENT('felix-ps256', 'PS256'),
    CLIENT('felix-other', 'RS256'),
    CLIENT('felix-short', 'RS256'),
  ],
  jwks: {
    keys: [
      await key('RS256'),
      await key('PS256'),
      await key('ES256'),
      await key('EdDSA', { crv: 'Ed25519' }),
    ],
  },
  cookies: { keys: ['felix-test-cookie-key'] },
  claims: { openid: ['sub'], groups: ['groups'], email: ['email'] },
  // The ID token carries the scope's claims (not only the userinfo endpoint), as the
  // control plane's claim rules read them from the subject token.
  conformIdTokenClaims: false,
  features: { devInteractions: { enabled: true } },
  ttl: {
    IdToken: (ctx, token, client) => (client && client.clientId === 'felix-short' ? 1 : 3600),
  },
  findAccount: async (ctx, id) => ({
    accountId: id,
    claims: async () => ({ sub: id, ...(accounts[id] || {}) }),
  }),
});
// devInteractions' own warnings go to stderr; stdout carries only the JSON line.
server.on('request', provider.callback());

process.stdout.write(`${JSON.stringify({ issuer })}\n`);
// Anything else (oidc-provider's notices) goes to stderr: stdout carries one line only.
console.log = console.error;
console.info = console.error;
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
