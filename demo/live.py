"""One live run as the page sees it: ``live_run`` checks the form, steps the run (demo/session.py) and yields each
frame's widget values (``frame_outputs``); on ZeroGPU in a GPU worker process (demo/gpu.py)."""

from __future__ import annotations

from collections.abc import Iterator

import gradio as gr
import torch

from . import frames
from .errors import checked_request
from .exports import FrameFiles, write_downloads
from .form import CAPTION_OUTPUTS, RUN_OUTPUTS, RunForm
from .frames import Frame
from .gpu import on_gpu, request_seconds
from .records import RunData
from .session import STOPS, LabRun
from .settings import GPU_BUDGET
from .worker import WorkerLost


@on_gpu
def live_run(key: str, form: RunForm) -> Iterator[tuple[bool, tuple]]:
    """One live run: checks ``form`` and yields (done, the values of RUN_OUTPUTS + CAPTION_OUTPUTS) per frame. On
    ZeroGPU it runs in a GPU worker process for the seconds ``gpu_duration`` asked for and ends on its own just
    before; elsewhere at the device's time limit. ``key`` names its Stop flag (``STOPS``)."""
    req = checked_request(form)
    for note in req.notes:
        gr.Warning(note)
    lab = LabRun(req, stop=STOPS.flag(key).is_set, gpu_seconds=request_seconds(req) if GPU_BUDGET else None)
    if lab.baseline.unavailable:
        gr.Warning(lab.baseline.unavailable)
    files = FrameFiles()
    try:
        for i, frame in enumerate(frames.stream(lab.stream(), lab.limits.max_frames)):
            outputs = frame_outputs(frame, files, first=i == 0)
            yield frame.done, tuple(outputs[k] for k in RUN_OUTPUTS + CAPTION_OUTPUTS)
    except gr.Error:
        raise
    except WorkerLost as err:
        raise gr.Error(str(err), print_exception=False) from None
    except torch.OutOfMemoryError:
        raise gr.Error(
            "the run ran out of memory: try a smaller image or a narrower network", print_exception=False
        ) from None


def frame_outputs(frame: Frame, files: FrameFiles, first: bool) -> dict:
    """Widget values for one frame, by name (RUN_OUTPUTS and CAPTION_OUTPUTS): images as PNG files written by
    ``files``; the first also sets the labels (and clears the downloads); later ones send plain values, so API
    clients get file paths; unchanged widgets are skipped."""
    run = frame.run
    results = {name: files(name, img) for name, img in frame.results.items()}
    vanilla, result = results.get("vanilla"), results["controlled"]
    out = dict(curves=frame.curves, spectrum=frame.spectrum, status=frame.status, result=result)
    out.update(result_caption=frame.captions["controlled"], vanilla_caption=frame.captions.get("vanilla", gr.skip()))
    out["files"] = write_downloads(run, animation=frame.animation) if frame.done else None if first else gr.skip()
    if not first:
        skip = gr.skip()
        return dict(out, observation=skip, vanilla=skip if vanilla is None else vanilla, clean=skip, baseline=skip)
    labels = {name: t.label for name, t in run.tracks.items()}
    return dict(
        out,
        observation=gr.update(value=files("observation", run.observation), label=frames.observation_label(run)),
        vanilla=gr.update(visible=False)
        if vanilla is None
        else gr.update(value=vanilla, label=labels["vanilla"], visible=True),
        vanilla_caption=gr.update(visible=False)
        if vanilla is None
        else gr.update(value=frame.captions["vanilla"], visible=True),
        result=gr.update(value=result, label=labels["controlled"]),
        clean=gr.update(value=files("clean", run.clean), visible=run.clean is not None),
        baseline=baseline_update(run, files),
    )


def baseline_update(run: RunData, files: FrameFiles) -> dict:
    """The baseline panel: OpenCV's result (hidden when it could not run)."""
    b = run.baseline
    return gr.update(value=files("baseline", b.image), label=frames.baseline_label(run), visible=b.image is not None)
