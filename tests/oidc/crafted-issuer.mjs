// A minimal OIDC issuer that signs deliberately defective tokens, for the control plane's
// negative exchange tests. The real issuer (issuer.mjs, oidc-provider) never signs a token
// with a wrong algorithm, a DER ECDSA signature or a `crit` header, and its private keys stay
// inside it, so these cases need keys of our own: this script holds an RSA key (JWK
// restricted to RS256) and a P-256 key (ES256), publishes them like an issuer (discovery +
// JWKS over HTTP on 127.0.0.1), and prints the tokens.
//
//   node crafted-issuer.mjs AUDIENCE
//
// Prints ONE JSON line: {"issuer": "http://127.0.0.1:PORT", "tokens": {NAME: JWT, ...}}; the
// good_* tokens are valid (the fixture's positive controls), each other one has exactly one
// defect. Exits when its standard input closes.
import http from 'node:http';
import crypto from 'node:crypto';

const audience = process.argv[2] || 'felix-test';
const rsa = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const ec = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
const jwk = (k, extra) => ({ ...k.publicKey.export({ format: 'jwk' }), use: 'sig', ...extra });
const jwks = { keys: [jwk(rsa, { kid: 'rsa1', alg: 'RS256' }), jwk(ec, { kid: 'ec1', alg: 'ES256' })] };

const server = http.createServer();
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;
server.on('request', (req, res) => {
  const body = req.url === '/.well-known/openid-configuration'
    ? { issuer, jwks_uri: `${issuer}/jwks` }
    : req.url === '/jwks' ? jwks : null;
  res.writeHead(body ? 200 : 404, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body || {}));
});

const b64 = (x) => Buffer.from(typeof x === 'string' ? x : JSON.stringify(x)).toString('base64url');
const now = Math.floor(Date.now() / 1000);
const claims = {
  iss: issuer, aud: audience, sub: 'alice', groups: ['payments-admins'], iat: now, exp: now + 3600,
};
function token(header, payload, signer) {
  const input = `${b64(header)}.${b64(payload)}`;
  return `${input}.${signer(Buffer.from(input)).toString('base64url')}`;
}
const rs256 = (d) => crypto.sign('sha256', d, rsa.privateKey);
const ps256 = (d) => crypto.sign('sha256', d, {
  key: rsa.privateKey, padding: crypto.constants.RSA_PKCS1_PSS_PADDING, saltLength: 32,
});
const es256 = (d) => crypto.sign('sha256', d, { key: ec.privateKey, dsaEncoding: 'ieee-p1363' });
const es256Der = (d) => crypto.sign('sha256', d, { key: ec.privateKey, dsaEncoding: 'der' });
// The classic algorithm confusion: HMAC keyed with the issuer's public RSA key (PEM).
const rsaPem = rsa.publicKey.export({ type: 'spki', format: 'pem' });
const hs256 = (d) => crypto.createHmac('sha256', rsaPem).update(d).digest();
const { exp, ...noExp } = claims;

const tokens = {
  good_rs256: token({ alg: 'RS256', kid: 'rsa1' }, claims, rs256),
  good_es256: token({ alg: 'ES256', kid: 'ec1' }, claims, es256),
  hs256_with_rsa_public_key: token({ alg: 'HS256', kid: 'rsa1' }, claims, hs256),
  unknown_kid: token({ alg: 'RS256', kid: 'nope' }, claims, rs256),
  ps256_on_rs256_key: token({ alg: 'PS256', kid: 'rsa1' }, claims, ps256),
  es256_der_signature: token({ alg: 'ES256', kid: 'ec1' }, claims, es256Der),
  crit_header: token({ alg: 'RS256', kid: 'rsa1', crit: ['exp'] }, claims, rs256),
  future_nbf: token({ alg: 'RS256', kid: 'rsa1' }, { ...claims, nbf: now + 3600 }, rs256),
  missing_exp: token({ alg: 'RS256', kid: 'rsa1' }, noExp, rs256),
  missing_iat: token({ alg: 'RS256', kid: 'rsa1' }, { ...claims, iat: undefined }, rs256),
  logout_typ: token({ alg: 'RS256', kid: 'rsa1', typ: 'logout+jwt' }, claims, rs256),
  multi_aud_foreign_azp: token(
    { alg: 'RS256', kid: 'rsa1' },
    { ...claims, aud: [audience, 'other-app'], azp: 'other-app' },
    rs256,
  ),
  multi_aud_our_azp: token(
    { alg: 'RS256', kid: 'rsa1' },
    { ...claims, aud: [audience, 'other-app'], azp: audience },
    rs256,
  ),
};
process.stdout.write(`${JSON.stringify({ issuer, tokens })}\n`);
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
process.on('SIGTERM', () => process.exit(0));
