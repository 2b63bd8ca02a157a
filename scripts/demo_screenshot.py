"""Take the README's screenshot of the demo: serve it, pick a built-in example in headless Chromium, run an
operator with the reference beside it, and save docs/images/demo.png.

Usage: python scripts/demo_screenshot.py [--operator smooth.l0] [--example coffee] [--chromium /usr/bin/chromium]
"""

import argparse
import shutil
from pathlib import Path

from playwright.sync_api import sync_playwright

from fip_demo.app import build_app

OUT = Path(__file__).resolve().parents[1] / "docs" / "images" / "demo.png"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--operator", default="smooth.l0")
    parser.add_argument("--example", default="coffee")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    parser.add_argument("--port", type=int, default=7870)
    args = parser.parse_args()
    app = build_app()
    app.launch(server_name="127.0.0.1", server_port=args.port, prevent_thread_lock=True, quiet=True)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=args.chromium, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 1250})
            page.goto(f"http://127.0.0.1:{args.port}")
            for elem_id, text in (("example", args.example), ("operator", args.operator)):
                page.locator(f"#{elem_id} input").click()
                page.locator(f"#{elem_id} input").fill(text)
                page.get_by_role("option", name=text).first.click()
            page.wait_for_function("document.querySelector('#status').innerText.includes('Loaded')", timeout=120_000)
            page.locator("#compare input").check()
            page.locator("#run").click()
            page.wait_for_function("document.querySelector('#status').innerText.includes('speed-up')", timeout=300_000)
            page.locator("#reference img").wait_for(state="visible")
            # Gradio fades outputs while they update: wait until no panel is pending and every image has loaded.
            page.wait_for_function(
                "!document.querySelector('.pending') && [...document.images].every(i => i.complete)", timeout=60_000
            )
            page.wait_for_timeout(1000)  # the fade-in transition
            OUT.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(OUT), full_page=False)
            print(page.locator("#status").inner_text())
            print(f"wrote {OUT}")
            browser.close()
    finally:
        app.close()


if __name__ == "__main__":
    main()
