"""The Gradio layout and its wiring: widgets → demo.events (no logic here)."""

from __future__ import annotations

import html
import inspect
import os
from collections.abc import Callable, Iterator
from typing import Any

import gradio as gr
from starlette.middleware import Middleware

from dip_core import TASKS
from dip_core.config import choices, field_bounds

from . import events, experiments, links
from .errors import guarded
from .examples import ASSETS, EXAMPLES
from .exports import DOWNLOAD_TTL_S
from .form import CAPTION_OUTPUTS, RUN_OUTPUTS, RunForm
from .guards import MAX_UPLOAD, RequestGuard, bound_component, guard_inputs, image_input
from .settings import AUTO_STOP_LABELS, LIMITS, UPSAMPLE_LABELS, default_control


def task_choices() -> list[tuple[str, str]]:
    """The task dropdown's (label, name) pairs, from the task specs."""
    return [(spec.label, name) for name, spec in TASKS.items()]


HEADER = """# Spectral Bias Lab
A randomly initialised network is fitted to **one** degraded image (the *Deep Image Prior*). It learns
**low frequencies first**: stopped in time it restores the image, left running it fits the noise too.
A **Lipschitz bound λ** on its convolutions and **Gaussian upsampling** slow that down, so it stops getting
worse (Shi, Mettes, Maji & Snoek, IJCV 2022). **Paper experiments** replays the paper's runs at once; in the
**Live lab** you press **Run** on your own image and watch both networks side by side."""
HELP = """**Images.** The observation is what the networks are fitted to; in compare mode *vanilla DIP*
(λ = 0, bilinear) and your *controlled* network start from the same seed and input and advance in lockstep.

**PSNR / SSIM** (when the clean image is known): vanilla DIP peaks, then decays as it fits the noise; the
controlled network decays far more slowly. At this demo's CPU scale λ = 1 holds (it lost ≤ 0.1 dB over 3000 steps
on House, Peppers, F16 and kodim03) but learns more slowly: it reaches vanilla's best PSNR late (within 0.3 dB of it
on these four, or above); λ = 1.4 peaks higher but loses up to 2.3 dB (reports/live_default). So denoising and
JPEG start on **λ auto**, whose rules met the bar on 20 images nobody tuned on: λ 1 for a smooth image (House), 1.4
for a detailed one (the zone plate), learned bounds for JPEG; the warning line says which ran. ★ marks the best so
far; the status line gives each run's drop from it (−). The numbered marks ①②… are the lessons as they happen (the
*Paper experiments* tab explains them).

**FBC per band**: how much of each frequency band of the observation the output reproduces (band 1 = lowest,
band 5 = highest, 1 = all of it). Low bands are fitted first (spectral bias); in vanilla DIP the high bands
(mostly noise) rise later, in the controlled network they stay low.

**Blur / sharpness ratio** of the output: when it stops changing, the paper's automatic stop fires (dashed
line); *relative* is our variant for short budgets. For denoising, *noise level* (ours) stops instead when the
fit's error, averaged over 50 steps, falls to what the noise alone leaves (σ² less clipping): after that, all
there is left to fit is the noise.

**Spectrum ratio**: per frequency (centre = lowest), |F(output)| / |F(observation)| clipped to 1; the dotted
circles are the five FBC bands. Bright means fitted."""
REPLAY_INTRO = """Runs of the paper's experiments, computed beforehand: nothing is computed while you watch. Pick an
experiment and two lanes (vanilla DIP and one of the paper's controls), press **Play** or drag the iteration, or press
**Next lesson** to be walked through what the curves show (the numbered marks on the plots)."""
CSS = """
#status textarea {font-family: ui-monospace, Menlo, monospace; font-size: 13px}
#images .image-frame, #replay_images .image-frame {width: 100%}
#images .image-frame img, #replay_images .image-frame img {object-fit: contain}
.image-row {flex-wrap: nowrap !important; gap: 8px}
.image-row > * {min-width: 0 !important; flex: 1 1 0 !important}
.image-row [data-testid="block-label"] {position: static !important; white-space: normal !important; margin: 4px;
  background: none !important; border: none !important; box-shadow: none !important; padding: 2px !important}
.image-row [data-testid="block-label"] > span {display: none}
@media (max-width: 600px) {
  .image-row [data-testid="block-label"], .caption {font-size: 12px !important; line-height: 1.3 !important}
}
.caption, .caption:disabled {background: none !important; border: none !important; box-shadow: none !important;
  opacity: 1 !important; cursor: default !important; white-space: normal !important; text-align: left !important;
  justify-content: flex-start !important; height: auto !important; min-height: 0 !important;
  padding: 2px 6px !important;
  font-size: var(--block-label-text-size) !important; font-weight: var(--block-label-text-weight) !important;
  color: var(--block-label-text-color) !important}
#examples button {font-size: 12px}
.sr-only {position: absolute !important; width: 1px !important; height: 1px !important; padding: 0 !important;
  margin: -1px !important; overflow: hidden !important; clip: rect(0 0 0 0) !important; white-space: nowrap !important;
  border: 0 !important}
.icon-button-wrapper a.download-link, .icon-button-wrapper .icon-button {min-width: 24px; min-height: 24px;
  display: inline-flex; align-items: center; justify-content: center}
.icon-button-wrapper a.download-link > .icon-button {pointer-events: none}
"""


