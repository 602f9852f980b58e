// A little authentication traffic for the `auth` profile of
// docker-compose.yml, so that the auth panels of the "Gateway / Protection"
// dashboard have data without anyone logging in. Every INTERVAL_MS it sends
// to the gateway's /api route (auth: bearer, require scopes [api:read]):
//   - a JWT access token with api:read          -> 200 (authenticated, bearer)
//   - an opaque token with api:read              -> 200 (through introspection;
//     a new token every round, so introspection is called, not only its cache)
//   - an opaque token the provider never issued  -> 401 (introspection: inactive)
//   - a JWT with api:write only                  -> 403 (requirement_unmet)
//   - no token, and a malformed one              -> 401 (no_token, invalid_token)
// and a browser-like GET of /app (auth: session) -> 302 to the login.
// Tokens come from the test provider's client_credentials grant (recipes (b)
// and (d) of tests/oidc/README.md). It also logs a user in like a browser
// (the provider's login and consent forms) and then requests /app with the
// session cookie, for the session panels; again whenever the session is gone.
// Node 22: fetch is built in.

const env = process.env;
const gateway = env.GATEWAY_URL || 'http://gateway:8080';
const issuer = env.OIDC_ISSUER || 'http://oidc.localhost:4444';
const clientId = env.OIDC_CLIENT_ID || 'gateway';
const clientSecret = env.OIDC_CLIENT_SECRET || 'gateway-secret';
const intervalMs = Number(env.INTERVAL_MS || 2000);
// Where the provider sends the browser back (auth.provider.redirect_url): the
// gateway as the host sees it; this container reaches it as GATEWAY_URL.
const publicGateway = new URL(env.PUBLIC_GATEWAY_URL || 'http://localhost:8080').origin;
const user = env.LOGIN || 'traffic-user';

const basic = 'Basic ' + Buffer.from(`${clientId}:${clientSecret}`).toString('base64');
const cache = new Map();

async function token(resource, scope, fresh = false) {
  const key = `${resource} ${scope}`;
  const hit = cache.get(key);
  if (!fresh && hit && hit.until > Date.now()) return hit.token;
  const res = await fetch(`${issuer}/token`, {
    method: 'POST',
    headers: { authorization: basic, 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'client_credentials', resource, scope }),
  });
  if (!res.ok) throw new Error(`token endpoint: ${res.status} ${await res.text()}`);
  const body = await res.json();
  // Renewed a minute before it expires.
  cache.set(key, { token: body.access_token, until: Date.now() + (body.expires_in - 60) * 1000 });
  return body.access_token;
}

async function call(path, headers = {}) {
  const res = await fetch(`${gateway}${path}`, { headers, redirect: 'manual' });
  await res.arrayBuffer();
  return res.status;
}

// A browser, as far as the login needs one: cookies per host:port (no paths,
// domains or expiry: enough for one login), redirects followed by hand,
// forms posted with their hidden fields.
class Browser {
  constructor() { this.jars = new Map(); }

  cookieHeader(url) {
    const jar = this.jars.get(url.host);
    return jar ? [...jar].map(([k, v]) => `${k}=${v}`).join('; ') : '';
  }

  keep(url, res) {
    const jar = this.jars.get(url.host) || new Map();
    for (const line of res.headers.getSetCookie()) {
      const [pair, ...attrs] = line.split(';');
      const at = pair.indexOf('=');
      const name = pair.slice(0, at).trim();
      const value = pair.slice(at + 1).trim();
      const gone = attrs.some((a) => /^\s*max-age=0\s*$/i.test(a));
      if (gone || value === '') jar.delete(name); else jar.set(name, value);
    }
    this.jars.set(url.host, jar);
  }

  async go(url, form) {
    const headers = { accept: 'text/html', cookie: this.cookieHeader(url) };
    const init = { headers, redirect: 'manual' };
    if (form) {
      init.method = 'POST';
      init.body = new URLSearchParams(form);
      headers['content-type'] = 'application/x-www-form-urlencoded';
    }
    const res = await fetch(url, init);
    this.keep(url, res);
    return { status: res.status, location: res.headers.get('location'), body: await res.text() };
  }
}

// The gateway as this container reaches it, for a URL meant for the host.
function reachable(url) {
  return url.origin === publicGateway ? new URL(url.pathname + url.search, gateway) : url;
}

// Logs `user` in through the gateway: /app -> /oauth2/login -> the provider's
// login and consent forms -> /oauth2/callback -> /app with the session.
async function login() {
  const browser = new Browser();
  let url = new URL('/app/hello', gateway);
  let form = null;
  for (let step = 0; step < 20; step += 1) {
    const res = await browser.go(url, form);
    form = null;
    if (res.status >= 300 && res.status < 400 && res.location) {
      url = reachable(new URL(res.location, url));
      continue;
    }
    if (res.status === 200 && url.origin === new URL(gateway).origin) return browser;
    const action = /<form[^>]*action="([^"]*)"/i.exec(res.body);
    if (res.status !== 200 || !action) throw new Error(`login stopped at ${res.status} ${url}`);
    form = {};
    for (const input of res.body.matchAll(/<input[^>]*>/gi)) {
      const name = /name="([^"]*)"/i.exec(input[0]);
      const value = /value="([^"]*)"/i.exec(input[0]);
      if (name && /type="hidden"/i.test(input[0])) form[name[1]] = value ? value[1] : '';
    }
    if (/name="login"/i.test(res.body)) {
      form.login = user;
      form.password = 'any';
    }
    url = reachable(new URL(action[1] || url.href, url));
  }
  throw new Error('login: too many steps');
}

let browser = null;

const counts = {};
function count(what, status) {
  const key = `${what}=${status}`;
  counts[key] = (counts[key] || 0) + 1;
}

async function round() {
  const jwt = await token('urn:gateway:api', 'api:read');
  count('jwt', await call('/api/echo', { authorization: `Bearer ${jwt}` }));
  const opaque = await token('urn:gateway:opaque-api', 'api:read', true);
  count('opaque', await call('/api/echo', { authorization: `Bearer ${opaque}` }));
  const forged = Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString('base64url');
  count('unknown-opaque', await call('/api/echo', { authorization: `Bearer ${forged}` }));
  const writeOnly = await token('urn:gateway:api', 'api:write');
  count('write-only', await call('/api/echo', { authorization: `Bearer ${writeOnly}` }));
  count('no-token', await call('/api/echo'));
  count('malformed', await call('/api/echo', { authorization: 'Bearer not.a.token' }));
  count('browser', await call('/app/hello', { accept: 'text/html' }));
  if (!browser) {
    browser = await login();
    count('login', 'ok');
  }
  const appUrl = new URL('/app/hello', gateway);
  const status = await call('/app/hello', { accept: 'text/html', cookie: browser.cookieHeader(appUrl) });
  count('session', status);
  if (status !== 200) browser = null;
}

let rounds = 0;
console.log(`auth traffic: ${gateway} with tokens from ${issuer}, every ${intervalMs} ms`);
for (;;) {
  try {
    await round();
  } catch (err) {
    count('error', err.message.slice(0, 80));
  }
  rounds += 1;
  if (rounds % 30 === 1) console.log(`after ${rounds} round(s): ${JSON.stringify(counts)}`);
  await new Promise((resolve) => setTimeout(resolve, intervalMs));
}
