"""The Dagster UI in a real browser, Debian's chromium driven by Playwright.

One `bridge-dagster demo --keep-running` for the module: it starts its own stack on free
ports, puts a small load through it and leaves the UI up; each test opens one page as a
user would and saves a screenshot under test-artifacts/browser/ (git-ignored).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from bridge_dagster.reducer.aggregate import HOURLY_TABLE_NAMES
from tests.integration.test_demo import DEMO_DEADLINE_S, DemoRun, clean_up, launch_demo

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"
LOAD = 20
# The UI loads its data after the page: a busy two-core machine needs more than the default 5 s.
UI_TIMEOUT_MS = 30_000
expect.set_options(timeout=UI_TIMEOUT_MS)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.integration,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason=f"no chromium at {CHROMIUM}; install it with `apt-get install -y chromium`"
        " (.ci/run does)",
    ),
    pytest.mark.timeout(DEMO_DEADLINE_S + 180),
]


@pytest.fixture(scope="module")
def demo() -> Iterator[DemoRun]:
    run = launch_demo("--requests", str(LOAD), "--keep-running")
    try:
        run.wait_for("The UI stays up")
        assert "Demo passed" in run.output(), run.output()
        yield run
        assert run.ctrl_c() == 0, run.output()
    finally:
        clean_up(run)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM))
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.set_default_timeout(UI_TIMEOUT_MS)
    page = context.new_page()
    # Dagster asks a first visitor to join its community; "Skip" closes the dialog.
    skip = page.get_by_role("button", name="Skip")
    page.add_locator_handler(skip, lambda: skip.click())
    yield page
    context.close()


def _open(page: Page, demo: DemoRun, path: str) -> None:
    # Not "networkidle": the UI polls the webserver for as long as a page is open.
    page.goto(f"{demo.url}{path}")


def _shoot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SHOTS / f"{name}.png")


def _link(demo: DemoRun, pattern: str) -> str:
    """A UI link that the demo's summary printed, as a path."""
    found = re.search(rf"{re.escape(demo.url)}(/{pattern})", demo.output())
    assert found, demo.output()
    return found.group(1)


def test_the_asset_graph_shows_the_reducer_assets(page: Page, demo: DemoRun) -> None:
    page.set_viewport_size({"width": 1400, "height": 1150})  # the whole graph in the picture
    _open(page, demo, "/locations/bridge_dagster/asset-groups/reducer")
    for name in ("workflow_events", *HOURLY_TABLE_NAMES, "reducer_bridge_state"):
        expect(page.get_by_text(name, exact=True).first).to_be_attached()
    expect(page.get_by_text("reducer_namespace_hourly", exact=True).first).to_be_visible()
    expect(page.get_by_text(re.compile(r"\d+ / \d+ Passed")).first).to_be_visible()
    expect(page.get_by_text("Loading")).to_have_count(0)
    _shoot(page, "asset-graph")


def test_the_request_sensor_is_running(page: Page, demo: DemoRun) -> None:
    _open(page, demo, _link(demo, r"locations/bridge_dagster/sensors/stamp_request_sensor"))
    expect(page.get_by_text("Turns new offsets on the request topic")).to_be_visible()
    expect(page.get_by_text("Running", exact=True).first).to_be_visible()
    _shoot(page, "sensor")


def test_a_stamp_workflow_run_page_shows_its_completed_count(page: Page, demo: DemoRun) -> None:
    _open(page, demo, _link(demo, r"runs/[0-9a-f-]{36}"))
    expect(page.get_by_text("stamp_workflow").first).to_be_visible()
    expect(page.get_by_text("Success", exact=True).first).to_be_visible()
    counts = page.get_by_text(re.compile(r"\d+ completed, \d+ failed")).first
    counts.scroll_into_view_if_needed()
    expect(counts).to_be_visible()
    _shoot(page, "run")


def test_a_materialized_partition_shows_its_metadata_and_plot(page: Page, demo: DemoRun) -> None:
    path = _link(demo, r"assets/reducer_namespace_hourly\?view=partitions&partition=[\d:-]+")
    _open(page, demo, path)
    key = path.rsplit("=", 1)[1]
    expect(page.get_by_text(key, exact=True).first).to_be_visible()
    expect(page.get_by_text("Materialized", exact=True).first).to_be_visible()
    expect(page.get_by_text("workflows_completed").first).to_be_attached()
    _shoot(page, "partition")

    _open(page, demo, "/assets/reducer_namespace_hourly?view=overview")
    page.get_by_role("button", name="Plots").click()
    plot = page.get_by_text("completed", exact=True).first
    plot.scroll_into_view_if_needed()
    expect(plot).to_be_visible()
    expect(page.locator("canvas").first).to_be_visible()
    _shoot(page, "partition-plots")


def test_an_asset_check_result_is_visible(page: Page, demo: DemoRun) -> None:
    check = "namespace_totals_match_events"
    _open(page, demo, f"/assets/reducer_namespace_hourly?view=checks&checkDetail={check}")
    expect(page.get_by_text("Succeeded").first).to_be_visible()
    expect(page.get_by_text("Each hour's workflows_completed per namespace equals")).to_be_visible()
    expect(page.get_by_text("Evaluation result")).to_be_visible()
    expect(page.get_by_text("Passed", exact=True).first).to_be_visible()
    expect(page.get_by_text("mismatches", exact=True).first).to_be_visible()
    _shoot(page, "asset-check")
