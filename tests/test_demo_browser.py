"""End to end: the demo served on localhost, driven by headless Chromium through Playwright.

Needs Debian's ``chromium`` (or ``$FIP_CHROMIUM``) and the ``playwright`` package; skipped without them unless
``FIP_REQUIRE_BROWSER=1`` (set by ``.ci/run``, so CI fails instead of skipping). Saves a screenshot to
``$FIP_ARTIFACTS`` (default ``runs/artifacts``).
"""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import pytest
from conftest import smooth_image

from fip.imaging import encode_png, read_image_file
from fip.registry import get_operator

pytestmark = pytest.mark.slow


def _chromium() -> str:
    path = os.environ.get("FIP_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        path = None
    if path is None:
        message = "needs Debian's chromium and the playwright package (pip install -e '.[test]')"
        if os.environ.get("FIP_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served_demo(tmp_path):
    from fip_demo.app import build_app

    example = tmp_path / "example.png"
    example.write_bytes(encode_png(smooth_image(90, 120, seed=4), bits=8))
    app = build_app(examples={"example": example}, preview_megapixels=0.02)
    port = _free_port()
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        app.close()


def _choose(page, elem_id: str, text: str) -> None:
    """Pick ``text`` in a Gradio dropdown the way a person does: click, type, pick the option."""
    box = page.locator(f"#{elem_id} input")
    box.click()
    box.fill(text)
    page.get_by_role("option", name=text).first.click()


def _status_contains(page, text: str, timeout: float = 60_000) -> str:
    page.wait_for_function(
        "text => document.querySelector('#status').innerText.includes(text)", arg=text, timeout=timeout
    )
    return page.locator("#status").inner_text()


def test_upload_run_compare_and_a_bad_upload_in_chromium(served_demo, tmp_path):
    from playwright.sync_api import sync_playwright

    chromium = _chromium()
    photo = tmp_path / "holiday.png"
    photo.write_bytes(encode_png(smooth_image(101, 143, seed=5), bits=8))
    not_an_image = tmp_path / "notes.jpg"
    not_an_image.write_text("these are notes, not a photo")
    artifacts = Path(os.environ.get("FIP_ARTIFACTS", "runs/artifacts"))
    artifacts.mkdir(parents=True, exist_ok=True)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1500})
            page.goto(served_demo)
            page.locator("#upload input[type=file]").set_input_files(str(photo))
            assert "holiday.png" in _status_contains(page, "Loaded")

            _choose(page, "operator", "smooth.rof")
            weight = get_operator("smooth.rof").param("weight")
            page.get_by_text(f"weight — {weight.description}").wait_for()  # its parameters have arrived
            page.locator("#compare input").check()
            page.locator("#run").click()
            status = _status_contains(page, "Reference:")
            assert "Approximation (auto → " in status and "inf dB" not in status
            assert (
                "speed-up" in status and "dB PSNR" in status
            ) or "the approximation is the reference itself" in status
            page.locator("#result img").wait_for(state="visible")
            page.locator("#reference img").wait_for(state="visible")
            assert page.locator("#result img").get_attribute("src")
            page.screenshot(path=str(artifacts / "demo-e2e.png"), full_page=True)

            # Auto's preference: speed runs another choice, and a floor nothing reaches runs the reference, in words.
            assert "prefer balanced)" in status and "Auto's choices: quality → " in status
            page.locator("#prefer").get_by_text("speed", exact=True).click()
            page.locator("#run").click()
            status = _status_contains(page, "prefer speed)")
            assert "speed → " in status
            page.locator("#min-psnr input").fill("99")
            page.locator("#run").click()
            status = _status_contains(page, "prefer speed, at least 99 dB)")
            assert "Auto runs the reference itself: no approximator reaches 99 dB" in status
            assert "the approximation is the reference itself: exact" in status and "inf dB" not in status
            page.screenshot(path=str(artifacts / "demo-prefer.png"), full_page=True)
            page.locator("#min-psnr input").fill("")

            _choose(page, "variant", "reference-lowres")  # the operator's own approximators are offered
            page.locator("#run").click()
            assert "on cpu" in _status_contains(page, "Approximation (reference-lowres)")

            page.locator("#full").click()
            assert "Full resolution 143×101" in _status_contains(page, "Full resolution")
            link = page.locator("#download a").first
            link.wait_for(state="attached")
            with page.expect_download() as download:
                link.click()
            saved = artifacts / "demo-download.png"
            download.value.save_as(saved)
            assert download.value.suggested_filename == "holiday-smooth.rof.png"
            assert read_image_file(saved).shape == (101, 143, 3)  # the photo's own size, odd included

            # A file that is not an image: a clear message, and the app keeps serving.
            page.locator("#upload").get_by_role("button", name="Clear").click()  # the upload box's X, as a person would
            page.locator("#upload input[type=file]").set_input_files(str(not_an_image))
            assert "not an image file" in _status_contains(page, "Error")
            page.locator("#upload").get_by_role("button", name="Clear").click()
            page.locator("#upload input[type=file]").set_input_files(str(photo))
            _status_contains(page, "Loaded")
            page.locator("#run").click()
            _status_contains(page, "Approximation")
        finally:
            browser.close()
