"""WCAG 2.2 AA in headless Debian Chromium: axe-core finds nothing critical or serious on either tab at 1400 and
390 px; the images say what they show (task, lane, iteration, PSNR), as the replay moves and as a live run streams;
the page has headings and its footer's API and Settings links; and the keyboard alone plays a replay, walks the
lessons and starts and stops a live run. One server and two page loads; screenshots in test-artifacts/."""

from __future__ import annotations

import re

import httpx
import pytest
from test_app_browser import ARTIFACTS, BROWSER, CHROMIUM, app_url, browser_page  # noqa: F401 (app_url: this module's server)

from demo import experiments as tab

pytestmark = [*BROWSER, pytest.mark.usefixtures("one_torch_thread")]
playwright = pytest.importorskip("playwright.sync_api")
axe_playwright = pytest.importorskip("axe_playwright_python.sync_playwright")
expect = playwright.expect

#: The rules axe runs: WCAG 2.0, 2.1 and 2.2, levels A and AA
WCAG_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]
WIDTHS = ((1400, 1000), (390, 844))
LANE_IMAGES = ("#replay_other_image", "#replay_lane_image")


@pytest.fixture(scope="module")
def page(app_url):  # noqa: F811 (the server fixture, imported)
    with browser_page(app_url) as page:
        expect(page.locator("#replay_lane_image img")).to_be_visible(timeout=20_000)
        yield page


def axe_findings(page) -> list[dict]:
    """axe-core's WCAG A/AA violations on the page as it is (the axe.min.js the package bundles: no network)."""
    results = axe_playwright.Axe().run(
        page, options={"runOnly": {"type": "tag", "values": WCAG_AA}, "resultTypes": ["violations"]}
    )
    return results.response["violations"]


def settled(page) -> None:
    """Wait until no output is pending: Gradio dims a pending component to opacity 0.2 while its event runs (the
    live lab's image notice as the tab opens, slower on a loaded machine), which axe would read as low contrast."""
    page.wait_for_function("() => !document.querySelector('.pending')", timeout=20_000)


def check_axe(page, where: str, found: dict[str, list[dict]]) -> None:
    """Run axe on the settled page and keep its findings under ``where`` (asserted together: rule, impact, nodes)."""
    settled(page)
    found[where] = axe_findings(page)


def assert_nothing_serious(found: dict[str, list[dict]]) -> None:
    lines = [
        f"{where}: {v['id']} ({v['impact']}) on {len(v['nodes'])} nodes, e.g. {v['nodes'][0]['target']}: {v['help']}"
        for where, violations in found.items()
        for v in violations
    ]
    serious = [line for line in lines if "(critical)" in line or "(serious)" in line]
    assert not serious, "axe-core, WCAG 2.2 AA:\n" + "\n".join(lines)


def alt(page, panel: str) -> str:
    return page.locator(f"{panel} img").first.get_attribute("alt") or ""


def open_live_lab(page) -> None:
    """The live lab's tab, with the mouse (the keyboard test reaches it by keyboard)."""
    page.get_by_role("tab", name=re.compile("Live lab")).click()
    expect(page.locator("#run")).to_be_visible(timeout=10_000)


def test_axe_finds_nothing_serious_on_either_tab_at_either_width(page):
    """Each tab as it opens (the live lab's images and plots empty), at 1400 px and on a 390 px phone."""
    found: dict[str, list[dict]] = {}
    ARTIFACTS.mkdir(exist_ok=True)
    for name in ("replay", "live"):
        if name == "live":
            page.set_viewport_size({"width": 1400, "height": 1000})  # on a phone the second tab is in a menu
            open_live_lab(page)
            expect(page.locator("#image img")).to_be_visible(timeout=20_000)  # the page's first image
        for width, height in WIDTHS:
            page.set_viewport_size({"width": width, "height": height})
            page.wait_for_timeout(300)
            check_axe(page, f"{name} tab at {width} px", found)
            page.screenshot(path=str(ARTIFACTS / f"a11y_{name}_{width}.png"), full_page=True)
    page.set_viewport_size({"width": 1400, "height": 1000})
    page.get_by_role("tab", name=re.compile("Paper experiments")).click()
    assert_nothing_serious(found)
    # the page's outline: the title, then one heading per tab
    expect(page.locator("h1")).to_have_text("Spectral Bias Lab")
    headings = page.locator("h2").all_text_contents()
    assert any("Paper experiments" in h for h in headings) and any("Live lab" in h for h in headings), headings
    # every image says what it shows: the experiment, the lane with its λ, its PSNR and iteration
    last = tab.last_iteration()
    for panel in LANE_IMAGES:
        assert re.search(
            rf"Denoising σ 25 · House: .*DIP \(λ = \d.*\) · PSNR [\d.]+ dB at iteration {last}$", alt(page, panel)
        )
    assert alt(page, "#replay_observed").startswith("Observation · Denoising σ 25 · House")
    assert "Clean image" in alt(page, "#replay_clean")
    # the footer's API and Settings links are back
    footer = page.locator("footer")
    expect(footer.get_by_text("Use via API")).to_be_visible()
    expect(footer.get_by_text("Settings")).to_be_visible()
    assert page.errors == []