#: What a screen reader needs that Gradio's markup leaves out, kept current as the page changes (WCAG 2.2 AA, axe-core
#: in tests/test_a11y_browser.py): each image's alt text says what it shows, from the caption under it or its label
#: (run, λ / σ, PSNR, iteration) after the experiment or task, so it follows every scrub, Play frame and live frame
#: with no update dict per frame (they cost Gradio a component per image per answer: demo/experiments.py); an empty
#: image or plot box is an image named "empty" (Gradio gives it an aria-label and no role); the status line's changes
#: of kind (a run started, done, stopped) and the lesson Next or the lesson buttons moved to are announced; a warning
#: toast's header, a button around its Close button (Gradio's markup: axe's nested-interactive), becomes plain text.
A11Y_SCRIPT = """
(() => {
  const IMAGES = ["replay_other_image", "replay_lane_image", "replay_observed", "replay_clean", "image", "vanilla",
    "result", "observation", "baseline", "clean"];
  const CAPTIONS = {replay_lane_image: "replay_lane_caption", replay_other_image: "replay_other_caption",
    vanilla: "vanilla_caption", result: "result_caption", image: "notice"};
  const text = (el) => (el ? el.textContent.replace(/\\s+/g, " ").trim() : "");
  const value = (sel) => document.querySelector(sel)?.value || "";
  const labelOf = (block) => text(block?.querySelector('[data-testid="block-label"]'));
  let said = {status: "", lesson: ""};
  function announce(line) {
    let box = document.getElementById("a11y_announcer");
    if (!box) {
      box = Object.assign(document.createElement("div"), {id: "a11y_announcer", className: "sr-only"});
      box.setAttribute("role", "status");
      document.body.appendChild(box);
    }
    box.textContent = line;
  }
  function describe() {
    for (const id of IMAGES) {
      const block = document.getElementById(id);
      if (!block) continue;
      const label = labelOf(block);
      const caption = text(document.getElementById(CAPTIONS[id]));
      const name = id === "image" ? `${label || "Image"}${caption ? " (" + caption + ")" : ""}` : caption || label;
      const what = id.startsWith("replay_") ? value("#replay_experiment input") : value("#task input");
      const where = id.startsWith("replay_") ? `Paper experiment ${what}` : `Live lab, ${what}`;
      const alt = what && name.includes(what) ? name : `${where}: ${name}`;
      for (const img of block.querySelectorAll("img")) if (img.alt !== alt) img.alt = alt;
    }
    for (const box of document.querySelectorAll(".empty[aria-label]:not([role])")) {
      const block = box.closest("[id]");
      const id = block ? block.id : "";
      const name = text(document.getElementById(CAPTIONS[id])) || labelOf(block);
      box.setAttribute("role", "img");
      box.setAttribute("aria-label", `${name || id.replace(/_/g, " ") || "panel"}: empty`);
    }
    for (const icon of document.querySelectorAll("a.download-link > .icon-button:not([tabindex])")) icon.tabIndex = -1;
    for (const header of document.querySelectorAll('.toast-header[role="button"]')) {  // a button around Close
      header.removeAttribute("role");
      header.removeAttribute("tabindex");
    }
    for (const group of document.querySelectorAll("fieldset.block")) {  // a gr.Radio: one group, named by its label
      const radios = group.querySelectorAll('input[type="radio"]');
      const label = text(group.querySelector('[data-testid="block-info"]'));
      if (!radios.length) continue;
      for (const radio of radios) if (radio.name !== `${group.id}-choice`) radio.name = `${group.id}-choice`;
      if (label && group.getAttribute("aria-label") !== label) group.setAttribute("aria-label", label);
    }
    const lesson = text(document.querySelector("#replay_lesson mark"));
    if (lesson && lesson !== said.lesson) announce(lesson);
    said.lesson = lesson;
  }
  let queued = false;
  new MutationObserver(() => {
    if (!queued) queued = requestAnimationFrame(() => { queued = false; describe(); });
  }).observe(document.documentElement, {childList: true, subtree: true, characterData: true, attributes: true,
    attributeFilter: ["src", "name"]});
  setInterval(() => {  // a textarea's value is no DOM change: the status line is read each second
    const status = value("#status textarea");
    const kind = (line) => line.split(/[\\s:]/)[0];
    if (status && kind(status) !== kind(said.status)) announce(status);
    said.status = status;
  }, 1000);
})();
"""


