// Runs the README's openid-client recipe (recipe.mjs) and prints one JSON line: the token
// response, or what the library threw.
//   node harness.mjs token ISSUER CLIENT_ID CERT KEY CA
// "discover-oidc" instead of "token": openid-client's discovery with its default algorithm
// ('oidc', /.well-known/openid-configuration), which this server does not serve.
import { readFileSync } from 'node:fs'
import * as client from 'openid-client'
import { Agent, fetch } from 'undici'
import { fetchToken } from './recipe.mjs'

const [mode, issuer, clientId, cert, key, ca] = process.argv.slice(2)

async function discoverOidc() {
  const agent = new Agent({ connect: { ca: readFileSync(ca) } })
  await client.discovery(new URL(issuer), clientId, undefined, client.TlsClientAuth(), {
    [client.customFetch]: (url, options) => fetch(url, { ...options, dispatcher: agent }),
  })
}

// ResponseBodyError: the response body; a ClientError about a response: that Response
// (undici's own class, not the global one).
function describeCause(cause) {
  if (typeof cause?.status === 'number' && cause.headers !== undefined) {
    return { status: cause.status, url: cause.url }
  }
  return cause
}

let result
try {
  if (mode === 'token') {
    result = { ok: true, tokens: await fetchToken(issuer, clientId, { cert, key, ca }) }
  } else if (mode === 'discover-oidc') {
    await discoverOidc()
    result = { ok: true }
  } else {
    throw new TypeError(`unknown mode ${mode}`)
  }
} catch (error) {
  result = {
    ok: false,
    constructor: error.constructor.name,
    responseBodyError: error instanceof client.ResponseBodyError,
    message: error.message,
    code: error.code,
    error: error.error,
    error_description: error.error_description,
    status: error.status,
    cause: describeCause(error.cause),
  }
}
process.stdout.write(JSON.stringify(result) + '\n')
