"""Links to a state of the page: the address bar holds the tab and what it shows, with the API's own parameter names
(``?tab=replays&experiment=…&lane=…&other=…&iteration=…``; ``?tab=live`` and the ``run`` endpoint's settings), and
opening a link restores it. Nothing is stored on the server: the link is the state. ``controls=hide`` is the focused
view (images, curves and lessons, no controls), for projecting and embedding.

``parse`` reads a query string into checked values and one-line notices for what it ignored, with the ranges the API
and the widgets already have (``demo.inputs.settings``, the replays' own experiments, lanes and iterations, the
examples); ``query`` is the reverse, the link a state writes (defaults left out). ``wire`` connects them to the page:
one load event restores a link; client-side events (no server call) write the address bar as the state changes."""

from __future__ import annotations

import html
import json
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import gradio as gr

from dip_core import TASKS, InputError
from dip_core.checks import Range
from dip_core.errors import shown

from . import events, experiments
from .errors import guarded
from .examples import ASSETS, EXAMPLES
from .form import RunForm
from .inputs import choice, settings
from .settings import LIMITS, Limits, default_control

#: A tab's public name (the link's ``tab``) → its ``gr.Tab`` id
TABS = {"replays": "replay_tab", "live": "live_tab"}
VIEW_PARAMS = ("tab", "controls")
REPLAY_PARAMS = ("experiment", "lane", "other", "iteration")
#: The live lab's: an example by name, then the ``run`` endpoint's parameters a link can carry (not the image or mask)
LIVE_PARAMS = ("example", *(n for n in RunForm.names() if n not in ("image", "mask")))
PARAMS = VIEW_PARAMS + REPLAY_PARAMS + LIVE_PARAMS
#: The live parameters the task sets when a link names a task (or an example) without them: like picking the task
TASK_SET = ("level", "lipschitz", "upsample", "gaussian_sigma")
#: The live lab's widgets a link sets, by name (the level is the slider's or the SR factor's, ``level_widgets``)
LIVE_WIDGETS = ("image", "example", "task", "level_slider", "sr_factor", *LIVE_PARAMS[3:], "lipschitz_auto")
#: The examples by name (their file's stem): "house256", "coffee", ...
EXAMPLE_NAMES = {Path(file).stem: (file, task, kind) for file, task, kind, _ in EXAMPLES}
DEFAULT_NAME = next(iter(EXAMPLE_NAMES))
#: A link read at most: its length and parameters (past them it is ignored whole), a value's length, notices shown
MAX_QUERY, MAX_PARAMS, MAX_VALUE, MAX_NOTICES = 4096, 40, 200, 4


#: Gradio's own parameters besides those that start with ``__`` (``?__theme=dark``, a private Space's ``__sign``)
GRADIO_OWN = ("view", "deep_link")


def gradio_own(name: str) -> bool:
    """Gradio's and the Space's own parameters: not ours, passed over in silence (and kept in the address bar)."""
    return name.startswith("__") or name in GRADIO_OWN


@dataclass(frozen=True)
class Link:
    """What a link asks for, checked: the tab (a public name) or None, the replay's and the live lab's values given
    (by parameter name), the focused view, and a one-line notice per parameter ignored."""

    tab: str | None = None
    replay: dict[str, Any] = field(default_factory=dict)
    live: dict[str, Any] = field(default_factory=dict)
    hide_controls: bool = False
    notices: tuple[str, ...] = ()


def parse(query: str, bounds: Mapping[str, tuple[float, float]] | None = None, limits: Limits = LIMITS) -> Link:
    """A query string (``?tab=replays&iteration=810``, with or without its ``?``) as a ``Link``: every value checked as
    the API checks it, within the page's widgets (``bounds``: a widget's (min, max) by parameter name); a parameter
    unknown, repeated, empty, too long or out of range is ignored with a one-line notice. Never raises."""
    notices: list[str] = []
    given = _given(query or "", notices)
    tab = _checked("tab", given, notices, lambda v: choice("tab", v, list(TABS)))
    controls = _checked("controls", given, notices, lambda v: choice("controls", v, ["hide", "show"]))
    replay = _replay(given, notices)
    live = _live(given, bounds or {}, limits, notices)
    return Link(tab, replay, live, controls == "hide", tuple(notices))