#: The link previews' image (head): the README's screenshot
SCREENSHOT = ASSETS / "screenshot.png"


def head() -> str:
    """The page's head: link previews (Open Graph, Twitter card) and the accessibility script. og:image must be an
    absolute address: on a Hugging Face Space (SPACE_HOST) the Space's own ``/gradio_api/file=`` address of
    assets/screenshot.png (a static path, build_demo), elsewhere the same path relative to the page."""
    host = os.environ.get("SPACE_HOST")
    image = f"{'https://' + host + '/' if host else ''}gradio_api/file={SCREENSHOT}"
    title = "Spectral Bias Lab"
    about = (
        "See, measure and control the spectral bias of the Deep Image Prior: replays of the paper's experiments, "
        "and live runs on your own image, vanilla DIP beside a Lipschitz-controlled network."
    )
    tags = [("property", "og:title", title), ("property", "og:description", about)]
    tags += [("property", "og:image", image), ("property", "og:type", "website")]
    tags += [("name", "twitter:card", "summary_large_image"), ("name", "twitter:title", title)]
    tags += [("name", "twitter:description", about), ("name", "twitter:image", image)]
    meta = "\n".join(f'<meta {kind}="{key}" content="{html.escape(content)}" />' for kind, key, content in tags)
    return f"{meta}\n<script>{A11Y_SCRIPT}</script>"


#: The Soft indigo theme with every text colour at WCAG AA contrast (≥ 4.5:1): labels, tabs, info and the
#: slider's limits a shade darker, the primary buttons' fill a shade darker under their white text.
THEME = gr.themes.Soft(primary_hue="indigo").set(
    color_accent="*primary_600",
    block_label_text_color="*primary_700",
    block_title_text_color="*primary_700",
    body_text_color_subdued="*neutral_600",
    button_primary_background_fill="*primary_600",
    button_primary_background_fill_hover="*primary_700",
    checkbox_label_background_fill_selected="*primary_600",
)


def build_demo() -> gr.Blocks:
    """The whole app (``app.make_app`` adds the queue settings; then ``.launch(**launch_options())``)."""
    # delete_cache: every 10 minutes Gradio deletes the uploads and outputs it cached over an hour ago (and all
    # of them when the app shuts down)
    # the replays' frames are served where they lie, never copied to Gradio's cache once per answer (its checks and
    # copies were a quarter of the server's event loop while a class scrubbed); they are public, committed files
    gr.set_static_paths(paths=[experiments.ROOT, SCREENSHOT])  # the screenshot: the link previews' image (head)
    with gr.Blocks(title="Spectral Bias Lab", delete_cache=(600, DOWNLOAD_TTL_S)) as demo:
        gr.Markdown(HEADER, elem_id="header")
        view = {"notice": links.notice_box()}  # a link's tab and notice (demo/links.py)
        with gr.Tabs(selected="replay_tab", elem_id="tabs") as view["tabs"]:
            with gr.Tab("Paper experiments (instant replays)", id="replay_tab", elem_id="replay_tab") as tab:
                view["replay_tab"], r = tab, _replay_tab()
            with gr.Tab("Live lab (your image)", id="live_tab", elem_id="live_tab") as view["live_tab"]:
                with gr.Row(equal_height=False):
                    with gr.Column(scale=1, min_width=330, elem_id="live_controls"):
                        w = _controls()
                    with gr.Column(scale=3):
                        o = _views()
        # the API's level (None = the task's default) and mask (white = known), filled from the widgets on Run
        w["level"] = gr.Number(None, visible=False, label="level")
        w["mask"] = image_input(value=None, format="png", visible=False, label="mask")
        # the slider's λ, or "auto": JSON keeps a number a number (a Textbox would send the API's numbers as text)
        w["lipschitz_sent"] = gr.JSON(None, visible=False, label="lipschitz")
        _wire(demo, w, o)
        _wire_replays(r)
        links.wire(demo, view, r, w, api_visibility="private", concurrency_id="ui", concurrency_limit=UI_EVENTS)
    guard_inputs(demo)
    return demo


