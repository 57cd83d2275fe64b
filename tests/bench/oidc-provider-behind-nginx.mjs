// The peer (panva's oidc-provider) behind a TLS-terminating nginx, for run_proxy_bench.sh.
//
// A variant of ../shared/bench/peer/oidc-provider-server.mjs (same provider configuration,
// clients, keys and JWT access tokens), with these differences only:
//   * plain HTTP (node:http) on HOST:PORT; nginx in front terminates TLS;
//   * the mTLS feature's getCertificate reads the client certificate from the header nginx
//     sets, X-SSL-Client-Cert = $ssl_client_escaped_cert (the URL-encoded PEM of the leaf),
//     honoured only from a trusted proxy address (TRUSTED_PROXY, the TCP peer);
//   * certificateAuthorized cannot ask the TLS socket (there is none): it checks the leaf
//     itself against the CA (PKI_DIR/ca.crt): issued by it (name, signature) and inside both
//     validity periods. The bench PKI has no intermediates, and nginx forwards only the leaf.
//     The verdict is remembered per header value (CERT_CACHE entries, 0 = off), as our server
//     remembers a chain's verdict; the certificate itself is parsed on every request, as ours
//     does behind a proxy;
//   * provider.proxy = true: X-Forwarded-Proto/Host from nginx make the issuer's URLs https.
//
// Environment: HOST (127.0.0.1) PORT (8080) PEER_DIR (../../../shared/bench/peer, for
// node_modules and pki/) PKI_DIR (PEER_DIR/pki) ISSUER (the public https URL of nginx)
// JWT_ALG (ES256) RESOURCE TRUSTED_PROXY (127.0.0.1) CERT_CACHE (1000). One process.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const PEER_DIR = path.resolve(process.env.PEER_DIR || path.join(here, '../../../shared/bench/peer'));
// oidc-provider is installed in the peer's directory (npm ci there), not next to this file.
const { default: Provider, errors } = await import(
  pathToFileURL(path.join(PEER_DIR, 'node_modules/oidc-provider/lib/index.js')).href);

const HOST = process.env.HOST || '127.0.0.1';
const PORT = Number(process.env.PORT || 8080);
const PKI = path.resolve(process.env.PKI_DIR || path.join(PEER_DIR, 'pki'));
const ISSUER = process.env.ISSUER || `https://${HOST}:${PORT}`;
const JWT_ALG = process.env.JWT_ALG || 'ES256';
const RESOURCE = process.env.RESOURCE || 'https://api.bench.example';
const TRUSTED_PROXY = process.env.TRUSTED_PROXY || '127.0.0.1';
const CERT_CACHE = Number(process.env.CERT_CACHE ?? 1000);
const HEADER = 'x-ssl-client-cert';

const read = (f) => fs.readFileSync(path.join(PKI, f));
const pemToB64Der = (pem) => pem.toString().replace(/-----(BEGIN|END) CERTIFICATE-----|\s/g, '');

// --- the certificate from nginx's header ---------------------------------------------------
const CA = new crypto.X509Certificate(read('ca.crt'));
const CA_FROM = Date.parse(CA.validFrom);
const CA_TO = Date.parse(CA.validTo);
const verdicts = new Map(); // header value -> chain verdict (bounded, oldest dropped first)

function chainVerdict(cert) {
  const now = Date.now();
  return now >= CA_FROM && now <= CA_TO
    && now >= Date.parse(cert.validFrom) && now <= Date.parse(cert.validTo)
    && cert.checkIssued(CA) && cert.verify(CA.publicKey);
}

const CERT = Symbol('headerCertificate');
// { x509, authorized } for this request, or null without a (usable) certificate.
function forwarded(ctx) {
  if (ctx[CERT] !== undefined) return ctx[CERT];
  let entry = null;
  const raw = ctx.req.socket.remoteAddress === TRUSTED_PROXY ? ctx.get(HEADER) : '';
  if (raw) {
    try {
      const x509 = new crypto.X509Certificate(decodeURIComponent(raw));
      let authorized = CERT_CACHE > 0 ? verdicts.get(raw) : undefined;
      if (authorized === undefined) {
        authorized = chainVerdict(x509);
        if (CERT_CACHE > 0) {
          if (verdicts.size >= CERT_CACHE) verdicts.delete(verdicts.keys().next().value);
          verdicts.set(raw, authorized);
        }
      }
      entry = { x509, authorized };
    } catch {
      entry = null; // not a certificate: the request has none
    }
  }
  ctx[CERT] = entry;
  return entry;
}
const headerCertificate = (ctx) => forwarded(ctx)?.x509;

