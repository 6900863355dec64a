"""The page in a real browser: headless Chromium (Debian's `chromium` and `chromium-driver`)
driven by selenium, against a real five-node herd. It sees five nodes and six links, a
node killed with SIGKILL drawn down and then back (the supervisor restarts it), the log
saying so, and a propagation probe drawn on the graph; a screenshot is kept in the test's
temp folder. Skipped, with the reason, only where no Chromium can be had."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.herdctl_cli import herd_folder, herdctl
from tests.support import DEADLINE, write_topology

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
from selenium.common.exceptions import WebDriverException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def find_chromium() -> tuple[str, str]:
    """The browser and its driver, or a skip naming what is missing."""
    binary = next((found for name in BROWSERS if (found := shutil.which(name))), None)
    driver = shutil.which("chromedriver")
    if binary is None or driver is None:
        wanted = (("chromium", binary), ("chromedriver", driver))
        missing = " or ".join(what for what, path in wanted if path is None)
        pytest.skip(f"no {missing} on PATH (Debian: apt install chromium chromium-driver)")
    return binary, driver


@pytest.fixture
def driver() -> Iterator[Any]:
    """Headless Chromium at 1280x800; always quit."""
    binary, path = find_chromium()
    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.add_argument("--window-size=1280,800")
    options.binary_location = binary
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        browser = webdriver.Chrome(options=options, service=Service(path))
    except WebDriverException as e:
        pytest.skip(f"Chromium did not start: {e.msg or e}".splitlines()[0])
    try:
        yield browser
    finally:
        browser.quit()


@pytest.fixture
def address() -> Iterator[str]:
    """A real five-node herd with its dashboard on a free port: the page's address."""
    with herd_folder() as folder:
        config = write_topology(folder, extra={"dashboard": {"host": "127.0.0.1", "port": 0}})
        up = herdctl("up", config=config)
        assert up.returncode == 0, up.stdout + up.stderr
        shown = herdctl("dashboard", config=config)
        assert shown.returncode == 0, shown.stderr
        yield shown.stdout.strip()


def attribute(browser: Any, selector: str, name: str) -> str | None:
    found = browser.find_elements(By.CSS_SELECTOR, selector)
    return found[0].get_attribute(name) if found else None


def test_the_page_draws_the_herd_live(driver: Any, address: str, tmp_path: Path) -> None:
    wait = WebDriverWait(driver, DEADLINE, poll_frequency=0.05)
    driver.get(address)
    wait.until(lambda b: len(b.find_elements(By.CSS_SELECTOR, "#graph g.node")) == 5)
    assert len(driver.find_elements(By.CSS_SELECTOR, "#graph g.link")) == 6
    node_not_up = "#graph g.node:not([data-health='up'])"
    wait.until(lambda b: not b.find_elements(By.CSS_SELECTOR, node_not_up))
    link_not_up = "#graph g.link:not([data-state='up'])"
    wait.until(lambda b: not b.find_elements(By.CSS_SELECTOR, link_not_up))
    welsh = "#graph g.node[data-node='Welsh']"
    pid = int(attribute(driver, welsh, "data-pid") or 0)
    assert pid > 0 and driver.find_element(By.ID, "live").text == "live"

    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    wait.until(lambda b: attribute(b, welsh, "data-health") == "down")
    assert driver.find_element(By.CSS_SELECTOR, welsh + " text.state").text in ("EXITED", "BACKOFF")
    its_link = "#graph g.link[data-link='Holiday~Welsh']"
    wait.until(lambda b: attribute(b, its_link, "data-state") != "up")
    wait.until(
        lambda b: (
            attribute(b, welsh, "data-health") == "up"
            and attribute(b, welsh, "data-pid") not in (None, "", str(pid))
        )
    )
    wait.until(lambda b: "EXITED node=Welsh" in b.find_element(By.ID, "log").text)
    row = driver.find_element(By.CSS_SELECTOR, "#nodes tr[data-node='Welsh']")
    assert row.find_elements(By.TAG_NAME, "td")[4].text == "1"  # one restart, counted

    driver.find_element(By.ID, "probe-run").click()  # from Welsh, the default
    wait.until(lambda b: "every node had it" in b.find_element(By.ID, "probe-result").text)
    hands = driver.find_element(By.CSS_SELECTOR, "#graph g.node[data-node='Hands'] text.probe")
    assert hands.text.startswith("3 hops") and hands.text.endswith(" ms")

    shot = tmp_path / "dashboard.png"
    assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    severe = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
    assert severe == []  # no script error, no refused resource (the CSP holds)
