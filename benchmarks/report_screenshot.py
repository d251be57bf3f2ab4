"""Render a ``bench report`` page in headless Chromium and save a screenshot (a manual check
that the page, its tables and its images display; not part of the test suite).

Chromium is a Debian package, installed as root:

    apt-get update && apt-get install -y chromium

Then:

    .venv/bin/bench report --results-dir results --out /tmp/report
    .venv/bin/python benchmarks/report_screenshot.py /tmp/report/index.html /tmp/report.png

The page is loaded from disk (``file://``) with networking off, so the screenshot also shows
that the folder needs nothing from the network.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_browser() -> str:
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    sys.exit("error: no Chromium found on PATH; install it with `apt-get update && apt-get install -y chromium`")


def screenshot(page: Path, output: Path, width: int, height: int, timeout: float) -> None:
    browser = find_browser()
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="report-screenshot-") as profile:
        command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                   f"--user-data-dir={profile}", "--proxy-server=127.0.0.1:9",  # no network: offline check
                   f"--window-size={width},{height}", f"--screenshot={output}", page.resolve().as_uri()]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0 or not output.is_file():
        sys.exit(f"error: {browser} exited with {result.returncode}: {result.stderr.strip()[-500:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("page", type=Path, help="the report's index.html")
    parser.add_argument("output", type=Path, help="PNG to write")
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=4000, help="height of the captured page, pixels")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the browser")
    arguments = parser.parse_args()
    if not arguments.page.is_file():
        sys.exit(f"error: {arguments.page}: page not found")
    screenshot(arguments.page, arguments.output, arguments.width, arguments.height, arguments.timeout)
    print(arguments.output)


if __name__ == "__main__":
    main()
