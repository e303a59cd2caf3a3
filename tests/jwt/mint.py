#!/usr/bin/env python3
"""Mints the JWTs the proxy's end-user authentication tests use, with PyJWT and
`cryptography` (a JWT stack independent of the proxy's).

    mint.py OUT_DIR ISSUER AUDIENCE

writes OUT_DIR/jwks.json (an EC P-256, an RSA 2048 and an Ed25519 public key, kids `ec`,
`rsa`, `ed`) and prints one JSON object: token name -> token. Good tokens carry sub, groups,
roles and a `tenant` claim; each bad one breaks exactly one rule.
"""
import json
import sys
import time

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

out, issuer, audience = sys.argv[1], sys.argv[2], sys.argv[3]
keys = {
    "ec": (ec.generate_private_key(ec.SECP256R1()), "ES256", ECAlgorithm),
    "rsa": (rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS256", RSAAlgorithm),
    "ed": (ed25519.Ed25519PrivateKey.generate(), "EdDSA", OKPAlgorithm),
}
jwks = []
for kid, (key, alg, algorithm) in keys.items():
    jwk = json.loads(algorithm.to_jwk(key.public_key()))
    jwk.update({"kid": kid, "alg": alg, "use": "sig"})
    jwks.append(jwk)
with open(f"{out}/jwks.json", "w") as f:
    json.dump({"keys": jwks}, f)

now = int(time.time())


def claims(**override):
    c = {
        "iss": issuer,
        "aud": audience,
        "sub": "alice",
        "groups": ["shoppers", "admins"],
        "roles": ["buyer"],
        "tenant": "acme",
        "iat": now,
        "nbf": now - 5,
        "exp": now + 600,
    }
    c.update(override)
    return {k: v for k, v in c.items() if v is not None}


def sign(kid, payload, alg=None, headers=None):
    key, default_alg, _ = keys[kid]
    return jwt.encode(payload, key, algorithm=alg or default_alg, headers={"kid": kid, **(headers or {})})


def unsigned(payload, kid="ec"):
    import base64

    def b64(obj):
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{b64({'alg': 'none', 'typ': 'JWT', 'kid': kid})}.{b64(payload)}."


def hmac_with_public_key(kid):
    # The classic confusion attack: HS256 keyed with the provider's public key bytes.
    public = keys[kid][0].public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    import base64
    import hashlib
    import hmac

    def b64(raw):
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    head = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    body = b64(json.dumps(claims()).encode())
    mac = hmac.new(public, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(mac)}"


good = sign("ec", claims())
tampered = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
tokens = {
    "es256": good,
    "rs256": sign("rsa", claims(sub="bob", groups=["shoppers"])),
    "eddsa": sign("ed", claims(sub="carol", groups=None, roles=None)),
    "expired": sign("ec", claims(exp=now - 3600, nbf=now - 7200)),
    "not_yet_valid": sign("ec", claims(nbf=now + 3600)),
    "wrong_issuer": sign("ec", claims(iss="https://evil.example")),
    "wrong_audience": sign("ec", claims(aud="someone-else")),
    "alg_none": unsigned(claims()),
    "hmac_public_key": hmac_with_public_key("rsa"),
    "unknown_kid": jwt.encode(claims(), keys["ec"][0], algorithm="ES256", headers={"kid": "nope"}),
    "bad_signature": tampered,
    "oversized": sign("ec", claims(padding="x" * 10000)),
    "rs256_key_as_es256": jwt.encode(claims(), keys["ec"][0], algorithm="ES256", headers={"kid": "rsa"}),
}
print(json.dumps(tokens))