def _replay_controls(r: dict, first: dict | None) -> None:
    """The tab's left column: experiment, the two lanes, the iteration, Play / Pause / Next lesson, the readout."""
    last = experiments.last_iteration()
    r["experiment"] = gr.Dropdown(
        experiments.experiment_choices(),
        value=experiments.DEFAULT_EXPERIMENT,
        label="Experiment",
        info="the image and its degradation, each run once per lane beforehand",
        elem_id="replay_experiment",
    )
    # in the order of the images: the second lane (vanilla DIP by default) left, the lane right
    r["other"] = gr.Dropdown(
        experiments.lane_choices(none=True),
        value=experiments.DEFAULT_OTHER,
        label="Left image: lane (or none)",
        info="a second run on the same axes: vanilla DIP shows the decay the controls prevent",
        elem_id="replay_other",
    )
    r["lane"] = gr.Dropdown(
        experiments.lane_choices(),
        value=experiments.DEFAULT_LANE,
        label="Right image: lane",
        info="lower λ or Gaussian upsampling hold the high bands (the noise) down longer",
        elem_id="replay_lane",
    )
    r["iteration"] = gr.Slider(
        0,
        max(1, last),
        value=last,
        step=experiments.frame_step(),
        label="Iteration",
        info="the step shown: the images, the readout and the cursor on the curves",
        elem_id="replay_iteration",
    )
    with gr.Row():
        r["play"] = gr.Button("▶ Play", variant="primary", elem_id="replay_play", size="sm")
        r["pause"] = gr.Button("❚❚ Pause", elem_id="replay_pause", size="sm")
        r["next"] = gr.Button("Next lesson →", variant="secondary", elem_id="replay_next", size="sm")
    r["copy"] = links.copy_button("replay")
    r["readout"] = gr.Markdown(first and first["readout"], label="Readout", elem_id="replay_readout")
    gr.Markdown(experiments.scale_note(), elem_id="replay_scale")


def _replay_tab() -> dict:
    """Precomputed runs of the paper's experiments: pick an experiment and lanes, play, scrub, or follow the lesson.

    Every widget is built with the default replay's values, so the page shows it (and its lessons) on opening."""
    r: dict = {}
    gr.Markdown("## Paper experiments: replays", elem_classes=["sr-only"])  # the tab's heading, for screen readers
    gr.Markdown(REPLAY_INTRO, elem_id="replay_intro")
    first = experiments.show_replay() if experiments.replays() is not None else None
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=300, elem_id="replay_controls"):
            _replay_controls(r, first)
        with gr.Column(scale=3):
            kw = dict(type="filepath", interactive=False, buttons=["download"], min_width=0)
            # the default replay's labels at first; each scrub then says lane, λ / σ, PSNR and iteration
            lanes = [("other_image", "Left lane"), ("lane_image", "Right lane")]
            inputs = [("observed", "Observation"), ("clean", "Clean image")]

            def start(name: str, label: str) -> dict:
                shown = (first or {}).get(name, {})
                shown = shown if isinstance(shown, dict) else {"value": shown}
                return {"label": label, **{k: v for k, v in shown.items() if k in ("value", "visible", "label")}}

            with gr.Column(elem_id="replay_images"):
                # the two lanes side by side, each named in full by the caption under it (lane, λ / σ, PSNR)
                with gr.Row(elem_id="replay_lanes", elem_classes=["image-row"]):
                    for name, label in lanes:
                        with gr.Column(min_width=0, elem_classes=["lane"]):
                            r[name] = gr.Image(
                                **start(name, label), elem_id=f"replay_{name}", height=240, show_label=False, **kw
                            )
                            caption_name = name.replace("_image", "_caption")
                            text = start(caption_name, "")
                            r[caption_name] = caption(text.get("value", ""), f"replay_{caption_name}")
                            r[caption_name].visible = text.get("visible", True)
                with gr.Row(elem_id="replay_inputs", elem_classes=["image-row"]):
                    for name, label in inputs:
                        r[name] = gr.Image(**start(name, label), elem_id=f"replay_{name}", height=170, **kw)
            with gr.Row():
                r["curves"] = gr.Plot(
                    first and first["curves"], label="Curves", elem_id="replay_curves", scale=2, show_label=False
                )
                r["spectrum"] = gr.Plot(
                    first and first["spectrum"], label="Spectrum", elem_id="replay_spectrum", scale=1, show_label=False
                )
            # the lesson shown (Next moves it, a click on one jumps to its iteration): its number, not a gr.State
            # (State makes the page keep a heartbeat open)
            r["current"] = gr.Radio(
                experiments.lesson_choices(),
                value=None,
                label="Go to a lesson",
                info="each moves the replay to the iteration where the curves show it",
                elem_id="replay_lessons",
            )
            r["lesson"] = gr.Markdown(first and first["lesson"], label="Lesson", elem_id="replay_lesson")
    return r


