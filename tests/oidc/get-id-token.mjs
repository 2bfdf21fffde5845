// Obtains a REAL ID token from the test issuer by driving the authorization-code flow (with
// PKCE) over HTTP, through oidc-provider's devInteractions login and consent pages, the way a
// browser would: follows redirects by hand, keeps the cookies, then redeems the code.
//
//   node get-id-token.mjs ISSUER LOGIN [CLIENT_ID]
//
// Prints ONE JSON line: {"id_token": "...", "access_token": "..."}.
import crypto from 'node:crypto';

const [issuer, login, clientId = 'felix-test'] = process.argv.slice(2);
if (!issuer || !login) {
  process.stderr.write('usage: node get-id-token.mjs ISSUER LOGIN [CLIENT_ID]\n');
  process.exit(2);
}
const redirectUri = 'http://127.0.0.1/cb';
const b64url = (buf) => buf.toString('base64url');
const verifier = b64url(crypto.randomBytes(32));
const challenge = b64url(crypto.createHash('sha256').update(verifier).digest());

const jar = new Map();
async function request(url, init = {}) {
  const headers = { ...(init.headers || {}) };
  if (jar.size) headers.cookie = [...jar].map(([k, v]) => `${k}=${v}`).join('; ');
  const res = await fetch(url, { ...init, headers, redirect: 'manual' });
  for (const c of res.headers.getSetCookie()) {
    const [pair] = c.split(';');
    const at = pair.indexOf('=');
    jar.set(pair.slice(0, at), pair.slice(at + 1));
  }
  return res;
}

const auth = new URL('/auth', issuer);
auth.search = new URLSearchParams({
  client_id: clientId,
  response_type: 'code',
  scope: 'openid groups email',
  redirect_uri: redirectUri,
  code_challenge: challenge,
  code_challenge_method: 'S256',
  state: b64url(crypto.randomBytes(8)),
  nonce: b64url(crypto.randomBytes(8)),
}).toString();

let url = auth.toString();
let code;
for (let step = 0; step < 12 && !code; step += 1) {
  const res = await request(url);
  if (res.status >= 300 && res.status < 400) {
    const next = new URL(res.headers.get('location'), url);
    if (next.toString().startsWith(redirectUri)) {
      if (next.searchParams.get('error')) throw new Error(`authorization failed: ${next.search}`);
      code = next.searchParams.get('code');
    } else {
      url = next.toString();
    }
    continue;
  }
  const page = await res.text();
  if (res.status !== 200) throw new Error(`unexpected ${res.status} at ${url}: ${page.slice(0, 300)}`);
  // An interaction page: the login form or the consent form; submit it.
  const form = page.includes('name="login"')
    ? { prompt: 'login', login, password: 'any' }
    : { prompt: 'consent' };
  const submitted = await request(url, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(form).toString(),
  });
  if (submitted.status < 300 || submitted.status >= 400) {
    throw new Error(`interaction submit answered ${submitted.status}: ${(await submitted.text()).slice(0, 300)}`);
  }
  url = new URL(submitted.headers.get('location'), url).toString();
}
if (!code) throw new Error('no authorization code after the interaction steps');

const token = await fetch(new URL('/token', issuer), {
  method: 'POST',
  headers: {
    'content-type': 'application/x-www-form-urlencoded',
    authorization: `Basic ${Buffer.from(`${clientId}:${clientId}-secret`).toString('base64')}`,
  },
  body: new URLSearchParams({
    grant_type: 'authorization_code', code, redirect_uri: redirectUri, code_verifier: verifier,
  }).toString(),
});
const body = await token.json();
if (!token.ok || !body.id_token) throw new Error(`token endpoint answered ${token.status}: ${JSON.stringify(body)}`);
process.stdout.write(`${JSON.stringify({ id_token: body.id_token, access_token: body.access_token })}\n`);
