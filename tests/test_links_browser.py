"""Links in headless Debian Chromium (demo/links.py): a replay's link opened in a fresh browser after the server
restarted shows the same experiment, lanes and iteration; a live-lab link sets the lab and starts nothing; a bad
parameter is one line on the page; every link of docs/teaching.md shows the state it names (its focused view:
the controls hidden). Screenshots (1400 and 390 px) in test-artifacts/."""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from test_app_browser import ARTIFACTS, BROWSER, browser_page

from demo import experiments, links
from demo.ui import task_choices

pytestmark = [*BROWSER]
playwright = pytest.importorskip("playwright.sync_api")
expect = playwright.expect

TEACHING = Path(__file__).resolve().parent.parent / "docs" / "teaching.md"
#: The base the teaching page's links are written against (the page says so)
LOCAL = "http://localhost:7860/"


class Server:
    """The app served in this process on one loopback port, which a restart keeps (the address a link holds)."""

    def __init__(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.demo, self.url = None, f"http://127.0.0.1:{self.port}/"

    def start(self) -> None:
        from app import make_app
        from demo.ui import launch_options

        self.demo = make_app()
        self.demo.launch(
            prevent_thread_lock=True, server_name="127.0.0.1", server_port=self.port, quiet=True, **launch_options()
        )

    def stop(self) -> None:
        self.demo.close()


@pytest.fixture(scope="module")
def server():
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    s = Server()
    s.start()
    yield s
    s.stop()


def number(page, elem_id: str):
    return page.locator(f"#{elem_id} input[type=number]")


def label_of(choices: list[tuple[str, str]], value: str) -> str:
    return next(label for label, v in choices if v == value)


def assert_replay(page, experiment: str, lane: str, other: str, iteration: int) -> None:
    """The replay tab shows the experiment, the two lanes and the iteration: the dropdowns, the slider, the readout,
    the lanes' captions, and the lesson at that iteration marked when there is one."""
    expect(page.locator("#replay_tab")).to_be_visible()  # the tab shown (its button may be hidden: controls=hide)
    expect(page.locator("#replay_experiment input")).to_have_value(
        label_of(experiments.experiment_choices(), experiment), timeout=20_000
    )
    lanes = experiments.lane_choices(experiment, none=True)
    expect(page.locator("#replay_lane input")).to_have_value(label_of(lanes, lane))
    expect(page.locator("#replay_other input")).to_have_value(label_of(lanes, other))
    expect(number(page, "replay_iteration")).to_have_value(str(iteration))
    expect(page.locator("#replay_readout")).to_contain_text(f"Iteration {iteration}")
    names = dict((v, label) for label, v in lanes)
    expect(page.locator("#replay_lane_caption")).to_contain_text(experiments.lane_title(names[lane]))
    if other:
        expect(page.locator("#replay_other_caption")).to_contain_text(experiments.lane_title(names[other]))
    else:
        expect(page.locator("#replay_other_image img")).to_have_count(0)
    events = experiments.events_of(experiment, lane, other)
    current = next((n for n, e in enumerate(events) if e.iter == iteration), None)
    if current is not None:
        expect(page.locator("#replay_lesson mark")).to_contain_text(events[current].title)


def assert_live(page, link: links.Link) -> None:
    """The live lab shows the link's settings (its example's image, task, level, controlled network, run settings)."""
    expect(page.locator("#live_tab")).to_be_visible()
    values = links.live_values(link)
    expect(page.locator("#image img")).to_have_attribute("src", re.compile(re.escape(Path(values["image"]).name)))
    task = values.get("task")
    if task:
        expect(page.locator("#task input")).to_have_value(label_of(task_choices(), task), timeout=20_000)
    if isinstance(values.get("level_slider"), dict) and "value" in values["level_slider"]:
        expect(number(page, "level")).to_have_value(f"{values['level_slider']['value']:g}")
    if "sr_factor" in values:
        expect(page.get_by_label(str(values["sr_factor"]), exact=True)).to_be_checked()
    for name in ("lipschitz", "iterations", "width", "max_side"):
        if name in link.live:
            if not number(page, name).is_visible():
                page.get_by_text("Run settings").click()
            expect(number(page, name)).to_have_value(f"{link.live[name]:g}")
    if "gaussian_sigma" in link.live:
        expect(number(page, "sigma")).to_have_value(f"{link.live['gaussian_sigma']:g}")
    if "seed" in link.live:
        expect(page.locator("#seed input")).to_have_value(str(link.live["seed"]))
    if "compare" in link.live:
        box = page.locator("#compare input[type=checkbox]")
        expect(box).to_be_checked() if link.live["compare"] else expect(box).not_to_be_checked()


def assert_shows(page, query: str) -> None:
    """The page shows the state ``query`` names, says nothing about it, and its address is that query again."""
    link = links.parse(query)
    assert not link.notices, link.notices
    if link.tab == "live":
        assert_live(page, link)
    else:
        e = experiments
        state = links.replay_state(link) or (e.DEFAULT_EXPERIMENT, e.DEFAULT_LANE, e.DEFAULT_OTHER, e.last_iteration())
        assert_replay(page, *state[:4])
    if link.hide_controls:
        for hidden in ("#replay_controls", "#live_controls", "#header", "#tabs [role=tablist]"):
            expect(page.locator(hidden)).to_be_hidden()
    expect(page.locator("#link_notice")).to_be_hidden()
    expect(page).to_have_url(re.compile(re.escape("?" + query) + "$"), timeout=5_000)


def shoot(page, name: str) -> None:
    """Full-page screenshots at 1400 and 390 px wide."""
    ARTIFACTS.mkdir(exist_ok=True)
    for width, height in ((1400, 1000), (390, 844)):
        page.set_viewport_size({"width": width, "height": height})
        page.wait_for_timeout(400)
        page.screenshot(path=str(ARTIFACTS / f"{name}_{width}.png"), full_page=True)
    page.set_viewport_size({"width": 1400, "height": 1000})


def test_a_replay_link_shows_the_same_moment_after_a_restart(server):
    """A non-default experiment, lanes and iteration; moving the iteration rewrites the address; the server restarts
    (a new app on the same port) and a fresh browser opens the address it held: the same moment."""
    state = dict(experiment="denoise_peppers", lane="lam2", other="lam1", iteration=660)
    query = links.query("replays", state)
    with browser_page(server.url + "?" + query) as page:
        assert_shows(page, query)
        shoot(page, "link_replay")
        box = number(page, "replay_iteration")
        box.fill("900")
        box.press("Tab")
        expect(page.locator("#replay_readout")).to_contain_text("Iteration 900", timeout=20_000)
        moved = links.query("replays", {**state, "iteration": 900})
        expect(page).to_have_url(server.url + "?" + moved, timeout=5_000)  # the address follows, no server call
        held = page.url
        assert not page.errors, page.errors
    server.stop()
    server.start()
    with browser_page(held) as page:
        assert_replay(page, **{**state, "iteration": 900})
        expect(page).to_have_url(held)
        assert not page.errors, page.errors


def test_a_live_link_sets_the_lab_and_starts_no_run(server):
    """Several settings at once; the address is the same link again (the page writes what ``links.query`` does); the
    status line and the result panels stay as they open; Copy link copies the address and says so."""
    from demo.session import STOPS

    state = dict(example="coffee", task="inpaint", level_slider=0.3, lipschitz=2.0, upsample="gaussian")
    state.update(gaussian_sigma=1.0, iterations=500, seed=3, compare=False, width=16, max_side=96)
    query = links.query("live", state)
    with browser_page(server.url + "?" + query) as page:
        page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url.rstrip("/"))
        assert_shows(page, query)
        page.wait_for_timeout(1500)
        expect(page.locator("#status textarea")).to_have_value("Pick an image and press Run.")
        assert page.locator("#result img").count() == 0 and page.locator("#vanilla img").count() == 0
        assert STOPS.active() == 0
        page.locator("#live_copy").click()
        expect(page.locator("#live_copied [role=status]")).to_have_text("Link copied")
        assert page.evaluate("navigator.clipboard.readText()") == page.url
        shoot(page, "link_live")
        assert not page.errors, page.errors


