"""The dashboard in a real browser (Debian's Chromium, headless, driven by playwright) against `make run`'s stack:
the router serving the dashboard and the API over the Firestore emulator, moto and the Firebase Auth emulator.

A customer signs in with an email link through the Auth emulator, creates an account, runs a workflow that the
test's agents move over the API, watches it live, approves REVIEW and rolls back; a VIEWER sees no action and the
API refuses what they forge. Every page's screenshot is saved under test-output/dashboard/, and no page may log a
console error.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser import OUTPUT, Stack, Watch, chromium, chromium_path, screenshot, sign_in_link
from tools.authemulator import AuthEmulator
from tools.emulator import free_port

AGENT_ROLES = ["Q_ASSISTANT", "ARCHITECT", "DEVELOPER", "TESTER", "VERIFIER", "DEVOPS"]
WAIT = 15_000  # ms: a poll is 1 s here, so anything slower than this is a failure
expect.set_options(timeout=WAIT)


@pytest.fixture(scope="module")
def stack(emulator) -> Iterator[Stack]:
    chromium_path()  # fail first, with the install command, before starting anything
    shutil.rmtree(OUTPUT, ignore_errors=True)  # this run's screenshots only
    auth = AuthEmulator(project=f"demo-qorch-{uuid.uuid4().hex[:6]}").start()
    try:
        running = Stack(firestore=emulator.address, auth=auth, project=f"dash-{uuid.uuid4().hex[:10]}").start()
        try:
            yield running
        finally:
            running.stop()
    finally:
        auth.stop()


@pytest.fixture(scope="module")
def browser(stack) -> Iterator[Any]:
    with chromium() as b:
        yield b


@pytest.fixture(scope="module")
def store(stack):
    """The stack's Firestore project, for what an operator does by hand (granting entitlement)."""
    from shared.adapters.firestore import Store, firestore_client

    return Store(firestore_client(stack.project), timeout_seconds=5)


@dataclass
class Person:
    """One person's browser (a context of their own), with what it showed going wrong."""

    email: str
    context: Any
    page: Any
    watch: Watch = field(default_factory=Watch)

    def token(self) -> str:
        return self.page.evaluate("import('/app/auth.js').then((m) => m.idToken())")

    def assert_clean(self) -> None:
        assert not self.watch.problems, "\n".join(self.watch.problems)

    def close(self) -> None:
        """Close the browser, leaving evidence of where it stood: a screenshot (test-output/dashboard/last-*.png) and,
        in the test's captured output, what the page logged (shown when the test failed)."""
        try:
            screenshot(self.page, f"last-{self.email.split('@')[0]}")
        except Exception as exc:  # evidence is best effort: the test's own failure is what counts
            print(f"no screenshot of {self.email}'s page: {exc}")
        print(f"{self.email} was at {self.page.url}; the page logged:", *self.watch.problems or ["nothing"],
              sep="\n  ")
        self.context.close()


def open_browser(browser: Any, stack: Stack, email: str, **context_args: Any) -> Person:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, **context_args)
    # The workflow page polls every 3 s; a test needs no more than 1 s to notice a move.
    context.add_init_script("sessionStorage.setItem('qorch.pollMs', '1000')")
    page = context.new_page()
    person = Person(email, context, page)
    person.watch.attach(page)
    page.set_default_timeout(WAIT)
    return person


def sign_in(person: Person, stack: Stack, base: str | None = None) -> None:
    """Email link through the Auth emulator: ask for a link, then open it as if from the inbox."""
    page = person.page
    page.goto((base or stack.url) + "/")
    page.wait_for_url("**/signin**")
    page.get_by_label("Email address").fill(person.email)
    page.get_by_role("button", name="Email me a sign-in link").click()
    page.get_by_text("Check your inbox").wait_for()
    page.goto(sign_in_link(stack.auth, person.email))
    page.wait_for_url(lambda url: "/signin" not in url)


def sign_in_with_google(person: Person, stack: Stack) -> None:
    """Google through the Auth emulator: it stands in for Google's window and takes the account's email."""
    page = person.page
    page.goto(stack.url + "/")
    page.wait_for_url("**/signin**")
    page.get_by_role("button", name="Continue with Google").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Google account email").fill(person.email)
    dialog.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/signin" not in url)


