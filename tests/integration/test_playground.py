"""The playground page in a real browser (headless Debian Chromium driven by Playwright)
against a real BentoML server: what a person sees when they rank, compare and when the
online store is down. Screenshots are left in ``.state/screenshots/`` (the paths are
printed): pytest's tmp folders are pruned after three sessions, and a person reviewing the
page should find them after the run.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest
from serving_fixtures import (
    RunningServer,
    ServingState,
    copy_state,
    online_store_unreadable,
    serving_state,  # noqa: F401 - a fixture
    wait_for,
)

from models.registry import Registry

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
# Debian's Chromium as root, on a machine with no network: no sandbox, no GPU, and none of
# the background connections that would be refused.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PROJECTOR = {"width": 1600, "height": 1000}  # a projector's 16:10
TIMEOUT_MS = 30_000
SCREENSHOTS = Path(__file__).resolve().parents[2] / ".state" / "screenshots"


@pytest.fixture(scope="module")
def server(serving_state: ServingState, tmp_path_factory) -> RunningServer:  # noqa: F811
    """A server of its own (the store is broken mid-test), with v2 as the challenger."""
    root = tmp_path_factory.mktemp("playground")
    settings = copy_state(serving_state, root / "state")
    Registry(settings).set_alias("challenger", serving_state.versions[1])
    running = RunningServer(settings.root, root / "server.log").wait_live()
    wait_for(lambda: httpx.get(f"{running.url}/readyz", timeout=5).status_code == 200, 60)
    running.settings = settings
    yield running
    running.stop()


@pytest.fixture(scope="module")
def page(server: RunningServer):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        pytest.skip(f"no Chromium at {CHROMIUM}: `make setup` installs Debian's chromium")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport=PROJECTOR)
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(f"{server.url}/playground/")
        page.wait_for_selector("#user option", state="attached")
        yield page
        browser.close()


def _rank(page) -> list[str]:
    page.click("[data-testid=rank]")
    page.wait_for_selector("[data-testid=ranked-item]")
    return page.locator("[data-testid=ranked-item]").all_inner_texts()


def _screenshot(page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"playground-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    return path


def test_the_page_ranks_the_candidates_with_the_champion(page, serving_state):  # noqa: F811
    page.select_option("#user", index=0)  # a known user of the page's sample
    page.select_option("#device", "desktop")
    page.select_option("#query_category", "books")
    ranked = _rank(page)
    candidates = page.evaluate("candidates().length")
    assert len(ranked) == candidates > 1
    assert ranked[0].startswith("1")  # positions, best first
    served_by = page.inner_text("[data-testid=served_by]")
    assert served_by == "served_by: model"
    assert f"v{serving_state.versions[0]}" in page.inner_text("[data-testid=model_version]")
    assert "no experiment running" in page.inner_text("[data-testid=arm]")
    assert page.locator("[data-testid=fallback]").count() == 0
    assert "1 new item(s)" in page.inner_text("[data-testid=cold_items]")
    _screenshot(page, "rank")


def test_a_new_user_is_shown_as_a_cold_start(page):
    new_user = page.locator("#user option").last.get_attribute("value")
    page.select_option("#user", new_user)
    _rank(page)
    assert "new user" in page.inner_text("[data-testid=cold_start]")


def test_champion_and_challenger_side_by_side(page, serving_state):  # noqa: F811
    page.select_option("#user", index=1)
    page.select_option("#against", "alias:challenger")
    page.click("[data-testid=compare]")
    page.wait_for_function("document.querySelectorAll('[data-testid=column]').length === 2")
    columns = page.locator("[data-testid=column]")
    champion, challenger = columns.nth(0).inner_text(), columns.nth(1).inner_text()
    assert champion.startswith("champion") and f"v{serving_state.versions[0]}" in champion
    assert challenger.startswith("challenger") and f"v{serving_state.versions[1]}" in challenger
    assert "not logged" in page.inner_text("#message").lower()
    _screenshot(page, "compare")


def test_a_fallback_is_shown_when_the_online_store_is_down(page, server):
    with online_store_unreadable(server.settings):
        _rank(page)
        page.wait_for_selector("[data-testid=fallback]")
        banner = page.inner_text("[data-testid=fallback]")
        served_by = page.inner_text("[data-testid=served_by]")
        _screenshot(page, "fallback")
    assert "online store unavailable" in banner and "popularity" in banner
    assert served_by == "served_by: fallback:online_store_unavailable"
    assert "unknown" in page.inner_text("[data-testid=cold_start]")  # the store was not read