def _given(query: str, notices: list[str]) -> dict[str, str]:
    """The query's parameters given once each, ours and not empty (the others noted); nothing if it is too large."""
    query = query.removeprefix("?")
    if len(query) > MAX_QUERY:
        notices.append(f"the link is {len(query)} characters long, more than {MAX_QUERY}: it was ignored")
        return {}
    pairs = parse_qsl(query, keep_blank_values=True, errors="replace")
    if len(pairs) > MAX_PARAMS:
        notices.append(f"the link has {len(pairs)} parameters, more than {MAX_PARAMS}: it was ignored")
        return {}
    counts, values = Counter(name for name, _ in pairs), dict(pairs)
    given = {}
    for name in counts:  # each name once, in the link's order
        value = values[name]
        if gradio_own(name):
            continue
        if name not in PARAMS:
            notices.append(f"{shown(name)} is not a link parameter")
        elif counts[name] > 1:
            notices.append(f"{name} is given {counts[name]} times")
        elif len(value) > MAX_VALUE:
            notices.append(f"{name} is {len(value)} characters long")
        elif value == "" and name != "other":  # other= is "none"
            notices.append(f"{name} has no value")
        else:
            given[name] = value
    return given


def _checked(name: str, given: dict[str, str], notices: list[str], check: Any) -> Any:
    """``check(given[name])``, or None when it is not given or refused (its one line noted)."""
    if name not in given:
        return None
    try:
        return check(given[name])
    except InputError as err:
        notices.append(str(err))
        return None


def _replay(given: dict[str, str], notices: list[str]) -> dict[str, Any]:
    """The replay's experiment, lanes and iteration given (the iteration on the slider's step, within the run)."""
    if experiments.replays() is None:
        asked = [name for name in REPLAY_PARAMS if name in given]
        if asked:
            notices.append(f"{', '.join(asked)}: this server has no replays")
        return {}
    names = [n for _, n in experiments.experiment_choices()]
    out = {"experiment": _checked("experiment", given, notices, lambda v: choice("experiment", v, names))}
    lanes = [n for _, n in experiments.lane_choices(out["experiment"] or experiments.DEFAULT_EXPERIMENT)]
    out["lane"] = _checked("lane", given, notices, lambda v: choice("lane", v, lanes))
    if "other" in given:  # "" is no second lane
        out["other"] = _checked("other", given, notices, lambda v: v if v == "" else choice("other", v, lanes))
    experiment, lane = out["experiment"] or experiments.DEFAULT_EXPERIMENT, out["lane"] or experiments.DEFAULT_LANE
    last, step = experiments.last_iteration(experiment, lane), experiments.frame_step()
    at = _checked("iteration", given, notices, lambda v: Range(0, last, integer=True).check("iteration", v))
    out["iteration"] = None if at is None else min(last, round(at / step) * step)
    return {k: v for k, v in out.items() if v is not None}


def _live(given: dict[str, str], bounds: Mapping, limits: Limits, notices: list[str]) -> dict[str, Any]:
    """The live lab's values given, each checked as the ``run`` endpoint checks it (for the link's task) and within
    its widget's range."""
    out = {"example": _checked("example", given, notices, lambda v: choice("example", v, list(EXAMPLE_NAMES)))}
    out["task"] = _checked("task", given, notices, lambda v: settings(RunForm(None, task=v), limits)["task"])
    named = EXAMPLE_NAMES[out["example"]][1] if out["example"] else RunForm.task
    task = out["task"] or named
    for name in LIVE_PARAMS[2:]:

        def check(value: str, name: str = name) -> Any:
            checked = settings(RunForm(None, **{"task": task, name: value}), limits)[name]
            lo_hi = TASKS[task].level.slider[:2] if name == "level" and TASKS[task].level.slider else bounds.get(name)
            if lo_hi is None or checked == "auto":  # λ auto: the box beside the slider (``live_values``)
                return checked
            label = TASKS[task].level.name if name == "level" else name
            return Range(*lo_hi, integer=isinstance(checked, int) and not isinstance(checked, bool)).check(label, value)

        out[name] = _checked(name, given, notices, check)
    return {k: v for k, v in out.items() if v is not None}


