"""The demo page in a real browser: headless Chromium (Debian's) driven by Playwright.

Type a source line, get the translation, the n-best list and the attention heatmap shown,
take a screenshot. Every request the page makes goes to the server itself, and the page
logs no error (a Content-Security-Policy violation would be one). Skipped with the reason
where Chromium or Playwright is missing; under CI (``CI=true``) that is a failure.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from serve_support import CHROMIUM, missing_or_skip, running_server

missing_or_skip(("fastapi", "uvicorn", "playwright"), (CHROMIUM,), what="the demo page's browser test")

from playwright.sync_api import sync_playwright  # noqa: E402

from seq2seq.translation.translator import Translator  # noqa: E402

pytestmark = pytest.mark.smoke
SOURCE = "Sep 27 1994"


@pytest.fixture(scope="module")
def attention_checkpoint(tiny_attention_checkpoint: Path) -> Path:
    return tiny_attention_checkpoint


@pytest.fixture(scope="module")
def page_url(attention_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_server(attention_checkpoint, tmp_path_factory.mktemp("browser") / "server.log") as (url, _):
        yield url


def test_type_a_line_see_translation_nbest_and_heatmap(page_url: str, attention_checkpoint: Path,
                                                       tmp_path: Path) -> None:
    translator = Translator.from_checkpoint(attention_checkpoint)
    beam = translator.decode.beam_size
    want = translator.translate([SOURCE], beam_size=beam, nbest=3)[0]
    alignment = translator.alignment(SOURCE, beam_size=beam)
    requests: list[str] = []
    problems: list[str] = []
    # root (CI, containers) cannot use Chromium's sandbox; a container's /dev/shm may be tiny
    args = ["--disable-dev-shm-usage", *(["--no-sandbox"] if os.geteuid() == 0 else [])]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 900})
            page.on("request", lambda r: requests.append(r.url))
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.goto(page_url)
            page.wait_for_function("document.getElementById('model').textContent.includes('weights')")
            assert page.input_value("#beam") == str(beam)
            page.fill("#source", SOURCE)
            page.click("#go")
            page.wait_for_selector("#result:not([hidden])", timeout=30_000)
            assert page.inner_text("#translation") == want[0].text
            rows = page.locator("#nbest-list tbody tr")
            assert rows.count() == len(want)
            for i, hyp in enumerate(want):
                assert rows.nth(i).locator("td").all_inner_texts() == [str(i + 1), hyp.text, f"{hyp.score:.4f}"]
            assert page.is_visible("#heatmap")
            assert page.locator("#heatmap tbody tr").count() == len(alignment.target)
            assert page.locator("#heatmap tbody td").count() == len(alignment.target) * len(alignment.source)
            shot = tmp_path / "demo.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            assert problems == []  # (the bad request below logs its 422)
            # a bad request shows the server's one-line reason (past the form's own check of the beam)
            page.evaluate("document.getElementById('form').noValidate = true")
            page.fill("#beam", "99")
            page.click("#go")
            page.wait_for_selector("#error:not([hidden])")
            assert page.inner_text("#error") == "beam: must be in [1, 16], got 99"
            assert not page.is_visible("#result")  # not the last line's translation under this error
            # an answer that is not JSON (a proxy's error page): its status, not a parse error
            page.route("**/v1/translate", lambda route: route.fulfill(
                status=502, content_type="text/html", body="<html><body>Bad Gateway</body></html>"))
            page.fill("#beam", "2")
            page.click("#go")
            page.wait_for_selector("#error:has-text('HTTP 502')", timeout=10_000)
            assert page.inner_text("#error") in ("HTTP 502", "HTTP 502 Bad Gateway")
        finally:
            browser.close()
    assert requests and all(url.startswith(page_url + "/") for url in requests), requests
