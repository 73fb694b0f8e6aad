"""Links to a state of the page (demo/links.py), as plain Python: reading a link (every value checked as the API checks
it, within the page's widgets; anything else ignored with a one-line notice), the page's values it sets, and the link
a state writes. The page itself, in Chromium: tests/test_links_browser.py."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import parse_qsl, quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from demo import experiments, links
from demo.examples import ASSETS
from demo.form import RunForm
from demo.inputs import settings as checked_settings
from demo.settings import LIMITS, default_control
from dip_core import TASKS, InputError

#: The live lab's numeric widgets as the page builds them (demo/ui.py): their (minimum, maximum)
BOUNDS = {"iterations": (10, LIMITS.iterations_cap), "max_side": (32, LIMITS.max_side_cap), "width": (8, 64)}
LAST = experiments.last_iteration()


def parse(query: str) -> links.Link:
    return links.parse(query, BOUNDS)


def test_a_plain_visit_is_no_link():
    for query in ("", "?", "?__theme=dark", "view=api&__sign=x"):  # Gradio's and the Space's own: passed over
        assert parse(query) == links.Link()


def test_a_replay_link_gives_the_experiment_lanes_and_iteration():
    link = parse("?tab=replays&experiment=denoise_peppers&lane=lam2&other=&iteration=600")
    assert link == links.Link("replays", dict(experiment="denoise_peppers", lane="lam2", other="", iteration=600))
    assert links.replay_state(link) == ("denoise_peppers", "lam2", "", 600, None)
    # an iteration between two snapshots goes to the slider's step; one where a lesson is, marks that lesson
    assert parse("iteration=813").replay["iteration"] == 810
    experiment, lane, other, iteration, current = links.replay_state(parse("iteration=810"))
    assert (experiment, lane, other, iteration) == ("denoise_house", "lam1", "vanilla", 810)
    assert experiments.events_of(experiment, lane, other)[current].kind == "noise"  # "now it fits the noise"
    assert links.replay_state(parse("tab=replays")) is None  # no replay parameter: the page as it opens


@pytest.mark.parametrize(
    ("query", "notice"),
    [
        ("foo=1", "'foo' is not a link parameter"),
        ("iteration=99999", f"iteration must be a number between 0 and {LAST}, got '99999'"),
        ("iteration=-10", "iteration must be a number between"),
        ("iteration=abc", "iteration must be a number"),
        ("iteration=nan", "iteration must be a number"),
        ("iteration=1e400", "iteration must be a number"),
        ("iteration=12.5", "iteration must be a whole number"),
        ("experiment=denoise_moon", "experiment must be one of denoise_house"),
        ("lane=lam9", "lane must be one of vanilla, lam1"),
        ("other=lam9", "other must be one of vanilla"),
        ("tab=settings", "tab must be one of replays, live, got 'settings'"),
        ("controls=none", "controls must be one of hide, show"),
        ("iteration=", "iteration has no value"),
        ("iteration=10&iteration=20", "iteration is given 2 times"),
        ("lipschitz=nan", "lipschitz must be a number between 0 and 5"),
        ("lipschitz=9", "lipschitz must be a number between 0 and 5, got '9'"),
        ("gaussian_sigma=inf", "gaussian_sigma must be a number"),
        ("seed=1.5", "seed must be a whole number"),
        ("seed=-1", "seed must be a number between 0"),
        ("compare=maybe", "compare must be true or false, got 'maybe'"),
        ("upsample=bicubic", "upsample must be one of bilinear, nearest, gaussian"),
        ("auto_stop=soon", "auto_stop must be one of"),
        ("task=deblur", "task must be one of"),
        ("example=moon", "example must be one of house256"),
        ("level=150", "noise σ (0-255) must be a number between 1 and 100, got '150'"),  # the API's 255: the slider's
        ("task=sr&level=3", "super-resolution factor must be 2, 4 or 8, got 3"),
        ("task=jpeg&auto_stop=discrepancy", "needs a known noise level"),
        ("width=4", "width must be a number between 8 and 64, got '4'"),  # the API takes 4; the slider starts at 8
        ("iterations=5", "iterations must be a number between 10 and"),
        (f"max_side={LIMITS.max_side_cap + 16}", f"max_side must be a number between 16 and {LIMITS.max_side_cap}"),
    ],
)
def test_a_bad_parameter_is_ignored_with_a_one_line_notice(query, notice):
    """Unknown, out of range, of the wrong type, NaN, repeated or empty: ignored, one line each; the rest applied."""
    name = query.split("&")[-1].split("=")[0]  # the bad one is the last
    rest = "seed=7" if name in (*links.VIEW_PARAMS, *links.REPLAY_PARAMS) else "lane=lam2"  # another parameter
    link = parse(f"{query}&{rest}")
    assert link.live.get("seed") == 7 or link.replay.get("lane") == "lam2"  # applied
    assert len(link.notices) == 1 and notice in link.notices[0], link.notices
    assert name not in link.replay and name not in link.live and link.tab is None
    line = links.notice(link)
    assert line.startswith("⚠️ Ignored in this link: ") and "\n" not in line


def test_huge_links_and_values_are_ignored_with_a_short_notice():
    long_value = parse("iteration=" + "9" * 1000 + "&lane=lam2")
    assert long_value.replay == {"lane": "lam2"} and long_value.notices == ("iteration is 1000 characters long",)
    long_name = parse("x" * 150 + "=1")
    assert len(long_name.notices[0]) < 80 and long_name.notices[0].endswith("is not a link parameter")
    for query in ("a=" + "1" * links.MAX_QUERY, "&".join(f"p{i}=1" for i in range(links.MAX_PARAMS + 1))):
        link = parse(query + "&tab=live")
        assert link.tab is None and not link.replay and not link.live and len(link.notices) == 1, link.notices
    many = parse("&".join(f"bad{i}=1" for i in range(10)))
    line = links.notice(many)
    assert len(many.notices) == 10 and line.count("is not a link parameter") == links.MAX_NOTICES
    assert line.endswith("and 6 more.")


def test_the_notice_shows_a_links_text_as_text():
    """A link's text is the visitor's own: no HTML or markdown of it reaches the page."""
    line = links.notice(parse("<img src=x onerror=alert(1)>=1&*bold*=2&[a](javascript:x)=3"))
    assert "<img" not in line and "&lt;img" in line
    assert "*bold*" not in line and r"\*bold\*" in line and "](" not in line


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_any_text_is_read_without_an_error(query):
    link = links.parse(query, BOUNDS)
    assert all("\n" not in n for n in link.notices)
    links.notice(link)
    links.live_values(link)


@settings(max_examples=100, deadline=None)
@given(
    st.sampled_from(links.LIVE_PARAMS[2:]),
    st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-(10**6), 10**6), st.text(max_size=12)),
)
def test_a_live_value_is_taken_only_if_the_run_endpoint_takes_it(name, value):
    """The link's checks are the API's (demo.inputs.settings), then the widget's range: never wider."""
    text = str(value).lower() if isinstance(value, bool) else str(value)
    link = links.parse(f"{name}={quote(text)}", BOUNDS)
    try:
        accepted = checked_settings(RunForm(None, **{name: text}))[name]
    except InputError:
        accepted = None
    if name in link.live:
        assert accepted is not None and link.live[name] == accepted
    elif text:
        assert len(link.notices) == 1


