"""The run loop: restoration, streaming, stopping, determinism, every task, the DIP options."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers import small
from outcomes import threshold

from dip_core import RunConfig, make_task, observed_task, preset, resolve, resolve_device, run, run_to_end
from dip_core.engine import build, forward
from dip_core.errors import InputError
from dip_core.metrics import psnr
from dip_core.tasks import to_image


@pytest.mark.outcome
def test_denoising_raises_psnr_well_above_the_observation(house64):
    task = make_task("denoise", house64, 25, seed=0)
    noisy_psnr = psnr(to_image(task.observation), house64)
    snaps = run_to_end(task, small(width=32, depth=4, iterations=300, every=25, lr=0.01))
    best = max(s.psnr for s in snaps)
    assert best > noisy_psnr + threshold("denoise_gain", "gain_db"), (noisy_psnr, best)
    assert snaps[-1].best_psnr == pytest.approx(best)
    assert snaps[-1].done and snaps[-1].iter == 300


def test_snapshots_stream_with_all_fields(house64):
    task = make_task("denoise", house64, 25)
    snaps = list(run(task, small(iterations=25, every=10)))
    assert [s.iter for s in snaps] == [1, 10, 20, 25]
    assert [s.done for s in snaps] == [False, False, False, True]
    s = snaps[-1]
    assert s.image.shape == (64, 64, 3) and s.image.dtype == np.float32
    assert len(s.fbc) == 5 and len(s.fbc_clean) == 5
    assert all(0 <= v <= 1 for v in s.fbc + s.fbc_clean)
    assert math.isfinite(s.loss) and math.isfinite(s.ratio) and 0 < s.ssim <= 1
    assert s.seconds >= snaps[0].seconds >= 0
    assert set(s.record()) == {"iter", "loss", "psnr", "ssim", "fbc", "fbc_clean", "ratio", "seconds"}


def test_stop_callback_ends_the_run_between_steps(house64):
    task = make_task("denoise", house64, 25)
    calls = {"n": 0}

    def stop() -> bool:
        calls["n"] += 1
        return calls["n"] >= 7

    snaps = run_to_end(task, small(iterations=100, every=50), cancel=stop)
    assert snaps[-1].iter == 7 and snaps[-1].done and not snaps[-1].stopped


def test_closing_the_generator_stops(house64):
    """Closing the generator ends the run: no step is taken after it and nothing more is yielded."""
    task = make_task("denoise", house64, 25)
    steps = []

    def count_steps() -> bool:  # the engine asks after every step
        steps.append(len(steps) + 1)
        return False

    gen = run(task, small(iterations=1000, every=1), cancel=count_steps)
    next(gen), next(gen)
    assert steps == [1, 2]  # lazy: two snapshots, two steps
    gen.close()  # no exception
    assert next(gen, None) is None and steps == [1, 2]


def test_same_seed_same_curve_different_seed_different(house64):
    def curve(seed):
        task = make_task("denoise", house64, 25, seed=seed)
        return [(s.loss, s.psnr) for s in run(task, small(iterations=20, every=5, seed=seed, lipschitz=1.0))]

    assert curve(1) == curve(1)
    assert curve(1) != curve(2)


@pytest.mark.parametrize(
    ("name", "level", "shape"),
    [
        ("denoise", 25, (37, 53, 3)),
        ("jpeg", 10, (40, 40, 1)),
        ("inpaint", 0.5, (33, 65, 3)),
        ("sr", 2, (48, 40, 3)),
        ("enhance", 1.5, (40, 36, 3)),
    ],
)
def test_every_task_runs_at_any_size(name, level, shape):
    rng = np.random.default_rng(0)
    img = rng.random(shape).astype(np.float32)
    task = make_task(name, img, level)
    snaps = run_to_end(task, small(iterations=6, every=3, upsample="gaussian", lipschitz=1.4, measure_every_step=True))
    h, w = task.out_size
    assert snaps[-1].image.shape == (h, w, shape[2])
    assert all(math.isfinite(s.loss) for s in snaps)
    assert (snaps[-1].psnr is None) == (name == "enhance")


def test_observed_task_has_no_psnr(house64):
    snaps = run_to_end(observed_task("denoise", house64), small(iterations=5, every=5))
    assert snaps[-1].psnr is None and snaps[-1].fbc_clean is None and snaps[-1].best_psnr is None


def test_crop_maps_back_to_the_image_size():
    task = make_task("denoise", np.random.default_rng(0).random((37, 53, 3)).astype(np.float32), 25)
    config = small()
    state = build(task, config)
    assert tuple(state.z.shape[-2:]) == (40 // 8, 56 // 8)
    assert forward(state, config).shape == (1, 3, 37, 53)


def test_build_takes_a_resolved_device_only(house64):
    """``device="auto"`` is chosen once, by dip_core.resolve (``resolve_device``); ``build`` refuses it in one line."""
    task = make_task("denoise", house64, 25)
    with pytest.raises(ValueError, match=r'^device="auto" reached the engine: resolve the config first') as err:
        build(task, small(device="auto"))
    assert "\n" not in str(err.value)
    resolved = resolve(task, small(device="auto"))
    assert resolved.device == resolve_device().type == resolve_device("auto").type
    assert build(task, resolved).device == torch.device(resolved.device)


@pytest.mark.parametrize("shape", [(16, 16, 3), (17, 40, 1), (32, 32, 3)])
def test_reflection_padding_runs_on_the_smallest_images(shape):
    """The paper's network (depth 5, reflection padding) on images down to the minimum side: the coarsest
    grid is kept at ≥ 2×2 pixels, since reflection needs more than one."""
    img = np.random.default_rng(0).random(shape).astype(np.float32)
    task = make_task("denoise", img, 25)
    cfg = preset("paper", device="cpu", width=8, iterations=2, every=1)
    state = build(task, cfg)
    assert min(state.z.shape[-2:]) >= 2
    snaps = run_to_end(task, cfg)
    assert snaps[-1].image.shape == shape and math.isfinite(snaps[-1].loss)


@pytest.mark.outcome
def test_auto_stop_fires_and_reports_its_iteration(house64):
    task = make_task("denoise", house64, 25)
    budget = threshold("relative_stop", "stop_iter")  # 2× the latest stop measured (benchmarks.portability)
    snaps = run_to_end(task, small(iterations=budget, every=50, auto_stop="relative"))
    last = snaps[-1]
    assert last.stopped and last.done and last.stop_iter is not None
    assert last.stop_iter <= last.iter < budget
    off = run_to_end(task, small(iterations=40, every=20, auto_stop="off"))
    assert not off[-1].stopped


def test_non_finite_loss_stops_and_keeps_the_last_good_image(house64):
    task = make_task("denoise", house64, 25)
    gen = run(task, small(iterations=100, every=5))
    good = [next(gen), next(gen)]
    # poison the observation: every later loss is NaN
    task.observation.fill_(float("nan"))
    rest = list(gen)
    assert rest[-1].done and "non-finite" in rest[-1].message
    assert np.isfinite(rest[-1].image).all()
    assert rest[-1].iter == good[-1].iter


def test_a_non_finite_loss_yields_a_new_final_snapshot(house64):
    """The snapshot already yielded is not changed afterwards (it once was marked done and given the message)."""
    task = make_task("denoise", house64, 25)
    gen = run(task, small(iterations=100, every=5, auto_stop="discrepancy"))
    good = [next(gen), next(gen)]
    task.observation.fill_(float("nan"))
    final = list(gen)[-1]
    assert final is not good[-1] and final.done and "non-finite" in final.message
    assert not good[-1].done and good[-1].message is None and good[-1].step_losses  # as it was yielded
    assert final.step_losses == []  # its steps' losses were delivered once, with the snapshot before


def test_a_backtrack_on_the_last_step_still_ends_with_a_final_snapshot(house64):
    """A loss jump on the very last step restores the weights and the run still yields its done snapshot
    (it used to ``continue`` past it, so the run ended without one)."""
    task = make_task("denoise", house64, 25)
    calls = {"n": 0}

    def poison_before_the_last_step() -> bool:
        calls["n"] += 1
        if calls["n"] == 19:  # after step 19 of 20: step 20's loss jumps far above √10 × step 19's
            task.observation.add_(0.8)
        return False

    snaps = run_to_end(task, small(iterations=20, every=5, backtrack=True), cancel=poison_before_the_last_step)
    assert snaps[-1].done and snaps[-1].iter == 20 and math.isfinite(snaps[-1].psnr)
    assert [s.iter for s in snaps] == [1, 5, 10, 15, 20]


def test_dip_options_run(house64):
    task = make_task("denoise", house64, 25)
    snaps = run_to_end(task, small(iterations=12, every=4, reg_noise_std=0.03, ema=0.9, backtrack=True))
    assert snaps[-1].iter == 12 and all(math.isfinite(s.psnr) for s in snaps)


def test_backtracking_restores_a_copy_of_the_weights(house64):
    task = make_task("denoise", house64, 25)
    config = small(iterations=40, every=5, backtrack=True, lr=0.01)
    gen = run(task, config)
    for _ in range(3):
        next(gen)
    # make the loss jump by a factor of ~100: backtracking must restore, not alias, the saved weights
    task.observation.mul_(0).add_(1.0)
    snaps = list(gen)
    assert all(math.isfinite(s.loss) for s in snaps)


def test_bf16_and_channels_last_paths_run(house64):
    task = make_task("denoise", house64, 25)
    snaps = run_to_end(task, small(iterations=4, every=2, precision="bf16", channels_last=True, lipschitz=1.4))
    assert math.isfinite(snaps[-1].psnr)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("iterations", 0),
        ("iterations", float("nan")),
        ("seed", -1),
        ("lipschitz", float("inf")),
        ("lipschitz", -1.0),
        ("gaussian_sigma", 50.0),
        ("upsample", "cubic"),
        ("lr", 0.0),
        ("device", "tpu"),
        ("auto_stop", "soon"),
    ],
)
def test_config_validation(field, value):
    with pytest.raises(InputError, match=field):
        RunConfig(**{field: value})  # checked when made


def test_a_config_is_checked_once_when_made_and_stays_valid():
    """Frozen: nothing can make a checked RunConfig invalid; numbers are converted once; a per-layer
    list is checked for its length where it is made, with our line, not deep in the decoder (text is converted at the
    edges: the CLI, the API)."""
    import dataclasses

    cfg = RunConfig(width=16.0, lipschitz=[1, 2] * 6, iterations=10.0)
    assert cfg.width == 16 and cfg.iterations == 10 and isinstance(cfg.iterations, int)
    assert cfg.lipschitz == (1.0, 2.0) * 6 and cfg.to_dict()["lipschitz"] == [1.0, 2.0] * 6
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.width = 10_000  # type: ignore[misc]
    with pytest.raises(
        InputError, match=r"^lipschitz takes one value or 12 \(one per 3×3 convolution at depth 5\), got 3$"
    ):
        RunConfig(lipschitz=[1.0, 1.0, 1.0])
    with pytest.raises(InputError, match=r"^gaussian_sigma takes one value or 3 .* got 2$"):
        RunConfig(depth=3, gaussian_sigma=[0.5, 0.5])
    with pytest.raises(InputError, match="width must be a number between 4 and 512"):
        dataclasses.replace(cfg, width=10_000)  # a changed copy is checked as well
    assert RunConfig(depth=3, lipschitz=[1.0] * 8).lipschitz == (1.0,) * 8


def test_presets():
    assert preset("paper").width == 128 and preset("paper").sn_method == "svd"
    assert preset("cpu", lipschitz=1.4).lipschitz == 1.4
    with pytest.raises(InputError, match="unknown preset"):
        preset("fastest")
    cfg = preset("cpu")
    assert RunConfig.from_dict(cfg.to_dict()) == cfg


def test_cuda_request_without_gpu_is_an_input_error(house64):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(InputError, match="cuda"):
        run_to_end(make_task("denoise", house64, 25), small(device="cuda"))


def test_per_step_ratios_cover_every_step(house64):
    task = make_task("denoise", house64, 25)
    snaps = run_to_end(task, small(iterations=23, every=10, measure_every_step=True))
    steps = [t for s in snaps for t, _ in s.step_ratios]
    assert steps == list(range(1, 24))
    last_t, last_r = snaps[-1].step_ratios[-1]
    assert last_t == 23 and last_r == pytest.approx(snaps[-1].ratio, rel=1e-5)