def notice(link: Link) -> str:
    """The page's one line about what a link's parameters were ignored (empty when none), safe as markdown."""
    if not link.notices:
        return ""
    shown_ = list(link.notices[:MAX_NOTICES])
    if len(link.notices) > MAX_NOTICES:
        shown_.append(f"and {len(link.notices) - MAX_NOTICES} more")
    return "⚠️ Ignored in this link: " + escape("; ".join(shown_)) + "."


def escape(text: str) -> str:
    """``text`` as markdown shows it literally: HTML escaped, markdown's punctuation backslashed, on one line."""
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|~<>])", r"\\\1", html.escape(" ".join(text.split()), quote=False))


# ---------------------------------------------------------------- a link → the page's values


def replay_state(link: Link) -> tuple[str, str, str, int, int | None] | None:
    """The replay a link shows: experiment, lane, the second lane, iteration and the lesson at that iteration (the one
    *Next lesson* goes on from); None when the link names none of the replay's parameters."""
    if not link.replay:
        return None
    r = link.replay
    experiment = r.get("experiment", experiments.DEFAULT_EXPERIMENT)
    lane, other = r.get("lane", experiments.DEFAULT_LANE), r.get("other", experiments.DEFAULT_OTHER)
    iteration = r.get("iteration", experiments.last_iteration(experiment, lane))
    lessons = experiments.events_of(experiment, lane, other)
    current = next((n for n, e in enumerate(lessons) if e.iter == iteration), None)
    return experiment, lane, other, iteration, current


def live_values(link: Link) -> dict[str, Any]:
    """The live lab's widgets a link sets, by widget name (LIVE_WIDGETS): the example's image (else the default
    image) and its task, its kind (observed); a task's own level and controlled network unless the link gives them."""
    v = dict(link.live)
    file, task, kind = EXAMPLE_NAMES[v.pop("example", DEFAULT_NAME)]
    out: dict[str, Any] = {"image": str(ASSETS / file)}
    if "example" in link.live:
        out["example"] = link.live["example"]
        v.setdefault("task", task)
        v.setdefault("observed", kind == "degraded")
    if "level" in v:  # checked for the link's task, else the page's first (RunForm's)
        v.setdefault("task", RunForm.task)
    if "lipschitz" in v:  # auto: the slider shows the task's default λ, the box beside it is ticked; a λ clears it
        v.setdefault("task", RunForm.task)
        auto = v["lipschitz"] == "auto"
        v["lipschitz"] = default_control(v["task"])["lipschitz"] if auto else v["lipschitz"]
        v["lipschitz_auto"] = auto
    if "task" in v:
        spec = TASKS[v["task"]]
        v = {**default_control(v["task"]), "level": spec.level.default, **v}
        level = v.pop("level")
        if spec.level.choices:
            out.update(level_slider=events.level_update(v["task"]), sr_factor=int(level))
        else:
            out["level_slider"] = events.level_update(v["task"], level)
    out.update(v)
    return out


# ---------------------------------------------------------------- the page's values → a link