def _wire_replays(r: dict) -> None:
    """Replays use no GPU and never wait behind live runs: groups of their own (views; Play), bounded, whose events are
    coroutines that hold no thread while they wait and draw in the tab's own threads (demo/experiments.py)."""
    view_ = dict(concurrency_id="replay", concurrency_limit=experiments.VIEW_EVENTS, show_progress="hidden")
    g, on_loop = guarded, experiments.on_loop
    view = [r[k] for k in ("experiment", "lane", "other", "iteration")]
    shown_ = [r[k] for k in experiments.TAB_OUTPUTS]  # the captions last: API clients do not receive them
    labelled, scrub = g(on_loop(experiments.replay)), g(on_loop(experiments.scrub))
    r["iteration"].release(labelled, view, shown_, api_name="replay", **view_)
    r["iteration"].input(scrub, view, shown_, api_visibility="private", trigger_mode="always_last", **view_)
    for name in ("lane", "other"):
        r[name].input(labelled, view, shown_, api_visibility="private", **view_)
        r[name].input(g(on_loop(experiments.lessons_update)), view[:3], r["current"], api_visibility="private", **view_)
    r["experiment"].input(
        g(on_loop(experiments.on_experiment_change)),
        view[:3],
        [r["iteration"], r["current"], *shown_],
        api_visibility="private",
        **view_,
    )
    r["next"].click(
        g(on_loop(experiments.next_lesson)),
        [*view[:3], r["current"]],
        [r["current"], r["iteration"], *shown_],
        api_visibility="private",
        **view_,
    )
    r["current"].input(
        g(on_loop(experiments.go_to_lesson)),
        [*view[:3], r["current"]],
        [r["iteration"], *shown_],
        api_visibility="private",
        **view_,
    )
    playing = r["play"].click(
        g(experiments.play),
        view,
        [r["iteration"], *(r[k] for k in experiments.PLAY_OUTPUTS)],
        api_visibility="private",
        concurrency_id="replay_play",
        concurrency_limit=experiments.PLAY_EVENTS,
        show_progress="hidden",
    )
    r["pause"].click(None, None, None, cancels=[playing], api_visibility="private")


def _controls() -> dict:
    """The left column: image, examples, task and level, network and run settings, Run / Stop."""
    gr.Markdown("## Live lab: your image", elem_classes=["sr-only"])  # the tab's heading, for screen readers
    w = {"image": image_input(label="Image", elem_id="image", height=210, sources=["upload", "clipboard"])}
    w["notice"] = gr.Markdown(elem_id="notice")
    _task_controls(w)
    _mask_controls(w)
    w["compare"] = gr.Checkbox(
        True,
        label="Compare with vanilla DIP (λ = 0, bilinear), in lockstep",
        info="same seed and observation, shared axes: vanilla's decay beside your network's",
        elem_id="compare",
    )
    _network_controls(w)
    with gr.Accordion("Run settings", open=False):
        _run_settings(w)
    with gr.Row():
        w["run"] = gr.Button("Run", variant="primary", elem_id="run")
        w["stop"] = gr.Button("Stop", variant="stop", elem_id="stop")
    w["load"] = gr.UploadButton("Load a config JSON", file_types=[".json"], size="sm", elem_id="load")
    bound_component(w["load"])  # a config given by URL is refused, not fetched
    w["copy"] = links.copy_button("live")
    return w


