"""The monitor page in a real headless browser (Debian's Chromium driven by selenium) against the real stack.

The monitor runs as its own process (`python -m ops.monitor`, as the launcher
starts it) pointed at a private corner of the shared stack (tests/ops/conftest.py),
on a free port. The test reads what a person would see: services up, lag rows,
a dead letter with its reason and decoded payload, a subject with its versions
and their diff, the job's state line, charts drawn by the locally served plotly,
and no request leaving the monitor's own address. A screenshot is kept; its
path is printed (`pytest -s` shows it). `make browser` installs Chromium and
its driver when missing (`make test` runs it first).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from core.settings import REPO_ROOT
from tests.ops.conftest import DECODE_REASON, TRANSFORM_REASON
from tests.ports import closed_port

pytestmark = [pytest.mark.integration, pytest.mark.browser]

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
WAIT = 90  # seconds for the page to show a value: the machine is shared and slow


@pytest.fixture
def monitor_url(corner, tmp_path):
    """`python -m ops.monitor` on a free port against the corner; stopped by its pid afterwards."""
    settings = corner["settings"]
    port = closed_port()
    env = {**os.environ, "USERS_TOPIC": settings.users_topic, "DEAD_LETTER_TOPIC": settings.dead_letter_topic,
           "SPARK_CONSUMER_GROUP": settings.spark_consumer_group, "STACK_HOME": str(settings.stack_home),
           "SPARK_CHECKPOINT_DIR": settings.spark_checkpoint_dir, "MONITOR_SAMPLE_SECONDS": "2",
           "MONITOR_URL": f"http://127.0.0.1:{port}"}
    log = (tmp_path / "monitor.log").open("wb")
    process = subprocess.Popen([sys.executable, "-m", "ops.monitor"], env=env, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + WAIT
        while True:
            assert process.poll() is None, f"the monitor exited with {process.returncode}: {(tmp_path / 'monitor.log').read_text()}"
            try:
                if requests.get(f"{url}/healthz", timeout=2).json().get("sampled"):
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, f"no first sample after {WAIT}s: {(tmp_path / 'monitor.log').read_text()}"
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


@pytest.fixture
def browser(tmp_path):
    """Headless Chromium with a fresh profile and nothing that phones home."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not shutil.which(path)]
    if missing:
        pytest.fail(f"{', '.join(missing)} missing: run `make browser` (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={tmp_path / 'chromium-profile'}", "--window-size=1400,2600"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(driver, description: str, condition):
    """Poll `condition(driver)` until it is truthy; fail naming what never appeared."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, WAIT, poll_frequency=0.5, ignored_exceptions=(WebDriverException,)).until(condition)
    except Exception as exc:  # TimeoutException: say what was awaited, with the page as it was
        body = driver.find_element("tag name", "body").text[:3000]
        raise AssertionError(f"the page never showed {description}; it showed:\n{body}") from exc


def texts(driver, selector: str) -> list[str]:
    return [element.text for element in driver.find_elements("css selector", selector)]


def test_the_page_shows_the_pipeline(browser, monitor_url, corner):
    settings = corner["settings"]
    browser.get(monitor_url + "/")

    wait_for(browser, "kafka up", lambda d: texts(d, '#services tr[data-service="kafka"] td.state') == ["up"])
    states = {row.get_attribute("data-service"): row.find_element("css selector", "td.state").text
              for row in browser.find_elements("css selector", "#services tbody tr")}
    assert {name: states[name] for name in ("kafka", "registry", "cassandra", "datasource", "monitor")} == dict.fromkeys(
        ("kafka", "registry", "cassandra", "datasource", "monitor"), "up")

    wait_for(browser, "three lag rows", lambda d: texts(d, "#lag tbody td.lag") == ["2", "0", "4"])
    wait_for(browser, "the job's state line", lambda d: d.find_element("id", "state-line").text.startswith("waiting for cassandra since "))

    wait_for(browser, "the dead letters' reasons", lambda d: {TRANSFORM_REASON, DECODE_REASON} <= set(texts(d, "#dead-letters td.reason")))
    row = next(r for r in browser.find_elements("css selector", "#dead-letters tr.letter")
               if r.find_element("css selector", "td.reason").text == DECODE_REASON)
    assert row.get_attribute("data-position") == f"{settings.dead_letter_topic}/1/{0}"
    assert row.find_element("css selector", "td.schema-id").text == str(corner["ids"][0])
    row.find_element("css selector", "td.payload-toggle").click()
    payload = row.find_element("xpath", "following-sibling::tr[1]//pre").text
    assert '"email": "x@y.z"' in payload

    subject = corner["subject"]
    wait_for(browser, f"subject {subject}", lambda d: texts(d, f'#subjects tr[data-subject="{subject}"] td.versions') == ["1, 2"])
    from selenium.webdriver.support.ui import Select

    Select(browser.find_element("id", "diff-subject")).select_by_value(subject)
    Select(browser.find_element("id", "diff-old")).select_by_value("1")
    Select(browser.find_element("id", "diff-new")).select_by_value("2")
    browser.find_element("id", "diff-go").click()
    wait_for(browser, "the diff", lambda d: texts(d, '#diff tr[data-field="nickname"] td.change') == ["added"])
    assert browser.find_element("id", "diff-verdict").text.startswith("v1 → v2: BACKWARD compatible")

    wait_for(browser, "the lag chart drawn by plotly", lambda d: d.find_elements("css selector", "#chart-lag .main-svg"))
    resources = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert resources and all(name.startswith(monitor_url) for name in resources), resources

    shot = Path(os.environ.get("MONITOR_SCREENSHOT_DIR", REPO_ROOT / "bench" / "results")) / "monitor.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(shot))
    print(f"\nmonitor screenshot: {shot}")