def query(tab: str, values: Mapping[str, Any], hide_controls: bool = False) -> str:
    """The link (its query, no ``?``) of the page's state: ``tab`` (a public name) and the widgets' values by widget
    name (REPLAY_PARAMS' widgets, LIVE_WIDGETS but the image); a live setting at its default is left out. The page's
    own writer (``LOAD_JS``) follows the same rule with ``writer_config()``."""
    c = writer_config()
    out: dict[str, Any] = {"tab": tab}
    if tab == "replays":
        out.update({k: values.get(k, "") for k in REPLAY_PARAMS})
    else:
        example = values.get("example") or ""
        if example and example != c["default_example"]:
            out["example"] = example
        out["task"] = task = values["task"]
        t = c["tasks"][task]
        given = dict(values, level=values.get("sr_factor" if t["radio"] else "level_slider"))
        if values.get("lipschitz_auto"):
            given["lipschitz"] = "auto"
        if given.get("upsample") != c["sigma_with"]:
            given["gaussian_sigma"] = None
        defaults = {**c["defaults"], **t, "observed": c["examples"].get(example, False)}
        for name in LIVE_PARAMS[2:]:
            value = given.get(name)
            if value is not None and value != "" and _fmt(value) != _fmt(defaults[name]):
                out[name] = value
    if hide_controls:
        out["controls"] = "hide"
    return urlencode({k: _fmt(v) for k, v in out.items()})


def _fmt(value: Any) -> str:
    """A value as a link writes it: true/false, numbers in their shortest form (10 significant digits), text as is."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return f"{float(value):.10g}"
    return str(value)


def writer_config(limits: Limits = LIMITS) -> dict:
    """What the page's link writer needs, from the facts' own places: the widgets it reads in order, each task's
    defaults and whether its level is the SR factor's radio, the other settings' defaults (RunForm's, this device's),
    the examples' kinds."""
    tasks = {}
    for name, spec in TASKS.items():
        control = default_control(name, limits)
        if control.pop("lipschitz_auto"):  # a link says auto as its λ (and leaves it out when it is the default)
            control["lipschitz"] = "auto"
        tasks[name] = dict(level=spec.level.default, radio=bool(spec.level.choices), **control)
    form = RunForm(None)
    defaults = dict(
        iterations=limits.iterations,
        seed=form.seed,
        auto_stop=form.auto_stop,
        compare=form.compare,
        max_side=limits.max_side,
        width=limits.width,
        lr=limits.lr,
    )
    return dict(
        replay=list(REPLAY_PARAMS),
        live=list(LIVE_WIDGETS[1:]),
        live_params=list(LIVE_PARAMS[2:]),
        tasks=tasks,
        defaults=defaults,
        default_example=DEFAULT_NAME,
        examples={name: kind == "degraded" for name, (_, _, kind) in EXAMPLE_NAMES.items()},
        sigma_with="gaussian",  # the upsampling the σ belongs to (the σ slider is shown only for it)
        focus_css=FOCUS_CSS,
    )


# ---------------------------------------------------------------- the page: restoring a link, writing the address bar