def test_an_example_and_a_task_set_the_live_lab_as_picking_them_does():
    coffee = links.live_values(parse("tab=live&example=coffee&lipschitz=2"))
    assert coffee["image"] == str(ASSETS / "coffee.png") and coffee["example"] == "coffee"
    assert coffee["task"] == "inpaint" and coffee["observed"] is False and coffee["lipschitz"] == 2.0
    assert coffee["level_slider"]["value"] == TASKS["inpaint"].level.default
    assert coffee["level_slider"]["maximum"] == TASKS["inpaint"].level.slider[1]
    assert coffee["upsample"] == default_control("inpaint")["upsample"]
    noisy = links.live_values(parse("example=house128_noisy"))
    assert noisy["observed"] is True  # an already degraded example
    sr = links.live_values(parse("task=sr&level=8&compare=false&width=16"))
    assert sr["sr_factor"] == 8 and sr["level_slider"] == {"__type__": "update", "visible": False}
    assert sr["compare"] is False and sr["width"] == 16 and sr["lipschitz"] == default_control("sr")["lipschitz"]
    assert links.live_values(parse("level=40"))["level_slider"]["value"] == 40  # the page's first task's level
    plain = links.live_values(parse(""))
    assert plain == {"image": str(ASSETS / "house256.png")}  # a plain visit: the page's first image, nothing else


