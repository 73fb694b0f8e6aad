#!/usr/bin/env bash
# One GPU session (device tool), everything inside DEADLINE seconds (480: 8 minutes): (0) the app as a ZeroGPU visitor
# meets it, driven through gradio_client with its GPU defaults and budget (app-gpu), (1) the compare pair's step
# separate and stacked (pair-speed), (2) the stacked paths' curves against separate fp32 eager runs (curves --pair),
# (3) with EXTRA=1, the checks measured before: the CUDA-graph step's curve against the eager one's (curves), the step
# benchmark at 512² (speed) and the CPU-vs-CUDA curves (curves), (4) the paper's full denoising setting (width 128,
# 10,000 steps, vanilla and λ = 1.4, all in parallel) on REPRO_IMAGES from GPU_DATA until the deadline (report),
# (5) with QUALITY_IMAGES set, the quality table against CBM3D and OpenCV at the paper's setting (quality) in the time
# left (raise DEADLINE for it), (6) REPLAY_EXPERIMENTS and (7) AUTO_LAMBDA_IMAGES, below. Every command is
# python3 -m benchmarks COMMAND.
# Everything lands in $OUT/session.tgz plus a log.
#   OUT=DIR bash benchmarks/gpu_session.sh                 # on the GPU machine, repository root
#   SMOKE=1 OUT=DIR bash benchmarks/gpu_session.sh         # the same flow on CPU at toy sizes
# GPU_DATA (default .gpu_data, an untracked folder that travels with the working tree) holds the paper's denoising
# images by their names (image_F16_512rgb.png, ...): e.g. mkdir .gpu_data && cp DATA/denoising/*.png .gpu_data
# before the device call. SMOKE=1 uses the repository's assets (house256) instead.
set -u
export PYTHONUNBUFFERED=1
GPU_DATA=${GPU_DATA:-}
DEADLINE=${DEADLINE:-480}
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
  GPU_DATA=${GPU_DATA:-assets}; REPRO_IMAGES=${REPRO_IMAGES:-house256}
  DEV=cpu; GC=(--size 32 --steps 30); STEP=(--size 64 --steps 4 --chunk 2 --warmup 1 --ref-steps 2)
  CURVES=(--size 64 --steps 40 --variants dut:preset=cpu --tol 100 --peak-tol 100); REP=(--iters 60 --every 10 --size 64)
  GRAPH=""; APP=(--iterations 20 --max-side 32 --width 8)
  PAIR=(--size 64 --width 8 --chunk 5 --rounds 2 --warmup 5 --ref-steps 2 --variants separate stacked)
  FAST=(--size 32 --width 8 --steps 60 --variants stacked:stacked=1)
else
  GPU_DATA=${GPU_DATA:-.gpu_data}
  APP=()
  DEV=cuda; GC=(--size 256 --steps 400); STEP=(--size 512 --steps 200 --chunk 20 --warmup 110 --ref-steps 10)
  CURVES=(--size 128 --steps 300 --variants cuda:preset=cuda,device=cuda --tol 0.5 --peak-tol 0.3)
  REP=(--iters 10000 --every 50); PAIR=(--size 256 --width 128 --ref-steps 10)
  FAST=(--size 256 --width 128 --steps 2000 --variants stacked:stacked=1 stacked+bf16:stacked=1,precision=bf16
    stacked+channels_last:stacked=1,channels_last=1)
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee -a "$LOG"
  python3 -c "import torch; print('torch', torch.__version__, torch.version.cuda)" | tee -a "$LOG"
fi

part app_gpu 90 python3 -m benchmarks app-gpu "${APP[@]}"

# the compare pair at 256², width 128, λ 1.4 against vanilla: separate, stacked, with bf16 / channels_last
# (target ≥ 333 pair-steps/s), then the stacked paths' curves against fp32 eager separate runs (≤ 0.3 dB)
part pair_step 90 python3 -m benchmarks pair-speed --device "$DEV" --json "${PAIR[@]}"
part fast_path 150 python3 -m benchmarks curves --pair --device "$DEV" --json --set conv_algo=direct \
  --reference separate+eager:cuda_graph=0 "${FAST[@]}"

# EXTRA=1: the checks an earlier session measured (benchmarks/RESULTS.md, GPU): the graph against eager, the 512²
# step, the CPU-vs-CUDA curves; without them the reproduction below replays CUDA graphs (checked on an H100)
GRAPH=""
[ "$DEV" = cuda ] && GRAPH="--cuda-graph"
if [ "${EXTRA:-0}" = 1 ]; then
  if [ "$DEV" = cuda ]; then
    part graph_check 100 python3 -m benchmarks curves --preset cuda --device cuda --json "${GC[@]}" \
      --reference eager:cuda_graph=0 --variants graph:cuda_graph=1
    grep -q '"ok": true' "$W/graph_check.json" || GRAPH=""
  fi
  part step512 150 python3 -m benchmarks speed --device "$DEV" --json "${STEP[@]}" --variants "graph:cuda_graph=1"
  part curves 150 python3 -m benchmarks curves --preset paper --device cpu --reference cpu --json "${CURVES[@]}"
