"""The web console in a real browser (Debian's Chromium driven by Selenium), against a
running `meshctl demo`. Run by meshctl/tests/console.rs, which starts the demo, applies a
second policy version, and passes what this script needs as JSON on stdin:

  admin_link, viewer_link  one-time sign-in links (`meshctl console`)
  base                     https://host:port of the console
  axe                      path of axe-core's axe.min.js
  shots                    a directory for screenshots (1280x800), or null

Every check that fails raises; the last line printed is a JSON summary the test reads.
"""

import base64
import hashlib
import json
import ssl
import sys
import time
import urllib.error
import urllib.request
from urllib.parse import urlparse

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

args = json.load(sys.stdin)
BASE = args["base"]
AXE = open(args["axe"], encoding="utf-8").read()
SHOTS = args.get("shots")
summary = {"pages": {}, "axe": {}}


def spki_pin(base):
    """The console's certificate chains to the mesh's own CA, which this browser does not
    know: trust exactly its key (Chromium's SPKI pin), not every certificate."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    u = urlparse(base)
    pem = ssl.get_server_certificate((u.hostname, u.port))
    cert = x509.load_pem_x509_certificate(pem.encode())
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


def browser(profile):
    o = webdriver.ChromeOptions()
    o.binary_location = "/usr/bin/chromium"
    for flag in [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1280,800",
        f"--user-data-dir={profile}",
        f"--ignore-certificate-errors-spki-list={spki_pin(BASE)}",
    ]:
        o.add_argument(flag)
    d = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=o)
    d.set_window_size(1280, 800)
    d.set_page_load_timeout(30)
    return d


def text(d, selector):
    return d.find_element(By.CSS_SELECTOR, selector).text


def wait_for(d, condition, what, seconds=15):
    try:
        return WebDriverWait(d, seconds, poll_frequency=0.2).until(lambda _: condition())
    except Exception as e:
        page = d.find_element(By.TAG_NAME, "body").text[:600]
        raise AssertionError(f"{what}: not within {seconds}s ({d.current_url}): {page}") from e


def axe(d, name):
    """axe-core, run inside the page: no serious or critical violations."""
    d.execute_script(AXE)
    result = d.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {resultTypes: ['violations']}).then(r => done(r.violations))"
        ".catch(e => done({error: String(e)}));"
    )
    if isinstance(result, dict) and "error" in result:
        raise AssertionError(f"axe on {name}: {result['error']}")
    bad = [v for v in result if v.get("impact") in ("serious", "critical")]
    summary["axe"][name] = {"violations": len(result), "serious_or_critical": len(bad)}
    if bad:
        detail = "; ".join(
            f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes'][:3]]}"
            for v in bad
        )
        raise AssertionError(f"axe on {name}: {detail}")


def shot(d, name):
    if SHOTS:
        d.save_screenshot(f"{SHOTS}/{name}.png")


def visit(d, path, name, title):
    d.get(BASE + path)
    h1 = wait_for(d, lambda: d.find_elements(By.CSS_SELECTOR, "h1"), f"{name}: a heading")[0]
    assert title in h1.text, f"{name}: heading `{h1.text}`, not `{title}`"
    summary["pages"][name] = d.current_url
    axe(d, name)


def post_from_page(d, path, fields):
    """A POST from inside the page (same origin, the session's cookie): what a forged form
    or a script would send. Returns (status, body)."""
    return d.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch(arguments[0], {method: 'POST', credentials: 'same-origin',"
        " headers: {'content-type': 'application/x-www-form-urlencoded'},"
        " body: new URLSearchParams(arguments[1])})"
        ".then(async r => done([r.status, await r.text()]))"
        ".catch(e => done([0, String(e)]));",
        path,
        fields,
    )


def get_with_cookie(path, cookie):
    """A GET outside the browser carrying a copied session cookie."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *a, **k):
            return None

    opener = urllib.request.build_opener(
        urllib.request.HTTPSHandler(context=ctx), NoRedirect()
    )
    req = urllib.request.Request(BASE + path, headers={"Cookie": cookie})
    try:
        with opener.open(req, timeout=10) as r:
            return r.status, r.headers.get("Location")
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Location")


import tempfile

with tempfile.TemporaryDirectory() as profile:
    d = browser(profile)
    try:
        # The one-time link signs in and lands on the overview; the code leaves the
        # address bar.
        d.get(args["admin_link"])
        wait_for(d, lambda: d.current_url.rstrip("/").endswith("/ui"), "signed in by the link")
        assert "#code" not in d.current_url, d.current_url
        assert text(d, "[data-testid=operator]").endswith("/signet/operator/admin")
        assert text(d, "[data-testid=proxies]") == "4", text(d, "[data-testid=proxies]")
        summary["pages"]["overview"] = d.current_url
        axe(d, "overview")
        shot(d, "overview")

        # The link worked once.
        d.get(args["admin_link"])
        wait_for(d, lambda: d.find_elements(By.CSS_SELECTOR, "[data-testid=error]"), "a used code refused")
        assert "unknown, used or expired" in text(d, "[data-testid=error]")

        # Topology: frontend -> payments is denied and drawn apart; choosing it names the
        # deciding policy.
        visit(d, "/ui/topology", "topology", "Topology")
        edge = wait_for(
            d,
            lambda: d.find_elements(By.CSS_SELECTOR, "a[data-edge='frontend->payments']"),
            "the frontend -> payments edge",
        )[0]
        assert edge.get_attribute("data-class") == "denied", edge.get_attribute("data-class")
        cart = d.find_element(By.CSS_SELECTOR, "a[data-edge='frontend->cart']")
        assert cart.get_attribute("data-class") != "denied"
        shot(d, "topology")
        d.execute_script("arguments[0].dispatchEvent(new MouseEvent('click', {bubbles: true}))", edge)
        wait_for(d, lambda: d.find_elements(By.CSS_SELECTOR, "[data-testid=edge-detail]"), "the edge's detail")
        detail = text(d, "[data-testid=edge-detail]")
        assert "frontend-never-calls-payments" in detail, detail
        summary["denied_edge_policy"] = "frontend-never-calls-payments"

        # Services: the cart's SVID counts down.
        visit(d, "/ui/services", "services", "Services")
        d.find_element(By.LINK_TEXT, "cart").click()
        wait_for(d, lambda: "/ui/services/shop/cart" in d.current_url, "the cart's page")
        first = text(d, "[data-testid=countdown]")
        assert first.startswith("in "), first
        time.sleep(2.2)
        second = text(d, "[data-testid=countdown]")
        assert second != first and second.startswith("in "), (first, second)
        inbound = text(d, "[data-testid=inbound]")
        assert "spiffe://signet.local/ns/shop/sa/frontend" in inbound, inbound
        summary["countdown"] = [first, second]
        axe(d, "service")
        shot(d, "service")

        # Policies: two versions, and their diff.
        visit(d, "/ui/policies", "policies", "Policies")
        rows = d.find_elements(By.CSS_SELECTOR, "[data-testid=versions] tbody tr")
        assert len(rows) == 2, [r.text for r in rows]
        shot(d, "policies")
        d.get(BASE + "/ui/policies/diff?from=1&to=2")
        diff = text(d, "[data-testid=diff]")
        assert '"/api/cart*"' in diff and '"/api/*"' in diff, diff
        adds = [e.text for e in d.find_elements(By.CSS_SELECTOR, "[data-testid=diff] td.add")]
        assert any("/api/cart*" in a for a in adds), adds
        summary["diff"] = text(d, "[data-testid=diff-summary]")
        axe(d, "diff")
        shot(d, "diff")

        # Explain a request: the form gives the decision and the deciding policy's text.
        visit(d, "/ui/policies/explain", "explain", "Explain a request")
        d.find_element(By.ID, "principal").send_keys("spiffe://signet.local/ns/shop/sa/frontend")
        d.find_element(By.ID, "service").send_keys("payments")
        for option in d.find_elements(By.CSS_SELECTOR, "#action option"):
            if option.text == "GET":
                option.click()
        path = d.find_element(By.ID, "path")
        path.clear()
        path.send_keys("/api/charge")
        d.find_element(By.CSS_SELECTOR, "form[action='/ui/policies/explain'] button").click()
        wait_for(d, lambda: d.find_elements(By.CSS_SELECTOR, "[data-testid=explanation]"), "the explanation")
        explanation = text(d, "[data-testid=explanation]")
        assert "DENY" in explanation and "frontend-never-calls-payments" in explanation, explanation
        assert "forbid" in explanation, explanation
        summary["explained"] = explanation.splitlines()[0]
        axe(d, "explained")
        shot(d, "explain")

        # A state change without the session's CSRF token is refused, and changes nothing.
        status, body = post_from_page(d, "/ui/policies/rollback", {"version": "1"})
        assert status == 403 and "CSRF" in body, (status, body[:300])
        summary["csrf_refused"] = status

        # Rollback to version 1 widens access again: refused without accepting it, as
        # `meshctl authz rollback` is.
        d.get(BASE + "/ui/policies")
        form = d.find_element(By.CSS_SELECTOR, "[data-testid=rollback-1]")
        form.find_element(By.CSS_SELECTOR, "button").click()
        wait_for(d, lambda: d.find_elements(By.CSS_SELECTOR, "[data-testid=error]"), "the widening refusal")
        refusal = text(d, "[data-testid=error]")
        assert "widens access" in refusal, refusal
        d.get(BASE + "/ui/policies")
        form = d.find_element(By.CSS_SELECTOR, "[data-testid=rollback-1]")
        form.find_element(By.CSS_SELECTOR, "input[name=allow_widening]").click()
        form.find_element(By.CSS_SELECTOR, "button").click()
        wait_for(d, lambda: d.find_elements(By.CSS_SELECTOR, "[data-testid=rollback-result]"), "the rollback", 30)
        result = text(d, "[data-testid=rollback-result]")
        assert "Version 3" in result, result
        assert text(d, "[data-testid=enforced-by]") == "4 of 4", result
        summary["rollback"] = result
        shot(d, "rolled-back")

        # Audit: filtered to denials, with chain positions; the live tail appends.
        visit(d, "/ui/audit?decision=deny", "audit", "Audit")
        decisions = [
            r.find_elements(By.CSS_SELECTOR, "td")[2].text
            for r in d.find_elements(By.CSS_SELECTOR, "[data-testid=audit] tbody tr")
        ]
        assert decisions and set(decisions) == {"deny"}, decisions
        table = d.find_element(By.CSS_SELECTOR, "[data-testid=audit]")
        before = int(table.get_attribute("data-after"))
        wait_for(d, lambda: int(table.get_attribute("data-after")) > before, "the live tail", 20)
        assert d.find_element(By.CSS_SELECTOR, "[data-testid=export]").get_attribute("href").startswith(BASE + "/ui/audit/export")
        summary["tail"] = [before, int(table.get_attribute("data-after"))]
        shot(d, "audit")

        visit(d, "/ui/ca", "ca", "Certificate authority")
        roots = text(d, "[data-testid=roots]")
        assert "active" in roots, roots
        shot(d, "ca")

        # Sign-out ends the session on the server: the old cookie no longer works.
        cookie = d.get_cookie("__Host-signet-session")
        assert cookie and cookie["httpOnly"] and cookie["secure"] and cookie.get("sameSite") == "Strict", cookie
        jar = f"__Host-signet-session={cookie['value']}"
        assert get_with_cookie("/ui/ca", jar)[0] == 200
        d.find_element(By.CSS_SELECTOR, "form[action='/ui/sign-out'] button").click()
        wait_for(d, lambda: "/ui/sign-in" in d.current_url, "signed out")
        assert get_with_cookie("/ui/ca", jar) == (303, "/ui/sign-in"), get_with_cookie("/ui/ca", jar)
        summary["signed_out"] = True
    finally:
        d.quit()

with tempfile.TemporaryDirectory() as profile:
    d = browser(profile)
    try:
        # A read-only operator sees no write controls, and is refused if it posts anyway,
        # with a valid CSRF token.
        d.get(args["viewer_link"])
        wait_for(d, lambda: d.current_url.rstrip("/").endswith("/ui"), "the viewer signed in")
        assert text(d, "[data-testid=operator]").endswith("/signet/operator/viewer")
        d.get(BASE + "/ui/policies")
        assert not d.find_elements(By.CSS_SELECTOR, "form[action='/ui/policies/rollback']")
        csrf = d.find_element(By.CSS_SELECTOR, "form[action='/ui/sign-out'] input[name=csrf]").get_attribute("value")
        status, body = post_from_page(
            d, "/ui/policies/rollback", {"csrf": csrf, "version": "2", "allow_widening": "true"}
        )
        assert status == 403 and "may not `policy.rollback`" in body, (status, body[:300])
        summary["viewer_refused"] = status
    finally:
        d.quit()

print(json.dumps(summary))
