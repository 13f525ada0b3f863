// A real OpenID provider (oidc-provider) for the console's "Sign in with"
// test: one confidential client, PKCE required, and an interaction that
// signs the fixed subject in after one click on "Continue" (consent is
// granted without asking).
// Usage: node idp.mjs PORT CLIENT_ID CLIENT_SECRET REDIRECT_URI SUBJECT
import http from "node:http";
import crypto from "node:crypto";
import Provider from "oidc-provider";

const [port, clientId, clientSecret, redirectUri, subject] = process.argv.slice(2);
const issuer = `http://127.0.0.1:${port}`;
const { privateKey } = crypto.generateKeyPairSync("rsa", { modulusLength: 2048 });
const jwk = { ...privateKey.export({ format: "jwk" }), kid: "console-test", alg: "RS256", use: "sig" };

const provider = new Provider(issuer, {
  clients: [{
    client_id: clientId,
    client_secret: clientSecret,
    redirect_uris: [redirectUri],
    grant_types: ["authorization_code"],
    response_types: ["code"],
    token_endpoint_auth_method: "client_secret_basic",
    id_token_signed_response_alg: "RS256",
  }],
  jwks: { keys: [jwk] },
  pkce: { required: () => true },
  features: { devInteractions: { enabled: false } },
  cookies: { keys: [crypto.randomBytes(16).toString("hex")] },
  findAccount: async (ctx, sub) => ({ accountId: sub, claims: async () => ({ sub }) }),
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
});

// Every authorization request, for the test to check PKCE, state and nonce.
provider.on("authorization.accepted", (ctx) => {
  const p = ctx.oidc.params;
  console.log(JSON.stringify({ authorization: {
    code_challenge: p.code_challenge, code_challenge_method: p.code_challenge_method,
    state: p.state, nonce: p.nonce, redirect_uri: p.redirect_uri,
  } }));
});
provider.on("server_error", (ctx, err) => console.error("server_error", err));

const page = (uid) => `<!doctype html><html lang="en"><head><title>Test IdP</title></head><body>
<h1>Test identity provider</h1><form method="post" action="/interaction/${uid}">
<button type="submit">Continue as ${subject}</button></form></body></html>`;

const callback = provider.callback();
const server = http.createServer(async (req, res) => {
  const m = req.url.match(/^\/interaction\/([A-Za-z0-9_-]+)$/);
  if (!m) return callback(req, res);
  try {
    const details = await provider.interactionDetails(req, res);
    if (req.method === "GET" && details.prompt.name === "login") {
      res.writeHead(200, { "content-type": "text/html" });
      return res.end(page(details.uid));
    }
    if (details.prompt.name === "login") {
      return await provider.interactionFinished(req, res, { login: { accountId: subject } },
        { mergeWithLastSubmission: false });
    }
    const grant = new provider.Grant({ accountId: details.session.accountId, clientId });
    grant.addOIDCScope("openid");
    const grantId = await grant.save();
    return await provider.interactionFinished(req, res, { consent: { grantId } },
      { mergeWithLastSubmission: true });
  } catch (err) {
    console.error("interaction", err);
    res.writeHead(500); res.end(String(err));
  }
});
server.listen(Number(port), "127.0.0.1", () => console.log(JSON.stringify({ ready: issuer })));