def test_a_state_writes_its_link_and_the_link_restores_it():
    replay = dict(experiment="sr_zebra", lane="lam1.8_gauss0.5", other="", iteration=770)
    query = links.query("replays", replay, hide_controls=True)
    assert query == "tab=replays&experiment=sr_zebra&lane=lam1.8_gauss0.5&other=&iteration=770&controls=hide"
    link = parse(query)
    assert link.replay == replay and link.hide_controls and not link.notices
    # the live lab: the defaults are left out (a task's own λ and level too); what differs is written
    denoise = default_control("denoise")
    defaults = dict(task="denoise", level_slider=25.0, lipschitz=denoise["lipschitz"])
    defaults["lipschitz_auto"] = denoise["lipschitz_auto"]  # ticked on CPU: denoising's rule met the bar there
    defaults.update(upsample="bilinear", gaussian_sigma=0.5, iterations=LIMITS.iterations, seed=0, auto_stop="off")
    defaults.update(compare=True, observed=False, max_side=LIMITS.max_side, width=LIMITS.width, lr=LIMITS.lr)
    assert links.query("live", {**defaults, "example": "house256"}) == "tab=live&task=denoise"
    # the box cleared where it is ticked by default (or ticked where it is not): the link says so, and restores it
    flipped = {**defaults, "lipschitz_auto": not defaults["lipschitz_auto"]}
    lam = "auto" if flipped["lipschitz_auto"] else f"{denoise['lipschitz']:g}"
    assert links.query("live", flipped) == f"tab=live&task=denoise&lipschitz={lam}"
    restored = links.live_values(parse(links.query("live", flipped)))
    assert restored["lipschitz_auto"] == flipped["lipschitz_auto"] and restored["lipschitz"] == denoise["lipschitz"]
    assert links.live_values(parse("tab=live&task=denoise"))["lipschitz_auto"] == denoise["lipschitz_auto"]
    state = {**defaults, "example": "coffee", "task": "inpaint", "level_slider": 0.3, "lipschitz": 2.0}
    state["lipschitz_auto"] = False
    state.update(upsample="gaussian", gaussian_sigma=1.0, iterations=500, seed=3, compare=False, width=16)
    query = links.query("live", state)
    assert dict(parse_qsl(query)) == dict(
        tab="live", example="coffee", task="inpaint", level="0.3", lipschitz="2", upsample="gaussian",
        gaussian_sigma="1", iterations="500", seed="3", compare="false", width="16",
    )  # fmt: skip
    restored = links.live_values(parse(query))
    for name in ("task", "lipschitz", "lipschitz_auto", "upsample", "gaussian_sigma", "iterations", "seed"):
        assert restored[name] == state[name], name
    assert restored["compare"] == state["compare"] and restored["width"] == state["width"]
    assert restored["level_slider"]["value"] == 0.3 and restored["example"] == "coffee"
    # the SR factor is the level; a σ without Gaussian upsampling is not written
    sr = {**defaults, "task": "sr", "sr_factor": 8, "gaussian_sigma": 2.0, "lipschitz_auto": False}
    assert links.query("live", sr) == "tab=live&task=sr&level=8"


def test_the_writer_reads_its_facts_from_their_places():
    """The page's writer (JavaScript) gets the same defaults ``query`` uses: from the tasks, RunForm and LIMITS."""
    c = links.writer_config()
    json.dumps(c)  # written into the page
    assert list(c["tasks"]) == list(TASKS) and c["defaults"]["iterations"] == LIMITS.iterations
    assert c["tasks"]["sr"]["radio"] and not c["tasks"]["denoise"]["radio"]
    assert c["replay"] == list(links.REPLAY_PARAMS) and len(c["live"]) == len(links.LIVE_WIDGETS) - 1
    assert c["examples"]["house128_noisy"] is True and c["default_example"] == "house256"
    assert "__CONFIG__" not in links.load_js() and json.dumps(c["tasks"], ensure_ascii=False) in links.load_js()
    # the widgets' ranges are read from the widgets themselves
    widgets = dict(width=SimpleNamespace(minimum=8, maximum=64), task=SimpleNamespace(), seed=SimpleNamespace())
    assert links.widget_bounds(widgets) == {"width": (8, 64)}
    # a link names the API's parameters: RunForm's, but the image and the mask
    assert set(links.LIVE_PARAMS) == {"example", *RunForm.names()} - {"image", "mask"}


def test_a_replay_link_on_a_server_without_replays_says_so(monkeypatch):
    monkeypatch.setattr(experiments, "replays", lambda: None)
    link = parse("tab=replays&lane=lam2&iteration=10")
    assert link.tab == "replays" and not link.replay
    assert link.notices == ("lane, iteration: this server has no replays",)


#: docs/bad-input.md's rows about links (its "Links to a state of the page" table), by their query
LINK_ROWS = {
    "an unknown link parameter (`?colour=red`)": "colour=red",
    "a link value out of range (`?iteration=99999`)": "iteration=99999",
    "a link value the page's slider cannot show (`?level=150`; `/run` takes up to 255)": "level=150",
    "a link value of the wrong kind (`?tab=live&seed=1.5`)": "tab=live&seed=1.5",
    "a link parameter given twice (`?iteration=10&iteration=20`)": "iteration=10&iteration=20",
    "an empty link value (`?iteration=`)": "iteration=",
    "markup in a link (`?<b>x</b>=1`)": "<b>x</b>=1",
}


@pytest.mark.parametrize("row", list(LINK_ROWS))
def test_each_link_row_of_the_bad_input_table_is_what_the_page_shows(row):
    """The table's line is the notice as the page renders it (markdown escapes and HTML entities undone)."""
    doc = (Path(__file__).resolve().parent.parent / "docs" / "bad-input.md").read_text()
    (shown,) = re.findall(rf"^\| {re.escape(row)} \| `([^`]+)`", doc, re.M)
    rendered = html.unescape(re.sub(r"\\(.)", r"\1", links.notice(parse(LINK_ROWS[row]))))
    assert rendered == shown
