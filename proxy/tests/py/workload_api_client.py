"""A workload using py-spiffe (PyPI `spiffe`) against a signet-proxy's Workload API socket,
with no Signet-specific code: what an application would do.

    workload_api_client.py SOCKET fetch        # one X.509 context as JSON
    workload_api_client.py SOCKET watch N      # the serials of N successive SVIDs (rotation)
    workload_api_client.py SOCKET jwt AUDIENCE # a JWT-SVID, checked locally and by the API
    workload_api_client.py SOCKET validate AUDIENCE TOKEN   # ValidateJWTSVID alone

Errors: one line on stderr, exit 2.
"""
import json
import sys
import threading
import time

from spiffe import JwtSvid, WorkloadApiClient


def context_json(ctx):
    svid = ctx.default_svid
    return {
        "spiffe_id": str(svid.spiffe_id),
        "serial": format(svid.leaf.serial_number, "x"),
        "chain": len(svid.cert_chain),
        "key": type(svid.private_key).__name__,
        "bundles": {
            str(b.trust_domain): len(b.x509_authorities) for b in ctx.x509_bundle_set.bundles
        },
    }


def watch(client, wanted):
    serials, failed, done = [], [], threading.Event()

    def on_success(ctx):
        serial = context_json(ctx)["serial"]
        if serial not in serials:
            serials.append(serial)
        if len(serials) >= wanted:
            done.set()

    def on_error(error):
        failed.append(error)
        done.set()

    handle = client.stream_x509_contexts(on_success, on_error, retry_connect=False)
    done.wait(60)
    handle.cancel()
    if failed:
        raise failed[0]
    return {"serials": serials}


def jwt(client, audience):
    svid = client.fetch_jwt_svid(audience={audience})
    bundles = client.fetch_jwt_bundles()
    bundle = bundles.get_bundle_for_trust_domain(svid.spiffe_id.trust_domain)
    # Checked here, with the bundle the API sent, as a service receiving the token would.
    local = JwtSvid.parse_and_validate(svid.token, bundle, {audience})
    remote = client.validate_jwt_svid(svid.token, audience)
    try:
        client.validate_jwt_svid(svid.token, audience + "-other")
        other_audience = "accepted"
    except Exception as e:  # the API must refuse it
        other_audience = type(e).__name__
    again = client.fetch_jwt_svid(audience={audience})
    return {
        "spiffe_id": str(svid.spiffe_id),
        "token": svid.token,
        "audience": sorted(svid.audience),
        "lifetime": svid.expiry - int(time.time()),
        "local": str(local.spiffe_id),
        "remote": str(remote.spiffe_id),
        "other_audience": other_audience,
        "cached": again.token == svid.token,
        "jwt_authorities": len(bundle.jwt_authorities),
        "bundle_set": sorted(str(b.trust_domain) for b in bundles.bundles),
    }


def main():
    socket, mode = sys.argv[1], sys.argv[2]
    client = WorkloadApiClient(socket_path="unix://" + socket, default_timeout=10)
    try:
        if mode == "fetch":
            out = context_json(client.fetch_x509_context())
            out["bundle_set"] = sorted(str(b.trust_domain) for b in client.fetch_x509_bundles().bundles)
        elif mode == "jwt":
            out = jwt(client, sys.argv[3])
        elif mode == "validate":
            out = {"spiffe_id": str(client.validate_jwt_svid(sys.argv[4], sys.argv[3]).spiffe_id)}
        else:
            out = watch(client, int(sys.argv[3]))
        print(json.dumps(out))
    finally:
        client.close()


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # one line for the test to read
        print(f"error: {type(e).__name__}: {e}".replace("\n", " "), file=sys.stderr)
        sys.exit(2)
