"""The console in a real browser (Debian's chromium driven by Playwright).

Run by tests/it/console.rs with one JSON argument (URLs, credentials, where
to put screenshots). One browser launch; each part of the walk-through is a
step that prints its name, so a failure says where it happened.
"""

import json
import os
import re
import sys
import time

from playwright.sync_api import expect, sync_playwright

CFG = json.loads(sys.argv[1])
HUB = CFG["hub"]  # http://127.0.0.1:PORT/portal
CONSOLE = CFG["console"]  # http://127.0.0.1:PORT/console
SHOTS = CFG.get("shots")
AXE = open(CFG["axe"], encoding="utf-8").read()
XSS = "<script>alert(1)</script>"
CSP_PARTS = ["default-src 'self'", "script-src 'self'", "style-src 'self'",
             "frame-ancestors 'none'", "base-uri 'none'", "form-action 'self'"]
STARTED = time.time()


def step(name):
    print(f"[{time.time() - STARTED:6.1f}s] {name}", flush=True)


def shot(page, name, full=True):
    if SHOTS:
        page.screenshot(path=os.path.join(SHOTS, f"{name}.png"), full_page=full)


def axe(page, what):
    """No serious or critical accessibility violation (axe-core)."""
    page.evaluate(AXE + "\n;0")
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    bad = [v for v in result["violations"] if v["impact"] in ("serious", "critical")]
    assert not bad, f"{what}: " + json.dumps(
        [{"id": v["id"], "impact": v["impact"], "nodes": [n["html"] for n in v["nodes"][:3]]} for v in bad],
        indent=1)


def secure_page(response, page, what):
    """The headers of SPEC §10 and no script or style inside the page."""
    h = response.headers
    csp = h.get("content-security-policy", "")
    for part in CSP_PARTS:
        assert part in csp, f"{what}: CSP lacks {part!r}: {csp!r}"
    assert h.get("x-frame-options") == "DENY", what
    assert h.get("referrer-policy") == "no-referrer", what
    assert "no-store" in h.get("cache-control", ""), what
    html = page.content()
    for m in re.finditer(r"<script\b[^>]*>", html):
        assert "src=" in m.group(0), f"{what}: inline script {m.group(0)}"
    assert not re.search(r"<style\b", html), f"{what}: inline style element"
    assert not re.search(r"\son[a-z]+=", html), f"{what}: inline event handler"
    assert not re.search(r"\sstyle=", html), f"{what}: style attribute"


def shown_secret(page):
    value = page.locator("#secret").input_value()
    assert value, "no secret shown"
    expect(page.get_by_role("alert").filter(has_text="will not be shown again")).to_be_visible()
    expect(page.locator("button[data-copy=secret]")).to_be_visible()
    return value


def close_reveal(page, secret):
    page.get_by_role("link", name="Done").click()
    page.wait_for_load_state()
    assert secret not in page.content(), "the secret is still on the page after Done"
    page.reload()
    assert secret not in page.content(), "the secret came back on reload"
    page.go_back()
    page.wait_for_load_state()
    assert secret not in page.content(), "the secret came back with Back"
    page.go_forward()
    page.wait_for_load_state()


