"""The screenshot of the demo page in docs/serving.md: serve a checkpoint on a free loopback port, type
a sentence into the page in headless Chromium (Debian's, driven by Playwright), save a PNG.

    python docs/bench/serve_screenshot.py --checkpoint runs/dates_luong/best \\
        --text "Tuesday, September 27, 1994" --out docs/img/serve_demo.png
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_load import Server  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--text", required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--chromium", default="/usr/bin/chromium")
    args = p.parse_args()
    server = Server(args.checkpoint)
    try:
        with sync_playwright() as pw:
            flags = ["--disable-dev-shm-usage", *(["--no-sandbox"] if os.geteuid() == 0 else [])]
            browser = pw.chromium.launch(executable_path=args.chromium, headless=True, args=flags)
            page = browser.new_page(viewport={"width": 900, "height": 700}, device_scale_factor=1)
            page.goto(server.url)
            page.wait_for_function("document.getElementById('model').textContent.includes('weights')")
            page.fill("#source", args.text)
            page.click("#go")
            page.wait_for_selector("#result:not([hidden])", timeout=60_000)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(args.out), full_page=True)
            print(f"wrote {args.out}: {page.inner_text('#translation')!r}")
            browser.close()
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
