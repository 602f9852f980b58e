// A real OpenID Connect provider (oidc-provider 9.x) for the gateway's
// end-to-end tests. Started by tests/common/oidc.rs; see README.md beside
// this file for the environment variables and the token recipes.
//
// Everything is in memory and for tests only: devInteractions accept any
// login and password, cookie keys are fixed strings, and the signing key is
// a fresh RSA key made at start (published at /jwks).

import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:https';

import Provider, { errors } from 'oidc-provider';

const env = process.env;

function intEnv(name, fallback) {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value <= 0) {
    throw new Error(`${name} must be a positive integer, got ${JSON.stringify(raw)}`);
  }
  return value;
}

function listEnv(name) {
  return (env[name] ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
}

const port = intEnv('OIDC_PORT', undefined);
if (port === undefined || port > 65535) {
  console.error('OIDC_PORT must be set to a TCP port');
  process.exit(2);
}

// HTTPS when a certificate (for `localhost`) and its key are given: the
// provider of a private CA, reached by name.
const tls = env.OIDC_TLS_CERT_FILE && env.OIDC_TLS_KEY_FILE
  ? { cert: readFileSync(env.OIDC_TLS_CERT_FILE), key: readFileSync(env.OIDC_TLS_KEY_FILE) }
  : null;
// The issuer is the URL both the gateway and browsers use; outside the tests
// (docker-compose.yml) the provider listens on every interface under a name.
const issuer = env.OIDC_ISSUER
  || (tls ? `https://localhost:${port}` : `http://127.0.0.1:${port}`);
const listenHost = env.OIDC_LISTEN_HOST || '127.0.0.1';
const clientId = env.OIDC_CLIENT_ID || 'gateway';
const clientSecret = env.OIDC_CLIENT_SECRET || 'gateway-secret';
const clientAuthMethod = env.OIDC_CLIENT_AUTH_METHOD || 'client_secret_basic';
const redirectUris = listEnv('OIDC_REDIRECT_URIS');
const postLogoutRedirectUris = listEnv('OIDC_POST_LOGOUT_REDIRECT_URIS');
const apiResource = env.OIDC_API_RESOURCE || 'urn:gateway:api';
const apiScopes = ['api:read', 'api:write'];
// Two more resources whose tokens are OPAQUE, so that introspection answers
// carry an `aud`: one the gateway accepts, one it must refuse.
const opaqueResources = [
  env.OIDC_OPAQUE_API_RESOURCE || 'urn:gateway:opaque-api',
  env.OIDC_OTHER_API_RESOURCE || 'urn:gateway:other-api',
];

const ttl = {
  accessToken: intEnv('OIDC_ACCESS_TOKEN_TTL', 300),
  idToken: intEnv('OIDC_ID_TOKEN_TTL', 300),
  refreshToken: intEnv('OIDC_REFRESH_TOKEN_TTL', 3600),
  clientCredentials: intEnv('OIDC_CLIENT_CREDENTIALS_TTL', 300),
};

if (!['client_secret_basic', 'client_secret_post'].includes(clientAuthMethod)) {
  console.error('OIDC_CLIENT_AUTH_METHOD must be client_secret_basic or client_secret_post');
  process.exit(2);
}
if (redirectUris.length === 0) {
  console.error('OIDC_REDIRECT_URIS must list at least one redirect URI (comma-separated)');
  process.exit(2);
}

// Roles are derived from the account id so that tests can pick them by
// choosing the login name: "alice" -> ["user"], "admin-bob" -> ["admin", "user"].
function rolesFor(accountId) {
  return accountId.includes('admin') ? ['admin', 'user'] : ['user'];
}

function signingKey() {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return {
    ...privateKey.export({ format: 'jwk' }),
    kid: `test-rs256-${randomUUID().slice(0, 8)}`,
    alg: 'RS256',
    use: 'sig',
  };
}

const configuration = {
  clients: [
    {
      client_id: clientId,
      client_secret: clientSecret,
      redirect_uris: redirectUris,
      post_logout_redirect_uris: postLogoutRedirectUris,
      response_types: ['code'],
      grant_types: ['authorization_code', 'refresh_token', 'client_credentials'],
      token_endpoint_auth_method: clientAuthMethod,
    },
  ],

  responseTypes: ['code'],

  jwks: { keys: [signingKey()] },

  cookies: {
    keys: ['gateway-test-cookie-key-1', 'gateway-test-cookie-key-0'],
  },

  // Every scope the provider knows outside resource servers. api:read and
  // api:write are listed so that client_credentials WITHOUT a resource keeps
  // them on the opaque token (the provider drops unknown scopes there).
  scopes: ['openid', 'offline_access', 'profile', 'email', 'roles', ...apiScopes],

  claims: {
    acr: null,
    sid: null,
    auth_time: null,
    iss: null,
    openid: ['sub'],
    profile: ['name', 'preferred_username'],
    email: ['email', 'email_verified'],
    roles: ['roles'],
  },

  // ID tokens carry the claims of the granted scopes even though an access
  // token (usable at userinfo) is issued too.
  conformIdTokenClaims: false,

  async findAccount(ctx, id) {
    return {
      accountId: id,
      async claims() {
        return {
          sub: id,
          name: id,
          preferred_username: id,
          email: `${id}@example.test`,
          email_verified: true,
          roles: rolesFor(id),
        };
      },
    };
  },

  // Access tokens of a logged-in user carry these too (in the JWT for a
  // resource, in the introspection response for opaque tokens).
  async extraTokenClaims(ctx, token) {
    if (!token.accountId) return undefined;
    return {
      email: `${token.accountId}@example.test`,
      roles: rolesFor(token.accountId),
    };
  },

  features: {
    devInteractions: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    clientCredentials: { enabled: true },
    rpInitiatedLogout: { enabled: true },
    userinfo: { enabled: true },
    resourceIndicators: {
      enabled: true,
      // No resource requested -> no resource: opaque access tokens.
      defaultResource: async (ctx, client, oneOf) => oneOf,
      // An authorization code granted for a resource yields a JWT access
      // token for it even when the token request does not repeat `resource`.
      useGrantedResource: async () => true,
      getResourceServerInfo: async (ctx, resourceIndicator) => {
        if (opaqueResources.includes(resourceIndicator)) {
          return {
            audience: resourceIndicator,
            scope: apiScopes.join(' '),
            accessTokenTTL: ttl.accessToken,
            accessTokenFormat: 'opaque',
          };
        }
        if (resourceIndicator !== apiResource) {
          throw new errors.InvalidTarget(
            `unknown resource indicator (${[apiResource, ...opaqueResources].join(', ')})`,
          );
        }
        return {
          audience: apiResource,
          scope: apiScopes.join(' '),
          accessTokenTTL: ttl.accessToken,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        };
      },
    },
  },

  pkce: {
    required: () => true,
  },

  issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
  rotateRefreshToken: false,

  ttl: {
    AccessToken: (ctx, token) => token.resourceServer?.accessTokenTTL || ttl.accessToken,
    ClientCredentials: (ctx, token) => token.resourceServer?.accessTokenTTL || ttl.clientCredentials,
    IdToken: ttl.idToken,
    RefreshToken: ttl.refreshToken,
    AuthorizationCode: 60,
    Interaction: 600,
    Session: 24 * 3600,
    Grant: 24 * 3600,
  },
};

const provider = new Provider(issuer, configuration);

// Errors worth seeing in a failing test's captured stderr.
for (const event of [
  'server_error',
  'authorization.error',
  'grant.error',
  'introspection.error',
  'revocation.error',
  'end_session.error',
  'userinfo.error',
]) {
  provider.on(event, (ctx, err) => {
    let detail = err?.error_description ? `${err.message}: ${err.error_description}` : String(err?.stack ?? err);
    if (err?.error_detail) detail += ` (${err.error_detail})`;
    if (err?.cause) detail += ` (cause: ${err.cause.message ?? err.cause})`;
    console.error(`oidc-provider ${event}: ${detail}`);
  });
}

const server = (tls ? createServer(tls, provider.callback()) : provider).listen(port, listenHost, () => {
  process.stdout.write(`READY ${issuer}\n`);
});

server.on('error', (err) => {
  console.error(`oidc-provider could not listen on ${listenHost}:${port}: ${err.message}`);
  process.exit(1);
});

function shutdown() {
  server.close(() => process.exit(0));
  server.closeAllConnections();
}

process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