def _task_controls(w: dict) -> None:
    """The examples, then the widgets they set: observed, task and level (λ is made here, shown with the network)."""
    later = dict(render=False)  # created first for the examples, shown below them
    w["observed"] = gr.Checkbox(
        False,
        label="The image is already degraded (no ground truth)",
        info="fitted as it is: no clean image, so no PSNR or SSIM curve (the loss instead)",
        elem_id="observed",
        **later,
    )
    first = next(iter(TASKS.values()))
    w["task"] = gr.Dropdown(
        task_choices(),
        value=first.name,
        label="Task",
        info="what degrades the image; each task sets its level and its λ",
        elem_id="task",
        **later,
    )
    lo, hi, step = first.level.slider
    w["level_slider"] = gr.Slider(
        lo,
        hi,
        value=first.level.default,
        step=step,
        label=first.level.name.capitalize(),
        info=first.level.info,
        elem_id="level",
        **later,
    )
    w["lipschitz"] = gr.Slider(
        0,
        LIMITS.lipschitz_cap,
        value=default_control(first.name)["lipschitz"],
        step=0.05,
        label="Lipschitz bound λ (0 = off)",
        info="lower holds the high bands down longer (and learns more slowly); 0 = vanilla DIP",
        elem_id="lipschitz",
        **later,
    )
    w["lipschitz_auto"] = gr.Checkbox(
        default_control(first.name)["lipschitz_auto"],
        label="λ auto: the task's own rule",
        info="a rule where one held on images nobody tuned on, else the task's best fixed λ; the status says which",
        elem_id="lipschitz_auto",
        **later,
    )
    # the example shown, by name, for a link (demo/links.py; an upload clears it)
    w["example"] = gr.Textbox(links.DEFAULT_NAME, visible=False, label="example")
    gr.Examples(
        [
            [str(ASSETS / f), t, kind == "degraded", TASKS[t].level.default, c["lipschitz"], c["lipschitz_auto"], name]
            for name, (f, t, kind) in links.EXAMPLE_NAMES.items()
            if (c := default_control(t))
        ],
        inputs=[
            w["image"],
            w["task"],
            w["observed"],
            w["level_slider"],
            w["lipschitz"],
            w["lipschitz_auto"],
            w["example"],
        ],
        label="Examples (click one, then Run)",
        elem_id="examples",
        example_labels=[caption for *_, caption in EXAMPLES],
        examples_per_page=len(EXAMPLES),
    )
    for name in ("observed", "task", "level_slider"):
        w[name].render()


def _mask_controls(w: dict) -> None:
    """The SR factor's radio buttons and the inpainting mask's tools (shown for their tasks)."""
    sr = next(spec for spec in TASKS.values() if spec.level.choices)  # the one task whose level is a radio
    w["sr_factor"] = gr.Radio(
        list(sr.level.choices),
        value=int(sr.level.default),
        label=sr.level.short.capitalize(),
        info=sr.level.info,
        visible=False,
    )
    with gr.Group(visible=False) as w["mask_box"]:
        w["mask_mode"] = gr.Radio(
            [("random pixels (keep ratio)", "random"), ("drawn", "drawn")],
            value="random",
            label="Mask",
            info="the pixels the loss never sees: drawn on the image, or a random share",
        )
        w["editor"] = gr.ImageEditor(
            type="numpy",
            label="Paint over the pixels to remove",
            sources=(),
            transforms=(),
            layers=False,
            height=280,
            elem_id="editor",
            brush=gr.Brush(colors=["#ff2d95"], color_mode="fixed", default_size=10),
        )
        bound_component(w["editor"])  # its component server and preprocess: bounded (demo.inputs EDITOR_*)


