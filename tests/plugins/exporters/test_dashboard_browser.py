"""Headless Chromium opens the dashboard of a running devnet observer, waits for the metagraph table and
the plots, and saves a screenshot that must not be blank."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

TNODE = [sys.executable, "-c", "from tnode.cli import main; main()"]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
SCREENSHOT = os.environ.get("TNODE_DASHBOARD_SCREENSHOT")  # docs/ keeps one made this way


def start_devnet(run_dir: Path) -> tuple[subprocess.Popen[str], str]:
    cmd = [*TNODE, "devnet", "--miners", "2", "--validators", "1", "--models", "uniform,garbage",
           "--registration", "burn", "--block-time", "0.5", "--tempo", "4", "--no-live", "--run-dir", str(run_dir)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "COLUMNS": "200"}, start_new_session=True)
    assert proc.stdout is not None
    deadline = time.monotonic() + 180
    seen: list[str] = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        match = re.search(r"dashboard: (http://\S+/)", line)
        if match:
            return proc, match.group(1)
    stop(proc)
    pytest.fail("the devnet printed no dashboard URL:\n" + "".join(seen[-40:]))


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)  # the devnet stops its nodes on SIGTERM
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def browser(profile: str):  # type: ignore[no-untyped-def]
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.fail("chromium and chromium-driver are needed (bash .ci/install installs them)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", f"--user-data-dir={profile}", "--window-size=1400,1000"):
        opts.add_argument(arg)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)


def not_blank(png: Path) -> tuple[int, float]:
    """(distinct colours, share of pixels unlike the most common colour) of a screenshot."""
    from PIL import Image

    with Image.open(png) as img:
        rgb = img.convert("RGB").resize((350, 250))
        colours = rgb.getcolors(maxcolors=350 * 250) or []
    colours.sort(reverse=True)
    total = sum(c for c, _ in colours)
    return len(colours), 1 - colours[0][0] / total


def test_dashboard_of_a_devnet_observer_shows_metagraph_and_plots(tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    proc, url = start_devnet(tmp_path / "run")
    profile = tempfile.mkdtemp(prefix="tnode-chromium-")
    driver = None
    try:
        driver = browser(profile)
        driver.get(url)
        wait = WebDriverWait(driver, 150, poll_frequency=0.5)
        # Authority-less metagraph: 1 validator + 2 miners registered; then epochs draw the plots.
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#metagraph tbody tr[data-uid]")) >= 3)
        wait.until(lambda d: int(d.find_element(By.TAG_NAME, "body").get_attribute("data-epochs") or 0) >= 2)
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#plot-incentive path.series")
                   and d.find_elements(By.CSS_SELECTOR, "#plot-emission path.series")
                   and d.find_elements(By.CSS_SELECTOR, "#plot-height path.series"))
        rows = driver.find_elements(By.CSS_SELECTOR, "#metagraph tbody tr[data-uid]")
        assert int(driver.find_element(By.ID, "block").text) > 0
        shot = tmp_path / "dashboard.png"
        assert driver.save_screenshot(str(shot))
        colours, unlike = not_blank(shot)
        assert colours > 20 and unlike > 0.05, (colours, unlike)
        assert len(rows) >= 3
        if SCREENSHOT:
            shutil.copyfile(shot, SCREENSHOT)
    finally:
        if driver is not None:
            driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
        stop(proc)
    leftover = subprocess.run(["pgrep", "-f", str(tmp_path / "run")], capture_output=True, text=True).stdout
    assert not leftover.strip(), leftover