def sign_in_password(page, username, password):
    page.goto(HUB + "/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()


def main():
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium",
                                    args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            run(browser)
        finally:
            browser.close()


def run(browser):
    ctx = browser.new_context(viewport={"width": 1280, "height": 800})
    ctx.set_default_timeout(15000)
    page = ctx.new_page()
    page.on("dialog", lambda d: (_ for _ in ()).throw(AssertionError(f"a JS dialog opened: {d.message}")))
    errors = []
    # a page the CSP refuses something says so in the console
    page.on("console", lambda m: errors.append(m.text)
            if m.type == "error" and ("Content Security Policy" in m.text or "Refused" in m.text) else None)

    step("sign-in page: headers, no inline script, accessibility")
    resp = page.goto(HUB + "/")
    assert page.url.endswith("/portal/sign-in"), page.url
    secure_page(resp, page, "sign-in")
    expect(page.get_by_role("link", name="Sign in with corp")).to_be_visible()
    axe(page, "sign-in")
    shot(page, "console-sign-in")

    step("wrong password: refused")
    sign_in_password(page, CFG["username"], "not the password at all")
    expect(page.get_by_role("alert")).to_contain_text("Invalid username or password")

    step("one-time password: the password must change first")
    sign_in_password(page, CFG["username"], CFG["one_time"])
    assert page.url.endswith("/portal/password"), page.url
    page.goto(HUB + "/")
    assert page.url.endswith("/portal/password"), "a one-time password reached " + page.url
    axe(page, "password")
    page.get_by_label("Current password").fill(CFG["one_time"])
    page.get_by_label("New password", exact=True).fill(CFG["new_password"])
    page.get_by_label("New password, again").fill(CFG["new_password"])
    page.get_by_role("button", name="Change password").click()
    expect(page.get_by_role("status")).to_contain_text("Your password is changed")
    expect(page.get_by_role("heading", name="Your clients")).to_be_visible()

    step("CSRF: a change without the form's token is refused")
    r = ctx.request.post(HUB + "/clients", form={"name": "forged", "auth_type": "api_key"})
    assert r.status == 403, r.status
    r = ctx.request.post(HUB + "/clients", form={"name": "forged", "auth_type": "api_key", "csrf": "0" * 32})
    assert r.status == 403, r.status
    page.reload()
    assert "forged" not in page.content()

    step("create an API key client in the dialog; the key is shown once")
    page.get_by_role("button", name="Create new client").click()
    dialog = page.locator("dialog#create-dialog")
    expect(dialog).to_be_visible()
    dialog.get_by_label("Name").fill("orders-dashboard")
    dialog.get_by_label("Description").fill("<b>bold</b> & co")
    dialog.get_by_label("API key").check()
    dialog.get_by_label("orders:read").check()
    shot(page, "console-create-dialog", full=False)
    dialog.get_by_role("button", name="Create client").click()
    page.wait_for_load_state()
    key = shown_secret(page)
    assert key.startswith("tg_"), key
    axe(page, "key shown once")
    shot(page, "console-key-shown-once")
    close_reveal(page, key)

    step("create an OAuth2 client; the secret is shown once, then the curl example")
    page.goto(HUB + "/")
    page.get_by_role("button", name="Create new client").click()
    dialog.get_by_label("Name").fill("billing-worker")
    dialog.get_by_label("OAuth2").check()
    dialog.get_by_role("button", name="Create client").click()
    page.wait_for_load_state()
    secret = shown_secret(page)
    client_id = page.locator("#client-id").input_value()
    assert client_id.startswith("cli_"), client_id
    close_reveal(page, secret)
    expect(page.get_by_role("heading", name="billing-worker")).to_be_visible()
    assert "/oauth2/token" in page.locator("#token-url").input_value()
    curl = page.locator("#curl").input_value()
    assert client_id in curl and "grant_type=client_credentials" in curl and secret not in curl, curl
    shot(page, "console-oauth2-client")

    step("client page: subscriptions add (auto and manual approval)")
    page.goto(HUB + "/")
    page.get_by_role("link", name="orders-dashboard").click()
    page.wait_for_load_state()
    client_url = page.url
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; co" in page.content(), "the description is not escaped"
    page.get_by_label("Service and plan").select_option(label="orders — gold")
    page.get_by_role("button", name="Subscribe").click()
    expect(page.get_by_role("status")).to_contain_text("Subscribed")
    gateway = HUB.rsplit("/portal", 1)[0]
    for _ in range(3):
        r = ctx.request.get(gateway + "/orders/x", headers={"X-API-Key": key})
        assert r.status == 200, f"the new key and subscription do not reach the upstream: {r.status}"
    page.get_by_label("Service and plan").select_option(label="billing (needs approval)")
    page.get_by_role("button", name="Subscribe").click()
    expect(page.get_by_role("status")).to_contain_text("operator must approve")

    step("client page: keys create, revoke, renew")
    page.get_by_label("Name", exact=True).fill("ci-runner")
    page.get_by_label("Expires").select_option("short")
    page.get_by_role("button", name="Create key").click()
    page.wait_for_load_state()
    ci_key = shown_secret(page)
    close_reveal(page, ci_key)
    rows = page.locator("table[aria-labelledby=keys] tbody tr")
    expect(rows).to_have_count(2)
    ci_row = rows.filter(has_text="ci-runner")
    expect(ci_row).to_contain_text("active")
    ci_row.get_by_role("button", name=re.compile("Revoke key ci-runner")).click()
    expect(page.get_by_role("status")).to_contain_text("The key is revoked")
    expect(rows.filter(has_text="ci-runner")).to_contain_text("revoked")
    rows.filter(has_text="ci-runner").get_by_role("button", name=re.compile("Renew key")).click()
    expect(page.get_by_role("status")).to_contain_text("active again")
    expect(rows.filter(has_text="ci-runner")).to_contain_text("active")

    step("client page: roll a key with a grace period; requests per day")
    ci_row = rows.filter(has_text="ci-runner")
    ci_row.locator("summary", has_text="Roll").click()
    ci_row.get_by_label("The old key keeps working").select_option(label="for 1 hour")
    ci_row.get_by_role("button", name="Roll to a new key").click()
    page.wait_for_load_state()
    rolled = shown_secret(page)
    expect(page.locator("main")).to_contain_text("keeps working until")
    close_reveal(page, rolled)
    expect(rows).to_have_count(3)
    expect(rows.filter(has_text="expiring")).to_have_count(1)
    for _ in range(50):
        if "3 requests in the last" in page.locator("figure.usage").inner_text():
            break
        time.sleep(0.3)
        page.reload()
    expect(page.locator("figure.usage figcaption")).to_contain_text("3 requests in the last 14 days")
    axe(page, "client page")
    shot(page, "console-client-page")

    step("client page: remove a subscription")
    subs = page.locator("table[aria-labelledby=subs] tbody tr")
    expect(subs).to_have_count(2)
    page.get_by_role("button", name="Remove subscription to orders").click()
    expect(page.get_by_role("status")).to_contain_text("removed")
    expect(subs).to_have_count(1)
    page.get_by_label("Service and plan").select_option(label="orders — free")
    page.get_by_role("button", name="Subscribe").click()
    expect(page.get_by_role("status")).to_contain_text("Subscribed")

    step("keyboard only: create a client")
    page.goto(HUB + "/")
    opener = page.get_by_role("button", name="Create new client")
    for _ in range(30):
        page.keyboard.press("Tab")
        if opener.evaluate("e => e === document.activeElement"):
            break
    else:
        raise AssertionError("Tab never reached 'Create new client'")
    page.keyboard.press("Enter")
    expect(dialog).to_be_visible()
    assert dialog.get_by_label("Name").evaluate("e => e === document.activeElement"), "focus not in the dialog"
    page.keyboard.type("keyboard-client")
    page.keyboard.press("Enter")
    page.wait_for_load_state()
    kb_key = shown_secret(page)
    page.keyboard.press("Tab")  # the copy button or the link follow the field
    close_reveal(page, kb_key)
    page.goto(HUB + "/")
    expect(page.get_by_role("link", name="keyboard-client")).to_be_visible()
    axe(page, "clients")
    shot(page, "console-clients")

    step("row menu: edit")
    row = page.locator("table[aria-labelledby=active] tbody tr").filter(has_text="keyboard-client")
    row.locator("summary").click()
    row.get_by_role("link", name="Edit").click()
    page.get_by_label("Name").fill("keyboard-client-2")
    page.get_by_label("Description").fill("renamed")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("heading", name="keyboard-client-2")).to_be_visible()

    step("operator: approve and reject pending subscriptions, audit log")
    op = browser.new_context(viewport={"width": 1280, "height": 800})
    op.set_default_timeout(15000)
    opage = op.new_page()
    resp = opage.goto(CONSOLE + "/")
    assert opage.url.endswith("/console/sign-in"), opage.url
    secure_page(resp, opage, "operator sign-in")
    opage.get_by_label("Admin token").fill("wrong-token")
    opage.get_by_role("button", name="Sign in").click()
    expect(opage.get_by_role("alert")).to_contain_text("Wrong admin token")
    opage.get_by_label("Admin token").fill(CFG["admin_token"])
    opage.get_by_role("button", name="Sign in").click()
    expect(opage.get_by_role("heading", name="Pending subscriptions")).to_be_visible()
    r = op.request.post(CONSOLE + f"/subscriptions/{CFG['pending_other']}/approve", form={})
    assert r.status == 403, f"operator CSRF: {r.status}"
    pending = opage.locator("table[aria-labelledby=pending] tbody tr")
    expect(pending).to_have_count(2)
    axe(opage, "operator overview")
    shot(opage, "console-operator")
    pending.filter(has_text="orders-dashboard").get_by_role("button", name=re.compile("^Approve")).click()
    expect(opage.get_by_role("status")).to_contain_text("approved")
    pending.filter(has_text="other-client").get_by_role("button", name=re.compile("^Reject")).click()
    expect(opage.get_by_role("status")).to_contain_text("rejected")
    expect(pending).to_have_count(0)
    opage.get_by_role("link", name=CFG["username"], exact=True).click()
    expect(opage.locator("table[aria-labelledby=clients]")).to_contain_text("billing-worker")
    opage.get_by_role("link", name="Audit log").click()
    expect(opage.locator("tbody")).to_contain_text("subscription.approve")
    expect(opage.locator("tbody")).to_contain_text("subscription.reject")
    expect(opage.locator("tbody")).to_contain_text("client.create")
    axe(opage, "audit log")
    shot(opage, "console-audit")
    opage.get_by_role("button", name="Sign out").click()
    opage.goto(CONSOLE + "/")
    assert opage.url.endswith("/console/sign-in"), "signed out, yet " + opage.url
    op.close()

    step("revoke: the confirmation is final and names the subscriptions")
    page.goto(client_url)
    expect(page.locator("table[aria-labelledby=subs]")).to_contain_text("active")
    page.goto(HUB + "/")
    row = page.locator("table[aria-labelledby=active] tbody tr").filter(has_text="orders-dashboard")
    row.locator("summary").focus()
    page.keyboard.press("Enter")
    row.get_by_role("link", name="Revoke").click()
    confirm = page.locator("section.danger")
    expect(confirm).to_contain_text("final")
    expect(confirm).to_contain_text("billing")
    expect(confirm).to_contain_text("orders (free)")
    shot(page, "console-revoke")
    page.get_by_role("button", name="Revoke client").click()
    expect(page.get_by_role("status")).to_contain_text("revoked")
    expect(page.locator("table[aria-labelledby=revoked]")).to_contain_text("orders-dashboard")

    step("sign out")
    page.get_by_role("button", name="Sign out").click()
    page.goto(HUB + "/")
    assert page.url.endswith("/portal/sign-in"), page.url
    assert not errors, f"console errors: {errors}"
    ctx.close()

    step("phone: readable without sideways scrolling")
    phone = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2,
                                is_mobile=True, has_touch=True)
    phone.set_default_timeout(15000)
    ppage = phone.new_page()
    sign_in_password(ppage, CFG["username"], CFG["new_password"])
    expect(ppage.get_by_role("heading", name="Your clients")).to_be_visible()
    # a mobile browser widens its layout viewport to fit wide content, so
    # compare with the device's width, and name what sticks out
    wide = ppage.evaluate("""() => [document.documentElement.scrollWidth,
        [...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > 391)
          .slice(0, 5).map(e => e.tagName + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right))]""")
    assert wide[0] <= 391, f"the page is wider than the phone: {wide}"
    shot(ppage, "console-phone")
    phone.close()

    step("sign in with the identity provider (PKCE, state, nonce; a forged state is refused)")
    idp = browser.new_context()
    idp.set_default_timeout(15000)
    ipage = idp.new_page()
    asked = []
    ipage.on("request", lambda r: asked.append(r.url) if "/auth?" in r.url else None)
    ipage.goto(HUB + "/sign-in")
    ipage.get_by_role("link", name="Sign in with corp").click()
    expect(ipage.get_by_role("button", name=re.compile("Continue as"))).to_be_visible()
    ipage.goto(HUB + "/callback?code=forged&state=" + "A" * 43)
    expect(ipage.get_by_role("alert")).to_contain_text("does not belong to this sign-in")
    ipage.goto(HUB + "/")
    assert ipage.url.endswith("/portal/sign-in"), "a forged state signed in: " + ipage.url
    asked.clear()
    ipage.goto(HUB + "/sign-in")
    ipage.get_by_role("link", name="Sign in with corp").click()
    ipage.get_by_role("button", name=re.compile("Continue as")).click()
    expect(ipage.get_by_role("heading", name="Your clients")).to_be_visible()
    assert asked, "the browser never went to the identity provider"
    q = dict(x.split("=", 1) for x in asked[0].split("?", 1)[1].split("&"))
    assert q.get("code_challenge_method") == "S256", q
    assert len(q.get("code_challenge", "")) == 43, q
    assert len(q.get("state", "")) >= 32 and len(q.get("nonce", "")) >= 32, q
    assert q["state"] != q["nonce"], q
    expect(ipage.locator("header")).to_contain_text(CFG["idp_subject"])
    step("user text is escaped (a client made on the page that works without script)")
    ipage.on("dialog", lambda d: (_ for _ in ()).throw(AssertionError(f"a JS dialog opened: {d.message}")))
    ipage.goto(HUB + "/clients/new")
    ipage.get_by_label("Name").fill(XSS)
    ipage.get_by_role("button", name="Create client").click()
    ipage.wait_for_load_state()
    close_reveal(ipage, shown_secret(ipage))
    for url in (HUB + "/", ipage.url):
        ipage.goto(url)
        html = ipage.content()
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html, f"{url}: the name is not escaped"
        assert XSS not in html, url
    step("a replayed callback does not sign in again")
    ipage.goto(HUB + "/callback?code=stolen&state=" + q["state"])
    expect(ipage.get_by_role("alert")).to_be_visible()
    idp.close()
    step("done")


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # noqa: BLE001 - the message is the test's report
        print(f"FAILED: {type(e).__name__}: {e}", flush=True)
        sys.exit(1)