def _network_controls(w: dict) -> None:
    """The controlled network: λ, the upsampling and its Gaussian σ (the first task's defaults)."""
    control = default_control(next(iter(TASKS)))
    with gr.Accordion("Controlled network", open=True):
        w["lipschitz"].render()
        w["lipschitz_auto"].render()
        w["upsample"] = gr.Radio(
            [(v, k) for k, v in UPSAMPLE_LABELS.items()],
            value=control["upsample"],
            label="Upsampling",
            info="Gaussian slows the high bands further (the authors pair it with λ ≈ 1.8)",
            elem_id="upsample",
        )
        w["gaussian_sigma"] = gr.Slider(
            0,
            LIMITS.sigma_cap,
            value=control["gaussian_sigma"],
            step=0.05,
            label="Gaussian σ",
            info="the smoothing kernel's width: larger is smoother and slower to fit detail",
            visible=control["upsample"] == "gaussian",
            elem_id="sigma",
        )


def _run_settings(w: dict) -> None:
    """Iterations, seed, auto-stop, image size, network width and learning rate."""
    lim = LIMITS
    w["iterations"] = gr.Slider(
        10,
        lim.iterations_cap,
        value=lim.iterations,
        step=10,
        label="Iterations",
        info="the curves' length: vanilla DIP's decay after its peak needs a long run",
        elem_id="iterations",
    )
    w["seed"] = gr.Number(
        0,
        label="Seed",
        info="the network's input and first weights: the same seed gives the same curves",
        precision=0,
        minimum=0,
        maximum=field_bounds("seed")[1],
        elem_id="seed",
    )
    w["auto_stop"] = gr.Radio(
        [(AUTO_STOP_LABELS[k], k) for k in choices("auto_stop")],
        value="off",
        elem_id="auto_stop",
        label="Auto-stop (controlled network)",
        info="ends the controlled run where its rule fires (a dashed line on the plots)",
    )
    w["max_side"] = gr.Slider(
        32,
        lim.max_side_cap,
        value=lim.max_side,
        step=16,
        elem_id="max_side",
        label="Maximum image side (px); larger images are downscaled",
        info="larger: more detail in the high bands, slower steps",
    )
    w["width"] = gr.Slider(
        8,
        lim.width_cap,
        value=lim.width,
        step=8,
        label="Network width (channels)",
        info="wider: more capacity to fit detail (and noise); each step costs more",
        elem_id="width",
    )
    w["lr"] = gr.Number(
        lim.lr,
        label="Adam learning rate",
        info="larger reaches the peak (and the noise) sooner; too large diverges",
        minimum=field_bounds("lr")[0],
        maximum=field_bounds("lr")[1],
        elem_id="lr",
    )


def caption(text: str, elem_id: str) -> gr.Button:
    """The caption under a run's image: a button that cannot be pressed, since API clients do not receive a button's
    value (so the ``run`` endpoint's outputs stay events.RUN_OUTPUTS); CSS makes it read as text."""
    return gr.Button(text, interactive=False, size="sm", elem_id=elem_id, elem_classes=["caption"])


def _views() -> dict:
    """The right column: status, images, curves and spectrum, downloads, how to read them."""
    o = {
        "status": gr.Textbox(
            label="Status",
            value="Pick an image and press Run.",
            interactive=False,
            elem_id="status",
            lines=1,
            max_lines=2,
        )
    }
    kw = dict(type="numpy", format="png", interactive=False, buttons=["download"], min_width=0)
    with gr.Column(elem_id="images"):
        # the two runs side by side (on a phone too), each named in full by the caption under it
        with gr.Row(elem_id="lanes", elem_classes=["image-row"]):
            lanes = [("vanilla", "Vanilla DIP", "Vanilla DIP (λ 0, bilinear)"), ("result", "Controlled", "Controlled")]
            for name, label, text in lanes:
                with gr.Column(min_width=0, elem_classes=["lane"]):
                    o[name] = gr.Image(label=label, elem_id=name, height=240, show_label=False, **kw)
                    o[f"{name}_caption"] = caption(text, f"{name}_caption")
        with gr.Row(elem_id="inputs", elem_classes=["image-row"]):
            o["observation"] = gr.Image(label="Observation", elem_id="observation", height=170, **kw)
            o["baseline"] = gr.Image(label="Classical baseline (OpenCV)", elem_id="baseline", height=170, **kw)
            o["clean"] = gr.Image(label="Clean image", elem_id="clean", height=170, **kw)
    with gr.Row():
        o["curves"] = gr.Plot(label="Curves", elem_id="curves", scale=2, show_label=False)
        o["spectrum"] = gr.Plot(label="Spectrum", elem_id="spectrum", scale=1, show_label=False)
    o["files"] = gr.File(
        label="Downloads: result, baseline, log (CSV, JSON), config (JSON), animation (GIF)",
        file_count="multiple",
        elem_id="downloads",
        interactive=False,
        height=190,
    )
    with gr.Accordion("How to read this", open=True):
        gr.Markdown(HELP)
    return o


