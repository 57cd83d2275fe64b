import { readFileSync } from 'node:fs'
import * as client from 'openid-client'
import { Agent, fetch } from 'undici'

export async function fetchToken(issuer, clientId, { cert, key, ca }) {
  const agent = new Agent({
    connect: { cert: readFileSync(cert), key: readFileSync(key), ca: readFileSync(ca) },
  })
  const config = await client.discovery(new URL(issuer), clientId, undefined, client.TlsClientAuth(), {
    algorithm: 'oauth2', // RFC 8414 metadata: this server is no OpenID provider
    [client.customFetch]: (url, options) => fetch(url, { ...options, dispatcher: agent }),
  })
  return client.clientCredentialsGrant(config)
}
