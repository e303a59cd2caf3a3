#!/usr/bin/env python3
"""An identity provider's key endpoint for the tests: serves DIR/jwks.json at /jwks.json over
HTTPS on 127.0.0.1 (a port the OS picks), with a certificate made here by `cryptography`
whose CA is written to DIR/idp-ca.pem. Re-reads the file on every request, so a test rotates
the keys by replacing it. Prints {"port": N} once listening.

    jwks_server.py DIR
"""
import datetime
import http.server
import ipaddress
import json
import os
import ssl
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

root = sys.argv[1]
now = datetime.datetime.now(datetime.timezone.utc)


def certificate(subject, issuer, public_key, signer, ca):
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        ).add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    return builder.sign(signer, hashes.SHA256())


ca_key = ec.generate_private_key(ec.SECP256R1())
ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test idp CA")])
ca = certificate(ca_name, ca_name, ca_key.public_key(), ca_key, True)
key = ec.generate_private_key(ec.SECP256R1())
leaf = certificate(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test idp")]), ca_name, key.public_key(), ca_key, False)
pem = lambda c: c.public_bytes(serialization.Encoding.PEM)
with open(os.path.join(root, "idp-ca.pem"), "wb") as f:
    f.write(pem(ca))
with open(os.path.join(root, "idp-cert.pem"), "wb") as f:
    f.write(pem(leaf))
with open(os.path.join(root, "idp-key.pem"), "wb") as f:
    f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path != "/jwks.json":
            self.send_error(404)
            return
        with open(os.path.join(root, "jwks.json"), "rb") as f:
            body = f.read()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(os.path.join(root, "idp-cert.pem"), os.path.join(root, "idp-key.pem"))
server.socket = context.wrap_socket(server.socket, server_side=True)
print(json.dumps({"port": server.server_address[1]}), flush=True)
server.serve_forever()
