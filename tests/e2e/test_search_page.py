"""The search page in headless Chromium on the local stack: type, see results, "more like this",
and the clicks it reports.

Debian's ``chromium`` and ``chromium-driver`` (``make e2e-deps`` installs them), driven by
Selenium. ``IMGSEARCH_UPDATE_SCREENSHOT=1`` also saves ``docs/search-page.png`` for the README.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from imgsearch_devkit.demo.scenes import describes
from stack_support import Seeded

from imgsearch.usage.reader import UsageReader
from imgsearch.usage.records import FeedbackRecord

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support import expected_conditions as ec  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "search-page.png"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
        reason="needs Debian's chromium and chromium-driver (make e2e-deps)",
    ),
]


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    # A closed network: no background calls home, no QUIC, a fresh profile.
    for flag in (
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--window-size=1280,1000",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(
        options=options, service=webdriver.ChromeService(executable_path=str(CHROMEDRIVER))
    )
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def result_keys(driver: webdriver.Chrome) -> list[str]:
    # One script call: the grid may be re-rendered between two element lookups.
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('#results .result'), r => r.dataset.key)"
    )


def open_page(browser: webdriver.Chrome, seeded: Seeded, path: str = "/") -> WebDriverWait:
    browser.get(seeded.target.api_url + path)
    return WebDriverWait(browser, 30)


def test_type_a_query_see_results_click_more_like_this(
    seeded_stack: Seeded, browser: webdriver.Chrome
) -> None:
    wait = open_page(browser, seeded_stack)
    # The footer fills in from GET /version: model and serving index.
    wait.until(lambda d: d.find_element(By.ID, "index-version").text.strip() not in ("", "…"))
    assert browser.find_element(By.ID, "upload").get_attribute("type") == "file"

    box = browser.find_element(By.ID, "q")
    box.send_keys("yellow star", Keys.ENTER)
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#results .result")))
    keys = seeded_stack.known(result_keys(browser))
    assert any(describes(seeded_stack.scenes[key], "yellow star") for key in keys[:3]), keys
    top = keys[0]  # the first result that shows a scene, for "more like this"
    first = browser.find_element(By.CSS_SELECTOR, f'#results .result[data-key="{top}"]')
    assert float(first.find_element(By.CSS_SELECTOR, ".score").text) > 0
    image = first.find_element(By.TAG_NAME, "img")
    wait.until(lambda d: d.execute_script("return arguments[0].naturalWidth", image) > 0)

    if os.environ.get("IMGSEARCH_UPDATE_SCREENSHOT") == "1":
        wait.until(
            lambda d: all(
                d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", i)
                for i in d.find_elements(By.CSS_SELECTOR, "#results img")
            )
        )
        SCREENSHOT.parent.mkdir(exist_ok=True)
        assert browser.save_screenshot(str(SCREENSHOT))

    before = result_keys(browser)
    first.find_element(By.CSS_SELECTOR, ".similar").click()
    wait.until(lambda d: "images like" in d.find_element(By.ID, "status").text)
    wait.until(lambda d: result_keys(d) and result_keys(d) != before)
    similar = result_keys(browser)
    assert top not in similar, "more like this leaves the image itself out"
    similar = seeded_stack.known(similar)
    kind = seeded_stack.scenes[top].kind
    assert any(set(seeded_stack.scenes[key].kind) & set(kind) for key in similar[:3]), (
        "a top-3 similar image shares the colour or the shape"
    )


def test_searches_are_shareable_and_the_first_view_offers_examples(
    seeded_stack: Seeded, browser: webdriver.Chrome
) -> None:
    # A shared link runs its search on load.
    wait = open_page(browser, seeded_stack, "/?q=red+circle")
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#results .result")))
    assert browser.find_element(By.ID, "q").get_attribute("value") == "red circle"
    known = seeded_stack.known(result_keys(browser))
    assert any(describes(seeded_stack.scenes[key], "red circle") for key in known[:3]), known
    # Whole images, not crops.
    image = browser.find_element(By.CSS_SELECTOR, "#results img")
    assert browser.execute_script("return getComputedStyle(arguments[0]).objectFit", image) == (
        "contain"
    )

    open_page(browser, seeded_stack)
    examples = browser.find_elements(By.CSS_SELECTOR, "#examples .example")
    assert examples, "the first view shows example queries"
    examples[0].click()
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#results .result")))
    assert "q=" in browser.current_url  # the search is in the address bar
    first = browser.find_element(By.CSS_SELECTOR, "#results .result")
    first.find_element(By.CSS_SELECTOR, ".similar").click()
    wait.until(lambda d: "similar=" in d.current_url)
    browser.back()
    wait.until(lambda d: "q=" in d.current_url and "similar=" not in d.current_url)


def test_the_first_view_shows_recent_images_under_the_examples(
    seeded_stack: Seeded, browser: webdriver.Chrome
) -> None:
    wait = open_page(browser, seeded_stack)
    wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, "#recent .result")))
    cards = browser.find_elements(By.CSS_SELECTOR, "#recent .result")
    keys = [card.get_attribute("data-key") for card in cards]
    assert 0 < len(keys) <= 12 and len(set(keys)) == len(keys)
    # Other tests upload images of their own: the seeded ones are in the stack's first index.
    assert set(keys) & set(seeded_stack.scenes), keys
    assert not browser.find_elements(By.CSS_SELECTOR, "#recent .score"), "no score: no query"
    image = cards[0].find_element(By.TAG_NAME, "img")
    wait.until(lambda d: d.execute_script("return arguments[0].naturalWidth", image) > 0)
    assert browser.execute_script("return getComputedStyle(arguments[0]).objectFit", image) == (
        "contain"
    )
    examples = browser.find_element(By.ID, "examples")
    recent = browser.find_element(By.ID, "recent")
    assert recent.location["y"] >= examples.location["y"] + examples.size["height"]
    # A search replaces the first view; going back to it shows the recent images again.
    browser.find_element(By.CSS_SELECTOR, "#examples .example").click()
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#results .result")))
    assert not recent.is_displayed()
    browser.back()
    wait.until(lambda d: d.find_element(By.ID, "recent").is_displayed())
    assert not result_keys(browser)


def test_a_bearer_token_is_kept_for_the_tab_and_sent(
    seeded_stack: Seeded, browser: webdriver.Chrome
) -> None:
    wait = open_page(browser, seeded_stack)
    browser.find_element(By.CSS_SELECTOR, "#auth summary").click()
    token = browser.find_element(By.ID, "token")
    token.send_keys("a-token", Keys.TAB)  # change event
    assert browser.execute_script("return sessionStorage.getItem('imgsearch-token')") == "a-token"
    browser.refresh()
    assert browser.find_element(By.ID, "token").get_attribute("value") == "a-token"
    # Every API call carries it (the local stack's API itself takes no auth).
    browser.execute_script(
        "window.sent = []; const real = window.fetch;"
        "window.fetch = (url, options) => {"
        "  window.sent.push((options && options.headers || {}).Authorization);"
        "  return real(url, options); };"
    )
    browser.find_element(By.CSS_SELECTOR, "#examples .example").click()
    wait.until(lambda d: d.execute_script("return window.sent.length"))
    assert browser.execute_script("return window.sent") == ["Bearer a-token"]
    browser.execute_script("sessionStorage.clear()")


def test_opening_a_result_or_asking_for_more_like_it_sends_a_click(
    seeded_stack: Seeded, browser: webdriver.Chrome
) -> None:
    wait = open_page(browser, seeded_stack)
    started = datetime.now(UTC)
    box = browser.find_element(By.ID, "q")
    box.send_keys("green cross", Keys.ENTER)
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#results .result")))
    cards = browser.find_elements(By.CSS_SELECTOR, "#results .result")
    second = cards[1].get_attribute("data-key")
    # Opening an image: its link's click (the new tab it would open is not the point here).
    browser.execute_script(
        "const a = arguments[0]; a.addEventListener('click', e => e.preventDefault()); a.click()",
        cards[1].find_element(By.CSS_SELECTOR, "a[data-testid=open]"),
    )
    first = cards[0].get_attribute("data-key")
    cards[0].find_element(By.CSS_SELECTOR, ".similar").click()
    wait.until(lambda d: "images like" in d.find_element(By.ID, "status").text)

    stack = seeded_stack.stack
    clicks: list[tuple[str, str, int | None]] = []

    def arrived(_: object) -> bool:
        stack.usage_stream.flush()
        reader = UsageReader(seeded_stack.client("s3"), seeded_stack.target.bucket, "usage/")
        clicks[:] = [
            (r.key, r.event, r.rank)
            for r in reader.records(started, datetime.now(UTC) + timedelta(seconds=1))
            if isinstance(r, FeedbackRecord)
        ]
        return len(clicks) >= 2

    WebDriverWait(browser, 30).until(arrived)
    assert sorted(clicks, key=lambda c: c[2] or 0) == [(first, "click", 1), (second, "click", 2)]