// --- as in oidc-provider-server.mjs ----------------------------------------------------------
// RFC 4514 string ("CN=bench-client,O=Bench") -> [[type,value],...] most-specific first
function parseDn(dn) {
  const rdns = [];
  let cur = '';
  for (let i = 0; i < dn.length; i++) {
    const c = dn[i];
    if (c === '\\' && i + 1 < dn.length) { cur += dn[++i]; continue; }
    if (c === ',' || c === ';') { rdns.push(cur); cur = ''; continue; }
    cur += c;
  }
  rdns.push(cur);
  return rdns.map((rdn) => {
    const eq = rdn.indexOf('=');
    return [rdn.slice(0, eq).trim().toUpperCase(), rdn.slice(eq + 1).trim()];
  });
}
// node's X509Certificate.subject: "O=Bench\nCN=bench-client" (certificate order) -> RFC 4514 order
function certDn(x509) {
  return x509.subject.split('\n').reverse().map((rdn) => {
    const eq = rdn.indexOf('=');
    return [rdn.slice(0, eq).trim().toUpperCase(), rdn.slice(eq + 1).trim()];
  });
}
function sanValues(x509, prefix) {
  return (x509.subjectAltName || '').split(', ')
    .filter((s) => s.startsWith(prefix)).map((s) => s.slice(prefix.length));
}

const signingKey = crypto.createPrivateKey(read(JWT_ALG === 'ES256' ? 'as-es256.key' : 'as-rs256.key'));
const jwk = { ...signingKey.export({ format: 'jwk' }), use: 'sig', alg: JWT_ALG };
jwk.kid = crypto.hash('sha256', JSON.stringify({ ...jwk, d: undefined }), 'base64url').slice(0, 16);

const selfSignedCert = read('selfsigned.crt');
const selfSignedJwk = {
  ...new crypto.X509Certificate(selfSignedCert).publicKey.export({ format: 'jwk' }),
  x5c: [pemToB64Der(selfSignedCert)],
};

const resourceServer = {
  scope: 'api:read api:write',
  audience: RESOURCE,
  accessTokenTTL: 3600,
  accessTokenFormat: 'jwt',
  jwt: { sign: { alg: JWT_ALG } },
};

const common = {
  grant_types: ['client_credentials'],
  response_types: [],
  redirect_uris: [],
  scope: 'api:read api:write',
  tls_client_certificate_bound_access_tokens: true,
};

const configuration = {
  clients: [
    {
      ...common,
      client_id: 'bench-pki',
      token_endpoint_auth_method: 'tls_client_auth',
      tls_client_auth_subject_dn: 'CN=bench-client,O=Bench',
    },
    {
      ...common,
      client_id: 'bench-pki-san',
      token_endpoint_auth_method: 'tls_client_auth',
      tls_client_auth_san_dns: 'bench-client.example',
    },
    {
      ...common,
      client_id: 'bench-selfsigned',
      token_endpoint_auth_method: 'self_signed_tls_client_auth',
      jwks: { keys: [selfSignedJwk] },
    },
  ],
  clientAuthMethods: ['tls_client_auth', 'self_signed_tls_client_auth'],
  jwks: { keys: [jwk] },
  clientDefaults: { id_token_signed_response_alg: JWT_ALG },
  cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
  scopes: ['api:read', 'api:write'],
  ttl: { ClientCredentials: (ctx, token) => token.resourceServer?.accessTokenTTL ?? 600 },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: false },
    mTLS: {
      enabled: true,
      certificateBoundAccessTokens: true,
      tlsClientAuth: true,
      selfSignedTlsClientAuth: true,
      getCertificate: headerCertificate, // differs: from nginx's header
      certificateAuthorized: (ctx) => forwarded(ctx)?.authorized === true, // differs: checked here
      certificateSubjectMatches(ctx, property, expected) {
        const cert = headerCertificate(ctx);
        if (!cert) return false;
        switch (property) {
          case 'tls_client_auth_subject_dn': {
            const a = certDn(cert);
            const b = parseDn(expected);
            return a.length === b.length && a.every(([t, v], i) => t === b[i][0] && v === b[i][1]);
          }
          case 'tls_client_auth_san_dns':
            return sanValues(cert, 'DNS:').includes(expected);
          case 'tls_client_auth_san_uri':
            return sanValues(cert, 'URI:').includes(expected);
          case 'tls_client_auth_san_ip':
            return sanValues(cert, 'IP Address:').includes(expected);
          case 'tls_client_auth_san_email':
            return sanValues(cert, 'email:').includes(expected);
          default:
            return false;
        }
      },
    },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => RESOURCE,
      getResourceServerInfo: (ctx, resourceIndicator) => {
        if (resourceIndicator === RESOURCE) return resourceServer;
        throw new errors.InvalidTarget();
      },
      useGrantedResource: () => true,
    },
  },
  findAccount: async () => undefined,
};

const provider = new Provider(ISSUER, configuration);
provider.proxy = true; // differs: behind nginx (X-Forwarded-Proto https)

const server = http.createServer(provider.callback()); // differs: plain HTTP to nginx
server.keepAliveTimeout = 65_000;
server.headersTimeout = 66_000;
server.maxRequestsPerSocket = 0;

server.listen(PORT, HOST, () => {
  console.log(`oidc-provider behind nginx ${ISSUER} -> http://${HOST}:${PORT} pid=${process.pid} alg=${JWT_ALG} cert-cache=${CERT_CACHE} NODE_ENV=${process.env.NODE_ENV || ''}`);
});
const stop = () => { server.close(); server.closeAllConnections(); process.exit(0); };
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