def test_link_previews_name_the_lab_and_show_its_screenshot(page, app_url):  # noqa: F811
    """Open Graph and Twitter tags in the head (the page's own, replacing Gradio's "Gradio"), and their image served."""
    metas = {
        key: page.locator(f'meta[{kind}="{key}"]').first.get_attribute("content")
        for kind, key in (("property", "og:title"), ("property", "og:description"), ("property", "og:image"))
        + (("name", "twitter:card"),)
    }
    assert metas["og:title"] == "Spectral Bias Lab", metas
    assert "Deep Image Prior" in metas["og:description"]
    assert metas["twitter:card"] == "summary_large_image"
    assert metas["og:image"].endswith("screenshot.png")
    shot = httpx.get(app_url.rstrip("/") + "/" + metas["og:image"], timeout=30)
    assert shot.status_code == 200 and shot.headers["content-type"] == "image/png"


def focus(page, selector: str, key: str = "Tab", presses: int = 150) -> None:
    """Press ``key`` (Tab or Shift+Tab) until the focus is in ``selector``: the keyboard alone, no click."""
    inside = "s => !!document.activeElement && !!document.activeElement.closest(s)"
    for _ in range(presses):
        if page.evaluate(inside, selector):
            return
        page.keyboard.press(key)
    where = page.evaluate("() => document.activeElement?.outerHTML.slice(0, 200)")
    raise AssertionError(f"{key} never reached {selector} in {presses} presses; the focus is on {where}")


def slider_value(page) -> int:
    return int(float(page.locator("#replay_iteration input[type=range]").input_value()))


def test_the_keyboard_alone_plays_walks_the_lessons_and_runs(page, app_url):  # noqa: F811
    """Tab, Shift+Tab, Enter, Space and the arrow keys only: Play and Pause, Next lesson, a lesson chosen with the arrow
    keys, the live lab's tab, Run and Stop. The images' alt text follows; the status and the lesson are announced."""
    page.goto(app_url, wait_until="networkidle")  # a fresh page: the focus starts at its top
    expect(page.locator("#replay_lane_image img")).to_be_visible(timeout=20_000)
    lesson, caption = page.locator("#replay_lesson"), page.locator("#replay_lane_caption")
    events = tab.events_of(tab.DEFAULT_EXPERIMENT, tab.DEFAULT_LANE, tab.DEFAULT_OTHER)
    # Play (from the start, the slider being at the end), then Pause
    focus(page, "#replay_play")
    page.keyboard.press("Enter")
    focus(page, "#replay_pause")
    # Play's first frames (the caption said iteration 1500), then Pause at once: on 2 busy cores Play's 13 s can pass
    # between two calls of this test
    expect(caption).to_contain_text(re.compile(r"at iteration \d{1,3}$"), timeout=15_000)
    page.keyboard.press("Space")
    page.wait_for_timeout(800)
    held = slider_value(page)
    page.wait_for_timeout(1200)
    assert slider_value(page) == held < tab.last_iteration()
    # Next lesson: the first lesson, marked, its iteration shown, the lane's alt text at that frame
    focus(page, "#replay_next")
    page.keyboard.press("Enter")
    expect(lesson.locator("li", has_text="▶")).to_contain_text(events[0].caption, timeout=10_000)
    assert slider_value(page) == events[0].iter
    expect(page.locator("#replay_lessons input[type=radio]").nth(0)).to_be_checked()
    for panel in LANE_IMAGES:
        shown = page.locator(panel.replace("_image", "_caption")).inner_text().strip()
        expect(page.locator(f"{panel} img")).to_have_attribute("alt", re.compile(re.escape(shown) + "$"))
    expect(page.locator("#a11y_announcer")).to_contain_text(events[0].caption)
    # the lessons' buttons: the arrow key moves to the next one, and the replay to its iteration
    focus(page, "#replay_lessons")
    page.keyboard.press("ArrowRight")
    expect(lesson.locator("li", has_text="▶")).to_contain_text(events[1].caption, timeout=10_000)
    expect(page.locator("#replay_readout")).to_contain_text(re.compile(rf"Iteration {events[1].iter}(?!\d)"))
    assert slider_value(page) == events[1].iter
    expect(page.locator("#a11y_announcer")).to_contain_text(events[1].caption)
    page.screenshot(path=str(ARTIFACTS / "a11y_keyboard_lesson.png"), full_page=True)
    # back up to the tabs, then the live lab: Run, and Stop once it runs
    focus(page, "#live_tab-button", key="Shift+Tab")
    page.keyboard.press("Enter")
    expect(page.locator("#run")).to_be_visible(timeout=10_000)
    expect(page.locator("#image img")).to_be_visible(timeout=20_000)
    status = page.locator("#status textarea")
    focus(page, "#run")
    page.keyboard.press("Enter")
    expect(status).to_have_value(re.compile(r"^iteration \d+ / \d+"), timeout=60_000)
    focus(page, "#stop")
    page.keyboard.press("Enter")
    expect(status).to_have_value(re.compile(r"^Stopped at iteration \d+"), timeout=30_000)
    expect(page.locator("#a11y_announcer")).to_contain_text(re.compile(r"^Stopped at iteration \d+"), timeout=5_000)
    # each run's image says what it shows, as its caption does
    for panel, run in (
        ("#vanilla", r"Vanilla DIP \(λ 0, bilinear\)"),
        ("#result", r"Controlled \(λ [\d.]+, bilinear\)"),
    ):
        expect(page.locator(f"{panel} img")).to_have_attribute(
            "alt", re.compile(rf"^Live lab, Denoising: {run} · PSNR [\d.]+ dB at iteration \d+$"), timeout=10_000
        )
    expect(page.locator("#observation img")).to_have_attribute("alt", re.compile(r"Observation \(σ 25"))
    page.screenshot(path=str(ARTIFACTS / "a11y_live_stopped.png"), full_page=True)
    found: dict[str, list[dict]] = {}
    check_axe(page, "live tab after a run", found)
    assert_nothing_serious(found)
    assert page.errors == []
