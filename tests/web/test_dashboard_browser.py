"""The dashboard in a real browser (Debian's Chromium, Playwright's sync API) against a real
control plane with two simulated agents and a running training job:

- every view (the eight in the nav, a node and a job) loads with its heading and no console
  error;
- an injected XID 79 shows up in the failure feed and on the node's page by itself, through
  the pages' own polling (Playwright's `expect` waits; no sleeps);
- a drain clicked without the operator token is refused with a readable message and changes
  nothing; with the token it drains, and the control plane agrees over gRPC.

With CORRAL_SCREENSHOTS=DIR each view is saved as DIR/<view>.png at 1440×900.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.harness import cli, wait_for
from tests.web.conftest import TOKEN, VIEWPORT, Cluster, screenshot_dir

pytest.importorskip("playwright.sync_api")
from playwright.sync_api import Page, expect

# (screenshot name, path, heading)
VIEWS = (
    ("fleet", "/", "Fleet health"),
    ("failures", "/failures", "Failure feed"),
    ("reliability", "/reliability", "Reliability"),
    ("nodes", "/nodes", "Nodes and quarantine"),
    ("queues", "/queues", "Queues"),
    ("power", "/power", "Power"),
    ("jobs", "/jobs", "Jobs"),
    ("controlplane", "/controlplane", "Control plane"),
)
LIVE_TIMEOUT_MS = 20_000


@pytest.fixture
def page(browser: Any) -> Iterator[Page]:
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.on("dialog", lambda dialog: dialog.accept())  # hx-confirm on drain and quarantine
    yield page
    context.close()


def _console_errors(page: Page) -> list[str]:
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    return errors


def _job_node(cluster: Cluster) -> tuple[str, int]:
    """A node and device the job's current attempt holds."""
    attempt = cluster.api.job(cluster.job_id).attempts[-1]
    worker = attempt.workers[0]
    return worker.node_name, int(worker.device_indices[0])


def test_every_view_loads_without_console_errors(browser: Any, cluster: Cluster, page: Page) -> None:
    errors = _console_errors(page)
    node, _ = _job_node(cluster)
    pages = [(path, heading) for _, path, heading in VIEWS]
    pages += [(f"/nodes/{node}", f"Node {node}"), (f"/jobs/{cluster.job_id}", f"Job {cluster.job_id}")]
    for path, heading in pages:
        response = page.goto(cluster.url + path)
        assert response is not None and response.status == 200, path
        expect(page.locator("h1")).to_contain_text(heading)
        expect(page.locator("header.top nav a.active")).to_have_count(1)
        # Read-only until the token is entered, and the banner says so.
        expect(page.locator("#operator .badge")).to_have_text("read-only")
    # One polling round of the last page (the job's live parts and logs) without errors.
    expect(page.locator("#job-logs pre.log").first).to_contain_text("step", timeout=LIVE_TIMEOUT_MS)
    assert errors == []


def test_injected_xid_shows_in_feed_and_on_node(browser: Any, cluster: Cluster, page: Page) -> None:
    node, device = _job_node(cluster)
    page.goto(cluster.url + "/failures")
    expect(page.locator("h1")).to_have_text("Failure feed")
    expect(page.locator("table.feed tbody")).not_to_contain_text("xid:79")

    result = cli(
        cluster.server.address, "sim", "inject", "--node", node, "--device", str(device), "--fault", "xid:79"
    )
    assert result.returncode == 0, result.stderr

    # The open page picks it up by polling: no reload.
    row = page.locator("table.feed tbody tr", has_text="xid:79")
    expect(row).to_have_count(1, timeout=LIVE_TIMEOUT_MS)
    expect(row).to_contain_text(cluster.job_id)
    expect(row).to_contain_text(node)
    expect(row).to_contain_text("XID 79")
    expect(row).to_contain_text("hardware")
    expect(row).to_contain_text(re.compile(r"recovered on attempt 2|pending"), timeout=LIVE_TIMEOUT_MS)

    # The filter form narrows the feed in place and puts the filter in the address.
    page.locator("form.filters input[name=cause]").fill("heartbeat")
    page.locator("form.filters button[type=submit]").click()
    expect(page).to_have_url(re.compile(r"cause=heartbeat"))
    expect(page.locator("table.feed tbody")).to_contain_text("no interruptions match")
    page.locator("form.filters input[name=cause]").fill("xid:79")
    page.locator("form.filters button[type=submit]").click()
    expect(page.locator("table.feed tbody tr", has_text="xid:79")).to_have_count(1)

    page.goto(f"{cluster.url}/nodes/{node}")
    expect(page.locator(f"#device-{device}")).to_contain_text("unhealthy", timeout=LIVE_TIMEOUT_MS)
    expect(page.locator("#h-failures + .table-wrap")).to_contain_text("xid:79")
    expect(page.locator("#node-live")).to_contain_text("XID 79")

    # The landing page counts it among the last hour's errors, with its meaning.
    page.goto(cluster.url + "/")
    errors = page.locator("#h-errors + .table-wrap")
    expect(errors).to_contain_text("xid:79")
    expect(errors).to_contain_text("fallen off the bus")


def test_screenshots(browser: Any, cluster: Cluster, page: Page) -> None:
    target = screenshot_dir()
    if target is None:
        pytest.skip("set CORRAL_SCREENSHOTS=DIR to save one screenshot per view")
    # After the failure above: wait until the job runs again, so the pages show a recovery.
    cluster.api.wait_state(cluster.job_id, "RUNNING", timeout=60)
    # The node page of the node the XID hit: its devices, failure and health history.
    hit = cluster.api.job(cluster.job_id).attempts[0].workers[0].node_name
    shots = [(name, path) for name, path, _ in VIEWS]
    shots += [("node", f"/nodes/{hit}"), ("job", f"/jobs/{cluster.job_id}")]
    for name, path in shots:
        page.goto(cluster.url + path)
        page.wait_for_load_state("networkidle")
        page.screenshot(path=str(target / f"{name}.png"))


def _drain_button(page: Page) -> Any:
    return page.locator("#h-actions ~ form button", has_text="Drain")


def test_drain_without_token_is_refused(browser: Any, cluster: Cluster, page: Page) -> None:
    page.goto(cluster.url + "/nodes/web-b")
    _drain_button(page).click()
    expect(page.locator("#action-msg")).to_contain_text("Refused: read-only")
    expect(page.locator("#node-status")).not_to_contain_text("draining")
    assert not cluster.api.node("web-b").draining


def test_drain_with_token_drains(browser: Any, cluster: Cluster, page: Page) -> None:
    page.goto(cluster.url + "/nodes/web-b")
    page.locator("#operator-token").fill("not-the-token")
    page.locator("#operator form.token button").click()
    expect(page.locator("#operator-msg")).to_contain_text("Wrong operator token")

    page.locator("#operator-token").fill(TOKEN)
    page.locator("#operator form.token button").click()
    expect(page.locator("#operator .badge")).to_have_text("operator")  # the page reloaded unlocked

    page.locator("#reason").fill("browser test")
    _drain_button(page).click()
    expect(page.locator("#action-msg")).to_contain_text("web-b draining")
    expect(page.locator("#node-status")).to_contain_text("draining")
    wait_for(lambda: cluster.api.node("web-b").draining, 10, what="web-b draining over gRPC")
    assert cluster.api.node("web-b").cordon_reason == "browser test"
