#!/usr/bin/env bash
# GPU check for issue #4 (speed): step benchmark at 512² and 256² on CUDA, CPU-vs-CUDA curves, and a CUDA
# time-to-quality run. Writes JSON + logs under $OUT; about 4 minutes on an H100 (each part has a timeout).
#
#   OUT=/some/dir bash benchmarks/gpu_check.sh          # on the GPU machine, from the repository root
#   GPU_CHECK_SMOKE=1 OUT=/tmp/x bash benchmarks/gpu_check.sh   # the same flow on CPU at tiny sizes
#
# Exit status: 0 when every part ran and the curves agree; 1 when any part failed (its stderr is shown);
# 2 when there is no GPU. The targets (≥ 100 steps/s at 512², ...) are reported, not enforced.
set -euo pipefail
: "${OUT:?set OUT to the output folder}"
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
mkdir -p "$OUT"
LOG="$OUT/gpu_check.log"
log() { echo "[gpu_check $(date -u +%H:%M:%S)] $*" | tee -a "$LOG"; }
failed=()

part() {  # part NAME SECONDS CMD...: run CMD with a timeout, stdout → NAME.json, stderr → NAME.err
  local name=$1 limit=$2 rc=0
  shift 2
  log "start $name: $*"
  local t0=$SECONDS
  timeout "$limit" "$@" >"$OUT/$name.json" 2>"$OUT/$name.err" || rc=$?
  if [ "$rc" -ne 0 ]; then
    log "FAILED $name (exit $rc after $((SECONDS - t0)) s; 124 = timed out). Last lines of its stderr:"
    tail -n 25 "$OUT/$name.err" | tee -a "$LOG" >&2
    failed+=("$name")
  else
    log "ok $name ($((SECONDS - t0)) s)"
  fi
  if grep -q "capture failed" "$OUT/$name.err"; then
    log "WARNING $name: CUDA graph capture failed, the run fell back to eager:"
    grep "capture failed" "$OUT/$name.err" | head -n 3 | tee -a "$LOG" >&2
  fi
}

if [ "${GPU_CHECK_SMOKE:-0}" = 1 ]; then
  DEV=cpu BIG=64 SMALL=64 STEPS=2 CHUNK=1 WARM=1 REF=2 CURVE_SIZE=64 CURVE_STEPS=40 TTQ=(--size 64 --steps 30 --ref-steps 30 --long-steps 40 --chunk 5)
  CURVES=(--device cpu --numerics cpu --mean-tol 100 --peak-tol 100)
else
  DEV=cuda BIG=512 SMALL=256 STEPS=200 CHUNK=20 WARM=110 REF=20 CURVE_SIZE=128 CURVE_STEPS=400
  TTQ=(--size 256 --steps 600 --ref-steps 400 --long-steps 1500 --chunk 10)
  CURVES=(--device cuda)
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee -a "$LOG" || {
    log "no nvidia-smi: not a GPU machine"
    exit 2
  }
  "$PY" -c "import torch, sys; ok = torch.cuda.is_available(); print('torch', torch.__version__, 'cuda', ok, torch.cuda.get_device_name(0) if ok else ''); sys.exit(0 if ok else 2)" | tee -a "$LOG"
fi

part step_big 130 "$PY" -m benchmarks.step --device "$DEV" --size "$BIG" --steps "$STEPS" --chunk "$CHUNK" --warmup "$WARM" \
  --ref-steps "$REF" --json --variants "eager:cuda_graph=0;zeros:padding=zeros;bf16:precision=bf16;cl:channels_last=1"
part step_small 70 "$PY" -m benchmarks.step --device "$DEV" --size "$SMALL" --steps "$STEPS" --chunk "$CHUNK" --warmup "$WARM" \
  --ref-steps "$REF" --json --variants "eager:cuda_graph=0"
part curves 100 "$PY" -m benchmarks.device_curves --size "$CURVE_SIZE" --steps "$CURVE_STEPS" --json "${CURVES[@]}"
part ttq 80 "$PY" -m benchmarks.time_to_quality --device "$DEV" --json --lanes reference_vanilla,preset,preset_controlled "${TTQ[@]}"

"$PY" - "$OUT" <<'EOF' | tee -a "$LOG"
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
def load(name):
    try:
        return json.loads((out / f"{name}.json").read_text())
    except (OSError, ValueError):
        return None
for name in ("step_big", "step_small"):
    r = load(name)
    if r:
        sps = None if not r["ours_same_ms"] else 1000 / r["ours_same_ms"]
        print(f"{name}: {r['device']} {r['size']}²  reference {r['reference_ms']} ms, ours_same {r['ours_same_ms']} ms "
              f"({sps and round(sps, 1)} steps/s), preset {r['ours_preset_ms']} ms, speedup_same {r['speedup_same']}, "
              f"measure {r['measure_overhead_pct']} %, {r['gflops_achieved']} of {r['gflops_peak']} GFLOP/s")
        for k, v in r.get("variants", {}).items():
            print(f"    {k}: {v['ms']} ms ({v['vs_ours_same']}x ours_same)")
        if r["size"] == 512 and sps is not None:
            print(f"    target ≥ 100 steps/s at 512²: {'MET' if sps >= 100 else 'NOT MET'} ({sps:.1f})")
c = load("curves")
if c:
    print(f"curves cpu-vs-{c['device']} {c['size']}² λ {c['lipschitz']}: mean |ΔMA25| {c['mean_abs_gap_db']} dB, "
          f"peak MA {c['peak_ma_a']} vs {c['peak_ma_b']} (gap {c['peak_gap_db']}), ok={c['ok']}")
t = load("ttq")
if t:
    print(f"time to 30 dB: reference {t['reference_s_to_30db']} s, preset {t['preset_s_to_30db']} s, "
          f"speedup {t['speedup']}, preset peak {t['preset_peak_psnr']}")
    for k, v in t["lanes"].items():
        print(f"    {k}: steps {v['steps']}, {v['median_step_ms']} ms/step, →30 dB at step {v['steps_to_target']} "
              f"({v['s_to_target']} s), peak {v['peak_psnr']} @ {v['peak_step']}, final MA {v['final_ma_psnr']}")
EOF

if [ "${#failed[@]}" -ne 0 ]; then
  log "FAILED parts: ${failed[*]}"
  exit 1
fi
log "all parts ran"