#: The form's fields the page sends from a hidden widget that ``events.prepare_inputs`` fills on Run
SENT = {"lipschitz": "lipschitz_sent"}


def form_endpoint(fn: Callable[[RunForm, gr.Request | None], Iterator]) -> Callable:
    """``fn(form, request)`` as Gradio calls it: RunForm's fields by name (the event's ``inputs_kwargs``), the form
    made once here. Its signature, made from RunForm's fields, names the API's parameters and their defaults."""

    def endpoint(request: gr.Request | None = None, **values: Any) -> Iterator:
        yield from fn(RunForm.of(values), request)

    request = inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None)
    endpoint.__signature__ = inspect.Signature([request, *RunForm.parameters()])
    endpoint.__name__ = endpoint.__qualname__ = fn.__name__
    endpoint.__doc__ = fn.__doc__
    return endpoint


def _wire(demo: gr.Blocks, w: dict, o: dict) -> None:
    """Connect the widgets to demo.events (each function ``guarded``: every error reaches the visitor as one line)."""
    # the page's small events share one group: a class changing tasks at once is served UI_EVENTS at a time, not one
    # at a time per function (Gradio's default), and never behind a live run
    private = dict(api_visibility="private", concurrency_id="ui", concurrency_limit=UI_EVENTS)
    g = guarded
    for trigger in (w["image"].change, w["max_side"].release):
        trigger(g(events.describe_image), [w["image"], w["max_side"]], [w["notice"], w["editor"]], **private)
    w["task"].change(g(events.on_task_change), w["task"], [w["level_slider"], w["sr_factor"], w["mask_box"]], **private)
    w["task"].input(
        g(events.on_task_input), w["task"], [w["level_slider"], w["lipschitz"], w["lipschitz_auto"]], **private
    )
    w["upsample"].change(g(events.on_upsample_change), w["upsample"], w["gaussian_sigma"], **private)
    compared = [o["vanilla"], o["result"], o["vanilla_caption"]]
    w["compare"].change(g(events.on_compare_change), w["compare"], compared, **private)
    prepare = [
        w[k] for k in ("task", "level_slider", "sr_factor", "mask_mode", "editor", "lipschitz", "lipschitz_auto")
    ]
    shown = RUN_OUTPUTS + CAPTION_OUTPUTS  # the captions last: API clients do not receive them
    prepared = [w["level"], w["mask"], w["lipschitz_sent"]]
    w["run"].click(g(events.prepare_inputs), prepare, prepared, **private).success(
        g(form_endpoint(events.run_lab)),
        None,
        [o[k] for k in shown],
        inputs_kwargs={name: w[SENT.get(name, name)] for name in RunForm.names()},
        api_name="run",
        concurrency_limit=1,
        show_progress="hidden",
    )
    # Stop sets the run's flag (a file too, for ZeroGPU's worker process): the run ends and keeps its downloads
    w["stop"].click(g(events.request_stop), None, None, api_name="stop", queue=False)
    w["load"].upload(g(events.load_config), w["load"], [w[k] for k in events.CONFIG_WIDGETS], **private)


#: The live tab's small events (describing an upload, a task change, the page's first image, ...) running at once.
UI_EVENTS = 4
#: Events running at once in the whole queue (Gradio's ``max_threads``, 40 by default: forty students' Play held every
#: place, and a scrub waited for a Play to end): every group's limit with room to spare. Threads stay bounded by the
#: groups' limits (replays hold none: demo/experiments.py).
RUNNING_EVENTS = 1 + UI_EVENTS + experiments.VIEW_EVENTS + experiments.PLAY_EVENTS + 32


def launch_options() -> dict:
    """Keyword arguments of ``demo.launch`` shared by app.py and the tests (``RequestGuard`` in front of the app)."""
    return dict(
        css=CSS,
        theme=THEME,
        head=head(),
        footer_links=["api", "settings"],
        ssr_mode=False,
        show_error=True,
        max_file_size=MAX_UPLOAD,
        max_threads=RUNNING_EVENTS,
        app_kwargs=dict(middleware=[Middleware(RequestGuard)]),
    )
