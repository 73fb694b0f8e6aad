#!/usr/bin/env bash
# One GPU session (device tool): CUDA correctness + step times, then the paper's full denoising setting
# (width 128, 10,000 steps, σ = 25) on Peppers, F16 (512²) and House (256²), runs in parallel, each
# capped by REPRO_SECONDS; partial curves still come back and benchmarks.reproduce --report-only reads them.
# Usage (on the GPU machine): IMAGES=.gpu_data bash benchmarks/gpu_session.sh   (writes under $OUT)
set -u
export PYTHONUNBUFFERED=1
IMAGES=${IMAGES:-.gpu_data}
REPRO_SECONDS=${REPRO_SECONDS:-420}
nvidia-smi -L
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))"
mkdir -p "$OUT/rep"
timeout 120 python3 -m benchmarks.cuda_check --size 512 --out "$OUT/cuda_check.json" || echo "cuda_check FAILED rc=$?"
common=(--task denoise --preset cuda --iters 10000 --every 50 --device cuda --out "$OUT/rep")
pids=()
for img in image_Peppers512rgb image_F16_512rgb image_House256rgb; do
  for v in vanilla controlled; do
    timeout "$REPRO_SECONDS" python3 -m benchmarks.reproduce "${common[@]}" --images "$IMAGES/$img.png" \
      --lipschitz 1.4 --variants "$v" > "$OUT/rep/log_${img}_$v.txt" 2>&1 &
    pids+=($!)
  done
done
timeout "$REPRO_SECONDS" python3 -m benchmarks.reproduce "${common[@]}" --images "$IMAGES/image_House256rgb.png" \
  --lipschitz 1.8 --gaussian-sigma 0.5 --variants controlled > "$OUT/rep/log_house_gauss.txt" 2>&1 &
pids+=($!)
for p in "${pids[@]}"; do wait "$p"; done
nvidia-smi --query-gpu=name,memory.used --format=csv
tail -n 3 "$OUT"/rep/log_*.txt
cd "$OUT" && tar czf rep.tgz rep && rm -rf rep && ls -la "$OUT"