#: The focused view (``controls=hide``): the header, the intro, the tab bar and the controls' columns hidden
FOCUS_CSS = (
    "#header, #replay_intro, #replay_controls, #live_controls, #tabs > .tab-wrapper, footer {display: none !important}"
)
#: The page's link writer, defined by the load event before it asks the server (``window.sblLinks``): it reads the
#: link (``controls=hide`` at once), and after the load event writes the address bar from the widgets' values as they
#: change, at most twice a second (Safari allows 100 writes in 30 s; Play shows about 3 frames a second), with
#: ``history.replaceState`` (no history entry per frame); in a frame of a Space's page it also asks huggingface.co to
#: show the same query. Not in a Gradio web component on another page (whose address is not the app's): there it
#: reads and writes nothing.
LOAD_JS = r"""
(query) => {
  if (!window.sblLinks) {
    const C = __CONFIG__;
    const own = window.__gradio_mode__ === "app";
    const q = new URLSearchParams(own ? location.search : "");
    const read = own && location.search.length <= C.max_query && [...q.keys()].length <= C.max_params;
    const fmt = (x) => typeof x === "number" ? String(Number(x.toPrecision(10))) : String(x ?? "");
    const L = window.sblLinks = {
      own, tab: "replays", values: null, ready: false, timer: 0,
      focus: read && q.getAll("controls").length === 1 && q.get("controls") === "hide",
      query(values) {
        const v = {}, p = new URLSearchParams({tab: L.tab});
        [...C.replay, ...C.live].forEach((name, i) => { v[name] = values[i]; });
        if (L.tab === "replays") {
          C.replay.forEach((name) => p.set(name, fmt(v[name])));
        } else {
          const example = v.example || "", t = C.tasks[v.task] || {};
          if (example && example !== C.default_example) p.set("example", example);
          p.set("task", fmt(v.task));
          v.level = t.radio ? v.sr_factor : v.level_slider;
          if (v.lipschitz_auto) v.lipschitz = "auto";
          if (v.upsample !== C.sigma_with) v.gaussian_sigma = null;
          const d = {...C.defaults, ...t, observed: C.examples[example] || false};
          C.live_params.forEach((name) => {
            const x = v[name];
            if (x !== null && x !== undefined && x !== "" && fmt(x) !== fmt(d[name])) p.set(name, fmt(x));
          });
        }
        if (L.focus) p.set("controls", "hide");
        if (L.own) {  // Gradio's and the Space's own (?__theme=dark) stay
          new URLSearchParams(location.search).forEach((value, name) => {
            if (name.startsWith("__") || C.gradio_own.includes(name)) p.append(name, value);
          });
        }
        return p.toString();
      },
      changed(values, tab) {
        if (tab) L.tab = tab;
        if (values) L.values = values;
        if (L.ready && !L.timer) L.timer = setTimeout(L.write, 500);
        return [];
      },
      start(values) { L.values = values; L.ready = true; L.write(); return []; },
      write() {
        clearTimeout(L.timer); L.timer = 0;
        if (!L.own || !L.values) return;
        const qs = L.query(L.values);
        if (location.search !== "?" + qs) {
          try { history.replaceState(history.state, "", "?" + qs + location.hash); } catch (e) {}
          if (window.parent !== window) {
            try { window.parent.postMessage({queryString: qs}, "https://huggingface.co"); } catch (e) {}
          }
        }
      },
      async copy(id) {
        L.write();
        const app = document.querySelector("gradio-app[src]")?.getAttribute("src");  // a web component's app
        const url = L.own || !app ? location.href : app.replace(/\/?$/, "/?") + L.query(L.values || []);
        let ok = false;
        try { await navigator.clipboard.writeText(url); ok = true; } catch (e) {
          try {
            const t = document.createElement("textarea");
            t.value = url; t.style.position = "fixed"; t.style.opacity = "0";
            document.body.appendChild(t); t.select(); ok = document.execCommand("copy"); t.remove();
          } catch (e2) {}
        }
        const v = L.values || [], upload = L.tab === "live" && !v[C.replay.length];
        const text = ok ? C.copied + (upload ? C.upload_note : "") : C.copy_failed + url;
        const status = document.querySelector("#" + id + " [role=status]");
        if (status) { status.textContent = ""; setTimeout(() => { status.textContent = text; }, 50); }
        return [];
      },
    };
    if (L.focus) {
      const style = document.createElement("style");
      style.textContent = C.focus_css;
      document.head.appendChild(style);
    }
  }
  return [window.sblLinks.own ? location.search : ""];
}
"""
COPIED = "Link copied"
UPLOAD_NOTE = " (an uploaded image cannot travel in a link: it opens with the first example)"
COPY_FAILED = "Copy this link by hand: "


def load_js() -> str:
    """LOAD_JS with its configuration (``writer_config``) written in."""
    config = dict(
        writer_config(),
        max_query=MAX_QUERY,
        max_params=MAX_PARAMS,
        copied=COPIED,
        upload_note=UPLOAD_NOTE,
        copy_failed=COPY_FAILED,
        gradio_own=list(GRADIO_OWN),
    )
    return LOAD_JS.replace("__CONFIG__", json.dumps(config, ensure_ascii=False))


def notice_box() -> gr.Markdown:
    """The page's line about what a link's parameters were ignored (hidden until one is)."""
    return gr.Markdown(visible=False, elem_id="link_notice")