@pytest.fixture(scope="module")
def owner(browser, stack, store) -> Iterator[Person]:
    """Ada signs in for the first time, creates her team's account and (the operator grants it, as Stripe would
    once she paid) is entitled."""
    ada = open_browser(browser, stack, "ada@example.com")
    page = ada.page
    page.goto(stack.url + "/")
    page.wait_for_url("**/signin**")
    page.get_by_role("heading", name="Sign in to qorch").wait_for()
    screenshot(page, "01-sign-in")
    sign_in(ada, stack)
    page.wait_for_url("**/welcome")
    page.get_by_role("heading", name="Welcome to qorch").wait_for()
    screenshot(page, "02-welcome")
    page.get_by_label("Team or company name").fill("Acme Robotics")
    page.get_by_role("button", name="Create account").click()
    page.wait_for_url("**/account")
    page.get_by_text("Not entitled").wait_for()
    assert page.get_by_role("button", name="Subscribe to Pro").is_visible()
    screenshot(page, "03-account-new")
    account_id = page.locator("#who").get_attribute("data-account")
    from shared.services import accounts

    accounts.set_account(store, account_id, entitled=True)
    ada.account_id = account_id  # type: ignore[attr-defined]
    yield ada
    ada.assert_clean()
    ada.close()


def agent_key(stack: Stack, owner: Person) -> str:
    status, made = stack.api("POST", "/keys", key=owner.token(), headers={"X-Qorch-Account": owner.account_id},
                             body={"name": "test agents", "roles": AGENT_ROLES})
    assert status == 201, made
    return made["api_key"]