fi
log "reproduction uses: ${GRAPH:-eager}"

# then the paper's full denoising setting on the images in REPRO_IMAGES, vanilla and λ = 1.4, all in parallel
common=(--task denoise --preset cuda --device "$DEV" --lipschitz 1.4 "${REP[@]}" $GRAPH)
lim=$(($(left) - 25))
log "runs on ${REPRO_IMAGES:=image_F16_512rgb image_House256rgb image_Peppers512rgb}, limit ${lim}s"
for img in $REPRO_IMAGES; do
  for v in vanilla controlled; do
    timeout "$lim" python3 -m benchmarks report "${common[@]}" --images "$GPU_DATA/$img.png" --variants "$v" \
      --out "$W/rep" >"$W/rep/log_${img}_$v.txt" 2>&1 &
  done
done
wait
log "reproduction runs ended"
tail -n 4 "$W"/rep/log_*.txt | tee -a "$LOG"
python3 -m benchmarks report "${common[@]}" --images "$GPU_DATA" --out "$W/rep" --report-only >>"$LOG" 2>&1
grep -A 6 "^| image" "$W/rep/report.md" | head -n 8 | tee -a "$LOG"
# the quality table at full scale (python -m benchmarks quality; needs pip install -r requirements-bench.txt for CBM3D):
# QUALITY_IMAGES="image_House256rgb ..." from GPU_DATA, the paper's setting, with whatever time is left
if [ -n "${QUALITY_IMAGES:-}" ]; then
  qimg=()
  for img in $QUALITY_IMAGES; do qimg+=("$GPU_DATA/$img.png"); done
  if [ "${SMOKE:-0}" = 1 ]; then QREP=(--preset cpu --max-side 32 --width 8 --iters 20 --every 5)
  else QREP=(--preset cuda --iters 10000 --every 50); fi
  part quality "$(left)" python3 -m benchmarks quality --images "${qimg[@]}" --task denoise --level 25 \
    --lipschitz 1.4 "${QREP[@]}" --out "$W/quality"
fi
[ "$DEV" = cuda ] && nvidia-smi --query-gpu=name,memory.used --format=csv >>"$LOG" 2>&1
# (6) with REPLAY_EXPERIMENTS set (e.g. "denoise_house"), the app's replays of those experiments at the paper's scale
# (512 px, width 128, 10,000 steps, all seven lanes; python -m benchmarks replays) from REPLAY_DATA (the benchmark
# image folder), in the time left; the tab reads them with SPECTRAL_BIAS_LAB_REPLAYS=$OUT/replays
if [ -n "${REPLAY_EXPERIMENTS:-}" ]; then
  if [ "${SMOKE:-0}" = 1 ]; then RPL=(--smoke); else RPL=(--preset cuda); fi
  part replays "$(left)" python3 -m benchmarks replays --data "${REPLAY_DATA:-.gpu_data}" --out "$OUT/replays" \
    --work "$W/replays" --experiments $REPLAY_EXPERIMENTS "${RPL[@]}"
fi
# (7) with AUTO_LAMBDA_IMAGES set (e.g. "0010.png 0011.png"), issue 35's lipschitz="auto" at the paper's scale: vanilla,
# λ 1, λ 1.4 and the composition shipped, on those CBSD68 judge images from AUTO_LAMBDA_DATA (a folder with bsd68/),
# each denoised, deblocked and inpainted (python -m benchmarks auto-lambda --preset cuda), in the time left
if [ -n "${AUTO_LAMBDA_IMAGES:-}" ]; then
  if [ "${SMOKE:-0}" = 1 ]; then
    AL=(--preset cpu --sets tune --steps 40 --size 32 --width 8 --tasks jpeg)
  else
    AL=(--preset cuda --sets judge --data "${AUTO_LAMBDA_DATA:-.gpu_data}")
  fi
  part auto_lambda "$(left)" python3 -m benchmarks auto-lambda "${AL[@]}" --images $AUTO_LAMBDA_IMAGES \
    --lanes vanilla lam1 lam1.4 auto --workers 1 --out "$W/auto_lambda"
fi
(cd "$W" && tar czf "$OUT/session.tgz" .) && rm -rf "$W"
log "done"
