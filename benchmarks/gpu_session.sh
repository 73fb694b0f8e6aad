#!/usr/bin/env bash
# One GPU session (device tool), everything inside DEADLINE seconds: (0) the app as a ZeroGPU visitor meets it,
# driven through gradio_client with its GPU defaults and budget (benchmarks/app_gpu.py), (1) the CUDA-graph step against the eager
# one (same curve? how much faster?), then the compare pair's step separate and stacked (benchmarks/pair_step.py) and
# the stacked paths' faithfulness (benchmarks/fast_path.py), (2) the step benchmark at 512² with a graph variant, (3) the CPU-vs-CUDA
# curve check, (4) the paper's full denoising setting (width 128, 10,000 steps, vanilla and λ = 1.4, all in
# parallel) on REPRO_IMAGES from .gpu_data until the deadline, (5) with QUALITY_IMAGES set, the quality table against
# CBM3D and OpenCV at the paper's setting (benchmarks/quality.py) in the time left (raise DEADLINE for it).
# Everything lands in $OUT/session.tgz plus a log.
#   OUT=DIR bash benchmarks/gpu_session.sh                 # on the GPU machine, repository root
#   SMOKE=1 OUT=DIR bash benchmarks/gpu_session.sh         # the same flow on CPU at toy sizes
set -u
export PYTHONUNBUFFERED=1
DEADLINE=${DEADLINE:-540}
T0=$SECONDS
W="$OUT/work"
mkdir -p "$W/rep"
LOG="$OUT/session.log"
left() { echo $((DEADLINE - (SECONDS - T0))); }
log() { echo "[$(date -u +%H:%M:%S) +$((SECONDS - T0))s] $*" | tee -a "$LOG"; }
part() {  # part NAME LIMIT CMD...
  local name=$1 limit=$2 rc=0
  shift 2
  [ "$limit" -gt "$(left)" ] && limit=$(left)
  log "start $name (limit ${limit}s): $*"
  timeout "$limit" "$@" >"$W/$name.json" 2>"$W/$name.err" || rc=$?
  log "end $name rc=$rc"
  tail -c 1500 "$W/$name.json" | tee -a "$LOG"
  echo | tee -a "$LOG"
  [ "$rc" -ne 0 ] && tail -n 15 "$W/$name.err" | tee -a "$LOG"
}

if [ "${SMOKE:-0}" = 1 ]; then
  DEV=cpu; GC=(--size 32 --steps 30); STEP=(--size 64 --steps 4 --chunk 2 --warmup 1 --ref-steps 2)
  CURVES=(--device cpu --numerics cpu --size 64 --steps 40 --mean-tol 100 --peak-tol 100); REP=(--iters 60 --every 10 --size 64)
  GRAPH=""; APP=(--iterations 20 --max-side 32 --width 8)
  PAIR=(--size 64 --width 8 --chunk 5 --rounds 2 --warmup 5 --ref-steps 2 --variants separate stacked)
  FAST=(--size 32 --width 8 --steps 60 --variants stacked)
else
  APP=()
  DEV=cuda; GC=(--size 256 --steps 400); STEP=(--size 512 --steps 200 --chunk 20 --warmup 110 --ref-steps 10)
  CURVES=(--device cuda --size 128 --steps 300); REP=(--iters 10000 --every 50)
  PAIR=(--size 256 --width 128 --ref-steps 10); FAST=(--size 256 --width 128 --steps 2000)
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee -a "$LOG"
  python3 -c "import torch; print('torch', torch.__version__, torch.version.cuda)" | tee -a "$LOG"
fi

part app_gpu 90 python3 -m benchmarks.app_gpu "${APP[@]}"

if [ "$DEV" = cuda ]; then
  part graph_check 100 python3 -m benchmarks.graph_check --json "${GC[@]}"
  GRAPH=""
  grep -q '"ok": true' "$W/graph_check.json" && GRAPH="--cuda-graph"
  log "reproduction uses: ${GRAPH:-eager}"
fi
# the compare pair at 256², width 128, λ 1.4 against vanilla: separate, stacked, with bf16 / channels_last
# (target ≥ 333 pair-steps/s), then the stacked paths' curves against fp32 eager separate runs (≤ 0.3 dB)
part pair_step 120 python3 -m benchmarks.pair_step --device "$DEV" --json "${PAIR[@]}"
part fast_path 200 python3 -m benchmarks.fast_path --device "$DEV" --json "${FAST[@]}"
part step512 150 python3 -m benchmarks.step --device "$DEV" --json "${STEP[@]}" --variants "graph:cuda_graph=1"

part curves 150 python3 -m benchmarks.device_curves --json "${CURVES[@]}"

# then the paper's full denoising setting on the images in REPRO_IMAGES, vanilla and λ = 1.4, all in parallel
common=(--task denoise --preset cuda --device "$DEV" --lipschitz 1.4 "${REP[@]}" $GRAPH)
lim=$(($(left) - 25))
log "runs on ${REPRO_IMAGES:=image_F16_512rgb}, limit ${lim}s"
for img in $REPRO_IMAGES; do
  for v in vanilla controlled; do
    timeout "$lim" python3 -m benchmarks.reproduce "${common[@]}" --images ".gpu_data/$img.png" --variants "$v" \
      --out "$W/rep" >"$W/rep/log_${img}_$v.txt" 2>&1 &
  done
done
wait
log "F16 runs ended"
tail -n 4 "$W"/rep/log_*.txt | tee -a "$LOG"
python3 -m benchmarks.reproduce "${common[@]}" --images .gpu_data --out "$W/rep" --report-only >>"$LOG" 2>&1
grep -A 6 "^| image" "$W/rep/report.md" | head -n 8 | tee -a "$LOG"
# the quality table at full scale (benchmarks/quality.py; needs pip install -r requirements-bench.txt for CBM3D):
# QUALITY_IMAGES="image_House256rgb ..." from .gpu_data, the paper's setting, with whatever time is left
if [ -n "${QUALITY_IMAGES:-}" ]; then
  qimg=()
  for img in $QUALITY_IMAGES; do qimg+=(".gpu_data/$img.png"); done
  if [ "${SMOKE:-0}" = 1 ]; then QREP=(--preset cpu --max-side 32 --width 8 --iters 20 --every 5)
  else QREP=(--preset cuda --iters 10000 --every 50); fi
  part quality "$(left)" python3 -m benchmarks.quality --images "${qimg[@]}" --task denoise --level 25 \
    --lipschitz 1.4 "${QREP[@]}" --out "$W/quality"
fi
nvidia-smi --query-gpu=name,memory.used --format=csv >>"$LOG" 2>&1
# (6) with REPLAY_EXPERIMENTS set (e.g. "denoise_house"), the app's replays of those experiments at the paper's scale
# (512 px, width 128, 10,000 steps, all seven lanes; benchmarks/replays.py) from REPLAY_DATA (the layout of
# ../shared/data), in the time left; the tab reads them with SPECTRAL_BIAS_LAB_REPLAYS=$OUT/replays
if [ -n "${REPLAY_EXPERIMENTS:-}" ]; then
  if [ "${SMOKE:-0}" = 1 ]; then RPL=(--smoke); else RPL=(--preset cuda); fi
  part replays "$(left)" python3 -m benchmarks.replays --data "${REPLAY_DATA:-.gpu_data}" --out "$OUT/replays" \
    --work "$W/replays" --experiments $REPLAY_EXPERIMENTS "${RPL[@]}"
fi
(cd "$W" && tar czf "$OUT/session.tgz" .) && rm -rf "$W"
log "done"