class Agents:
    """The AI team, as programs: they claim the workflow's hand-off, upload artifacts and move it on."""

    def __init__(self, stack: Stack, key: str, workflow_id: str) -> None:
        self.stack, self.key, self.wf = stack, key, workflow_id

    def get(self) -> dict:
        status, wf = self.stack.api("GET", f"/workflows/{self.wf}", key=self.key)
        assert status == 200, wf
        return wf

    def claim(self) -> dict:
        role = self.get()["role"]
        status, got = self.stack.api("POST", "/handoffs/claim", key=self.key,
                                     body={"agent_id": f"{role.lower()}-bot-1", "roles": [role]})
        assert status == 200 and got["workflow"]["id"] == self.wf, got
        return got["handoff"]

    def artifact(self, name: str, text: str) -> str:
        data = text.encode()
        status, made = self.stack.api("POST", f"/workflows/{self.wf}/artifacts", key=self.key, body={
            "name": name, "content_type": "text/markdown", "size_bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest()})
        assert status == 201, made
        assert self.stack.put_bytes(made["upload"]["url"], data, made["upload"]["headers"]) == 200
        aid = made["artifact"]["id"]
        status, done = self.stack.api("POST", f"/workflows/{self.wf}/artifacts/{aid}/complete", key=self.key)
        assert status == 200, done
        return aid

    def move(self, to: str, note: str, artifacts: list[str] | None = None) -> dict:
        held = self.get()["current_handoff"]  # a move within one role keeps the hand-off, and the claim on it
        agent_id = held["agent_id"] if held and held["status"] == "CLAIMED" else self.claim()["agent_id"]
        status, done = self.stack.api("POST", f"/workflows/{self.wf}/transitions", key=self.key, body={
            "to": to, "note": note, "artifacts": artifacts or [], "agent_id": agent_id})
        assert status == 200, done
        return done["workflow"]


def readme_shot(page: Any, name: str) -> None:
    """The README's pictures (docs/screenshots/, copied from here by hand): one screen, smaller than a full page."""
    OUTPUT.mkdir(parents=True, exist_ok=True)
    page.evaluate("document.getElementById('toasts').replaceChildren()")
    page.set_viewport_size({"width": 1100, "height": 760})
    page.screenshot(path=str(OUTPUT / f"{name}.png"))
    page.set_viewport_size({"width": 1280, "height": 900})


def current_state(page: Any) -> str:
    return page.locator("svg.diagram g.node.current").get_attribute("data-state")


def wait_state(page: Any, state: str) -> None:
    page.locator(f'svg.diagram g.node.current[data-state="{state}"]').wait_for()


REQUIREMENTS = """# Requirements: hat shop

The customer sells **hats** online.

## Must have
- a catalogue with photos
- a cart with discount codes
- checkout with [Stripe](https://stripe.com)

| page | owner |
|------|-------|
| catalogue | web |

```
GET /hats -> 200
```
"""


def test_a_customer_runs_a_workflow_from_the_dashboard(owner, stack):
    page = owner.page
    key = agent_key(stack, owner)

    # The list, empty, then the new-workflow form.
    page.get_by_role("link", name="Workflows").click()
    page.get_by_text("No workflows yet.").wait_for()
    page.get_by_role("button", name="New workflow").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Title").fill("Web shop for hats")
    dialog.get_by_label("Description").fill("Sell hats online, with a cart and Stripe checkout.")
    dialog.get_by_label("Labels").fill("team:web, priority:high")
    screenshot(page, "04-new-workflow")
    dialog.get_by_role("button", name="Create workflow").click()
    page.wait_for_url("**/workflows/wf_*")
    workflow_id = page.url.rsplit("/", 1)[1]
    wait_state(page, "DISCOVERY")
    page.evaluate("window.__sameDocument = true")  # a full reload would lose this

    # The agents move it while the page is open: the diagram and the timeline follow, without a reload.
    agents = Agents(stack, key, workflow_id)
    requirements = agents.artifact("requirements.md", REQUIREMENTS)
    agents.move("PLANNING", "Customer wants a hat shop with Stripe checkout", [requirements])
    wait_state(page, "PLANNING")
    agents.move("DESIGN", "Plan: catalogue, cart, checkout")
    agents.move("IMPLEMENTATION", "Design: Flask + Postgres")
    agents.move("TESTING", "Built the catalogue and the cart")
    wait_state(page, "TESTING")
    agents.claim()  # the tester holds it now: the page shows the holder and the lease running down
    page.locator(".handoff .lease").first.wait_for()
    assert "left" in page.locator(".handoff .lease").first.inner_text()
    agents.move("IMPLEMENTATION", "Cart total is wrong with discount codes")
    wait_state(page, "IMPLEMENTATION")
    rework = page.locator('svg.diagram path.taken[data-from="TESTING"][data-to="IMPLEMENTATION"]')
    assert rework.get_attribute("data-kind") == "rework"
    agents.move("TESTING", "Fixed the discount rounding")
    agents.move("VERIFICATION", "All 42 tests pass")
    agents.move("REVIEW", "Matches the plan")
    wait_state(page, "REVIEW")
    assert page.evaluate("window.__sameDocument") is True
    assert page.locator(".timeline li.ev").count() == 9
    assert page.locator(".timeline li.ev.rework").count() == 1

    # The artifact: previewed as Markdown (rendered, never as HTML), with a download link.
    page.get_by_role("button", name="Preview requirements.md").click()
    preview = page.get_by_role("article", name="Preview of requirements.md")
    preview.get_by_role("heading", name="Must have").wait_for()
    assert preview.get_by_role("link", name="Stripe").get_attribute("href") == "https://stripe.com"
    assert preview.locator("table td").first.inner_text() == "catalogue"
    screenshot(page, "05-workflow-review")

    # Only rework and failures, on request.
    page.get_by_label("Only rework, failures and rollbacks").check()
    assert page.locator(".timeline li.ev").count() == 1
    page.get_by_label("Only rework, failures and rollbacks").uncheck()

    # Send back from REVIEW with a note, along the rework transition the table allows; the team brings it back.
    page.get_by_role("button", name="Send back…").click()
    dialog = page.get_by_role("dialog")
    assert dialog.get_by_label("Back to").locator("option").all_inner_texts() == [
        "Implementation (changes requested)"]
    dialog.get_by_label("What must change").fill("Show prices with VAT")
    screenshot(page, "05b-send-back")
    dialog.get_by_role("button", name="Send back").click()
    wait_state(page, "IMPLEMENTATION")
    assert page.locator(".timeline li.ev.rework").count() == 2
    assert "Show prices with VAT" in page.locator('.timeline li.ev[data-seq="10"]').inner_text()
    agents.move("TESTING", "Prices now include VAT")
    agents.move("VERIFICATION", "All 43 tests pass")
    agents.move("REVIEW", "VAT shown everywhere")
    wait_state(page, "REVIEW")

    # Approve at REVIEW, after confirming.
    page.get_by_role("button", name="Approve").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Note (optional)").fill("Looks great, ship it")
    dialog.get_by_role("button", name="Approve and move to Deployment").click()
    wait_state(page, "DEPLOYMENT")
    assert page.locator('[data-action="approve"]').count() == 0

    # Deployment fails; the owner rolls back to the version that entered DEPLOYMENT, picked in the timeline.
    agents.move("FAILED", "The deploy runner is down")
    wait_state(page, "FAILED")
    assert page.locator(".timeline li.ev.fail").count() == 1
    entered = page.locator('.timeline li.ev[data-seq="14"]')  # REVIEW → DEPLOYMENT, the approval
    entered.get_by_role("button", name="Roll back to v14").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Reason (recorded in the timeline)").fill("Runner fixed")
    dialog.get_by_role("button", name="Roll back").click()
    wait_state(page, "DEPLOYMENT")
    rollback = page.locator('svg.diagram path.taken[data-kind="rollback"]')
    assert (rollback.get_attribute("data-from"), rollback.get_attribute("data-to")) == ("FAILED", "DEPLOYMENT")
    assert page.locator(".timeline li.ev.rollback").count() == 1
    assert agents.get()["state"] == "DEPLOYMENT" and agents.get()["version"] == 16
    screenshot(page, "06-workflow-rolled-back")
    readme_shot(page, "readme-workflow")

    # A refusal shows the problem's title and detail: the workflow moved while the person was deciding.
    page.get_by_role("button", name="Cancel workflow").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Why (recorded in the timeline)").fill("no longer needed")
    agents.move("COMPLETED", "Live at https://hats.example")
    dialog.get_by_role("button", name="Cancel workflow").click()
    alert = dialog.get_by_role("alert")
    alert.wait_for()
    assert "changed" in alert.inner_text().lower() or "version" in alert.inner_text().lower(), alert.inner_text()
    screenshot(page, "07-refusal")
    dialog.get_by_role("button", name="Cancel", exact=True).click()
    wait_state(page, "COMPLETED")
    assert page.locator("[data-action]").count() == 0
    owner.watch.problems[:] = [p for p in owner.watch.problems if "status of 409" not in p]

    # The list: progress, retries, who holds the work, newest first.
    token, headers = owner.token(), {"X-Qorch-Account": owner.account_id}
    for title, steps, claim in (("Billing dashboard", ["PLANNING", "DESIGN", "IMPLEMENTATION", "TESTING",
                                                        "VERIFICATION", "REVIEW"], False),
                                ("Inventory sync service", ["PLANNING", "DESIGN", "IMPLEMENTATION", "TESTING"], True),
                                # last: it leaves an ARCHITECT hand-off waiting, which a claim would take first
                                ("Mobile onboarding flow", ["PLANNING", "DESIGN"], False)):
        status, made = stack.api("POST", "/workflows", key=token, headers=headers,
                                 body={"title": title, "labels": {"team": "ops"}})
        assert status == 201, made
        other = Agents(stack, key, made["id"])
        for to in steps:
            other.move(to, f"on to {to.lower()}")
        if claim:
            other.claim()
    page.get_by_role("link", name="← Workflows").click()
    row = page.locator(f'tr[data-id="{workflow_id}"]')
    row.wait_for()
    assert "Completed (8 of 8)" in row.inner_text() and "1 of 3" in row.inner_text()
    rows = page.locator("table.wf-table tbody tr")
    expect(rows).to_have_count(4)
    assert rows.first.locator("a.title").inner_text() == "Mobile onboarding flow"  # the newest change first
    inventory = page.locator("tr", has_text="Inventory sync service").inner_text()
    assert "tester-bot-1" in inventory and "Phase 5 of 8" in inventory
    assert "Waiting for Customer" in page.locator("tr", has_text="Billing dashboard").inner_text()
    screenshot(page, "08-workflows")
    readme_shot(page, "readme-workflows")
    owner.assert_clean()


def test_the_list_filters_searches_and_pages(owner, stack):
    token = owner.token()
    headers = {"X-Qorch-Account": owner.account_id}
    for i in range(23):
        status, _ = stack.api("POST", "/workflows", key=token, headers=headers, body={
            "title": f"{'Billing' if i % 2 else 'Search'} service {i}", "labels": {"team": "api" if i % 3 else "ops"}})
        assert status == 201
    def count(title: str = "", **query: str) -> int:
        """What the API holds for these filters: the page must show exactly that."""
        status, listed = stack.api("GET", "/workflows?limit=100&" + "&".join(f"{k}={v}" for k, v in query.items()),
                                   key=token, headers=headers)
        assert status == 200 and listed["next_page_token"] is None
        return len([w for w in listed["workflows"] if title.lower() in w["title"].lower()])

    total = count()
    page = owner.page
    page.goto(stack.url + "/")
    rows = page.locator("table.wf-table tbody tr")
    rows.first.wait_for()
    assert rows.count() == 20
    assert rows.first.locator("a.title").inner_text() == "Search service 22"  # newest first
    page.get_by_role("button", name="Older →").click()
    page.get_by_text("Page 2").wait_for()
    expect(rows).to_have_count(total - 20)
    page.get_by_role("button", name="← Newer").click()
    page.get_by_text("Page 1").wait_for()

    page.get_by_label("Search titles").fill("billing")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**/?q=billing")
    expect(rows).to_have_count(count("billing"))
    assert count("billing") >= 11
    page.get_by_label("Label").fill("team:ops")
    page.get_by_role("button", name="Filter").click()
    expect(rows).to_have_count(count("billing", label="team:ops"))
    assert count("billing", label="team:ops") >= 4
    page.get_by_label("Search titles").fill("")
    page.get_by_label("Label").fill("")
    page.get_by_label("State").select_option("DISCOVERY")
    expect(rows).to_have_count(min(20, count(state='DISCOVERY')))
    page.get_by_label("State").select_option("")
    owner.assert_clean()


def test_account_keys_members_and_billing(owner, stack):
    page = owner.page
    page.goto(stack.url + "/account")
    page.get_by_role("heading", name="API keys").wait_for()
    page.get_by_role("button", name="New API key…").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Name").fill("ci-agents")
    dialog.get_by_role("button", name="Create key").click()
    shown = page.get_by_label("API key", exact=True)
    shown.wait_for()
    secret = shown.input_value()
    assert secret.startswith("qo_")
    screenshot(page, "09-key-created")
    page.get_by_role("button", name="I have stored it").click()
    row = page.locator("tr[data-key]", has_text="ci-agents")
    row.wait_for()
    assert secret not in page.content()  # shown once, never again
    assert stack.api("GET", "/account", key=secret)[0] == 200
    row.get_by_role("button", name="Revoke ci-agents").click()
    page.get_by_role("dialog").get_by_role("button", name="Revoke").click()
    row.get_by_text("Revoked").wait_for()
    assert stack.api("GET", "/account", key=secret)[0] == 401

    # Stripe is not configured under make run: the refusal's title and detail are shown, as for any refusal.
    page.get_by_role("button", name="Subscribe to Pro").click()
    alert = page.get_by_role("alert")
    alert.wait_for()
    _, problem = stack.api("POST", "/billing/checkout-session", key=owner.token(),
                                headers={"X-Qorch-Account": owner.account_id}, body={"plan": "pro"})
    assert problem["title"] in alert.inner_text() and problem["detail"] in alert.inner_text()
    screenshot(page, "10-account")
    owner.watch.problems[:] = [p for p in owner.watch.problems if "status of 503" not in p]
    owner.assert_clean()


def test_a_viewer_sees_no_actions_and_the_api_refuses_what_they_forge(owner, browser, stack):
    token = owner.token()
    headers = {"X-Qorch-Account": owner.account_id}
    status, wf = stack.api("POST", "/workflows", key=token, headers=headers, body={"title": "Viewer's view"})
    assert status == 201

    page = owner.page
    page.goto(stack.url + "/account")
    page.get_by_role("button", name="Invite a person…").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Email address").fill("vic@example.com")
    dialog.get_by_role("button", name="Send invitation").click()
    page.locator('tr[data-invitation="vic@example.com"]').wait_for()

    vic = open_browser(browser, stack, "vic@example.com")
    try:
        sign_in_with_google(vic, stack)
        vic.page.wait_for_url("**/welcome")
        screenshot(vic.page, "11-viewer-invited")
        vic.page.get_by_role("button", name="Join").click()
        vic.page.wait_for_url(lambda url: url.endswith("/"))
        vic.page.get_by_text("read-only access").wait_for()
        assert vic.page.get_by_role("button", name="New workflow").count() == 0
        vic.page.goto(f"{stack.url}/workflows/{wf['id']}")
        wait_state(vic.page, "DISCOVERY")
        vic.page.locator(".timeline li.ev").first.wait_for()
        assert vic.page.locator("[data-action]").count() == 0
        screenshot(vic.page, "12-viewer-workflow")

        # Forged: what the dashboard would never offer a viewer, sent anyway with their token.
        vic_token = vic.token()
        for method, path, body in (
            ("POST", f"/workflows/{wf['id']}/transitions", {"to": "CANCELLED", "note": "forged"}),
            ("POST", f"/workflows/{wf['id']}/rollback", {"to_version": 1, "reason": "forged"}),
            ("POST", "/workflows", {"title": "forged"}),
            ("POST", "/keys", {"name": "forged", "roles": ["OWNER"]}),
        ):
            status, problem = stack.api(method, path, key=vic_token, headers={"X-Qorch-Account": owner.account_id},
                                        body=body)
            assert (status, problem["code"]) == (403, "forbidden"), (path, problem)
        after = stack.api("GET", f"/workflows/{wf['id']}", key=token, headers=headers)[1]
        assert (after["state"], after["version"]) == ("DISCOVERY", 1)
        vic.assert_clean()
    finally:
        vic.close()


def test_the_first_page_transfers_under_300_kb_of_javascript(browser, stack):
    """A person's first visit, nothing cached: every script the sign-in page loads, in bytes on the wire."""
    context = browser.new_context()
    page = context.new_page()
    watch = Watch()
    watch.attach(page)
    scripts: list[Any] = []
    page.on("requestfinished", lambda r: scripts.append(r) if r.resource_type == "script" else None)
    page.goto(stack.url + "/")
    page.get_by_role("heading", name="Sign in to qorch").wait_for()
    page.wait_for_load_state("networkidle")
    sizes = {r.url.replace(stack.url, ""): r.sizes() for r in scripts}
    wire = sum(s["responseBodySize"] + s["responseHeadersSize"] for s in sizes.values())
    decoded = sum(r.response().body().__len__() for r in scripts)
    OUTPUT.mkdir(parents=True, exist_ok=True)
    (OUTPUT / "first-page-javascript.json").write_text(json.dumps(
        {"transferred_bytes": wire, "decoded_bytes": decoded,
         "files": {u: s["responseBodySize"] for u, s in sorted(sizes.items())}}, indent=2))
    assert "/vendor/firebase-13.2.0/firebase-auth.js" in sizes and "/app/main.js" in sizes
    assert not any(u.startswith("http") for u in sizes), f"a script came from elsewhere: {list(sizes)}"
    assert wire < 300_000, f"{wire} bytes of JavaScript on the first page"
    assert not watch.problems, "\n".join(watch.problems)
    context.close()


def test_phone_width_dark_mode_and_keyboard(owner, browser, stack):
    token = owner.token()
    status, wf = stack.api("POST", "/workflows", key=token, headers={"X-Qorch-Account": owner.account_id},
                           body={"title": "Phone-sized", "labels": {"team": "mobile"}})
    assert status == 201
    # The same person on a phone, in dark mode: the session comes along in the storage state.
    phone = owner.context.browser.new_context(
        viewport={"width": 390, "height": 844}, device_scale_factor=1, is_mobile=True, has_touch=True,
        color_scheme="dark", storage_state=owner.context.storage_state(indexed_db=True))
    page = phone.new_page()
    watch = Watch()
    watch.attach(page)
    page.set_default_timeout(WAIT)
    try:
        page.goto(stack.url + "/")
        page.locator("table.wf-table tbody tr").first.wait_for()
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"the list scrolls sideways on a phone ({width}px)"
        background = page.evaluate("getComputedStyle(document.body).backgroundColor")
        assert background == "rgb(15, 17, 23)", background
        screenshot(page, "13-phone-dark-workflows", full_page=False)
        page.goto(f"{stack.url}/workflows/{wf['id']}")
        wait_state(page, "DISCOVERY")
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        screenshot(page, "14-phone-dark-workflow")
        page.goto(stack.url + "/account")
        page.get_by_role("heading", name="API keys").wait_for()
        page.get_by_role("button", name="New API key…").wait_for()
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        screenshot(page, "15-phone-dark-account")

        # Keyboard: every control reached by Tab has a label (its accessible name) and a visible focus ring.
        page.goto(stack.url + "/")
        page.locator("table.wf-table tbody tr").first.wait_for()
        seen = []
        for _ in range(14):
            page.keyboard.press("Tab")
            focused = page.evaluate("""() => {
                const el = document.activeElement;
                const style = getComputedStyle(el);
                const id = el.id && document.querySelector(`label[for="${el.id}"]`);
                const name = (el.getAttribute('aria-label') || (id && id.textContent) || el.textContent || '').trim();
                return {tag: el.tagName, name, outline: style.outlineStyle, width: style.outlineWidth};
            }""")
            if focused["tag"] == "BODY":
                break  # past the last control: the focus left the page
            seen.append(focused)
            assert focused["name"], f"an unlabelled control: {focused}"
            assert focused["outline"] != "none" and focused["width"] != "0px", f"no visible focus: {focused}"
        assert {"INPUT", "SELECT", "A", "BUTTON"} <= {f["tag"] for f in seen}
        assert not watch.problems, "\n".join(watch.problems)
    finally:
        phone.close()


def test_the_dashboard_on_its_own_origin_calls_the_api_across_origins(browser, emulator, stack):
    """As in production, where the page is on Firebase Hosting and the API behind the gateway: two origins, and CORS
    lets the page's calls through (preflights included: they carry a token, a JSON body, an Idempotency-Key and the
    X-Qorch-Account header). Here the page comes from http://localhost:P and the API is http://127.0.0.1:P/v1;
    make run allows its own two origins."""
    from shared.adapters.firestore import Store, firestore_client
    from shared.services import accounts

    port = free_port()
    other = Stack(firestore=emulator.address, auth=stack.auth, project=f"cors-{uuid.uuid4().hex[:10]}", port=port,
                  env={"QORCH_DASHBOARD_API_BASE": f"http://127.0.0.1:{port}/v1"}).start()
    page_origin = f"http://localhost:{port}"
    cora = open_browser(browser, other, "cora@example.com")
    api_calls: list[str] = []
    cora.page.on("request", lambda r: api_calls.append(r.url) if "/v1/" in r.url else None)
    try:
        sign_in(cora, other, page_origin)
        page = cora.page
        page.wait_for_url(f"{page_origin}/welcome")
        page.get_by_label("Team or company name").fill("Cora's team")
        page.get_by_role("button", name="Create account").click()
        page.wait_for_url(f"{page_origin}/account")
        store = Store(firestore_client(other.project), timeout_seconds=5)
        accounts.set_account(store, page.locator("#who").get_attribute("data-account"), entitled=True)
        page.get_by_role("link", name="Workflows").click()
        page.get_by_role("button", name="New workflow").click()
        dialog = page.get_by_role("dialog")
        dialog.get_by_label("Title").fill("Across origins")
        dialog.get_by_role("button", name="Create workflow").click()
        page.wait_for_url(f"{page_origin}/workflows/wf_*")
        wait_state(page, "DISCOVERY")
        page.locator(".timeline li.ev").first.wait_for()
        assert any(u.startswith(f"http://127.0.0.1:{port}/v1/workflows") for u in api_calls), api_calls
        assert not any(u.startswith(f"{page_origin}/v1/") for u in api_calls), api_calls  # never same-origin
        cora.assert_clean()  # a call CORS refused would be a console error
    finally:
        cora.close()
        other.stop()