def copy_button(prefix: str) -> gr.Button:
    """A tab's **Copy link** button, and beside it the line that says it copied (a status screen readers read)."""
    with gr.Row(elem_id=f"{prefix}_link"):
        button = gr.Button("Copy link", size="sm", elem_id=f"{prefix}_copy", scale=0, min_width=120)
        gr.HTML('<span role="status" aria-live="polite"></span>', elem_id=f"{prefix}_copied", js_on_load=None)
    button.click(None, None, None, js=f'() => window.sblLinks?.copy("{prefix}_copied") ?? []', api_visibility="private")
    return button


def widget_bounds(w: Mapping[str, Any]) -> dict[str, tuple[float, float]]:
    """The (minimum, maximum) of the live lab's numeric widgets by parameter name (the level's come from its task)."""
    return {
        name: (w[name].minimum, w[name].maximum)
        for name in LIVE_PARAMS
        if name in w and getattr(w[name], "minimum", None) is not None and getattr(w[name], "maximum", None) is not None
    }


def _replay_outputs(experiment: str, lane: str, other: str, iteration: int, current: int | None) -> tuple:
    """The replay tab's widgets at a link's replay (REPLAY_OUTPUTS' order in ``wire``), drawn as a new experiment: its
    lesson buttons with the lesson at the iteration chosen, if there is one."""
    last = experiments.last_iteration(experiment, lane)
    lessons = experiments.lessons_update(experiment, lane, other, current)
    shown_ = experiments.fresh(experiments.frame(experiment, lane, other, iteration, current, experiments.IMAGES))
    return (experiment, lane, other, gr.update(maximum=last, value=iteration), lessons, *shown_)


#: The replay tab's widgets a link sets, in the load event's order
REPLAY_OUTPUTS = (*REPLAY_PARAMS, "current", *experiments.TAB_OUTPUTS)


def wire(demo: gr.Blocks, view: Mapping[str, Any], r: Mapping[str, Any], w: Mapping[str, Any], **options: Any) -> None:
    """Restore a link when the page loads (one server event, ``options`` its queue settings; a plain visit costs what
    the default image costs), then write the address bar from the page (client-side events, no server call).
    ``view``: the tabs, the two tabs and the notice; ``r`` and ``w``: the replay's and the live lab's widgets."""
    bounds = widget_bounds(w)
    outputs = [view["tabs"], view["notice"], *(r[k] for k in REPLAY_OUTPUTS), *(w[k] for k in LIVE_WIDGETS)]

    async def page_load(query: str) -> tuple:
        """The page's state from its link: the tab, the notice, the replay's widgets, the live lab's."""
        link = parse(query, bounds)
        text = notice(link)
        state = replay_state(link)
        if state is None:
            replay = (gr.skip(),) * len(REPLAY_OUTPUTS)
        else:
            replay = await experiments.drawn("view", _replay_outputs, *state)
        live = live_values(link)
        return (
            gr.update(selected=TABS[link.tab]) if link.tab else gr.skip(),
            gr.update(value=text, visible=True) if text else gr.skip(),
            *replay,
            *(live.get(k, gr.skip()) for k in LIVE_WIDGETS),
        )

    query_box = gr.Textbox(visible=False, label="link")
    loaded = demo.load(guarded(page_load), query_box, outputs, js=load_js(), show_progress="hidden", **options)
    state = [*(r[k] for k in REPLAY_PARAMS), *(w[k] for k in LIVE_WIDGETS[1:])]
    private = dict(api_visibility="private", show_progress="hidden")
    loaded.then(None, state, None, js="(...v) => window.sblLinks?.start(v) ?? []", **private)
    js = "(...v) => window.sblLinks?.changed(v) ?? []"
    gr.on([c.change for c in state], None, state, None, js=js, **private)
    for name, tab in TABS.items():
        view[tab].select(None, state, None, js=f'(...v) => window.sblLinks?.changed(v, "{name}") ?? []', **private)
    # an uploaded image is no example: a link then opens the first example
    for trigger in (w["image"].upload, w["image"].clear):
        trigger(None, None, w["example"], js='() => [""]', **private)