def test_a_bad_link_is_one_line_on_the_page(server):
    """Out of range, unknown (with HTML in it) and repeated: ignored, said in one line, the rest applied, no error;
    Gradio's own ``__theme`` passes in silence and stays in the address."""
    query = "tab=replays&experiment=denoise_f16&iteration=99999&%3Cb%3Ebold%3C%2Fb%3E=1&lane=lam2&lane=lam3"
    query += "&__theme=light"
    with browser_page(server.url + "?" + query) as page:
        notice = page.locator("#link_notice")
        expect(notice).to_contain_text("Ignored in this link", timeout=20_000)
        text = notice.inner_text().strip()
        assert "\n" not in text and notice.locator("b").count() == 0, text
        for part in ("iteration must be a number between 0 and", "'<b>bold</b>' is not a link parameter"):
            assert part in text, text
        assert "lane is given 2 times" in text
        assert_replay(page, "denoise_f16", experiments.DEFAULT_LANE, experiments.DEFAULT_OTHER, 1500)
        # the address is the page's state again, Gradio's own parameter kept (it names the theme)
        state = dict(experiment="denoise_f16", lane="lam1", other="vanilla", iteration=1500)
        expect(page).to_have_url(server.url + "?" + links.query("replays", state) + "&__theme=light")
        assert page.locator(".toast-body.error").count() == 0 and not page.errors, page.errors


def test_every_link_of_the_teaching_page_shows_what_it_names(server):
    """docs/teaching.md's links, its base replaced by this server's: each opens on the state it names."""
    found = re.findall(r"\]\((" + re.escape(LOCAL) + r"\?[^)\s]+)\)", TEACHING.read_text())
    assert len(found) >= 8, found
    assert any("controls=hide" in url for url in found)
    with browser_page(server.url) as page:
        for url in found:
            page.goto(server.url + url[len(LOCAL) :], wait_until="load")  # assert_shows waits for the state
            assert_shows(page, urlsplit(url).query)
            if "controls=hide" in url:
                assert_focused(page)
        assert not page.errors, page.errors


def assert_focused(page) -> None:
    """The focused view: the images, the curves and the lessons, no controls (assert_shows checked they are hidden);
    a lesson button still moves the replay, and the address keeps ``controls=hide``."""
    for shown in ("#replay_lane_image img", "#replay_other_image img", "#replay_curves", "#replay_lesson"):
        expect(page.locator(shown)).to_be_visible()
    shoot(page, "link_focused")
    lessons = page.locator("#replay_lessons label")
    if lessons.count():
        lessons.first.click()
        expect(page).to_have_url(re.compile(r"&iteration=\d+&controls=hide$"), timeout=20_000)
        expect(page).not_to_have_url(re.compile(r"iteration=810&"))
