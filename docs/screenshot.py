"""Retake the README's screenshot: the real app in headless Chromium, 1400 px wide, on the Paper experiments tab.

    .venv/bin/python docs/screenshot.py                      # writes assets/screenshot.png
    .venv/bin/python docs/screenshot.py --out shot.png --height 1200 --chromium /usr/bin/chromium

It starts the app on loopback (``app.make_app``, as the browser tests do), waits until the default replay shows
its four images, its curves with the lesson's marks and its lessons, and saves the top ``--height`` pixels of the
page (a 256-colour PNG). Needs Playwright (requirements-dev.txt) and a Chromium (Debian: ``apt-get install chromium``).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PANELS = ("replay_observed", "replay_lane_image", "replay_other_image", "replay_clean")


def take(out: Path, width: int, height: int, chromium: str) -> Path:
    """Serve the app, open it at ``width`` × ``height`` and save the screenshot to ``out``."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    sys.path.insert(0, str(ROOT))
    from PIL import Image
    from playwright.sync_api import expect, sync_playwright

    from app import make_app
    from demo.ui import launch_options

    demo = make_app()
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True, **launch_options())
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, headless=True, args=ARGS)
            page = browser.new_page(viewport={"width": width, "height": height})
            page.goto(url, wait_until="networkidle")
            for panel in PANELS:
                expect(page.locator(f"#{panel} img")).to_be_visible(timeout=30_000)
            expect(page.locator("#replay_curves .js-plotly-plot")).to_have_count(1, timeout=30_000)
            expect(page.locator("#replay_curves")).to_contain_text("①", timeout=30_000)
            expect(page.locator("#replay_lesson")).to_contain_text("The best image", timeout=30_000)
            page.wait_for_timeout(1500)  # Plotly's last relayout and the images' fade-in
            out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(out), full_page=False)
            browser.close()
    finally:
        demo.close()
    # 256 colours, no dithering: a third of the size, and the page's flat colours and text stay exact
    image = Image.open(out).convert("RGB")
    image.quantize(256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE).save(out, optimize=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "assets" / "screenshot.png")
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=1400, help="the viewport's height: the part of the page kept")
    parser.add_argument("--chromium", default="/usr/bin/chromium", help="the Chromium executable Playwright drives")
    args = parser.parse_args(argv)
    print(take(args.out, args.width, args.height, args.chromium))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
