"""Independent OAuth2 clients against Tollgate's token endpoint.

Obtains tokens with authlib and requests-oauthlib, by client_secret_basic
and client_secret_post, and verifies each with PyJWT against the gateway's
JWKS. Prints one JSON object: {"tokens": {...}, "errors": [...]}.

    python3 oauth_clients.py BASE_URL CLIENT_ID CLIENT_SECRET ISSUER AUDIENCE
"""
import json
import os
import sys

# the test talks to a gateway on 127.0.0.1 over plain HTTP
os.environ["OAUTHLIB_INSECURE_TRANSPORT"] = "1"

import jwt
from authlib.integrations.requests_client import OAuth2Session as AuthlibSession
from oauthlib.oauth2 import BackendApplicationClient
from requests_oauthlib import OAuth2Session as OAuthlibSession


def main():
    base, client_id, secret, issuer, audience = sys.argv[1:6]
    token_url = base + "/oauth2/token"
    tokens, errors = {}, []

    def attempt(name, fetch):
        try:
            tokens[name] = fetch()["access_token"]
        except Exception as e:  # reported, and the Rust test fails on it
            errors.append(f"{name}: {type(e).__name__}: {e}")

    for method in ("client_secret_basic", "client_secret_post"):
        attempt(
            f"authlib/{method}",
            lambda m=method: AuthlibSession(client_id, secret, token_endpoint_auth_method=m).fetch_token(
                token_url, grant_type="client_credentials"
            ),
        )
    oauthlib_client = BackendApplicationClient(client_id=client_id)
    attempt(
        "requests-oauthlib/client_secret_basic",
        lambda: OAuthlibSession(client=oauthlib_client).fetch_token(
            token_url=token_url, client_id=client_id, client_secret=secret
        ),
    )
    attempt(
        "requests-oauthlib/client_secret_post",
        lambda: OAuthlibSession(client=oauthlib_client).fetch_token(
            token_url=token_url, client_id=client_id, client_secret=secret, include_client_id=True
        ),
    )

    jwks = jwt.PyJWKClient(base + "/.well-known/jwks.json")
    for name, token in tokens.items():
        try:
            key = jwks.get_signing_key_from_jwt(token)
            claims = jwt.decode(
                token,
                key.key,
                algorithms=["ES256", "EdDSA", "RS256"],
                audience=audience,
                issuer=issuer,
                options={"require": ["exp", "iat", "iss", "aud", "sub", "jti"]},
            )
            if claims["sub"] != client_id or jwt.get_unverified_header(token).get("typ") != "at+jwt":
                errors.append(f"{name}: unexpected claims or header")
        except Exception as e:
            errors.append(f"{name} (PyJWT): {type(e).__name__}: {e}")
    print(json.dumps({"tokens": tokens, "errors": errors}))


if __name__ == "__main__":
    main()
