"""The "Paper experiments" tab in headless Debian Chromium: it opens on the default replay, plays, walks the
lesson with Next, scrubs; screenshots in test-artifacts/."""

from __future__ import annotations

import os
import re

import pytest
from test_app_browser import ARTIFACTS, BROWSER, assert_named_in_full, assert_side_by_side, browser_page

from demo import experiments as tab

pytestmark = [*BROWSER]
playwright = pytest.importorskip("playwright.sync_api")
expect = playwright.expect


@pytest.fixture(scope="module")
def page():
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from app import make_app
    from demo.ui import launch_options

    demo = make_app()
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True, **launch_options())
    with browser_page(url, height=1100) as page:
        yield page
    demo.close()


def slider_value(page) -> int:
    return int(float(page.locator("#replay_iteration input[type=range]").input_value()))


def test_the_page_opens_on_the_default_replay_with_its_lessons(page):
    """No click: the replay's images, curves with the numbered lesson marks, and the lessons' captions."""
    ARTIFACTS.mkdir(exist_ok=True)
    for panel in ("replay_observed", "replay_lane_image", "replay_other_image", "replay_clean"):
        expect(page.locator(f"#{panel} img")).to_be_visible(timeout=10_000)
    expect(page.locator("#replay_readout")).to_contain_text(f"Iteration {tab.last_iteration()}")
    expect(page.locator("#replay_curves .js-plotly-plot")).to_have_count(1)
    expect(page.locator("#replay_curves")).to_contain_text("①")
    lesson = page.locator("#replay_lesson")
    for title in ("Low frequencies first", "The best image", "Now it fits the noise"):
        expect(lesson).to_contain_text(title)
    expect(page.locator("#replay_scale")).to_contain_text("Precomputed at")
    page.screenshot(path=str(ARTIFACTS / "replay_open.png"), full_page=True)
    # each image says what it is from the start: the lane, its λ and its PSNR at the iteration shown, in full; the
    # two lanes side by side in the order of their dropdowns, at 1400 px and on a 390 px phone
    shown = rf"· PSNR \d+\.\d\d dB at iteration {tab.last_iteration()}"
    expect(page.locator("#replay_other_caption")).to_contain_text(re.compile(r"Vanilla DIP \(λ = 0\) " + shown))
    expect(page.locator("#replay_lane_caption")).to_contain_text(re.compile(r"Controlled DIP \(λ = 1\) " + shown))
    labels = ["#replay_other_caption", "#replay_lane_caption"]
    labels += [f"#replay_{k} [data-testid=block-label]" for k in ("observed", "clean")]
    for width, height in ((1400, 1100), (390, 844)):
        page.set_viewport_size({"width": width, "height": height})
        page.wait_for_timeout(300)
        assert_side_by_side(page, "#replay_other_image img", "#replay_lane_image img")
        assert_named_in_full(page, labels)
        page.locator("#replay_images").screenshot(path=str(ARTIFACTS / f"replay_images_{width}.png"))
    page.set_viewport_size({"width": 1400, "height": 1100})
    other, lane = (page.locator(f"#replay_{k}").bounding_box() for k in ("other", "lane"))
    assert other["y"] < lane["y"]  # the dropdowns in the images' order: the left image's first
    assert page.errors == []


def test_next_walks_the_lesson_and_moves_the_slider(page):
    events = tab.events_of(tab.DEFAULT_EXPERIMENT, tab.DEFAULT_LANE, tab.DEFAULT_OTHER)
    lesson = page.locator("#replay_lesson")
    for event in events[:3]:
        page.locator("#replay_next").click()
        expect(lesson.locator("li", has_text="▶")).to_contain_text(event.title, timeout=10_000)
        expect(page.locator("#replay_readout")).to_contain_text(re.compile(rf"Iteration {event.iter}(?!\d)"))
        assert slider_value(page) == event.iter
    page.screenshot(path=str(ARTIFACTS / "replay_lesson.png"), full_page=True)


def test_play_advances_and_pause_holds(page):
    box = page.locator("#replay_iteration input[type=number]")
    box.fill("0")
    box.press("Enter")
    expect(page.locator("#replay_lane_caption")).to_contain_text(re.compile(r"iteration 1(?!\d)"), timeout=10_000)
    page.locator("#replay_play").click()
    expect(page.locator("#replay_lane_caption")).to_contain_text(re.compile(r"iteration [1-9]\d{2,}"), timeout=15_000)
    page.locator("#replay_pause").click()
    page.wait_for_timeout(800)
    held = slider_value(page)
    page.wait_for_timeout(1200)
    assert slider_value(page) == held > 0


def test_scrub_another_experiment_and_lane(page):
    page.locator("#replay_experiment input").click()
    page.get_by_role("option", name=re.compile("Super-resolution")).click()
    expect(page.locator("#replay_observed")).to_contain_text("Super-resolution ×4", timeout=10_000)
    page.locator("#replay_lane input").click()
    page.get_by_role("option", name="λ = 2", exact=True).click()
    expect(page.locator("#replay_lane_caption")).to_contain_text("Controlled DIP (λ = 2) · PSNR", timeout=10_000)
    box = page.locator("#replay_iteration input[type=number]")
    frame = tab.replays().manifest["scale"]["frame_every"] * 4
    box.fill(str(frame))
    box.press("Enter")
    expect(page.locator("#replay_lane_caption")).to_contain_text(f"iteration {frame}", timeout=10_000)
    page.screenshot(path=str(ARTIFACTS / "replay_scrub.png"), full_page=True)
    assert page.errors == []
